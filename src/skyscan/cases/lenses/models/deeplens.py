"""CMU DeepLens (Lanusse et al. 2018, MNRAS 473, 3895), after the authors' Lasagne code.

A 7x7, 32-filter input convolution with batch norm and ELU, then 5 stages of 3 pre-activated
bottleneck residual units (bottleneck/out widths 16/32, 32/64, 64/128, 128/256, 256/512; stride
2 in the first unit of stages 2-5; 1x1 projection shortcuts where the shape changes), global
average pooling and one output.  46 convolutions (projections aside), 3.4 M parameters for
three bands.
"""

from __future__ import annotations

import torch
from torch import nn

from skyscan.models import register

__all__ = ["DeepLens", "PreActBottleneck"]


class PreActBottleneck(nn.Module):
    """BN-ELU-conv1x1 -> BN-ELU-conv3x3(stride) -> BN-ELU-conv1x1, plus the shortcut.

    Parameters
    ----------
    n_in, n_mid, n_out : int
        Input, bottleneck and output channels.
    stride : int
        Stride of the 3x3 convolution (2 downsamples).
    preactivated : bool
        The input is already normalised and activated (the first unit after the stem).
    """

    def __init__(self, n_in: int, n_mid: int, n_out: int, stride: int = 1, preactivated=False):
        super().__init__()
        self.pre = nn.Identity() if preactivated else nn.Sequential(nn.BatchNorm2d(n_in), nn.ELU())
        self.conv1 = nn.Conv2d(n_in, n_mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(n_mid)
        self.conv2 = nn.Conv2d(n_mid, n_mid, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(n_mid)
        self.conv3 = nn.Conv2d(n_mid, n_out, 1, bias=False)
        self.act = nn.ELU()
        self.shortcut = (
            nn.Conv2d(n_in, n_out, 1, stride=stride, bias=False)
            if stride != 1 or n_in != n_out
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pre(x)
        # Projection shortcuts see the activated input, identity ones the raw input (He 2016).
        skip = x if self.shortcut is None else self.shortcut(h)
        h = self.act(self.bn1(self.conv1(h)))
        h = self.act(self.bn2(self.conv2(h)))
        return skip + self.conv3(h)


@register("deeplens")
class DeepLens(nn.Module):
    """CMU DeepLens residual network; returns one logit per cutout.

    Parameters
    ----------
    in_channels : int
        Bands.
    """

    WIDTHS = ((16, 32), (32, 64), (64, 128), (128, 256), (256, 512))

    def __init__(self, in_channels: int = 3, units_per_stage: int = 3):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 32, 7, padding=3, bias=False), nn.BatchNorm2d(32), nn.ELU()
        )
        layers = []
        n_in = 32
        for s, (mid, out) in enumerate(self.WIDTHS):
            for u in range(units_per_stage):
                stride = 2 if (s > 0 and u == 0) else 1
                layers.append(PreActBottleneck(n_in, mid, out, stride, preactivated=(s == u == 0)))
                n_in = out
        self.stages = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.BatchNorm2d(n_in),
            nn.ELU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(n_in, 1),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x))).squeeze(-1)
