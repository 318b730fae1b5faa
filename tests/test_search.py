"""The search: WCS and HEALPix assignment, Dask vs in-process, resume, bad tiles."""

import gzip
import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from astropy.io import fits
from astropy.wcs import WCS

from skyscan.config import load_config
from skyscan.data.preprocess import make_spec
from skyscan.models import get_model
from skyscan.models.card import ModelCard
from skyscan.search.run import FLAG_EDGE, FLAG_NAN, cutouts, plan_search, run_search
from skyscan.tiles.make import make_tiles
from skyscan.train.export import export_model

hp = pytest.importorskip("healpy")

SMALL = {
    "tiles": {
        "grid": [2, 2],
        "size": 256,
        "overlap": 32,
        "densities": {"field": 20, "star": 3, "deflector": 25, "lens": 20},
    }
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    config = load_config(None, SMALL)
    make_tiles(config, root / "tiles")
    sigma = [fits.getheader(root / "tiles" / f"tile-00-00_{b}.fits")["SKYSIG"] for b in "gri"]
    torch.manual_seed(0)
    net = get_model("fast", in_channels=3)
    card = ModelCard(
        name="test",
        model="fast",
        case="lenses",
        bands=["g", "r", "i"],
        input_shape=[3, 45, 45],
        pixel_scale=0.2,
        preprocessing=make_spec("gri", sigma, 250, [3, 45, 45]),
    )
    export_model(net, torch.randn(8, 3, 45, 45), root / "model", card)
    return root, root / "model" / "model_card.json"


def _run(root, card, out, tiles=None, workers=0, order=13):
    tiles = tiles or root / "tiles"
    plan = plan_search(card, tiles, root / "tiles" / "catalog.parquet", out, order=order)
    return plan, run_search(plan, workers=workers, progress=False)


def test_positions_partitions_and_dask(setup, tmp_path):
    root, card = setup
    plan, summary = _run(root, card, tmp_path / "a")
    cand = pq.read_table(tmp_path / "a" / "candidates.parquet").to_pydict()
    catalog = pq.read_table(root / "tiles" / "catalog.parquet")
    assert summary["rows"] == len(cand["id"]) == len(catalog) and not summary["failures"]
    # cutout centres map back to the catalog position through astropy's WCS
    for name in set(cand["tile"]):
        rows = [i for i, t in enumerate(cand["tile"]) if t == name]
        w = WCS(fits.getheader(root / "tiles" / f"{name}_g.fits"))
        ra, dec = w.all_pix2world(np.array(cand["x"])[rows], np.array(cand["y"])[rows], 0)
        np.testing.assert_allclose(ra, np.array(cand["ra"])[rows], atol=1e-9)
        np.testing.assert_allclose(dec, np.array(cand["dec"])[rows], atol=1e-9)
    # partitions hold exactly the rows of their HEALPix pixel (healpy, NESTED)
    for path in sorted((tmp_path / "a" / "partitions").rglob("Npix=*.parquet")):
        pixel = int(path.stem.split("=")[1])
        assert path.parent.name == f"Dir={pixel // 10000 * 10000}"
        part = pq.read_table(path).to_pydict()
        expected = hp.ang2pix(2**13, part["ra"], part["dec"], nest=True, lonlat=True)
        assert set(expected) == {pixel}
        fine = hp.ang2pix(2**29, part["ra"], part["dec"], nest=True, lonlat=True)
        np.testing.assert_array_equal(part["healpix_29"], fine)
    # Dask workers give the same catalog as in-process scoring
    _run(root, card, tmp_path / "b", workers=2)
    assert pq.read_table(tmp_path / "b" / "candidates.parquet").equals(
        pq.read_table(tmp_path / "a" / "candidates.parquet")
    )


def test_resume_redoes_only_missing_partitions(setup, tmp_path):
    root, card = setup
    _run(root, card, tmp_path)
    reference = pq.read_table(tmp_path / "candidates.parquet")
    parts = sorted((tmp_path / "partitions").rglob("*.parquet"))
    assert len(parts) >= 3
    parts[0].unlink()  # lost in a crash
    parts[1].write_bytes(parts[1].read_bytes()[:100])  # truncated by a crash
    kept = {p: p.stat().st_mtime_ns for p in parts[2:]}
    _, summary = _run(root, card, tmp_path)
    assert summary["scored_now"] == 2 and summary["skipped_complete"] == len(parts) - 2
    assert pq.read_table(tmp_path / "candidates.parquet").equals(reference)
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())


