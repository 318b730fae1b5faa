"""Simulated survey tiles: WCS, injected objects, catalogs, determinism."""

import numpy as np
import pyarrow.parquet as pq
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS

from skyscan.cases.lenses.sim.survey import ConfigError
from skyscan.cases.lenses.tiles import make_tiles, tile_grid, tile_wcs
from skyscan.config import load_config

TILES = {
    "grid": [2, 1],
    "size": 256,
    "overlap": 16,
    "densities": {"field": 30, "star": 5, "deflector": 20, "lens": 20},
}
SMALL = {"lenses": {"tiles": TILES}}


@pytest.fixture(scope="module")
def tiles(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiles")
    config = load_config(None, SMALL)
    summary = make_tiles(config, out)
    return out, summary, config


def test_files_and_wcs(tiles):
    out, summary, config = tiles
    assert [t["name"] for t in summary["tiles"]] == ["tile-00-00", "tile-00-01"]
    for t in summary["tiles"]:
        for band in ("g", "r", "i"):
            with fits.open(out / f"{t['name']}_{band}.fits") as hdul:
                header, data = hdul[0].header, hdul[0].data
                assert data.shape == (256, 256) and data.dtype.kind == "f"
                assert header["BUNIT"] == "electron/s" and header["BAND"] == band
                w = WCS(header)
                ra, dec = w.wcs_pix2world([[127.5, 127.5]], 0)[0]
                assert (ra, dec) == pytest.approx((t["ra"], t["dec"]), abs=1e-9)
                # north up, east left, 0.2" pixels
                east = w.wcs_pix2world([[127.5 - 1, 127.5]], 0)[0]
                north = w.wcs_pix2world([[127.5, 127.5 + 1]], 0)[0]
                assert east[0] > ra and north[1] > dec
                step = SkyCoord(ra, dec, unit="deg").separation(SkyCoord(*north, unit="deg")).arcsec
                assert step == pytest.approx(0.2, rel=1e-6)
    # neighbours are (size - overlap) pixels apart on the sky
    a, b = summary["tiles"]
    sep = (
        SkyCoord(a["ra"], a["dec"], unit="deg")
        .separation(SkyCoord(b["ra"], b["dec"], unit="deg"))
        .arcsec
    )
    assert sep == pytest.approx((256 - 16) * 0.2, rel=1e-4)


def test_truth_positions_round_trip_and_hold_light(tiles):
    out, summary, config = tiles
    truth = pq.read_table(out / "truth.parquet").to_pydict()
    for name in ("tile-00-00", "tile-00-01"):
        rows = [i for i, t in enumerate(truth["tile"]) if t == name]
        spec = next(t for t in summary["tiles"] if t["name"] == name)
        w = tile_wcs(type("S", (), spec)())
        x, y = w.world_to_pixel(
            SkyCoord(np.array(truth["ra"])[rows], np.array(truth["dec"])[rows], unit="deg")
        )
        np.testing.assert_allclose(x, np.array(truth["x"])[rows], atol=1e-6)
        np.testing.assert_allclose(y, np.array(truth["y"])[rows], atol=1e-6)
        image = fits.getdata(out / f"{name}_i.fits")
        sky = fits.getheader(out / f"{name}_i.fits")["SKYSIG"]
        lenses = [i for i in rows if truth["kind"][i] == "lens"]
        assert lenses
        for i in lenses:
            xi, yi = int(round(truth["x"][i])), int(round(truth["y"][i]))
            box = image[max(yi - 2, 0) : yi + 3, max(xi - 2, 0) : xi + 3]
            assert box.sum() > 25 * sky  # a deflector sits at every injected lens


def test_catalog_applies_the_cuts(tiles):
    out, _, config = tiles
    truth = pq.read_table(out / "truth.parquet").to_pydict()
    catalog = pq.read_table(out / "catalog.parquet").to_pydict()
    ids = set(catalog["id"])
    cuts = config["lenses"]["tiles"]["catalog"]
    for i, kind in enumerate(truth["kind"]):
        passes = (
            kind != "star"
            and truth["mag_i"][i] < cuts["max_mag"]
            and truth["mag_g"][i] - truth["mag_i"][i] > cuts["min_color"]
        )
        assert (truth["id"][i] in ids) == passes
    assert any(truth["kind"][i] == "lens" for i in range(len(truth["id"])) if truth["id"][i] in ids)


def test_same_seed_same_pixels(tiles, tmp_path):
    out, _, config = tiles
    make_tiles(config, tmp_path)
    for band in ("g", "i"):
        np.testing.assert_array_equal(
            fits.getdata(out / f"tile-00-01_{band}.fits"),
            fits.getdata(tmp_path / f"tile-00-01_{band}.fits"),
        )


def test_grid_centre_and_bad_catalog_band(tmp_path):
    (spec,) = tile_grid([10.0, -30.0], [1, 1], 100, 0, 0.2)
    assert (spec.ra, spec.dec) == pytest.approx((10.0, -30.0))
    # caught when the config is loaded, naming the key ...
    with pytest.raises(
        ConfigError, match=r"config key 'lenses.tiles.catalog.color': band\(s\) \['g'\]"
    ):
        load_config(None, {"lenses": {"tiles": TILES, "bands": ["r", "i"]}})
    # ... and by the stage itself, for a config that skipped the load-time checks
    from skyscan.config import validate_config

    config = validate_config({"lenses": {"bands": ["r", "i"]}}, whole=False)  # no tiles given
    with pytest.raises(ConfigError, match="lenses.tiles.catalog"):
        make_tiles(config, tmp_path)
