"""Sky maps: footprint against the tiles' corners, the partial HEALPix FITS, recovery."""

import json

import healpy as hp
import numpy as np
import pyarrow.parquet as pq
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from skyscan.cases.lenses.tiles import make_tiles
from skyscan.config import load_config
from skyscan.core.case import get_case
from skyscan.evaluate.metrics import wilson_interval
from skyscan.skymap.maps import footprint_pixels, injection_recovery, make_maps
from skyscan.tiles.io import find_tiles, read_tile_wcs


@pytest.fixture(scope="module")
def tiles(tmp_path_factory):
    root = tmp_path_factory.mktemp("skymaps")
    config = load_config(
        None,
        {
            "lenses": {
                "tiles": {
                    "grid": [2, 1],
                    "size": 300,
                    "overlap": 20,
                    "densities": {"field": 5, "star": 1, "deflector": 30, "lens": 30},
                }
            }
        },
    )
    make_tiles(config, root)
    found, _ = find_tiles(root, ["g", "r", "i"])
    return root, [read_tile_wcs(t) for t in found]


def test_footprint_matches_the_tiles_corners(tiles):
    root, found = tiles
    order = 14
    pixels = set(footprint_pixels(found, order).tolist())
    # every pixel whose centre falls inside a tile's pixel grid is in the footprint, and no
    # other, on a dense sample of pixels around the region
    ra, dec = hp.pix2ang(2**order, np.array(sorted(pixels)), nest=True, lonlat=True)
    lo_ra, hi_ra = ra.min() - 0.02, ra.max() + 0.02
    lo_dec, hi_dec = dec.min() - 0.02, dec.max() + 0.02
    around = hp.query_polygon(
        2**order,
        hp.ang2vec([lo_ra, hi_ra, hi_ra, lo_ra], [lo_dec, lo_dec, hi_dec, hi_dec], lonlat=True),
        nest=True,
    )
    cra, cdec = hp.pix2ang(2**order, around, nest=True, lonlat=True)
    inside = np.zeros(len(around), dtype=bool)
    for tile in found:
        w = WCS(fits.getheader(next(iter(tile.paths.values()))))
        x, y = w.all_world2pix(cra, cdec, 0)
        inside |= (x > -0.5) & (x < 299.5) & (y > -0.5) & (y < 299.5)
    in_map = np.isin(around, list(pixels))
    # great-circle polygon edges vs the WCS's straight pixel edges differ by < 1e-6 deg
    assert (in_map == inside).mean() > 0.995
    assert in_map[inside].mean() > 0.99


