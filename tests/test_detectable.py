"""Per-survey honesty: LensPop's detectability selection (Collett 2015) in the dataset stage,
the below-detection warning, and the shipped DES config."""

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skyscan.cases.lenses.sim import best_band_snr, detectable, get_survey
from skyscan.cases.lenses.sim.simulate import SimulationPlan, run_simulation
from skyscan.config import load_config
from skyscan.core.errors import ConfigError
from skyscan.data.datasets import build_dataset, load_split

ROOT = Path(__file__).resolve().parents[1]
LENSPOP = {"min_snr": 20, "snr_bands": "any", "min_magnification": 3, "resolved": True}
SEEING = {"g": 1.2, "r": 0.8}


def _table():
    """One row per outcome: g is the best band unless said otherwise; seeing g 1.2", r 0.8"."""
    rows = [
        # name,             snr_g, snr_r, mu,  theta_E, R_src, keep
        ("passes", 30.0, 10.0, 5.0, 1.0, 0.2, True),
        ("faint", 15.0, 10.0, 5.0, 1.0, 0.2, False),
        ("at the S/N cut", 20.0, 10.0, 5.0, 1.0, 0.2, False),  # strict, as LensPop
        ("weakly magnified", 30.0, 10.0, 2.5, 1.0, 0.2, False),
        ("at the mu cut", 30.0, 10.0, 3.0, 1.0, 0.2, False),
        # theta_E^2 = 0.36 < 0.2^2 + 0.6^2 = 0.40 in g (seeing 1.2")
        ("unresolved in g", 30.0, 10.0, 5.0, 0.6, 0.2, False),
        # best band r (seeing 0.8"): 0.36 > 0.04 + 0.16, resolved there
        ("resolved in its best band r", 10.0, 30.0, 5.0, 0.6, 0.2, True),
        ("large source", 30.0, 10.0, 5.0, 1.0, 1.0, False),  # 1.0 < 1.0 + 0.36
        ("no source (non-lens)", np.nan, np.nan, np.nan, 1.0, 0.2, False),
    ]
    names = [r[0] for r in rows]
    cols = list(zip(*[r[1:] for r in rows], strict=True))
    meta = {
        "snr_g": np.array(cols[0]),
        "snr_r": np.array(cols[1]),
        "magnification": np.array(cols[2]),
        "theta_E": np.array(cols[3]),
        "source_R_sersic": np.array(cols[4]),
    }
    return names, meta, np.array(cols[5])


def test_selection_keeps_and_drops_exactly_per_criterion():
    names, meta, expected = _table()
    keep = detectable(meta, SEEING, LENSPOP)
    assert dict(zip(names, keep.tolist(), strict=True)) == dict(
        zip(names, expected.tolist(), strict=True)
    )
    # each criterion can be switched off alone
    no_mu = detectable(meta, SEEING, {**LENSPOP, "min_magnification": None})
    assert no_mu[names.index("weakly magnified")] and no_mu[names.index("at the mu cut")]
    no_res = detectable(meta, SEEING, {**LENSPOP, "resolved": False})
    assert no_res[names.index("unresolved in g")] and no_res[names.index("large source")]
    assert not no_res[names.index("faint")]
    # the best band is chosen among snr_bands only: in g alone the r-band lens is faint
    g_only = detectable(meta, SEEING, {**LENSPOP, "snr_bands": ["g"]})
    assert not g_only[names.index("resolved in its best band r")]
    assert g_only[names.index("passes")]
    snr, band, bands = best_band_snr(meta)
    assert bands == ["g", "r"] and band[names.index("resolved in its best band r")] == 1
    assert np.isnan(snr[-1])


def test_seeing_from_the_survey_registry_or_shard_metadata():
    _, meta, _ = _table()
    meta = {**meta, "snr_i": meta["snr_r"]}
    des = get_survey("des")
    from_survey = detectable(meta, des, LENSPOP)
    shard_meta = {
        "bands": ["g", "r", "i"],
        "psf": [{"fwhm": des.band(b).seeing} for b in ("g", "r", "i")],
    }
    np.testing.assert_array_equal(from_survey, detectable(meta, shard_meta, LENSPOP))


def test_bad_criteria_name_the_key():
    _, meta, _ = _table()
    with pytest.raises(ConfigError, match=r"dataset\.detectable\.snr_bands.*'z'.*allowed: g, r"):
        detectable(meta, SEEING, {**LENSPOP, "snr_bands": ["z"]})
    with pytest.raises(ConfigError, match=r"no PSF FWHM known for band\(s\) r"):
        detectable(meta, {"g": 1.0}, LENSPOP)
    with pytest.raises(ConfigError, match=r"dataset\.detectable\.min_snr"):
        load_config(None, {"dataset": {"detectable": {"min_snr": -1}}})
    with pytest.raises(ConfigError, match=r"unknown config key 'dataset\.detectable\.snr'"):
        load_config(None, {"dataset": {"detectable": {"snr": 5}}})
    # filled with LensPop's values; null (no selection) by default
    assert load_config(None, {"dataset": {"detectable": {}}})["dataset"]["detectable"] == LENSPOP
    assert load_config(None)["dataset"]["detectable"] is None


