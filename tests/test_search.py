"""The search: HATS in and out, tile index, WCS assignment, Dask vs in-process, resume,
failures, locks and stale output."""

import gzip
import json
import shutil

import healpy as hp
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from astropy.io import fits
from astropy.wcs import WCS
from conftest import SMALL_TILES

from skyscan.cases.lenses.tiles import make_tiles
from skyscan.catalog.hats_catalog import import_catalog
from skyscan.config import load_config
from skyscan.data.preprocess import make_spec
from skyscan.models import get_model
from skyscan.models.card import ModelCard
from skyscan.search.run import FLAG_EDGE, FLAG_NAN, cutouts, plan_search, run_search
from skyscan.search.tile_index import build_tile_index
from skyscan.train.export import export_model

SMALL = SMALL_TILES


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
    import_catalog(root / "tiles" / "catalog.parquet", root / "catalog", partition_rows=40)
    build_tile_index(root / "tiles", "gri", root / "index")
    return root, root / "model" / "model_card.json"


def _run(root, card, out, index=None, workers=0, catalog=None):
    plan = plan_search(card, index or root / "index", catalog or root / "catalog", out)
    return plan, run_search(plan, workers=workers, progress=False)


def _scores(out):
    import lsdb

    frame = lsdb.open_catalog(out / "scores").compute()
    return frame.reset_index().sort_values("id").reset_index(drop=True)


def test_hats_output_positions_and_dask(setup, tmp_path):
    import lsdb

    root, card = setup
    plan, summary = _run(root, card, tmp_path / "a")
    assert len(plan.tasks) >= 3  # several partitions, each with the tiles it touches
    scores = _scores(tmp_path / "a")
    catalog = pq.read_table(root / "tiles" / "catalog.parquet")
    assert summary["rows"] == len(scores) == len(catalog) and not summary["failures"]
    assert set(scores["id"]) == set(catalog.column("id").to_pylist())
    assert "input_tile" in scores.columns  # the catalogue's own 'tile' column is kept
    # cutout centres map back to the catalogue position through astropy's WCS
    for name in set(scores["tile"]):
        rows = scores[scores["tile"] == name]
        w = WCS(fits.getheader(root / "tiles" / f"{name}_g.fits"))
        ra, dec = w.all_pix2world(rows["x"].to_numpy(), rows["y"].to_numpy(), 0)
        np.testing.assert_allclose(ra, rows["ra"].to_numpy(), atol=1e-9)
        np.testing.assert_allclose(dec, rows["dec"].to_numpy(), atol=1e-9)
    fine = hp.ang2pix(2**29, scores["ra"], scores["dec"], nest=True, lonlat=True)
    np.testing.assert_array_equal(scores["_healpix_29"].to_numpy(), fine)
    # a crossmatch against another HATS catalogue runs on the output
    other = lsdb.open_catalog(root / "catalog")
    matched = (
        lsdb.open_catalog(tmp_path / "a" / "scores")
        .crossmatch(other, radius_arcsec=0.1, n_neighbors=1, suffixes=("", "_in"))
        .compute()
    )
    assert len(matched) == len(scores) and (matched["id"] == matched["id_in"]).all()
    # candidates: only rows at or above the card's threshold (none set: every row)
    cand = pq.read_table(tmp_path / "a" / "candidates.parquet")
    assert len(cand) == len(scores)
    assert np.all(np.diff(cand.column("score").to_numpy()) <= 0)
    # Dask workers write the same bytes as in-process scoring
    _run(root, card, tmp_path / "b", workers=2)
    files = sorted(
        p.relative_to(tmp_path / "a") for p in (tmp_path / "a" / "scores").rglob("*") if p.is_file()
    )
    assert files
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert (tmp_path / "a" / "candidates.parquet").read_bytes() == (
        tmp_path / "b" / "candidates.parquet"
    ).read_bytes()


