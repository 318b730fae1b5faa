"""The toy case's network: a 1-D convolutional classifier of padded sequences."""

from __future__ import annotations

import torch
from torch import nn

from skyscan.models import register


@register("seqconv")
class SeqConv(nn.Module):
    """``(N, T, F)`` padded sequences (mask last) -> ``(N,)`` logits."""

    def __init__(self, in_features: int = 4, width: int = 32):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(in_features, width, 5, padding=2),
            nn.ReLU(),
            nn.Conv1d(width, width, 5, padding=2),
            nn.ReLU(),
        )
        self.head = nn.Linear(2 * width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = x[..., -1:].transpose(1, 2)
        h = self.body(x.transpose(1, 2)) * mask
        mean = h.sum(-1) / mask.sum(-1).clamp(min=1.0)
        top = (h - (1 - mask) * 1e4).amax(-1)
        return self.head(torch.cat([mean, top], dim=1)).squeeze(-1)
