"""Stamp galleries (Lupton colour, residual panels, scale bars, captions) and the results
landing page."""

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
    gallery_figure,
    residual_image,
    residual_picture,
    smooth_model,
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
        "P=0.988  edge",
        'lens  θE=1.23"  S/N=45',
    ]
    assert "flags" not in text
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


#: The synthetic stamp's pixel scale (arcsec) and side (pixels): the search gallery's 63.
PIX = 0.2
SIDE = 63


def _profile(r, re=1.0, n=4.0):
    from scipy.special import gammaincinv

    return np.exp(-gammaincinv(2 * n, 0.5) * ((r + 1e-3) / re) ** (1 / n))


def _lens(arc_peak=5.0, peak=1000.0, axis_ratio=1.0, noise=1.0, deflector=True, seed=0):
    """A g, r, i stamp: a red de Vaucouleurs deflector (R_e 1", peak ``peak`` noise sigma in
    i), a blue arc (``arc_peak`` sigma in g, 1.5" from the centre, ~80 degrees long, to +x),
    0.8" seeing, 0.2" pixels, Gaussian noise ``noise`` per band.

    Returns the stamp and the arc's own (noise-free) g image."""
    from scipy.ndimage import gaussian_filter

    yy, xx = (np.mgrid[:SIDE, :SIDE] - SIDE // 2) * PIX
    psf = 0.8 / 2.355 / PIX
    r = np.hypot(xx * np.sqrt(axis_ratio), yy / np.sqrt(axis_ratio))
    galaxy = gaussian_filter(_profile(r), psf, mode="constant")
    galaxy *= peak / galaxy.max() if deflector else 0.0
    radius, phi = np.hypot(xx, yy), np.arctan2(yy, xx)
    arc = np.exp(-0.5 * ((radius - 1.5) / 0.12) ** 2 - 0.5 * (phi / 0.6) ** 2)
    arc = gaussian_filter(arc, psf, mode="constant")
    arc *= arc_peak / arc.max()
    rng = np.random.default_rng(seed)
    stamp = np.stack(
        [
            galaxy * red + arc * blue + rng.normal(0, noise, galaxy.shape)
            for red, blue in ((0.25, 1.0), (0.6, 0.8), (1.0, 0.55))  # g, r, i
        ]
    )
    return stamp, arc


def _arc_and_ring():
    """Pixels on the arc (above half its peak), and the rest of its annulus (1.25" to 1.75"
    from the centre, away from all of the arc's light)."""
    _, arc = _lens()
    yy, xx = (np.mgrid[:SIDE, :SIDE] - SIDE // 2) * PIX
    ring = np.abs(np.hypot(xx, yy) - 1.5) < 0.25
    return arc > 0.5 * arc.max(), ring & (arc < 0.01 * arc.max())


def _star(peak=2e4):
    """A bright star (``peak`` sigma, 0.8" seeing) in a corner of the stamp, in every band."""
    from scipy.ndimage import gaussian_filter

    star = np.zeros((SIDE, SIDE))
    star[8, SIDE - 11] = 1.0
    star = gaussian_filter(star, 0.8 / 2.355 / PIX)
    return peak * star / star.max()


@pytest.mark.parametrize("star", [False, True], ids=["deflector", "deflector-and-star"])
def test_stretch_shows_a_faint_arc_beside_a_bright_core(star):
    """A 5-sigma blue arc 1.5" from a 1000-sigma red deflector: the arc stands out in its own
    colour (blue) from the rest of its annulus, and the core is not clipped flat; a bright
    star elsewhere in the stamp changes neither (the stretch follows the sky noise, not the
    brightest pixels).

    Measured on the previous stretch (``stretch`` = the 99.5th percentile / 8): with the
    gallery's ``Q`` = 8, 29 core pixels at full scale; with the star, the arc 1 level above
    its annulus (either ``Q``).  So this test fails on it.
    """
    stamp, _ = _lens()
    if star:
        stamp = stamp + _star()
    on_arc, beside = _arc_and_ring()
    rgb = color_composite(stamp, ["g", "r", "i"]).astype(float)
    blue = rgb[..., 2]
    excess = blue[on_arc].mean() - blue[beside].mean()
    error = np.hypot(
        blue[on_arc].std() / np.sqrt(on_arc.sum()), blue[beside].std() / np.sqrt(beside.sum())
    )
    # Measured: 15 to 20 levels (of 255) over seeds 0-11, star or not; asked: 12, and 4
    # standard errors of the difference.
    assert excess >= 12 and excess >= 4 * error, (excess, error)
    # Measured: at most 4 pixels reach full scale in any channel (the top 0.1 % asked for).
    assert (rgb.max(axis=-1) >= 255).sum() <= 5
    # The core still has a shape: its brightest pixel stands above its neighbours at 2 px.
    centre = SIDE // 2
    assert rgb[centre, centre].max() > rgb[centre, centre + 2].max()
    # The sky is the black level and its noise shows: neither crushed nor grey.
    sky = rgb[:6, : SIDE // 2].mean(axis=-1)
    assert 2 <= sky.mean() <= 30 and sky.std() >= 3


def test_stretch_of_a_faint_stamp_does_not_blow_up_its_noise():
    """Only the arc and noise: measured, 0 pixels at full scale (the previous stretch: 733
    with its default ``Q``, 1180 with the gallery's); asked: at most 5, arc well visible."""
    stamp, _ = _lens(deflector=False)
    on_arc, beside = _arc_and_ring()
    rgb = color_composite(stamp, ["g", "r", "i"]).astype(float)
    assert (rgb.max(axis=-1) >= 255).sum() <= 5
    assert rgb[..., 2][on_arc].mean() - rgb[..., 2][beside].mean() >= 60


def test_stretch_of_one_band_is_grey_and_of_blank_stamps_black():
    stamp, _ = _lens()
    grey = color_composite(stamp[2:], ["i"])
    assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 0], grey[..., 2])
    assert (grey.max(axis=-1) >= 255).sum() <= 5
    assert not color_composite(np.zeros((3, 20, 20)), ["g", "r", "i"]).any()
    clean = color_composite(_lens(noise=0.0)[0], ["g", "r", "i"])  # noise-free: no sigma
    assert clean.max() > 200 and (clean.max(axis=-1) >= 255).sum() <= 5


@pytest.mark.parametrize("axis_ratio", [1.0, 0.7])
def test_smooth_model_removes_the_deflector(axis_ratio):
    """Noise-free deflector, round or elongated: measured, the residual is 1.2 % of the peak
    at most (the PSF core, within 1") and 0.06 % beyond 1"; asked: 2 % and 0.2 %."""
    stamp, _ = _lens(arc_peak=0.0, noise=0.0, axis_ratio=axis_ratio)
    yy, xx = (np.mgrid[:SIDE, :SIDE] - SIDE // 2) * PIX
    for band in stamp:
        left = np.abs(band - smooth_model(band)) / band.max()
        assert left.max() <= 0.02
        assert left[np.hypot(xx, yy) > 1.0].max() <= 0.002


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_residual_panel_brings_out_the_arc(seed):
    """The arc's excess over the rest of its annulus, relative to what it sits on there
    (``|annulus| + noise``), is much higher in the residual than in the stamp, and the arc
    itself is kept."""
    stamp, arc = _lens(seed=seed)
    on_arc, beside = _arc_and_ring()
    residual = residual_image(stamp)  # in noise sigma
    raw = stamp.sum(axis=0) / np.sqrt(3)  # the same band sum, also in noise sigma

    def contrast(image):
        return (image[on_arc].mean() - image[beside].mean()) / (abs(image[beside].mean()) + 1)

    # Measured over seeds 0-11: 2.8 to 3.4 in the residual, 7.5 times the stamp's or more
    # (0.37 at seed 0); asked: 2, and 4 times.
    assert contrast(residual) >= 2 and contrast(residual) >= 4 * contrast(raw)
    # Measured over seeds 0-11: 81 to 98 % of the arc's own light (in the band sum) is
    # left on it; asked: 75 %.
    truth = arc * (1.0 + 0.8 + 0.55) / np.sqrt(3)
    assert residual[on_arc].mean() >= 0.75 * truth[on_arc].mean()
    # Away from the arc and the core the residual is noise about zero.
    assert abs(residual[:8].mean()) < 0.1 and 0.8 < residual[:8].std() < 1.2


def test_residual_picture_is_symmetric_about_grey():
    stamp, _ = _lens()
    residual = residual_image(stamp)
    picture = residual_picture(residual).astype(int)
    flipped = residual_picture(-residual).astype(int)
    assert picture.shape == (SIDE, SIDE, 3)
    np.testing.assert_allclose(picture + flipped, 255, atol=1)  # x and -x straddle grey
    assert abs(residual_picture(np.zeros((9, 9)))[..., 0].astype(int) - 128).max() <= 1


def test_gallery_captions_fit_their_cells():
    """Long captions (a 19-digit id, a long tile name, warnings) wrap or shrink to stay
    inside the room under their panels; the ready-made picture gets one wide panel."""
    stamps = [_lens(seed=k)[0] for k in range(3)] + [np.zeros((20, 60, 3), np.uint8)]
    captions = [
        f"#{k + 1} id {9_123_456_789_012_345_678 + k}\n"
        + stamp_caption(
            ra=150.123456789,
            dec=-2.5,
            tile="DES2359+0001-tile-with-a-long-name-r1234p5678",
            score=0.999,
            flags=["tile edge", "masked pixels"],
            kind="lens",
            truth=[('θE={:.2f}"', 1.234), ("S/N={:.0f}", 45)],
        )
        for k in range(4)
    ]
    for cell_inches, ncols in ((1.9, 2), (0.9, 4)):
        fig, cells = gallery_figure(
            stamps, ["g", "r", "i"], captions, PIX, ncols=ncols, cell_inches=cell_inches
        )
        renderer = fig.canvas.get_renderer()
        figure_box = fig.bbox
        for k, cell in enumerate(cells):
            assert cell.caption.get_text().startswith(f"#{k + 1} id 91234")  # not cut away
            extent = cell.caption.get_window_extent(renderer)
            box = cell.box.transformed(fig.transFigure)
            assert box.x0 - 1 <= extent.x0 and extent.x1 <= box.x1 + 1, (extent, box)
            assert box.y0 - 1 <= extent.y0 and extent.y1 <= box.y1 + 1, (extent, box)
            assert figure_box.contains(extent.x0, extent.y0)
            assert figure_box.contains(extent.x1, extent.y1)
            assert "flags" not in cell.caption.get_text()
            # under its own panels, not a neighbour's
            panels = cell.colour.get_window_extent(renderer)
            assert extent.y1 <= panels.y0 + 1 and extent.x0 >= panels.x0 - 1
        assert [c.residual is None for c in cells] == [False, False, False, True]


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