def test_maps_recovery_and_fits(tiles, tmp_path):
    root, found = tiles
    truth = pq.read_table(root / "truth.parquet").to_pydict()
    catalog = pq.read_table(root / "catalog.parquet").to_pydict()
    kind = dict(zip(truth["id"], truth["kind"], strict=True))
    rng = np.random.default_rng(0)
    ids = catalog["id"]
    logit = np.array([2.0 if kind[i] == "lens" else -2.0 for i in ids]) + rng.normal(0, 1, len(ids))
    import pyarrow as pa

    cand = pa.table(
        {
            "id": ids,
            "ra": catalog["ra"],
            "dec": catalog["dec"],
            "logit": logit,
            "score": 1 / (1 + np.exp(-logit)),
        }
    )
    pq.write_table(cand, tmp_path / "candidates.parquet")
    summary = make_maps(tmp_path / "candidates.parquet", found, 9, 1.0, tmp_path)
    assert summary["scored"] == len(ids)
    assert summary["candidates_above_threshold"] == int((logit > 1.0).sum())
    full = hp.read_map(tmp_path / "skymaps.fits", field=(0, 1, 2, 3), nest=True)
    np.testing.assert_allclose(np.nansum(np.where(full[1] > 0, full[1], 0)), len(ids))
    assert full[2][full[2] > 0].sum() == summary["candidates_above_threshold"]
    metrics = {
        "completeness_grid": {
            "snr_band": "g",
            "theta_E_bins": [0.5, 1.4, 3.0],
            "snr_bins": [0, 20, 1e6],
        },
        "operating_point": {
            "logit_threshold": 1.0,
            "fpr": 0.01,
            "tpr": 0.5,
            "n_negative": 1000,
            "target_fpr": 0.01,
        },
        "headline": {"completeness": 0.5},
    }
    result = injection_recovery(
        get_case("lenses"),
        tmp_path / "candidates.parquet",
        root / "truth.parquet",
        metrics,
        summary["footprint_deg2"],
        tmp_path,
    )
    lenses = np.array([kind[i] == "lens" for i in ids])
    assert result["positives_in_catalog"] == int(lenses.sum())
    assert result["positives_recovered"] == int((logit[lenses] > 1.0).sum())
    assert result["false_positives"] == int((logit[~lenses] > 1.0).sum())
    assert (
        json.loads((tmp_path / "injection_recovery.json").read_text())["false_positives"]
        == result["false_positives"]
    )
    for name in ("footprint", "scored", "candidates", "mean_score", "injection_completeness"):
        assert (tmp_path / f"{name}.png").stat().st_size > 5000
    check = result["false_positive_rate"]
    n_neg = int((~lenses).sum())
    assert check["tiles"]["n"] == n_neg and check["test"] == {
        "k": 10,
        "n": 1000,
        "rate": 0.01,
        "rate_ci95": wilson_interval(10, 1000),
    }
    table = (tmp_path / "injection_recovery.md").read_text()
    assert "false-positive rate (95% interval)" in table and "Fisher exact p" in table


def test_false_positive_agreement_by_hand():
    """Fisher's exact test against scipy's table, and both acceptance conditions."""
    from skyscan.skymap.maps import false_positive_agreement

    op = {"fpr": 0.01, "n_negative": 2000}  # 20 of 2,000 on the test split
    same = false_positive_agreement(22, 2000, op)
    assert same["agree"] is True and same["fisher_p"] > 0.5
    assert same["upper_over_test"] == pytest.approx(wilson_interval(22, 2000)[1] / 0.01)
    worse = false_positive_agreement(60, 2000, op)  # 3% on tiles: p ~ 1e-5
    assert worse["agree"] is False and worse["fisher_p"] < 1e-3
    assert "the rates differ." in worse["verdict"]
    # p > 0.05 but the tiles' interval is too wide (few objects): not accepted
    few = false_positive_agreement(1, 40, op)
    assert few["fisher_p"] > 0.05 and few["upper_over_test"] > 2 and few["agree"] is False
    assert "Only 40 non-lenses" in few["verdict"]
    # the verdict does not contradict itself: "no evidence of different rates" is followed
    # by why that is not agreement, never by "the rates differ"
    assert "no evidence of different rates" in few["verdict"]
    assert "too wide to show that the rates agree" in few["verdict"]
    assert "differ." not in few["verdict"]


