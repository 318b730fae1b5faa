"""skyscan's fast lens classifier: a small strided residual CNN for the 10^8-cutout search.

Design, from what the DeepLens network spends its time on: a 45x45 stamp at full resolution
through 3 bottleneck units costs as much as every later stage together, while lensed arcs
are PSF-wide (3-4 pixels).  So the stem is a 5x5 convolution with stride 2 (arcs survive it),
followed by three resolution stages (23, 12, 6 pixels) of plain 3x3 residual units with
batch norm and ELU, widths 24/48/96, global average pooling and one logit: 21 M
multiply-accumulates per 45x45x3 cutout (6x fewer than DeepLens), 0.27 M parameters, and
20x DeepLens's CPU throughput (``scripts/bench_models.py``).
"""

from __future__ import annotations

import torch
from torch import nn

from skyscan.models import register

__all__ = ["FastLens"]


class _Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ELU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )
        self.act = nn.ELU()

    def forward(self, x):
        return self.act(x + self.body(x))


def _down(n_in: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(n_in, n_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(n_out), nn.ELU()
    )


@register("fast")
class FastLens(nn.Module):
    """A small residual CNN; returns one logit per cutout.

    Parameters
    ----------
    in_channels : int
        Bands.
    width : int
        Channels of the first stage (doubled at each of the two downsamplings).
    """

    def __init__(self, in_channels: int = 3, width: int = 24):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, w, 5, stride=2, padding=2, bias=False),
            nn.BatchNorm2d(w),
            nn.ELU(),
            _Residual(w),
            _down(w, 2 * w),
            _Residual(2 * w),
            _down(2 * w, 4 * w),
            _Residual(4 * w),
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, 1))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(-1)
