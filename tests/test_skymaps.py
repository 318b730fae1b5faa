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
    assert "do NOT agree" in worse["verdict"]
    # p > 0.05 but the tiles' interval is too wide (few objects): not accepted
    few = false_positive_agreement(1, 40, op)
    assert few["fisher_p"] > 0.05 and few["upper_over_test"] > 2 and few["agree"] is False
    assert "Only 40 non-lenses" in few["verdict"]


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