def test_bad_tiles_are_reported_and_skipped(setup, tmp_path):
    root, card = setup
    tiles = tmp_path / "tiles"
    shutil.copytree(root / "tiles", tiles)
    # truncated FITS, a tile without WCS, a NaN-filled region, a compressed MEF tile
    data = (tiles / "tile-00-00_r.fits").read_bytes()
    (tiles / "tile-00-00_r.fits").write_bytes(data[: len(data) // 3])
    with fits.open(tiles / "tile-00-01_g.fits") as hdul:
        header = fits.Header(
            [
                c
                for c in hdul[0].header.cards
                if not c.keyword.startswith(
                    ("CTYPE", "CRVAL", "CRPIX", "CDELT", "CUNIT", "PC", "CD")
                )
            ]
        )
        fits.PrimaryHDU(hdul[0].data, header=header).writeto(
            tiles / "tile-00-01_g.fits", overwrite=True
        )
    with fits.open(tiles / "tile-01-00_i.fits") as hdul:
        image = hdul[0].data.copy()
        image[100:180, 100:180] = np.nan
        fits.PrimaryHDU(image, header=hdul[0].header).writeto(
            tiles / "tile-01-00_i.fits", overwrite=True
        )
    for band in "gri":
        path = tiles / f"tile-01-01_{band}.fits"
        with fits.open(path) as hdul:
            mef = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(hdul[0].data, hdul[0].header)])
            with gzip.open(str(path) + ".gz", "wb") as fh:
                mef.writeto(fh)
        path.unlink()
    plan, summary = _run(root, card, tmp_path / "out", tiles=tiles)
    failures = json.loads((tmp_path / "out" / "failures.json").read_text())
    assert "tile-00-00" in failures and "unreadable FITS" in failures["tile-00-00"]
    assert "tile-00-01" in failures and "celestial WCS" in failures["tile-00-01"]
    cand = pq.read_table(tmp_path / "out" / "candidates.parquet").to_pydict()
    assert "tile-01-01" in set(cand["tile"])  # the .fits.gz multi-extension tile was read
    assert "tile-00-00" not in set(cand["tile"]) and "tile-00-01" not in set(cand["tile"])
    nan_rows = [
        i
        for i, t in enumerate(cand["tile"])
        if t == "tile-01-00"
        and 100 - 30 < cand["x"][i] < 180 + 30
        and 100 - 30 < cand["y"][i] < 180 + 30
    ]
    assert any(cand["flags"][i] & FLAG_NAN for i in nan_rows)
    assert all(np.isfinite(cand["score"]))


def test_cutouts_pad_and_flag_edges():
    data = np.arange(2 * 20 * 30, dtype=np.float32).reshape(2, 20, 30)
    stamps, flags = cutouts(data, [15.2, 0.4, 29.0], [10.0, 10.0, 19.6], 7)
    assert stamps.shape == (3, 2, 7, 7)
    np.testing.assert_array_equal(stamps[0], data[:, 7:14, 12:19])
    assert flags.tolist() == [0, FLAG_EDGE, FLAG_EDGE]
    assert (stamps[1, :, :, :3] == 0).all() and (stamps[2, :, 4:, :] == 0).all()


def test_sip_distortion_is_honoured(setup, tmp_path):
    """A TAN-SIP header: positions go through astropy's full (distorted) transform."""
    root, card = setup
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    for band in "gri":
        with fits.open(root / "tiles" / f"tile-00-00_{band}.fits") as hdul:
            header = hdul[0].header.copy()
            header["CTYPE1"], header["CTYPE2"] = "RA---TAN-SIP", "DEC--TAN-SIP"
            header.update(A_ORDER=2, B_ORDER=2, A_2_0=2e-5, B_0_2=-1.5e-5)
            fits.PrimaryHDU(hdul[0].data, header=header).writeto(tiles / f"t_{band}.fits")
    plan = plan_search(card, tiles, root / "tiles" / "catalog.parquet", tmp_path / "o", 9)
    w = WCS(fits.getheader(tiles / "t_g.fits"))
    assert w.sip is not None
    table = pa.concat_tables(list(plan.partitions.values()))
    x, y = w.all_world2pix(table.column("ra").to_numpy(), table.column("dec").to_numpy(), 0)
    np.testing.assert_allclose(table.column("x").to_numpy(), x, atol=1e-6)
    plain_x, _ = w.wcs_world2pix(table.column("ra").to_numpy(), table.column("dec").to_numpy(), 0)
    assert np.abs(plain_x - x).max() > 0.1  # the distortion matters here
