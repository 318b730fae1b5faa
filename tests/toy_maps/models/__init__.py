"""The toy sky-map case's network: a small CNN on the map, joined with the detector vector
and the S/N, reading the parts from the packed sample by the layout."""

from __future__ import annotations

import math

import torch
from torch import nn

from skyscan.models import register


@register("mapnet")
class MapNet(nn.Module):
    """Packed ``(N, L)`` samples -> ``(N,)`` logits."""

    def __init__(self, layout: dict, width: int = 16):
        super().__init__()
        self.h, self.w = layout["parts"]["skymap"]
        self.n_map = self.h * self.w
        self.n_rest = sum(math.prod(s) for k, s in layout["parts"].items() if k != "skymap")
        self.n_rest += len(layout["scalars"])
        self.conv = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveMaxPool2d(1),
        )
        self.head = nn.Sequential(nn.Linear(width + self.n_rest, 32), nn.ReLU(), nn.Linear(32, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the layout packs the map first, then the detectors and the scalar
        skymap = x[:, : self.n_map].reshape(-1, 1, self.h, self.w)
        rest = x[:, self.n_map :]
        features = self.conv(skymap).flatten(1)
        return self.head(torch.cat([features, rest], dim=1)).squeeze(-1)
