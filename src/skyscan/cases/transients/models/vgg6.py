"""ZTF braai's VGG6 real/bogus classifier (Duev et al. 2019, MNRAS 489, 3582).

The published network, as in the authors' Keras code (``dmitryduev/braai``: ``vgg6()`` in
``braai/braai.py`` and the released model ``models/d6_m7.architecture.json``), for 63x63
stamps of 3 channels (science, reference, difference):

=====================================  ==============  ==========
layer                                  output (63x63)  parameters
=====================================  ==============  ==========
conv 3x3, 16, valid, ReLU              61 x 61 x 16           448
conv 3x3, 16, valid, ReLU              59 x 59 x 16         2 320
max pool 2x2 (stride 2), dropout 0.25  29 x 29 x 16
conv 3x3, 32, valid, ReLU              27 x 27 x 32         4 640
conv 3x3, 32, valid, ReLU              25 x 25 x 32         9 248
max pool 4x4 (stride 4), dropout 0.25  6 x 6 x 32
flatten, dense 256, ReLU, dropout 0.5  256                295 168
dense 1 (sigmoid in braai)             1                      257
=====================================  ==============  ==========

312 081 parameters for 3 channels; 19.0 M multiply-accumulates per 63x63x3 stamp.  Weights
are Glorot-uniform, biases zero (the Keras defaults braai uses).

Differences from braai, none of which changes the network at 63x63: the output is the logit
(braai applies the sigmoid in the last layer); the flatten is channel-first (PyTorch order;
it matters only to port braai's Keras weights, whose flatten is channel-last); other stamp
sizes get their final feature map max-pooled onto braai's 6x6 grid
(:class:`._grid.GridMaxPool`, the identity at 63x63) so that the dense head,
and the parameter count, stay those of the paper.  Stamps need at least 20x20 pixels.
"""

from __future__ import annotations

import torch
from torch import nn

from skyscan.cases.transients.models._grid import GridMaxPool
from skyscan.models import register

__all__ = ["VGG6"]


@register("vgg6")
class VGG6(nn.Module):
    """braai's VGG6; returns one logit per stamp.

    Parameters
    ----------
    in_channels : int
        Stamp channels (braai: science, reference, difference).
    """

    STAMP = 63  # braai's stamp size
    GRID = 6  # its feature grid before the dense layers: (((63 - 4) // 2) - 4) // 4

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Dropout(0.25),
            nn.Conv2d(16, 32, 3),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3),
            nn.ReLU(),
            nn.MaxPool2d(4),
            nn.Dropout(0.25),
            GridMaxPool(self.GRID),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(32 * self.GRID**2, 256),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(256, 1),
        )
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(-1)
