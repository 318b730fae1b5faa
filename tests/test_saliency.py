"""Integrated gradients (skyscan.models.saliency) and their panels: exact for a linear model,
complete for a network (attributions sum to f(x) - f(0)), zero where the model does not look,
and drawn red where light raises the score."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skyscan.models.saliency import integrated_gradients, saliency_maps
from skyscan.viz import gallery_figure, saliency_picture


class Linear(torch.nn.Module):
    def __init__(self, weights):
        super().__init__()
        self.w = torch.nn.Parameter(torch.as_tensor(weights), requires_grad=False)

    def forward(self, x):
        return (x * self.w).sum(dim=(1, 2, 3))


def test_linear_model_attributions_are_weight_times_input():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 9, 9)).astype(np.float32)
    x = rng.normal(size=(5, 3, 9, 9)).astype(np.float32)
    attr = integrated_gradients(Linear(w), x, steps=4)
    np.testing.assert_allclose(attr, w[None] * x, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(saliency_maps(Linear(w), x, steps=4), (w * x).sum(axis=1), atol=1e-5)


def test_attributions_of_a_network_sum_to_its_logit_change_and_skip_what_it_ignores():
    """Completeness: the sum of attributions equals f(x) - f(0) to the midpoint rule's error
    (1% of the change at 64 steps, stated tolerance); pixels the network never sees (outside
    a central crop) get exactly zero."""
    torch.manual_seed(0)

    class CentreNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.head = torch.nn.Linear(8, 1)

        def forward(self, x):
            h = torch.nn.functional.softplus(self.conv(x[:, :, 8:16, 8:16]))
            return self.head(h.mean(dim=(2, 3)))[:, 0]

    net = CentreNet().eval()
    x = torch.randn(6, 3, 24, 24) * 3
    attr = integrated_gradients(net, x.numpy(), steps=64, batch_size=100)
    with torch.no_grad():
        change = (net(x) - net(torch.zeros_like(x))).numpy()
    np.testing.assert_allclose(attr.sum(axis=(1, 2, 3)), change, rtol=0.01, atol=1e-3)
    outside = np.ones((24, 24), bool)
    outside[8:16, 8:16] = False
    assert np.all(attr[:, :, outside] == 0)
    assert np.abs(attr[:, :, ~outside]).sum() > 0


def test_bad_shapes_and_steps_are_refused():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        integrated_gradients(Linear(np.ones((1, 2, 2), np.float32)), np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="steps"):
        integrated_gradients(Linear(np.ones((1, 2, 2), np.float32)), np.ones((1, 1, 2, 2)), 0)


def test_saliency_picture_is_white_red_and_blue():
    m = np.zeros((4, 4))
    m[0, 0], m[3, 3] = 5.0, -5.0
    rgb = saliency_picture(m, percentile=100).astype(int)
    assert (rgb[1, 1] > 240).all()  # nothing: white
    assert rgb[0, 0, 0] > rgb[0, 0, 2] + 50  # raises the score: red
    assert rgb[3, 3, 2] > rgb[3, 3, 0] + 50  # lowers it: blue
    assert (saliency_picture(np.zeros((3, 3))) > 240).all()


def test_gallery_draws_a_saliency_panel_beside_each_stamp():
    rng = np.random.default_rng(1)
    stamps = [rng.normal(size=(3, 20, 20)) for _ in range(3)]
    maps = [rng.normal(size=(12, 12)), None, rng.normal(size=(12, 12))]
    fig, cells = gallery_figure(stamps, "gri", ["a", "b", "c"], 0.2, saliency=maps)
    plain, _ = gallery_figure(stamps, "gri", ["a", "b", "c"], 0.2)
    # colour, residual and saliency axes per stamp
    assert len(fig.axes) == 3 * len(stamps) and len(plain.axes) == 2 * len(stamps)
    assert "saliency: integrated gradients" in fig.texts[0].get_text()
    with pytest.raises(ValueError, match="saliency maps"):
        gallery_figure(stamps, "gri", ["a", "b", "c"], 0.2, saliency=maps[:2])


def test_a_smaller_saliency_map_is_drawn_centred_at_the_stamps_scale():
    from skyscan.viz import _centred_on

    picture = np.zeros((3, 3, 3), dtype=np.uint8)
    canvas = _centred_on(picture, (7, 7))
    assert canvas.shape == (7, 7, 3)
    assert (canvas[2:5, 2:5] == 0).all() and (canvas[:2] == 255).all() and (canvas[5:] == 255).all()
    assert _centred_on(picture, (3, 3)) is picture
    # an even map (44 px) in an odd stamp (63 px): centre pixels 21 and 31 coincide, as the
    # cutouts of both sizes put the object there
    even = np.full((44, 44, 3), 255, dtype=np.uint8)
    even[21, 21] = 0
    assert tuple(np.argwhere(_centred_on(even, (63, 63))[..., 0] == 0)[0]) == (31, 31)
    # a larger map is cropped about the same centre
    big = np.full((9, 9, 3), 255, dtype=np.uint8)
    big[4, 4] = 0
    assert tuple(np.argwhere(_centred_on(big, (5, 5))[..., 0] == 0)[0]) == (2, 2)
