"""The transient real/bogus case end to end: config/transients-ztf.yaml through `rule all` at a
tiny size (the same rules and code paths as the full run), and the case's own pieces."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from skyscan.core.case import get_case

ROOT = Path(__file__).parents[1]
SNAKEMAKE = shutil.which("snakemake") or str(Path(sys.executable).parent / "snakemake")


def test_transient_case_is_registered_with_its_section():
    from skyscan.cases.transients import simulate
    from skyscan.config import load_config

    case = get_case("transients")
    assert case.kinds == simulate.KINDS and case.stages == ("alerts",)
    config = load_config(ROOT / "config" / "transients-ztf.yaml")
    assert config["case"] == "transients" and config["transients"]["setup"] == "ztf"
    assert config["transients"]["alerts"]["n"] == 300


def test_unsorted_bins_name_the_key():
    from skyscan.core.errors import ConfigError

    meta = {"mag": np.array([18.0]), "snr": np.array([9.0])}
    with pytest.raises(ConfigError, match="'transients.mag_bins': bin edges must increase"):
        get_case("transients").strata(meta, {"mag_bins": [18, 17], "snr_bins": [0, 5]})


def test_triplet_picture_puts_the_three_channels_side_by_side():
    stamp = np.random.default_rng(0).normal(0, 1, (3, 21, 21)).astype(np.float32)
    stamp[2, 10, 10] = 50.0
    picture = get_case("transients").picture(stamp, ["science", "reference", "difference"])
    assert picture.shape == (21, 3 * 21 + 2 * 2, 3) and picture.dtype == np.uint8
    assert picture[10, 2 * 23 + 10, 0] == 255  # the bright difference pixel is white


@pytest.mark.slow
def test_transients_ztf_config_runs_rule_all(tmp_path):
    config = yaml.safe_load((ROOT / "config" / "transients-ztf.yaml").read_text())
    config["results"] = str(tmp_path / "results")
    config["simulate"].update(n=600, shard_size=300)
    config["train"].update(epochs=2, batch_size=64)
    config["transients"]["alerts"]["n"] = 24
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [
            SNAKEMAKE,
            "--snakefile",
            str(ROOT / "Snakefile"),
            "--cores",
            "2",
            "--configfile",
            str(path),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    results = tmp_path / "results"
    metrics = json.loads((results / "evaluation" / "metrics.json").read_text())
    assert metrics["case"] == "transients" and metrics["model"] == "skyscan-vgg6"
    assert metrics["completeness_grid"]["mag_bins"] == [15, 17, 18, 19, 20, 21]
    assert metrics["completeness_grid"]["snr_bins"] == [0, 5, 10, 20, 1000000]
    for block in ("score_0.5", "validation"):
        rates = metrics["at_thresholds"][block]
        assert rates["n_positive"] + rates["n_negative"] == metrics["n_test"]
        assert rates["fnr_ci95"][0] <= rates["fnr"] <= rates["fnr_ci95"][1]
    assert metrics["at_thresholds"]["validation"]["chosen_on"] == "val"
    table = (results / "evaluation" / "comparison.md").read_text()
    assert "1.1% (Duev et al. 2019" in table and "99.47% CNN" in table
    for name in ("false_positives", "missed_real", "roc", "completeness"):
        assert (results / "evaluation" / f"{name}.png").stat().st_size > 5000, name
    assert not (results / "search").exists()  # the lens search is not a stage of this case
    scores = pq.read_table(results / "alerts" / "scores.parquet").to_pydict()
    truth = pq.read_table(results / "alerts" / "demo_truth.parquet").to_pydict()
    assert sorted(scores["candid"]) == sorted(truth["candid"]) and len(truth["candid"]) == 24
    assert all(0 <= s <= 1 for s in scores["score"])
    assert json.loads((results / "alerts" / "scores_failures.json").read_text())["n_failed"] == 0