def test_negatives_sharing_a_cutout_with_an_injected_lens_are_left_out(tmp_path):
    """A non-lens 2" from an injected lens has the lens's arcs in its cutout: it is counted
    apart, not as a false positive; one 20" away is a clean negative."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    dec0 = 10.0
    ra = [150.0, 150.0 + 2 / 3600 / np.cos(np.radians(dec0)), 150.0 + 20 / 3600]
    truth = {
        "id": [1, 2, 3],
        "kind": ["lens", "deflector", "deflector"],
        "ra": ra,
        "dec": [dec0] * 3,
        "theta_E": [1.5, np.nan, np.nan],
        "snr_g": [30.0, np.nan, np.nan],
    }
    pq.write_table(pa.table(truth), tmp_path / "truth.parquet")
    pq.write_table(pa.table({"id": [1, 2, 3], "logit": [5.0, 4.0, 3.0]}), tmp_path / "c.parquet")
    metrics = {
        "completeness_grid": {"snr_band": "g", "theta_E_bins": [0.5, 3.0], "snr_bins": [0, 1e6]},
        "operating_point": {"logit_threshold": 1.0, "fpr": 0.01, "tpr": 0.5, "n_negative": 100},
        "headline": {"completeness": 0.5},
    }
    result = injection_recovery(
        get_case("lenses"),
        tmp_path / "c.parquet",
        tmp_path / "truth.parquet",
        metrics,
        0.01,
        tmp_path,
        cutout_radius_arcsec=6.4,
    )
    check = result["false_positive_rate"]
    assert check["tiles"]["k"] == 1 and check["tiles"]["n"] == 1
    assert check["excluded_sharing_a_cutout_with_a_positive"] == {
        "n": 1,
        "above_threshold": 1,
        "radius_arcsec": 6.4,
    }
    assert (
        "Left out of the tiles' rate: 1 non-lenses"
        in (tmp_path / "injection_recovery.md").read_text()
    )


# --- the zoomed panel -------------------------------------------------------------------
# Offsets are gnomonic standard coordinates in arcmin: xi = ΔRA·cos(Dec) (positive east),
# eta = ΔDec (positive north).  The panel's x axis is xi and runs east to the LEFT (as on
# the sky seen from Earth): an east offset has a positive x and is drawn left of the centre.


def _offsets_to_sky(xi_arcmin, eta_arcmin, ra0, dec0):
    """RA/Dec (deg) of gnomonic offsets (arcmin) about (ra0, dec0): the textbook inverse."""
    xi, eta = np.radians(np.asarray(xi_arcmin) / 60), np.radians(np.asarray(eta_arcmin) / 60)
    d0 = np.radians(dec0)
    denom = np.cos(d0) - eta * np.sin(d0)
    dra = np.arctan2(xi, denom)
    dec = np.arctan2((eta * np.cos(d0) + np.sin(d0)) * np.cos(dra), denom)
    return (ra0 + np.degrees(dra)) % 360, np.degrees(dec)


def _sky_to_offsets(ra, dec, ra0, dec0):
    """Gnomonic offsets (arcmin) of RA/Dec (deg) about (ra0, dec0): the textbook forward."""
    a, d = np.radians(np.asarray(ra) - ra0), np.radians(np.asarray(dec))
    d0 = np.radians(dec0)
    cosc = np.sin(d0) * np.sin(d) + np.cos(d0) * np.cos(d) * np.cos(a)
    xi = np.cos(d) * np.sin(a) / cosc
    eta = (np.cos(d0) * np.sin(d) - np.sin(d0) * np.cos(d) * np.cos(a)) / cosc
    return np.degrees(xi) * 60, np.degrees(eta) * 60


class _Box:
    """A tile stand-in: ``corners()`` of a box given in gnomonic offsets (arcmin)."""

    def __init__(self, ra0, dec0, xi, eta):
        self.ra0, self.dec0, self.xi, self.eta = ra0, dec0, xi, eta

    def corners(self):
        (x0, x1), (y0, y1) = self.xi, self.eta
        ra, dec = _offsets_to_sky([x0, x1, x1, x0], [y0, y0, y1, y1], self.ra0, self.dec0)
        return np.stack([ra, dec], axis=1)


def _scores_at(ra0, dec0, xi, eta):
    """A scores table with one candidate (logit 3) at each gnomonic offset (arcmin)."""
    import pyarrow as pa

    ra, dec = _offsets_to_sky(xi, eta, ra0, dec0)
    n = len(ra)
    return pa.table({"ra": ra, "dec": dec, "score": [0.95] * n, "logit": [3.0] * n})


def _drawn_cells(im):
    """Data coordinates (arcmin) and values of every cell of an AxesImage (origin lower)."""
    assert im.origin == "lower"
    arr = np.ma.filled(im.get_array().astype(float), np.nan)
    left, right, bottom, top = im.get_extent()
    rows, cols = arr.shape
    x = left + (np.arange(cols) + 0.5) * (right - left) / cols
    y = bottom + (np.arange(rows) + 0.5) * (top - bottom) / rows
    gx, gy = np.meshgrid(x, y)
    return gx, gy, arr


def _capture_figures(monkeypatch):
    """Keep the figures make_maps saves, by PNG name, instead of only writing them."""
    import skyscan.skymap.maps as maps

    figures = {}
    save = maps.save_figure_atomic

    def keep(fig, path, **kwargs):
        figures[path.stem] = fig
        return save(fig, path, **kwargs)

    monkeypatch.setattr(maps, "save_figure_atomic", keep)
    return figures


def test_zoomed_panel_draws_a_pixel_at_its_offset_east_to_the_left(tmp_path, monkeypatch):
    """One candidate 0.7' east and 0.4' south of the footprint's centre (Dec 30°) is drawn
    at x = +0.7', y = -0.4' of the panel, left of and below the centre: east is to the LEFT
    (the x axis, ΔRA·cos(Dec), decreases to the right).  Tolerance: one HEALPix pixel
    (order 14: 0.21'), between the drawn cells' centroid and the pixel's projected centre."""
    ra0, dec0, order = 150.0, 30.0, 14
    size = hp.nside2resol(2**order, arcmin=True)
    figures = _capture_figures(monkeypatch)
    tile = _Box(ra0, dec0, (-2.0, 2.0), (-2.0, 2.0))
    make_maps(_scores_at(ra0, dec0, [0.7], [-0.4]), [tile], order, 0.0, tmp_path)
    ax = figures["candidates"].axes[0]
    (im,) = ax.images
    gx, gy, arr = _drawn_cells(im)
    hit = arr == 1.0  # the candidates map: 0 on the footprint, 1 in the filled pixel
    assert hit.any()
    x, y = gx[hit].mean(), gy[hit].mean()
    pix = hp.ang2pix(2**order, *_offsets_to_sky(0.7, -0.4, ra0, dec0), nest=True, lonlat=True)
    px, py = _sky_to_offsets(*hp.pix2ang(2**order, pix, nest=True, lonlat=True), ra0, dec0)
    assert abs(x - px) < size and abs(y - py) < size
    assert abs(x - 0.7) < size and abs(y + 0.4) < size
    # east to the left: the axis runs from +ΔRA on the left to -ΔRA on the right, and the
    # east pixel is drawn left of (and the south pixel below) the centre on the canvas
    left, right = ax.get_xlim()
    assert left > 0 > right
    (cx, cy), (ox, oy) = ax.transData.transform([(x, y), (0.0, 0.0)])
    assert cx < ox and cy < oy
    assert "ΔRA·cos(Dec)" in ax.get_xlabel() and "ΔDec" in ax.get_ylabel()


@pytest.mark.parametrize(
    ("dec0", "xi", "eta"),
    [(30.0, 0.7, -0.4), (-60.0, -1.0, 0.5)],  # east-south at 30°; west-north at cos δ = 0.5
)
def test_draw_zoom_places_a_single_pixel_at_its_gnomonic_offset(dec0, xi, eta):
    """draw_zoom alone: a map of one pixel is drawn at its ΔRA·cos(Dec), ΔDec (arcmin) within
    one pixel (order 14: 0.21'); at Dec -60° a ΔRA without the cos(Dec) factor would be off
    by 1' (five pixels)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skyscan.skymap.maps import draw_zoom

    ra0, order = 10.0, 14
    size = hp.nside2resol(2**order, arcmin=True)
    pix = hp.ang2pix(2**order, *_offsets_to_sky(xi, eta, ra0, dec0), nest=True, lonlat=True)
    fig, ax = plt.subplots()
    try:
        im = draw_zoom(ax, np.array([pix]), np.array([2.0]), order, ra0, dec0, 2.0 / 60)
        gx, gy, arr = _drawn_cells(im)
    finally:
        plt.close(fig)
    hit = arr == 2.0
    assert hit.any() and np.isnan(arr[~hit]).all()
    x, y = gx[hit].mean(), gy[hit].mean()
    assert abs(x - xi) < size and abs(y - eta) < size
    assert np.sign(x) == np.sign(xi)  # positive x is east, drawn on the left
    assert im.get_extent()[0] > im.get_extent()[1]  # extent [+half, -half, ...]: east left


def test_zoomed_panel_holds_a_footprint_wide_in_ra(tmp_path, monkeypatch):
    """Two tiles side by side in RA (5.0' by 2.5', Dec 30°, as in the report where the panel
    was cut at ±2.1' from the Dec extent alone): every footprint pixel is drawn, and the
    candidates 0.2' inside the east and west edges are drawn at their offsets (within one
    order-14 pixel, 0.21')."""
    ra0, dec0, order = 150.0, 30.0, 14
    size = hp.nside2resol(2**order, arcmin=True)
    figures = _capture_figures(monkeypatch)
    tiles = [
        _Box(ra0, dec0, (-2.5, 0.05), (-1.25, 1.25)),
        _Box(ra0, dec0, (-0.05, 2.5), (-1.25, 1.25)),
    ]
    xi, eta = [2.3, -2.3], [0.3, -0.3]
    foot = set(footprint_pixels(tiles, order).tolist())
    edge = hp.ang2pix(2**order, *_offsets_to_sky(xi, eta, ra0, dec0), nest=True, lonlat=True)
    assert set(edge.tolist()) <= foot  # the edge candidates' pixels are in the footprint
    make_maps(_scores_at(ra0, dec0, xi, eta), tiles, order, 0.0, tmp_path)

    (im,) = figures["footprint"].axes[0].images
    left, right, bottom, top = im.get_extent()
    assert left >= 2.5 and right <= -2.5 and top >= 2.5 and bottom <= -2.5
    gx, gy, arr = _drawn_cells(im)
    # the HEALPix pixel under every drawn cell: together, exactly the footprint
    drawn = np.isfinite(arr)
    cells = hp.ang2pix(
        2**order, *_offsets_to_sky(gx[drawn], gy[drawn], ra0, dec0), nest=True, lonlat=True
    )
    assert set(cells.tolist()) == foot

    (im,) = figures["candidates"].axes[0].images
    gx, gy, arr = _drawn_cells(im)
    for x_expected, y_expected in zip(xi, eta, strict=True):
        hit = (arr == 1.0) & (np.sign(gx) == np.sign(x_expected))
        assert hit.any(), f"the candidate at {x_expected:+}' is off the panel"
        assert abs(gx[hit].mean() - x_expected) < size
        assert abs(gy[hit].mean() - y_expected) < size


def test_make_maps_keeps_healpy_graticule_chatter_off_stdout(tmp_path, monkeypatch, capsys, caplog):
    """healpy's graticule reports its intervals: older versions print them to stdout (as the
    wrapper below does), newer ones log them at INFO.  make_maps shows neither, so the
    ``skyscan skymaps`` stdout holds only its JSON summary."""
    import logging

    graticule = hp.graticule

    def chatty(*args, **kwargs):
        print("0.0 180.0 -180.0 180.0")
        return graticule(*args, **kwargs)

    monkeypatch.setattr(hp, "graticule", chatty)
    caplog.set_level(logging.INFO, logger="healpy")
    tile = _Box(150.0, 30.0, (-2.0, 2.0), (-2.0, 2.0))
    make_maps(_scores_at(150.0, 30.0, [0.5], [0.5]), [tile], 10, 0.0, tmp_path)
    assert capsys.readouterr().out == ""
    assert not [r for r in caplog.records if r.name.startswith("healpy")]
    assert logging.getLogger("healpy").level == logging.INFO  # restored afterwards
