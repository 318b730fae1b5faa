"""Views a network computes from its own input before its first layer, so that what it sees
is part of the exported model and every scorer (evaluation, search, grading page) feeds it the
same preprocessed stamps as before.

``colour_difference``: for every band but the reddest, that band minus the reddest scaled so
that the central object's light cancels (a least-squares fit over a Gaussian window on the
stamp's centre, per stamp and band) -- the colour-difference image LensPop (Collett 2015)
measures the arc's S/N in and human graders look at: a red deflector mostly vanishes, a blue
arc stays.  The scale factor absorbs each band's flux units, so the view works on any
preprocessing whose stretch can be undone (``asinh``: ``sinh`` back to linear flux in each
band's own units; ``clip``: linear already); the difference is stretched back the same way.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["INPUT_VIEWS", "ColourDifference", "extra_channels", "with_views"]

#: the views there are, and what each adds
INPUT_VIEWS = {"colour_difference": "each band but the reddest minus the reddest, scaled"}


def extra_channels(views, in_channels: int) -> int:
    """How many channels ``views`` add to ``in_channels`` input bands."""
    return sum(in_channels - 1 for v in views if v == "colour_difference")


class ColourDifference(nn.Module):
    """A network fed its input plus the colour-difference view (module docstring).

    Parameters
    ----------
    net : nn.Module
        Built for ``2 C - 1`` input channels (the ``C`` bands, then ``C - 1`` differences).
    shape : (int, int)
        The stamps' height and width (for the centre window).
    stretch : {"asinh", "clip"}
        The preprocessing's stretch (``spec["method"]``'s name in the config).
    window_fraction : float
        Sigma of the Gaussian centre window as a fraction of the stamp side.
    """

    def __init__(self, net: nn.Module, shape, stretch: str, window_fraction: float = 0.12):
        super().__init__()
        if stretch not in ("asinh", "clip"):
            raise ValueError(f"colour_difference: unknown stretch {stretch!r}")
        self.net = net
        self.asinh = stretch == "asinh"
        h, w = (int(v) for v in shape)
        yy = torch.arange(h, dtype=torch.float32) - (h - 1) / 2
        xx = torch.arange(w, dtype=torch.float32) - (w - 1) / 2
        sigma = window_fraction * min(h, w)
        window = torch.exp(-(yy[:, None] ** 2 + xx[None, :] ** 2) / (2 * sigma**2))
        self.register_buffer("window", window[None, None])

    def view(self, x: torch.Tensor) -> torch.Tensor:
        """The ``C - 1`` colour-difference channels of preprocessed ``x`` ``(N, C, H, W)``."""
        # sinh and asinh written out: ONNX has no Sinh for every opset the export uses
        linear = (torch.exp(x) - torch.exp(-x)) / 2 if self.asinh else x
        reddest = linear[:, -1:]
        others = linear[:, :-1]
        weighted = self.window * reddest
        scale = (weighted * others).sum(dim=(2, 3), keepdim=True) / (
            (weighted * reddest).sum(dim=(2, 3), keepdim=True) + 1e-6
        )
        difference = others - scale.clamp(min=0.0) * reddest
        if not self.asinh:
            return difference
        magnitude = difference.abs()
        return torch.sign(difference) * torch.log(magnitude + torch.sqrt(magnitude**2 + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, self.view(x)], dim=1))


def with_views(net_factory, views, in_channels: int, shape, stretch: str) -> nn.Module:
    """``net_factory(channels)`` wrapped in ``views`` (in order; none: the bare network)."""
    unknown = [v for v in views if v not in INPUT_VIEWS]
    if unknown:
        raise ValueError(f"unknown input view(s) {unknown} (allowed: {', '.join(INPUT_VIEWS)})")
    if not views:
        return net_factory(in_channels)
    if list(views) != ["colour_difference"]:
        raise ValueError(f"input views {list(views)}: only ['colour_difference'] is built")
    if in_channels < 2:
        raise ValueError("colour_difference needs at least two bands")
    net = net_factory(in_channels + extra_channels(views, in_channels))
    return ColourDifference(net, shape, stretch)
