"""A residual CNN that estimates physical parameters with uncertainties (``lensparams``).

After Hezaveh, Perreault Levasseur & Marshall (2017, Nature 548, 555), who estimated SIE
parameters with CNNs in a fraction of a second, and Perreault Levasseur et al. (2017) for the
uncertainties: for each of ``n_parameters`` (normalised) targets the network outputs a mean
and a log-variance, ``(N, 2 * n_parameters)``, means first.  It is trained with the Gaussian
negative log-likelihood (:func:`skyscan.models.heads.gaussian_nll`).

Layout: a 3x3 stem at full resolution (the Einstein radius is a few pixels: the arc's
distance from the centre must survive), three stride-2 stages of 3x3 residual units (widths
32/64/128 at 23, 12 and 6 pixels for a 45-pixel stamp) and a dense head on the *flattened*
last feature map rather than a global pooling: the lens centre and the arc radius are
positions, which a global average would discard.  About 41 M multiply-accumulates per
45x45x3 stamp (twice ``fast``) and 1.7 M parameters, most of them in the dense head.
"""

from __future__ import annotations

import torch
from torch import nn

from skyscan.models import register
from skyscan.models.fast import _down, _Residual  # the same residual blocks as `fast`
from skyscan.models.heads import LOG_VARIANCE_RANGE, gaussian_nll  # noqa: F401  (re-exported)

__all__ = ["LensParams", "gaussian_nll"]


@register("lensparams")
class LensParams(nn.Module):
    """Means and log-variances of ``n_parameters`` normalised parameters per stamp.

    Parameters
    ----------
    in_channels : int
        Bands.
    stamp_size : int
        Side of the (square) input stamps in pixels: the dense head is sized for it.
    n_parameters : int
        Parameters estimated (7 for the lens case: theta_E, e1, e2, gamma1, gamma2, x, y).
    width : int
        Channels of the first stage (doubled at each of the two later stages).
    hidden : int
        Units of the dense layer of the head.
    """

    def __init__(
        self,
        in_channels: int = 3,
        stamp_size: int = 45,
        n_parameters: int = 7,
        width: int = 32,
        hidden: int = 256,
    ):
        super().__init__()
        w = width
        self.n_parameters = n_parameters
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, w // 2, 3, padding=1, bias=False),
            nn.BatchNorm2d(w // 2),
            nn.ELU(),
            _down(w // 2, w),
            _Residual(w),
            _down(w, 2 * w),
            _Residual(2 * w),
            _down(2 * w, 4 * w),
            _Residual(4 * w),
        )
        side = stamp_size
        for _ in range(3):
            side = (side + 1) // 2  # stride 2, padding 1, kernel 3
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.1),
            nn.Linear(4 * w * side * side, hidden),
            nn.ELU(),
            nn.Linear(hidden, 2 * n_parameters),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        # Start from unit variances (log-variance 0) and zero means: the normalised targets'
        # own spread, so the first steps of the NLL are well scaled.
        last = self.head[-1]
        nn.init.zeros_(last.bias)
        nn.init.normal_(last.weight, std=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
