"""ZTF alert inputs: Avro, broker Parquet (struct and flattened) and FITS triplets, and the
``skyscan score-alerts`` verb that scores them."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from astropy.io import fits

from skyscan.cases.transients.alerts import (
    FLAG_CROPPED,
    FLAG_EDGE,
    FLAG_NAN,
    alert_inputs,
    read_alerts,
    read_avro_alerts,
    read_parquet_alerts,
    stamp_bytes,
    triplet_candid,
    write_avro_alerts,
    write_fits_triplet,
    write_parquet_alerts,
)
from skyscan.cli import main
from skyscan.core.errors import InputFileError
from skyscan.data.preprocess import make_spec, preprocess
from skyscan.models import get_model
from skyscan.models.card import ModelCard, load_model
from skyscan.train.export import export_model

ROOT = Path(__file__).resolve().parents[1]
CHANNELS = ("science", "reference", "difference")
RB = [0.91, 0.12, None, 0.5, 0.75]
DRB = [0.99, 0.03, 0.4, None, 0.8]
NOISE = np.random.default_rng(0).normal(size=(63, 63))


def make_alerts(n=5, seed=11, shape=(63, 63)):
    """``n`` alerts with seeded random stamps (a point source in science and difference)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    blob = np.exp(-((yy - shape[0] // 2) ** 2 + (xx - shape[1] // 2) ** 2) / 8.0)
    alerts = []
    for i in range(n):
        ref = rng.normal(100, 3, shape)
        diff = rng.normal(0, 3, shape) + rng.uniform(0, 60) * blob
        alerts.append(
            {
                "candid": 2_500_000_000_000_000_000 + 17 * i,
                "objectId": f"ZTF24aaa{i:04d}",
                "ra": 150.0 + 0.1 * i,
                "dec": 2.0 - 0.05 * i,
                "magpsf": 18.0 + 0.25 * i,
                "jd": 2460000.5 + i,
                "rb": RB[i % len(RB)],
                "drb": DRB[i % len(DRB)],
                "science": (ref + diff).astype(np.float32),
                "reference": ref.astype(np.float32),
                "difference": diff.astype(np.float32),
            }
        )
    return alerts


def _export(folder, bands, seed=0, normalise="background"):
    torch.manual_seed(seed)
    net = get_model("fast", in_channels=len(bands))
    card = ModelCard(
        name="rb-test",
        model="fast",
        case="transients",
        bands=list(bands),
        input_shape=[len(bands), 63, 63],
        pixel_scale=1.0,
        preprocessing=make_spec(
            bands,
            [4.0, 3.0, 2.0, 1.0][: len(bands)],
            8,
            [len(bands), 63, 63],
            normalise=normalise,
        ),
    )
    export_model(net, torch.randn(8, len(bands), 63, 63), folder, card)
    return folder / "model_card.json"


@pytest.fixture(scope="module")
def card(tmp_path_factory):
    """A tiny exported ``fast`` model on science/reference/difference 63 x 63 stamps."""
    return _export(tmp_path_factory.mktemp("rb-model"), CHANNELS)


def direct_logits(card_path, alerts):
    """Score the raw arrays through preprocess + the exported model, without the readers."""
    model, c = load_model(card_path)
    x = np.stack([np.stack([a[ch] for ch in CHANNELS]) for a in alerts]).astype(np.float32)
    with torch.inference_mode():
        return model(torch.from_numpy(preprocess(x, c.preprocessing))).double().numpy()


def write_triplets(folder, alerts, gz=True):
    for a in alerts:
        header = {"RA": a["ra"], "DEC": a["dec"], "MAGPSF": a["magpsf"], "JD": a["jd"]}
        header.update({"OBJECTID": a["objectId"]})
        header.update({k.upper(): a[k] for k in ("rb", "drb") if a[k] is not None})
        write_fits_triplet(
            folder, str(a["candid"]), *(a[ch] for ch in CHANNELS), gz=gz, header=header
        )
    return folder


def write_binary_parquet(path, alerts):
    """Parquet with the cutouts as plain binary columns named cutoutScience, ..."""
    write_parquet_alerts(path, alerts, layout="flat")
    table = pq.read_table(path)
    names = [n.removesuffix(".stampData") for n in table.column_names]
    table = table.rename_columns(names)
    table = table.drop([n for n in names if n.endswith(".fileName")])
    pq.write_table(table, path)
    return path


def write_input(kind, folder, alerts):
    """Alerts written as ``kind``; returns the path to give the readers."""
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "avro":
        return write_avro_alerts(folder / "alerts.avro", alerts)
    if kind in ("struct", "flat"):
        return write_parquet_alerts(folder / f"alerts-{kind}.parquet", alerts, layout=kind)
    if kind == "binary":
        return write_binary_parquet(folder / "alerts-binary.parquet", alerts)
    return write_triplets(folder / "triplets", alerts)


def score(card_path, inputs, out, *extra):
    code = main(["score-alerts", "--model", str(card_path), *map(str, inputs)] + [
        "--out", str(out), "-q", *extra
    ])  # fmt: skip
    return code


# ------------------------------------------------------------------------------- readers


@pytest.mark.parametrize("kind", ["avro", "struct", "flat", "binary", "fits"])
def test_stamps_decode_exactly_and_metadata_passes_through(tmp_path, kind):
    alerts = make_alerts()
    path = write_input(kind, tmp_path / "in", alerts)
    fmt = {"avro": "avro", "fits": "fits"}.get(kind, "parquet")
    failures = []
    dets = list(read_alerts(path, fmt, failures=failures))
    assert failures == []
    assert [d.candid for d in dets] == [a["candid"] for a in alerts]
    for det, a in zip(dets, alerts, strict=True):
        # each stamp equals, bit for bit, the FITS file written from the same array by astropy
        for k, ch in enumerate(CHANNELS):
            fits.writeto(tmp_path / f"{ch}.fits", a[ch], overwrite=True)
            expected = fits.getdata(tmp_path / f"{ch}.fits")
            assert det.stamps.dtype == np.float32
            np.testing.assert_array_equal(det.stamps[k], expected.astype(np.float32))
        e = det.extra
        assert e["objectId"] == a["objectId"]
        assert (e["ra"], e["dec"], e["jd"]) == (a["ra"], a["dec"], a["jd"])
        assert e["magpsf"] == pytest.approx(a["magpsf"], rel=1e-7)
        for key in ("rb", "drb"):
            if a[key] is None:
                assert e[key] is None, key
            else:
                assert e[key] == pytest.approx(a[key], rel=1e-7), key
        assert (e["cutout_flags"], e["edge"], e["nan_pixels"]) == (0, False, 0)


def test_avro_file_of_one_alert_and_of_many(tmp_path):
    alerts = make_alerts(3)
    one = write_avro_alerts(tmp_path / "one.avro", alerts[:1])
    many = write_avro_alerts(tmp_path / "many.avro", alerts)
    assert [d.candid for d in read_avro_alerts(one)] == [alerts[0]["candid"]]
    assert [d.candid for d in read_avro_alerts(many)] == [a["candid"] for a in alerts]


def test_edge_cutouts_are_padded_centred_and_flagged(tmp_path, card):
    alerts = make_alerts(3)
    rng = np.random.default_rng(3)
    small = {ch: rng.normal(5, 1, (63, 40)).astype(np.float32) for ch in CHANNELS}
    big = {ch: rng.normal(5, 1, (70, 70)).astype(np.float32) for ch in CHANNELS}
    alerts[0].update(small)
    alerts[1].update(big)
    alerts[2]["science"] = alerts[2]["science"].copy()
    alerts[2]["science"][10, 20:23] = np.nan
    path = write_avro_alerts(tmp_path / "a.avro", alerts)
    for reader in (read_avro_alerts, read_parquet_alerts):
        if reader is read_parquet_alerts:
            path = write_parquet_alerts(tmp_path / "a.parquet", alerts)
        edge, crop, nan = list(reader(path))
        assert edge.stamps.shape == (3, 63, 63)
        for k, ch in enumerate(CHANNELS):  # 23 missing columns: 11 zeros before, 12 after
            np.testing.assert_array_equal(edge.stamps[k, :, 11:51], small[ch])
            assert not edge.stamps[k, :, :11].any() and not edge.stamps[k, :, 51:].any()
            np.testing.assert_array_equal(crop.stamps[k], big[ch][4:67, 4:67])
        assert edge.extra["cutout_flags"] == FLAG_EDGE and edge.extra["edge"] is True
        assert crop.extra["cutout_flags"] == FLAG_CROPPED and crop.extra["edge"] is False
        assert nan.extra["cutout_flags"] == FLAG_NAN and nan.extra["nan_pixels"] == 3
        assert (nan.stamps[0, 10, 20:23] == 0).all() and np.isfinite(nan.stamps).all()
        # the difference's noise is measured on its own pixels, not on the padding
        diff = small["difference"]
        mad = np.median(np.abs(diff - np.median(diff)))
        assert edge.extra["diff_sigma"] == pytest.approx(1.4826 * mad)

    out = tmp_path / "scores.parquet"
    assert score(card, [tmp_path / "a.avro"], out) == 0
    table = pq.read_table(out).to_pydict()
    assert table["cutout_flags"] == [FLAG_EDGE, FLAG_CROPPED, FLAG_NAN]
    assert table["edge"] == [True, False, False] and table["nan_pixels"] == [0, 0, 3]
    assert table["above_threshold"] == [None] * 3  # this card has no operating threshold
    # with one (between the scores), above_threshold is what a user keeps as real
    model = tmp_path / "with-threshold"
    shutil.copytree(Path(card).parent, model)
    doc = json.loads((model / "model_card.json").read_text())
    doc["threshold"] = {"logit": float(np.median(table["logit"])), "fpr": 0.01, "split": "val"}
    (model / "model_card.json").write_text(json.dumps(doc))
    assert score(model / "model_card.json", [tmp_path / "a.avro"], out) == 0
    again = pq.read_table(out).to_pydict()
    assert again["above_threshold"] == [v >= doc["threshold"]["logit"] for v in table["logit"]]
    assert sum(again["above_threshold"]) == 2


@pytest.mark.parametrize(
    "bad",
    [
        b"not a FITS file at all",
        gzip.compress(b"SIMPLE  =                    T" + b" " * 50),
        stamp_bytes(NOISE)[:300],  # truncated gzip
        gzip.compress(stamp_bytes(NOISE, compress=False)[:5000]),  # truncated FITS
        b"\x1f\x8b\x08\x00garbage",
    ],
    ids=["junk", "gzipped-junk", "truncated-gzip", "truncated-fits", "bad-gzip"],
)
def test_a_corrupt_stamp_fails_that_alert_only(tmp_path, card, bad):
    alerts = make_alerts()
    alerts[2]["difference"] = bad
    path = write_avro_alerts(tmp_path / "night.avro", alerts)
    with pytest.raises(InputFileError, match=rf"night\.avro: alert candid {alerts[2]['candid']}"):
        list(read_avro_alerts(path))  # without a failures list, it raises

    out = tmp_path / "scores.parquet"
    assert score(card, [path], out) == 0
    table = pq.read_table(out).to_pydict()
    good = [a for i, a in enumerate(alerts) if i != 2]
    assert table["candid"] == [a["candid"] for a in good]
    np.testing.assert_allclose(table["logit"], direct_logits(card, good), rtol=1e-5, atol=1e-6)
    report = json.loads((tmp_path / "scores_failures.json").read_text())
    assert (report["n_scored"], report["n_failed"]) == (4, 1)
    (failure,) = report["failures"]
    assert failure["candid"] == alerts[2]["candid"]
    assert failure["source"] == str(path)
    assert str(path) in failure["reason"] and str(alerts[2]["candid"]) in failure["reason"]
    assert "cutoutDifference" in failure["reason"]


def test_every_alert_failing_is_exit_1_and_no_scores(tmp_path, card, capsys):
    alerts = make_alerts(2)
    for a in alerts:
        a["science"] = b"junk"
    path = write_parquet_alerts(tmp_path / "bad.parquet", alerts)
    out = tmp_path / "scores.parquet"
    assert score(card, [path], out) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no alert could be scored (2 failed" in err, err
    assert not out.exists()
    assert json.loads((tmp_path / "scores_failures.json").read_text())["n_failed"] == 2


# ---------------------------------------------------------------------------------- scoring


def test_scores_agree_across_formats_and_with_direct_scoring(tmp_path, card):
    alerts = make_alerts()
    expected = direct_logits(card, alerts)
    assert np.ptp(expected) > 0  # the model tells the alerts apart, so agreement means something
    tables = {}
    for kind in ("avro", "struct", "flat", "fits"):
        path = write_input(kind, tmp_path / kind, alerts)
        out = tmp_path / f"{kind}.parquet"
        assert score(card, [path], out, "--batch-size", "2") == 0
        tables[kind] = pq.read_table(out)
    first = tables["avro"]
    assert first.schema.field("candid").type == pa.int64()
    assert first.column_names[:11] == [
        "candid", "objectId", "ra", "dec", "magpsf", "jd", "logit", "score", "above_threshold",
        "rb", "drb",
    ]  # fmt: skip
    for kind, table in tables.items():
        t = table.to_pydict()
        assert t["candid"] == [a["candid"] for a in alerts], kind
        assert t["objectId"] == [a["objectId"] for a in alerts], kind
        np.testing.assert_allclose(t["logit"], expected, rtol=1e-5, atol=1e-6, err_msg=kind)
        np.testing.assert_allclose(t["logit"], first.column("logit").to_numpy(), rtol=1e-6)
        np.testing.assert_allclose(t["score"], 1 / (1 + np.exp(-np.array(t["logit"]))))
        for key in ("rb", "drb"):  # ZTF's own scores pass through, null when absent
            got = t[key]
            assert [v is None for v in got] == [a[key] is None for a in alerts], (kind, key)
            assert [v for v in got if v is not None] == pytest.approx(
                [a[key] for a in alerts if a[key] is not None], rel=1e-7
            )
        np.testing.assert_array_equal(t["ra"], [a["ra"] for a in alerts])
        assert t["cutout_flags"] == [0] * 5
        report = json.loads((tmp_path / f"{kind}_failures.json").read_text())
        assert report == {"n_scored": 5, "n_failed": 0, "failures": []}


def test_snr_channel_is_difference_over_its_robust_sigma(tmp_path):
    alerts = make_alerts()
    card4 = _export(tmp_path / "model4", [*CHANNELS, "snr"], seed=1)
    path = write_avro_alerts(tmp_path / "a.avro", alerts)
    out = tmp_path / "scores.parquet"
    assert score(card4, [path], out) == 0
    model, c = load_model(card4)
    x = []
    for a in alerts:
        d = a["difference"].astype(np.float64)
        sigma = 1.4826 * np.median(np.abs(d - np.median(d)))
        x.append(np.stack([a[ch] for ch in CHANNELS] + [(d / sigma).astype(np.float32)]))
    with torch.inference_mode():
        expected = model(torch.from_numpy(preprocess(np.stack(x), c.preprocessing))).numpy()
    np.testing.assert_allclose(pq.read_table(out)["logit"], expected, rtol=1e-4, atol=1e-5)


def test_a_card_with_other_bands_is_a_one_line_mismatch(tmp_path, card, capsys):
    folder = tmp_path / "model"
    shutil.copytree(card.parent, folder)
    data = json.loads((folder / "model_card.json").read_text())
    data["bands"] = ["g", "r", "i"]
    (folder / "model_card.json").write_text(json.dumps(data))
    path = write_avro_alerts(tmp_path / "a.avro", make_alerts(1))
    out = tmp_path / "scores.parquet"
    assert score(folder / "model_card.json", [path], out) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert err.startswith(f"skyscan score-alerts: error: {folder / 'model_card.json'}: bands")
    assert "science, reference, difference" in err
    assert not out.exists()


def test_triplet_folder_missing_a_file_and_candid_of_a_name(tmp_path, card):
    alerts = make_alerts(3)
    folder = write_triplets(tmp_path / "trip", alerts, gz=False)
    (folder / f"{alerts[1]['candid']}_ref.fits").unlink()
    write_fits_triplet(folder, "night1-src7", *(alerts[0][ch] for ch in CHANNELS))
    failures = []
    dets = list(read_alerts(folder, "fits", failures=failures))
    named = triplet_candid("night1-src7")
    assert named == 8104945361992186697  # stable: a hash, not a running number
    assert sorted(d.candid for d in dets) == sorted(
        [alerts[0]["candid"], alerts[2]["candid"], named]
    )
    assert [d.extra["objectId"] for d in dets if d.candid == named] == ["night1-src7"]
    (failure,) = failures
    assert failure["candid"] == alerts[1]["candid"]
    assert f"no {alerts[1]['candid']}_ref.fits" in failure["reason"]


def test_inputs_by_suffix_and_folder(tmp_path):
    alerts = make_alerts(2)
    a = write_avro_alerts(tmp_path / "mixed" / "a.avro", alerts)
    p = write_parquet_alerts(tmp_path / "mixed" / "b.parquet", alerts)
    write_triplets(tmp_path / "mixed", alerts)
    assert alert_inputs([tmp_path / "mixed"]) == [
        ("avro", a),
        ("parquet", p),
        ("fits", tmp_path / "mixed"),
    ]
    assert alert_inputs([tmp_path / "mixed"], "parquet") == [("parquet", p)]
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(InputFileError, match="unknown alert format"):
        alert_inputs([tmp_path / "x.txt"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFileError, match="holds no alerts"):
        alert_inputs([tmp_path / "empty"])


def _scores(card_path, alerts_path, out):
    from skyscan.cases.transients.scoring import score_alerts

    score_alerts(card_path, [alerts_path], out)
    return pq.read_table(out).to_pydict()


def test_a_per_stamp_card_scores_alerts_the_same_in_any_units(tmp_path):
    """dataset.normalise: per_stamp on the card: the same alerts in other units (a gain and a
    background per cutout, as another survey's or another zero point's data units) get the
    same logits through the real reader and scorer; a background-scaled card does not."""
    alerts = make_alerts(n=6)
    rng = np.random.default_rng(5)
    other = []
    for a in alerts:
        b = dict(a)
        for ch in CHANNELS:
            b[ch] = (a[ch] * rng.uniform(0.05, 40) + rng.uniform(-500, 500)).astype(np.float32)
        other.append(b)
    first = write_avro_alerts(tmp_path / "a.avro", alerts)
    second = write_avro_alerts(tmp_path / "b.avro", other)
    per_stamp = _export(tmp_path / "per-stamp", CHANNELS, normalise="per_stamp")
    a = _scores(per_stamp, first, tmp_path / "a.parquet")["logit"]
    b = _scores(per_stamp, second, tmp_path / "b.parquet")["logit"]
    np.testing.assert_allclose(a, b, atol=1e-4)
    fixed = _export(tmp_path / "fixed", CHANNELS)
    a = _scores(fixed, first, tmp_path / "c.parquet")["logit"]
    b = _scores(fixed, second, tmp_path / "d.parquet")["logit"]
    assert np.max(np.abs(np.subtract(a, b))) > 1e-2  # the check can fail


def test_agreement_with_drb_counts_and_intervals():
    from skyscan.cases.transients.realcheck import agreement_with_drb

    drb = np.array([0.95, 0.99, 0.92, 0.05, 0.02, 0.5, np.nan])
    logits = np.array([2.0, -1.0, 3.0, -2.0, 1.0, 0.0, 5.0])
    scores = 1 / (1 + np.exp(-logits))
    f = agreement_with_drb(logits, scores, drb, threshold_logit=0.5)
    assert f["n"] == 6  # the alert without a drb is left out
    assert (f["real"]["n"], f["real"]["passed"]) == (3, 2)
    assert (f["bogus"]["n"], f["bogus"]["failed"]) == (2, 1)
    assert f["real"]["ci95"][0] < 2 / 3 < f["real"]["ci95"][1]
    same = agreement_with_drb(drb[:6] * 10, drb[:6], drb[:6], threshold_logit=5)
    assert same["spearman"]["rho"] == pytest.approx(1.0) and same["auroc_drb_0.5"] == 1.0


def test_real_ztf_alerts_are_scored_and_compared_with_drb(card, tmp_path):
    """The real-data check on real public ZTF alerts (fink-science's development set, fetched
    by `make setup`): every alert decodes and is scored; the figures carry n and intervals."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "check", ROOT / "scripts" / "real_alerts_check.py"
    )
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    assert check.DEFAULT_ALERTS.is_file(), "run `make setup` (scripts/fetch_real_alerts.py)"
    figures = check.check(card)
    assert figures["n"] == 414 and figures["real"]["n"] == 378
    assert len(figures["real"]["ci95"]) == 2 and len(figures["spearman"]["ci95"]) == 2
    assert "| drb > 0.9 passing" in check.table(figures)


def test_check_real_alerts_writes_its_figures_and_names_a_missing_file(card, tmp_path):
    """``skyscan check-real-alerts`` (the workflow's rule check_real_alerts): the figures as
    JSON and Markdown, every alert's scores and the logit-against-drb plot; a missing alerts
    file is named with how to fetch it, and nothing is written."""
    from skyscan.cases.transients.cli import check_real_alerts as verb

    alerts = ROOT / "data" / "real" / "ztf" / "CTAO_blazar_datatest_v20-12-24.parquet"
    assert verb.main(["--model", str(card), "--alerts", str(alerts), "--out", str(tmp_path)]) == 0
    figures = json.loads((tmp_path / "real_alerts.json").read_text())
    assert figures["n"] == 414 and figures["model"] == str(card)
    assert "| drb > 0.9 passing" in (tmp_path / "real_alerts.md").read_text()
    assert pq.read_table(tmp_path / "real_alerts.parquet").num_rows == 414
    assert (tmp_path / "real_alerts.png").stat().st_size > 5000
    empty = tmp_path / "none"
    missing = tmp_path / "no_alerts.parquet"
    code = verb.main(["--model", str(card), "--alerts", str(missing), "--out", str(empty)])
    assert code == 1 and not empty.exists()