def test_threshold_and_top_n_select_candidates(setup, tmp_path):
    root, card = setup
    _run(root, card, tmp_path / "all")
    logits = np.sort(_scores(tmp_path / "all")["logit"].to_numpy())
    cut = float(logits[len(logits) // 2])
    data = json.loads(card.read_text())
    data["threshold"] = {"logit": cut, "fpr": 0.01, "split": "val", "n_negatives": 100}
    card2 = tmp_path / "model" / "model_card.json"
    shutil.copytree(card.parent, card2.parent)
    card2.write_text(json.dumps(data))
    _run(root, card2, tmp_path / "half")
    cand = pq.read_table(tmp_path / "half" / "candidates.parquet").to_pydict()
    assert len(cand["id"]) == int((logits >= cut).sum()) and min(cand["logit"]) >= cut
    plan = plan_search(card2, root / "index", root / "catalog", tmp_path / "top", top_n=5)
    run_search(plan, 0, progress=False)
    top = pq.read_table(tmp_path / "top" / "candidates.parquet").to_pydict()
    assert top["id"] == cand["id"][:5]


def test_resume_redoes_only_missing_partitions(setup, tmp_path):
    root, card = setup
    _run(root, card, tmp_path)
    reference = _scores(tmp_path)
    parts = sorted((tmp_path / "scores" / "dataset").rglob("Npix=*.parquet"))
    assert len(parts) >= 3
    parts[0].unlink()  # lost in a crash
    parts[1].write_bytes(parts[1].read_bytes()[:100])  # truncated by a crash
    kept = {p: p.stat().st_mtime_ns for p in parts[2:]}
    _, summary = _run(root, card, tmp_path)
    assert summary["scored_now"] == 2
    assert summary["skipped_complete"] == summary["partitions"] - 2
    assert _scores(tmp_path).equals(reference)
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())


def _break_tiles(root, tiles):
    """A truncated band, a band without WCS, a NaN region, and a compressed MEF tile."""
    shutil.copytree(root / "tiles", tiles)
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


def test_bad_tiles_are_reported_and_skipped(setup, tmp_path):
    root, card = setup
    tiles = tmp_path / "tiles"
    _break_tiles(root, tiles)
    build_tile_index(tiles, "gri", tmp_path / "index")
    plan, summary = _run(root, card, tmp_path / "out", index=tmp_path / "index")
    failures = json.loads((tmp_path / "out" / "failures.json").read_text())
    assert "tile-00-01" in failures and "WCS" in failures["tile-00-01"]
    scores = _scores(tmp_path / "out")
    assert "tile-01-01" in set(scores["tile"])  # the .fits.gz multi-extension tile was read
    assert "tile-00-01" not in set(scores["tile"])
    near = scores[
        (scores["tile"] == "tile-01-00")
        & scores["x"].between(70, 210)
        & scores["y"].between(70, 210)
    ]
    assert len(near) and (near["cutout_flags"] & FLAG_NAN).any()
    assert np.isfinite(scores["score"]).all()


def test_failed_band_moves_objects_and_rerun_retries(setup, tmp_path):
    """A band that fails at read time: its objects move to an overlapping tile; after the
    file is fixed a re-run redoes that partition and drops the failure from the record."""
    root, card = setup
    tiles = tmp_path / "tiles"
    shutil.copytree(root / "tiles", tiles)
    build_tile_index(tiles, "gri", tmp_path / "index")  # indexed while the file was fine
    good = (tiles / "tile-00-00_r.fits").read_bytes()
    header_blocks = 2880 * 4
    (tiles / "tile-00-00_r.fits").write_bytes(good[:header_blocks])  # data cut off
    _, summary = _run(root, card, tmp_path / "out", index=tmp_path / "index")
    failures = json.loads((tmp_path / "out" / "failures.json").read_text())
    assert "tile-00-00" in failures
    scores = _scores(tmp_path / "out")
    assert "tile-00-00" not in set(scores["tile"])
    # objects in the overlap with tile-00-01 / tile-01-00 were scored there instead
    reference_plan, _ = _run(root, card, tmp_path / "ref")
    ref = _scores(tmp_path / "ref")
    moved = ref[(ref["tile"] == "tile-00-00") & ref["id"].isin(scores["id"])]
    assert len(moved) > 0
    # (the truncation is caught with the header, so the count is over the tile's index pixels)
    assert summary["lost_to_failed_tiles"] >= int((ref["tile"] == "tile-00-00").sum()) - len(moved)
    # fix the file (same bytes as indexed): the re-run retries and the record empties
    (tiles / "tile-00-00_r.fits").write_bytes(good)
    _, again = _run(root, card, tmp_path / "out", index=tmp_path / "index")
    assert again["scored_now"] >= 1 and not again["failures"]
    assert json.loads((tmp_path / "out" / "failures.json").read_text()) == {}
    assert _scores(tmp_path / "out").reset_index(drop=True).equals(ref.reset_index(drop=True))


def test_lock_stale_output_and_empty_search(setup, tmp_path):
    import fcntl
    import os

    from skyscan.core.errors import ResourceError

    root, card = setup
    out = tmp_path / "out"
    out.mkdir()
    fd = os.open(out / ".search.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another search is running
    with pytest.raises(ResourceError, match="another search"):
        _run(root, card, out)
    os.close(fd)
    _run(root, card, out)
    first = {p.name for p in (out / "scores" / "dataset").rglob("Npix=*.parquet")}
    # a new catalogue far from the tiles: the old partitions are removed, and the empty
    # result is still a catalogue that lsdb opens
    far = tmp_path / "far.parquet"
    pq.write_table(pa.table({"id": [1, 2], "ra": [200.0, 201.0], "dec": [-40.0, -41.0]}), far)
    import_catalog(far, tmp_path / "far")
    _, summary = _run(root, card, out, catalog=tmp_path / "far")
    assert summary["rows"] == 0 and first
    assert not list((out / "scores" / "dataset").rglob("Npix=*.parquet"))
    assert len(pq.read_table(out / "candidates.parquet")) == 0
    import lsdb

    assert len(lsdb.open_catalog(out / "scores").compute()) == 0


def test_catalog_import_checks_and_converts(tmp_path):
    from skyscan.core.errors import InputFileError

    csv = tmp_path / "cat.csv"
    csv.write_text("name,ra,dec\na,10:00:00.0,+02:00:00\nb,10:00:01.5,-01:30:00\n")
    summary = import_catalog(csv, tmp_path / "hats")
    table = pq.read_table(tmp_path / "hats" / "dataset").to_pydict()
    assert summary["rows"] == 2 and set(table["name"]) == {"a", "b"}
    order = np.argsort(table["name"])
    np.testing.assert_allclose(np.array(table["ra"])[order], [150.0, 150.00625])
    np.testing.assert_allclose(np.array(table["dec"])[order], [2.0, -1.5])
    for text, message in [
        ("id,ra,dec\n1,10,5\n2,nan,5\n", "without a finite"),
        ("id,ra,dec\n1,10,95\n2,11,5\n", r"\|dec\| > 90"),
        ("id,ra,dec\n7,10,5\n7,11,5\n8,12,5\n", "duplicated 'id'.*7"),
        ("id,ra,dec\n1,ten,5\n", "neither degrees nor sexagesimal"),
    ]:
        bad = tmp_path / "bad.csv"
        bad.write_text(text)
        with pytest.raises(InputFileError, match=message):
            import_catalog(bad, tmp_path / "bad_hats")
        assert not (tmp_path / "bad_hats").exists()


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
    build_tile_index(tiles, "gri", tmp_path / "index")
    _run(root, card, tmp_path / "o", index=tmp_path / "index")
    scores = _scores(tmp_path / "o")
    w = WCS(fits.getheader(tiles / "t_g.fits"))
    assert w.sip is not None and len(scores)
    x, y = w.all_world2pix(scores["ra"].to_numpy(), scores["dec"].to_numpy(), 0)
    np.testing.assert_allclose(scores["x"].to_numpy(), x, atol=1e-6)
    plain_x, _ = w.wcs_world2pix(scores["ra"].to_numpy(), scores["dec"].to_numpy(), 0)
    assert np.abs(plain_x - x).max() > 0.1  # the distortion matters here


def test_kill_9_then_rerun_gives_the_same_bytes(setup, tmp_path):
    """``kill -9`` of the search at several points; each re-run finishes with a catalogue
    byte-identical to an uninterrupted run, without duplicate or missing rows."""
    import os
    import signal
    import subprocess
    import sys
    import time

    root, card = setup
    _run(root, card, tmp_path / "ref")
    reference = {
        p.relative_to(tmp_path / "ref"): p.read_bytes()
        for p in (tmp_path / "ref" / "scores").rglob("*")
        if p.is_file()
    }
    argv = [
        sys.executable,
        "-m",
        "skyscan.cli",
        "search",
        "--model",
        str(card),
        "--index",
        str(root / "index"),
        "--catalog",
        str(root / "catalog"),
        "--workers",
        "0",
        "-q",
    ]
    for after in (1, 3):  # partitions finished before the kill
        out = tmp_path / f"killed{after}"
        proc = subprocess.Popen(
            [*argv, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.time() + 120
        while len(list((out / "progress").rglob("*.json"))) < after and time.time() < deadline:
            if proc.poll() is not None:
                break
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        done = subprocess.run([*argv, "--out", str(out)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        got = {
            p.relative_to(out): p.read_bytes() for p in (out / "scores").rglob("*") if p.is_file()
        }
        assert got == reference
        ids = _scores(out)["id"]
        assert ids.is_unique and len(ids) == len(pq.read_table(root / "tiles" / "catalog.parquet"))


def test_candidates_carry_known_lens_matches(setup, tmp_path):
    """A tile around a catalogued lens (lenscat): the candidate at its position (0.5" off)
    carries its name and grade; one 20" away carries none; the summary counts the match."""
    from skyscan.cases.lenses.known import load_known_lenses

    root, card = setup
    known = load_known_lenses()
    k = int(np.flatnonzero(np.abs(known.dec) < 60)[0])
    ra0, dec0 = float(known.ra[k]), float(known.dec[k])
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra0, dec0]
    w.wcs.crpix = [128.5, 128.5]
    w.wcs.cdelt = [-0.2 / 3600, 0.2 / 3600]
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    rng = np.random.default_rng(3)
    for band in "gri":
        image = rng.normal(0, 0.1, (256, 256)).astype(np.float32)
        fits.PrimaryHDU(image, header=w.to_header()).writeto(tiles / f"k_{band}.fits")
    cos = np.cos(np.radians(dec0))
    pq.write_table(
        pa.table(
            {
                "id": [1, 2],
                "ra": [ra0 + 0.5 / 3600 / cos, ra0 + 20 / 3600 / cos],
                "dec": [dec0, dec0],
            }
        ),
        tmp_path / "c.parquet",
    )
    import_catalog(tmp_path / "c.parquet", tmp_path / "cat")
    build_tile_index(tiles, "gri", tmp_path / "index")
    _, summary = _run(
        root, card, tmp_path / "out", index=tmp_path / "index", catalog=tmp_path / "cat"
    )
    cand = pq.read_table(tmp_path / "out" / "candidates.parquet").to_pydict()
    row = dict(zip(cand["id"], range(2), strict=True))
    assert cand["known_name"][row[1]] == known.name[k]
    assert cand["known_grade"][row[1]] == known.grade[k]
    assert cand["known_sep_arcsec"][row[1]] == pytest.approx(0.5, abs=0.01)
    assert cand["known_name"][row[2]] is None
    assert summary["known_lenses"] == 1


def test_candidates_carry_lens_parameters(setup, tmp_path):
    """``parameters``: a parameter network's estimates, 68% intervals and vetting flag on
    every candidate (an untrained network: the columns and their consistency are tested)."""
    from skyscan.models.card import read_card

    root, card = setup
    torch.manual_seed(1)
    net = get_model("lensparams", in_channels=3, n_parameters=2).eval()
    base = read_card(card)
    pcard = base.replace(
        name="params",
        model="lensparams",
        targets={
            "names": ["theta_E", "e1"],
            "units": ["arcsec", ""],
            "transforms": ["log", "identity"],
            "mean": [float(np.log(1.5)), 0.0],
            "std": [0.5, 0.2],
            "uncertainty_scale": [1.5, 1.0],
            "vetting": {"low": 0.5, "high": 3.0, "max_rel_sigma": 0.6, "parameter": "theta_E"},
        },
    )
    export_model(
        net,
        torch.randn(4, 3, 45, 45),
        tmp_path / "params",
        pcard,
        output_name="params",
        output="means then log-variances",
    )
    plan = plan_search(
        card,
        root / "index",
        root / "catalog",
        tmp_path / "out",
        parameters=tmp_path / "params" / "model_card.json",
    )
    run_search(plan, 0, progress=False)
    cand = pq.read_table(tmp_path / "out" / "candidates.parquet").to_pydict()
    theta, lo, hi = (np.array(cand[c]) for c in ("theta_e", "theta_e_lo", "theta_e_hi"))
    assert len(theta) and np.isfinite(theta).all()
    assert (lo < theta).all() and (theta < hi).all() and (lo > 0).all()
    assert {"e1", "e1_lo", "e1_hi", "params_implausible"} <= set(cand)
    flagged = np.array(cand["params_implausible"], dtype=bool)
    assert flagged[(theta < 0.5) | (theta > 3.0)].all()  # outside the vetting range
    # recorded for the grading page (its hidden simulations get estimates from it too)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (tmp_path / "out" / summary["parameters"]).resolve() == (
        tmp_path / "params" / "model_card.json"
    ).resolve()


def test_catalog_import_date_follows_source_date_epoch(tmp_path, monkeypatch):
    """SOURCE_DATE_EPOCH fixes hats_creation_date: two imports give the same bytes."""
    csv = tmp_path / "cat.csv"
    csv.write_text("id,ra,dec\n1,150.0,2.0\n2,150.1,2.1\n")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    first, second = tmp_path / "a" / "hats", tmp_path / "b" / "hats"
    import_catalog(csv, first)
    import_catalog(csv, second)
    assert "hats_creation_date=2023-11-14T22:13UTC" in (first / "hats.properties").read_text()
    files = sorted(p for p in first.rglob("*") if p.is_file())
    assert len(files) > 3
    for f in files:
        assert f.read_bytes() == (second / f.relative_to(first)).read_bytes(), f


def test_noise_warning_below_half_and_above_twice_the_training_noise():
    """A tile's background noise against the training images': a warning below 0.5x (e.g. a
    tile resampled by hand, whose per-pixel noise the regridding lowered) and above 2x;
    0.73x passes."""
    from types import SimpleNamespace

    from skyscan.search.run import _noise_summary

    plan = SimpleNamespace(
        card=SimpleNamespace(bands=["g", "r"]),
        context=SimpleNamespace(loader="tiles"),
        noise={"low": {"g": 0.45, "r": 1.0}, "fine": {"g": 0.73, "r": 1.2}, "high": {"r": 2.3}},
    )
    warnings = _noise_summary(plan)["warnings"]
    assert warnings == [
        "tile high: background noise r 2.30x the training images'",
        "tile low: background noise g 0.45x the training images'",
    ]


def test_probability_at_prevalence_is_bayes_rule_on_the_odds():
    """The calibrated probability at the training mix moved to another prevalence: posterior
    odds = calibrated odds x (prior odds searched / prior odds of the training mix)."""
    card = ModelCard(
        name="t",
        model="fast",
        case="lenses",
        bands=["g"],
        input_shape=[1, 33, 33],
        pixel_scale=0.2,
        preprocessing={},
        calibration={"temperature": 2.0, "positive_fraction": 0.5},
    )
    logits = np.array([-4.0, 0.0, 3.0, 12.0])
    p = card.probability(logits)  # at the training mix (half positives)
    prevalence = 0.001
    odds = p / (1 - p) * (prevalence / (1 - prevalence)) / (0.5 / 0.5)
    np.testing.assert_allclose(
        card.probability_at_prevalence(logits, prevalence), odds / (1 + odds), rtol=1e-12
    )
    # at the training mix itself it is the calibrated score
    np.testing.assert_allclose(card.probability_at_prevalence(logits, 0.5), p, rtol=1e-12)
    # a card from before the mix was recorded: its test split's share stands in
    old = card.replace(
        calibration={"temperature": 2.0}, test_metrics={"n_test": 400, "n_positive": 100}
    )
    assert old.training_prevalence == 0.25
    from skyscan.core.errors import InputFileError

    with pytest.raises(InputFileError, match="no share of positives"):
        card.replace(calibration={}, test_metrics={}).probability_at_prevalence(logits, 0.01)