def test_a_case_without_a_selection_refuses_it():
    with pytest.raises(ConfigError, match="has no detectability selection"):
        load_config(None, {"case": "transients", "dataset": {"detectable": {}}})


def _simulate(root, survey="des", n=600, **lenses):
    config = load_config(
        None,
        {
            "seed": 7,
            "simulate": {"n": n, "shard_size": 300},
            "lenses": {"survey": survey, **lenses},
        },
    )
    return run_simulation(SimulationPlan.from_config(config), root, show_progress=False)


@pytest.fixture(scope="module")
def des_sims(tmp_path_factory):
    return _simulate(tmp_path_factory.mktemp("des"))


def _columns(shards):
    table = pa.concat_tables([pq.read_table(p, columns=None).drop(["image"]) for p in shards])
    return {n: table.column(n).to_numpy(zero_copy_only=False) for n in table.column_names}


def test_dataset_keeps_only_detectable_lenses_and_counts_them(des_sims, tmp_path):
    config = load_config(None, {"seed": 7, "dataset": {"detectable": LENSPOP}})
    manifest = build_dataset(des_sims, tmp_path, config)
    record = manifest["detectable"]
    simulated = _columns(des_sims)
    lens = simulated["label"] == 1
    assert record["criteria"] == LENSPOP and record["survey"] == "des"
    assert record["seeing"] == {"g": 1.12, "r": 0.96, "i": 0.88}
    assert record["lenses_simulated"] == lens.sum()
    assert record["lenses_kept"] + record["lenses_dropped"] == record["lenses_simulated"]
    assert 0 < record["lenses_kept"] < record["lenses_simulated"]
    splits = manifest["splits"]
    assert sum(s["positives"] for s in splits.values()) == record["lenses_kept"]
    # every non-lens is kept
    assert sum(s["n"] - s["positives"] for s in splits.values()) == (~lens).sum()
    seeing = get_survey("des")
    for split in ("train", "val", "test"):
        _, meta, _ = load_split(tmp_path, split)
        cols = {n: meta.column(n).to_numpy(zero_copy_only=False) for n in meta.column_names}
        is_lens = cols["label"] == 1
        assert detectable({k: v[is_lens] for k, v in cols.items()}, seeing, LENSPOP).all()
    assert (
        record["detection_snr_median_kept"]
        > LENSPOP["min_snr"]
        > record["detection_snr_median_simulated"]
    )


def test_without_the_option_every_lens_is_kept(des_sims, tmp_path):
    manifest = build_dataset(des_sims, tmp_path, load_config(None, {"seed": 7}))
    assert manifest["detectable"] is None
    assert (
        sum(s["positives"] for s in manifest["splits"].values())
        == (_columns(des_sims)["label"] == 1).sum()
    )


def _warnings(caplog):
    return [r for r in caplog.records if r.levelno == logging.WARNING and "detection" in r.msg]


def test_warning_for_a_population_below_detection(tmp_path, caplog):
    faint = {"source_mag": {"dist": "normal", "mean": 27.5, "sd": 0.3, "low": 27.0, "high": 28}}
    shards = _simulate(tmp_path / "faint", n=300, priors=faint)
    with caplog.at_level(logging.WARNING, logger="skyscan.data.datasets"):
        build_dataset(shards, tmp_path / "ds", load_config(None, {"seed": 7}))
    (record,) = _warnings(caplog)
    message = record.getMessage()
    assert "most simulated lenses are below detection at this survey's depth (des)" in message
    assert "median S/N" in message and "consider dataset.detectable" in message
    assert "\n" not in message
    assert float(message.split("median S/N ")[1].split()[0]) < 5


def test_no_warning_for_a_detectable_population(des_sims, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="skyscan.data.datasets"):
        build_dataset(des_sims, tmp_path, load_config(None, {"seed": 7}))
    assert not _warnings(caplog)


def test_des_config_validates_and_keeps_lenses_des_can_find(tmp_path):
    config = load_config(
        ROOT / "config" / "des.yaml",
        {"results": str(tmp_path), "simulate": {"n": 400, "shard_size": 400}},
    )
    lens = config["lenses"]
    assert lens["survey"] == "des" and config["dataset"]["detectable"]["min_snr"] == 20
    assert lens["exposures"] == "coadd"
    for band in (lens["snr_band"], lens["tiles"]["catalog"]["band"]):
        assert band in lens["bands"]
    shards = run_simulation(SimulationPlan.from_config(config), tmp_path, show_progress=False)
    manifest = build_dataset(shards, tmp_path / "ds", config)
    assert manifest["detectable"]["lenses_kept"] > 0
    kept = []
    for split in ("train", "val", "test"):
        _, meta, _ = load_split(tmp_path / "ds", split)
        cols = {n: meta.column(n).to_numpy(zero_copy_only=False) for n in meta.column_names}
        kept.append(best_band_snr({k: v[cols["label"] == 1] for k, v in cols.items()})[0])
    assert np.median(np.concatenate(kept)) >= config["dataset"]["detectable"]["min_snr"]
