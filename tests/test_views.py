"""Input views (skyscan.models.views): the colour-difference view cancels a central object
of one colour and keeps light of another, whatever each band's units, and a network built
with it trains, traces and exports like any other (the view is inside the exported model)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skyscan.models import get_model
from skyscan.models.views import ColourDifference, extra_channels, with_views

H = 33


def _scene(arc: bool, scales=(1.0, 1.7, 2.5)):
    """A red deflector (the same profile in every band, brighter in the redder) and,
    optionally, a blue arc in g only; each band in its own units (``scales``)."""
    yy, xx = np.mgrid[:H, :H] - (H - 1) / 2
    deflector = np.exp(-(xx**2 + yy**2) / (2 * 2.5**2))
    ring = np.exp(-((np.hypot(xx, yy) - 9) ** 2) / 2) * (np.arctan2(yy, xx) > 0)
    bands = [deflector * f for f in (0.3, 0.6, 1.0)]
    if arc:
        bands[0] = bands[0] + 0.2 * ring
    return np.stack([b * s for b, s in zip(bands, scales, strict=True)])[None].astype(np.float32)


@pytest.mark.parametrize("stretch", ["asinh", "clip"])
def test_colour_difference_cancels_the_deflector_and_keeps_the_arc(stretch):
    view = ColourDifference(torch.nn.Identity(), (H, H), stretch)
    for arc in (False, True):
        linear = torch.from_numpy(_scene(arc))
        x = torch.asinh(linear) if stretch == "asinh" else linear
        out = view.view(x)
        back = torch.sinh(out) if stretch == "asinh" else out
        assert out.shape == (1, 2, H, H)
        centre = back[0, :, H // 2 - 2 : H // 2 + 3, H // 2 - 2 : H // 2 + 3]
        if not arc:  # the deflector's own colour: nothing left, in either band (tol 1e-4)
            assert back.abs().max() < 1e-4
        else:  # the arc stays in g (within 10% of its light), r stays empty; the core cancels
            g_arc = torch.from_numpy(_scene(True) - _scene(False))[0, 0]
            assert back[0, 0].sum() == pytest.approx(float(g_arc.sum()), rel=0.1)
            assert back[0, 1].abs().max() < 1e-4
            assert centre[0].abs().max() < 0.1 * g_arc.max()


def test_a_network_with_the_view_takes_the_usual_stamps_and_exports():
    torch.manual_seed(0)
    net = with_views(
        lambda c: get_model("fast", in_channels=c), ["colour_difference"], 3, (H, H), "asinh"
    ).eval()
    assert extra_channels(["colour_difference"], 3) == 2
    x = torch.randn(4, 3, H, H)
    with torch.no_grad():
        out = net(x)
        traced = torch.jit.trace(net, x, check_trace=False)
        np.testing.assert_allclose(traced(x).numpy(), out.numpy(), rtol=1e-5, atol=1e-5)
    # and to ONNX, as the training's export does (onnxruntime gives the same logits)
    import io

    import onnxruntime

    buffer = io.BytesIO()
    torch.onnx.export(net, x, buffer, input_names=["x"], output_names=["y"], dynamo=False)
    session = onnxruntime.InferenceSession(buffer.getvalue())
    (onnx_out,) = session.run(None, {"x": x.numpy()})
    np.testing.assert_allclose(onnx_out.reshape(out.shape), out.numpy(), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="unknown input view"):
        with_views(lambda c: get_model("fast", in_channels=c), ["sharpen"], 3, (H, H), "asinh")
    with pytest.raises(ValueError, match="two bands"):
        with_views(
            lambda c: get_model("fast", in_channels=c), ["colour_difference"], 1, (H, H), "clip"
        )
