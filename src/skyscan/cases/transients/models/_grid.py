"""Max pooling onto a fixed grid, so a published fixed-size dense head accepts any stamp size.

At the published stamp size the feature map already has the published grid and the layer is
the identity (the network is then exactly the published one).  At any other size it is
adaptive max pooling (the windows of :func:`torch.nn.functional.adaptive_max_pool2d`), written
as slices and maxima so that it exports to ONNX for any input size (the ONNX exporter refuses
adaptive pooling unless the grid divides the map).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["GridMaxPool"]


def _pool_axis(x: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    n = x.shape[dim]
    parts = []
    for i in range(size):
        start = (i * n) // size
        stop = ((i + 1) * n + size - 1) // size  # ceil; non-negative, so ONNX's Div agrees
        parts.append(x.narrow(dim, start, stop - start).amax(dim=dim, keepdim=True))
    return torch.cat(parts, dim=dim)


class GridMaxPool(nn.Module):
    """Max-pool ``(N, C, H, W)`` feature maps onto a ``size`` x ``size`` grid.

    Parameters
    ----------
    size : int
        The grid of the published network at its published stamp size.
    """

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] == self.size and x.shape[-1] == self.size:
            return x
        return _pool_axis(_pool_axis(x, self.size, -2), self.size, -1)

    def extra_repr(self) -> str:
        return f"size={self.size}"
