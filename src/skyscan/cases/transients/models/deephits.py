"""Deep-HiTS, the rotation-invariant real/bogus CNN (Cabrera-Vives et al. 2017, ApJ 836, 97).

The published network, as in the authors' Theano code (``guille-c/Deep-HiTS``: the
architecture ``src/arch7.py``, the layers of ``src/layers.py`` and the run ``runs/arch7``), for
21x21 stamps of 4 channels (template, science, difference, signal-to-noise):

===============================================  ================  ==========
layer                                            output (21x21)    parameters
===============================================  ================  ==========
the stamp and its 90, 180, 270 degree rotations  4 x 21 x 21 x 4
conv 4x4, 32, zero padding 3 (to 27x27)          4 x 24 x 24 x 32       2 080
conv 3x3, 32, padding 1; max pool 2x2            4 x 12 x 12 x 32       9 248
conv 3x3, 64, padding 1                          4 x 12 x 12 x 64      18 496
conv 3x3, 64, padding 1                          4 x 12 x 12 x 64      36 928
conv 3x3, 64, padding 1; max pool 2x2            4 x 6 x 6 x 64        36 928
cyclic pooling: mean of the 4 feature vectors    2 304
dense 64, dropout 0.5                            64                   147 520
dense 64, dropout 0.5                            64                     4 160
output: 1 logit                                  1                         65
===============================================  ================  ==========

The convolutions share their weights across the four rotations; every activation is a leaky
ReLU (slope 0.01: the released run uses ``leaky_relu``, ``rectify(x, 0.01)`` in
``layers.py``); weights are He-normal and biases zero (``init_type: ReLU``).  255 425
parameters for 4 channels; 79.2 M multiply-accumulates per 21x21x4 stamp (four passes through
the convolutions).

Cyclic pooling.  The released code joins the four rotations' feature vectors by
*concatenation* (``JoinRotationsLayer``: a 4 x 2 304 = 9 216-long vector into the first dense
layer, 589 888 parameters there, 697 793 in all with one logit), which makes the network see
every orientation but is not invariant: rotating the stamp permutes the four blocks.  Here the
default is the *mean* over the rotations (cyclic pooling as Dieleman, De Fauw & Kavukcuoglu
2016 define it; the same group's follow-up, Reyes et al. 2018, replaced the concatenation for
the same reason), so a stamp and its 90-degree rotations get the same logit;
``cyclic_pool="concat"`` gives the released layout instead.

Other differences, none of which changes what the network computes: one logit instead of a
two-way softmax (the same classifier, 65 output parameters instead of 130); the code pools
before adding the bias and activating, which equals pooling after (max pooling commutes with a
per-channel bias and a monotonic activation); dropout is inverted (scaled in training, not at
inference).  Stamps other than 21x21 get their final feature maps max-pooled onto the 6x6 grid
(:class:`._grid.GridMaxPool`, the identity at 21x21), so the dense head and
the parameter count stay those of the paper; stamps must be square (they are rotated).
"""

from __future__ import annotations

import torch
from torch import nn

from skyscan.cases.transients.models._grid import GridMaxPool
from skyscan.models import register

__all__ = ["DeepHiTS"]


def _rotations(x: torch.Tensor) -> list[torch.Tensor]:
    """``x`` rotated by 0, 90, 180 and 270 degrees (``torch.rot90`` with ``k`` = 0..3), from
    flips and a transpose: ONNX has no rotation operator."""
    x90 = x.flip(3).transpose(2, 3)
    return [x, x90, x.flip(2).flip(3), x90.flip(2).flip(3)]


def _conv(n_in: int, n_out: int, kernel: int, padding: int) -> list[nn.Module]:
    return [nn.Conv2d(n_in, n_out, kernel, padding=padding), nn.LeakyReLU(0.01)]


@register("deephits")
class DeepHiTS(nn.Module):
    """Deep-HiTS with shared-weight rotations and cyclic pooling; returns one logit per stamp.

    Parameters
    ----------
    in_channels : int
        Stamp channels (Deep-HiTS: template, science, difference, signal-to-noise).
    cyclic_pool : {"mean", "concat"}
        How the four rotations' feature vectors are joined: ``mean`` (exactly invariant to
        90-degree rotations) or ``concat`` (the released code; not invariant).
    """

    STAMP = 21  # the Deep-HiTS stamp size
    GRID = 6  # its feature grid before the dense layers: (21 + 2 * 3 - 3) // 2 // 2

    def __init__(self, in_channels: int = 4, cyclic_pool: str = "mean"):
        super().__init__()
        if cyclic_pool not in ("mean", "concat"):
            raise ValueError(f"cyclic_pool must be 'mean' or 'concat', not {cyclic_pool!r}")
        self.cyclic_pool = cyclic_pool
        self.features = nn.Sequential(
            *_conv(in_channels, 32, 4, 3),
            *_conv(32, 32, 3, 1),
            nn.MaxPool2d(2),
            *_conv(32, 64, 3, 1),
            *_conv(64, 64, 3, 1),
            *_conv(64, 64, 3, 1),
            nn.MaxPool2d(2),
            GridMaxPool(self.GRID),
            nn.Flatten(),
        )
        n_features = 64 * self.GRID**2 * (4 if cyclic_pool == "concat" else 1)
        self.head = nn.Sequential(
            nn.Linear(n_features, 64),
            nn.LeakyReLU(0.01),
            nn.Dropout(0.5),
            nn.Linear(64, 64),
            nn.LeakyReLU(0.01),
            nn.Dropout(0.5),
            nn.Linear(64, 1),
        )
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        # The four rotations go through the shared convolutions as one batch (k-major).
        rotated = torch.cat(_rotations(x), dim=0)
        f = self.features(rotated)
        f = f.reshape(4, n, f.shape[1])
        if self.cyclic_pool == "mean":
            f = f.mean(dim=0)
        else:
            f = f.transpose(0, 1).flatten(1)  # per stamp: [0, 90, 180, 270 degrees]
        return self.head(f).squeeze(-1)
