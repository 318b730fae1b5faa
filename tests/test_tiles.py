"""Simulated survey tiles: WCS, injected objects, catalogs, determinism."""

from pathlib import Path

import numpy as np
import pyarrow as pa
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


# --------------------------------------------------------------------------- the tile index


def _copy_tile(src, name, dst, scale=None):
    """The tile ``name`` of ``src`` as ``dst/{name}_{band}.fits``, its pixels optionally
    declared to be ``scale`` arcsec (CDELT changed, pixels kept)."""
    dst.mkdir(parents=True, exist_ok=True)
    for band in ("g", "r", "i"):
        with fits.open(src / f"tile-00-00_{band}.fits") as hdul:
            header, data = hdul[0].header.copy(), hdul[0].data.copy()
        if scale is not None:
            for key in ("CDELT1", "CDELT2"):
                header[key] = np.sign(header[key]) * scale / 3600
        fits.writeto(dst / f"{name}_{band}.fits", data, header)


def test_index_with_model_leaves_out_tiles_of_another_pixel_scale(tiles, tmp_path, capsys):
    import json

    from skyscan.cli.tiles import main as tiles_main
    from skyscan.models.card import ModelCard

    src, _, _ = tiles
    _copy_tile(src, "lsst", tmp_path / "survey")
    _copy_tile(src, "megacam", tmp_path / "survey", scale=0.187)
    card = ModelCard(
        name="t",
        model="fast",
        case="lenses",
        bands=["g", "r", "i"],
        input_shape=[3, 45, 45],
        pixel_scale=0.2,
        preprocessing={"method": "noise-scaled-clip", "bands": ["g", "r", "i"]},
    )
    (tmp_path / "model_card.json").write_text(json.dumps(card.to_dict()))
    out = tmp_path / "index"
    args = ["index", str(tmp_path / "survey"), "--out", str(out)]
    assert tiles_main([*args, "--model", str(tmp_path / "model_card.json")]) == 0
    meta = json.loads((out / "index.json").read_text())
    assert meta["tiles"] == 1 and list(meta["problems"]) == ["megacam"]
    reason = meta["problems"]["megacam"]
    assert 'pixel scale 0.187"/pixel' in reason and "model's 0.2\"/pixel" in reason
    assert "`skyscan tiles resample " in reason and "--pixel-scale 0.2 --out DIR`" in reason
    assert str(tmp_path / "survey" / "megacam_g.fits") in reason
    assert "train a model at the survey's pixel scale" in reason
    assert pq.read_table(out / "tiles.parquet").column("name").to_pylist() == ["lsst"]
    # without a card's pixel scale (--bands only) every tile is indexed, as before
    assert tiles_main([*args, "--bands", "g,r,i"]) == 0
    assert json.loads((out / "index.json").read_text())["problems"] == {}
    capsys.readouterr()


def test_index_paths_resolve_from_any_directory(tiles, tmp_path, monkeypatch):
    import json

    from skyscan.search.tile_index import build_tile_index, read_tile_index
    from skyscan.tiles.io import Tile, load_tile

    src, _, _ = tiles
    _copy_tile(src, "t1", tmp_path / "mysurvey" / "tiles")
    monkeypatch.chdir(tmp_path)
    build_tile_index("mysurvey/tiles", "gri", "mysurvey/my_index")
    meta = json.loads((tmp_path / "mysurvey" / "my_index" / "index.json").read_text())
    assert meta["folder"] == "../tiles" and meta["relative_to"] == "index"
    recorded = json.loads(
        pq.read_table(tmp_path / "mysurvey" / "my_index" / "tiles.parquet")["paths"][0].as_py()
    )
    assert recorded["g"] == "../tiles/t1_g.fits"

    def opens(index):
        (record,) = index.records([0]).values()
        assert all(Path(p).is_absolute() for p in record.paths.values())
        tile = load_tile(Tile(record.name, record.paths, record.hdu))
        assert tile.data.shape == (3, 256, 256)
        assert Path(index.tiles_folder) == (tmp_path / "mysurvey" / "tiles").resolve()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    opens(read_tile_index(tmp_path / "mysurvey" / "my_index"))
    monkeypatch.chdir(tmp_path / "mysurvey")
    opens(read_tile_index("my_index"))

    # an index written before (paths relative to the directory it was made in) still reads
    # from that directory
    index_dir = tmp_path / "mysurvey" / "my_index"
    meta.pop("relative_to")
    meta["folder"] = "mysurvey/tiles"
    (index_dir / "index.json").write_text(json.dumps(meta))
    table = pq.read_table(index_dir / "tiles.parquet")
    old = [json.dumps({b: f"mysurvey/tiles/t1_{b}.fits" for b in "gri"})]
    pq.write_table(table.set_column(1, "paths", pa.array(old)), index_dir / "tiles.parquet")
    monkeypatch.chdir(tmp_path)
    opens(read_tile_index("mysurvey/my_index"))
