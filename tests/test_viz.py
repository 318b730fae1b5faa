"""Stamp galleries (Lupton colour, scale bars, captions) and the results landing page."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from astropy.visualization import make_lupton_rgb  # noqa: E402
from matplotlib.image import imread  # noqa: E402

from skyscan.viz import (  # noqa: E402
    color_composite,
    draw_stamp,
    stamp_caption,
    stamp_gallery,
    write_results_index,
)


def _stamp(seed=0, size=33):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - size // 2
    blob = np.exp(-(xx**2 + yy**2) / 8.0)
    return np.stack([blob * a + rng.normal(0, 0.01, blob.shape) for a in (0.5, 1.0, 2.0)])


def test_rgb_mapping_is_make_lupton_rgb_with_g_r_i_as_b_g_r():
    image = _stamp()
    got = color_composite(image, ["g", "r", "i"], q=8.0, stretch=0.3, minimum=0.0)
    want = make_lupton_rgb(image[2], image[1], image[0], minimum=0.0, stretch=0.3, Q=8.0)
    assert got.dtype == np.uint8 and got.shape == (33, 33, 3)
    np.testing.assert_array_equal(got, want)
    # Channel order follows the band names, not their position: i, g, r gives the same.
    shuffled = color_composite(image[[2, 0, 1]], ["i", "g", "r"], q=8.0, stretch=0.3)
    np.testing.assert_array_equal(shuffled, want)
    grey = color_composite(image[1:2], ["r"], q=8.0, stretch=0.3)
    assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 0], grey[..., 2])
    np.testing.assert_array_equal(
        grey, make_lupton_rgb(image[1], image[1], image[1], minimum=0.0, stretch=0.3, Q=8.0)
    )


@pytest.mark.parametrize("pixel_scale", [0.2, 0.263])
def test_scale_bar_is_two_arcsec_long(pixel_scale):
    fig, ax = plt.subplots()
    bar = draw_stamp(ax, _stamp(), ["g", "r", "i"], "caption", pixel_scale, scale_bar_arcsec=2.0)
    x = bar.get_xdata()
    assert x[1] - x[0] == pytest.approx(2.0 / pixel_scale)
    assert ax.get_xlim() == pytest.approx((-0.5, 32.5))  # the bar does not widen the axes
    assert ax.get_xlabel() == "caption"
    plt.close(fig)


def test_caption_lines():
    text = stamp_caption(
        ra=150.1234567,
        dec=-2.5,
        tile="tile-00-01",
        score=0.98765,
        flags=["edge"],
        kind="lens",
        truth=[('θE={:.2f}"', 1.234), ("S/N={:.0f}", 45.4)],
    )
    assert text.splitlines() == [
        "RA 150.123457 Dec -2.500000",
        "tile-00-01",
        "P=0.988  flags: edge",
        'lens  θE=1.23"  S/N=45',
    ]
    nan = [('θE={:.2f}"', float("nan")), ("S/N={:.0f}", None)]
    assert stamp_caption(score=0.5, kind="spiral", truth=nan) == "P=0.500\nspiral"


def test_gallery_is_written(tmp_path):
    stamps = [_stamp(k) for k in range(5)] + [np.zeros((20, 60, 3), np.uint8)]
    captions = [
        stamp_caption(score=0.1 * k, kind="lens", truth=[("S/N={:.0f}", 20)]) for k in range(6)
    ]
    path = stamp_gallery(stamps, ["g", "r", "i"], captions, 0.2, tmp_path / "g.png", ncols=3)
    picture = imread(path)
    assert picture.shape[0] > 100 and picture.shape[1] > 300
    assert not list(tmp_path.glob(".*.tmp"))  # atomic: no temporary left
    with pytest.raises(ValueError, match="2 stamps but 1 captions"):
        stamp_gallery(stamps[:2], ["g", "r", "i"], captions[:1], 0.2, tmp_path / "x.png")


def test_results_index_links_every_plot(tmp_path):
    (tmp_path / "skymaps").mkdir()
    (tmp_path / "skymaps" / "candidates.png").write_bytes(b"png")
    (tmp_path / "evaluation").mkdir()
    (tmp_path / "evaluation" / "roc.png").write_bytes(b"png")
    page = write_results_index(
        tmp_path / "index.html",
        [
            ("Sky maps", [(tmp_path / "skymaps" / "candidates.png", "candidates & more")]),
            (
                "Evaluation",
                [
                    (tmp_path / "evaluation" / "roc.png", "ROC"),
                    (tmp_path / "evaluation" / "gone.png", "absent"),
                ],
            ),
        ],
    )
    text = page.read_text()
    assert '<a href="skymaps/candidates.png">' in text and "candidates &amp; more" in text
    assert text.index("Sky maps</h2>") < text.index("Evaluation</h2>")
    assert '<img src="evaluation/roc.png"' in text
    assert "gone.png (missing)" in text
