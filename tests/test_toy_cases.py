"""Two toy science cases that live in tests/ (toy_periodic: variable-length sequences;
toy_maps: two named arrays plus a scalar) run every stage through the CLI without a shared
module knowing them: the proof that a case whose samples are not image stamps is an
addition.  They are found through ``SKYSCAN_CASES``, as a case in a user's own package is."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lsdb
import numpy as np
import pyarrow.parquet as pq
import pytest

from skyscan.config import load_config

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

TOYS = {
    "periodic": ("toy_periodic", {"simulate": {"n": 1000, "shard_size": 400}}),
    "maps": ("toy_maps", {"simulate": {"n": 1000, "shard_size": 400}}),
}


def _env(case: str) -> dict:
    module = TOYS[case][0]
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT / "src")]),
        "SKYSCAN_CASES": f"{case}={module}",
    }


def _skyscan(case: str, *args) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "skyscan.cli", *args, "-q"],
        env=_env(case),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture
def toy_case(monkeypatch):
    """Register the toy cases in this process too (the registry reads SKYSCAN_CASES)."""
    from skyscan.core import case as case_module

    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.setenv("SKYSCAN_CASES", ",".join(f"{k}={v[0]}" for k, v in TOYS.items()))
    monkeypatch.setattr(case_module, "default_registry", case_module.CaseRegistry())
    return case_module


@pytest.mark.parametrize("case", sorted(TOYS))
def test_toy_case_runs_every_stage_through_the_cli(tmp_path, case, toy_case):
    module, overrides = TOYS[case]
    config_file = TESTS / module / "config.yaml"
    config = load_config(config_file, overrides)
    import yaml

    my_config = tmp_path / "config.yaml"
    my_config.write_text(yaml.safe_dump({**config, "results": str(tmp_path / "results")}))
    c = str(my_config)
    _skyscan(case, "simulate", "--config", c, "--out", str(tmp_path / "sims"), "--workers", "2")
    shards = sorted(map(str, (tmp_path / "sims").glob("shard-*.parquet")))
    assert len(shards) == 3
    _skyscan(case, "dataset", *shards, "--config", c, "--out", str(tmp_path / "ds"))
    _skyscan(
        case,
        "train",
        "--dataset",
        str(tmp_path / "ds"),
        "--config",
        c,
        "--out",
        str(tmp_path / "model"),
    )
    card = str(tmp_path / "model" / "model_card.json")
    _skyscan(
        case,
        "evaluate",
        "--model",
        card,
        "--dataset",
        str(tmp_path / "ds"),
        "--config",
        c,
        "--out",
        str(tmp_path / "eval"),
    )
    import json

    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["case"] == case
    assert metrics["auroc"] > 0.8, metrics["auroc"]
    head = metrics["headline"]
    assert head["n"] > 0 and len(head["completeness_ci95"]) == 2  # every case gets its interval
    for stem in ("roc", "completeness", "reliability", "false_positives"):
        assert (tmp_path / "eval" / f"{stem}.png").stat().st_size > 1000

    # the survey: a HATS catalogue whose rows hold the samples, searched partition by partition
    survey = __import__(f"{module}.simulate", fromlist=["write_survey_catalog"])
    survey.write_survey_catalog(config, tmp_path / "survey.parquet", n=300)
    _skyscan(
        case, "catalog", "import", str(tmp_path / "survey.parquet"), "--out", str(tmp_path / "hats")
    )
    _skyscan(
        case,
        "search",
        "--model",
        card,
        "--catalog",
        str(tmp_path / "hats"),
        "--out",
        str(tmp_path / "search"),
        "--workers",
        "0",
    )
    scores = lsdb.open_catalog(tmp_path / "search" / "scores").compute()
    assert len(scores) == 300 and np.isfinite(scores["score"]).all()
    positives = scores["kind"] == toy_case.get_case(case).positive_kinds[0]
    assert scores["score"][positives].mean() > scores["score"][~positives].mean() + 0.3
    candidates = pq.read_table(tmp_path / "search" / "candidates.parquet")
    assert 0 < candidates.num_rows <= 300
    assert (tmp_path / "search" / "gallery.png").stat().st_size > 1000


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(TOYS))
def test_toy_case_runs_rule_all(tmp_path, case):
    """``snakemake`` (rule all) on the toy case's own config: the shared rules plus the
    case's own ``workflow.smk`` (its survey catalogue), searched without a tile index."""
    import shutil

    import yaml

    module, overrides = TOYS[case]
    config = yaml.safe_load((TESTS / module / "config.yaml").read_text())
    config.update(overrides, results=str(tmp_path / "results"), search={"workers": 1})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    snakemake = shutil.which("snakemake") or str(Path(sys.executable).parent / "snakemake")
    result = subprocess.run(
        [snakemake, "--snakefile", str(ROOT / "Snakefile"), "--cores", "2"]
        + ["--configfile", str(path)],
        cwd=tmp_path,
        env=_env(case),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = tmp_path / "results"
    assert "survey_catalog" in result.stderr  # the case's own rule ran
    for name in ("sims/preview.png", "evaluation/metrics.json", "search/gallery.png"):
        assert (results / name).stat().st_size > 1000, name
    scores = lsdb.open_catalog(results / "search" / "scores").compute()
    assert len(scores) == 300 and np.isfinite(scores["score"]).all()
    assert pq.read_table(results / "search" / "candidates.parquet").num_rows > 0
    page = (results / "index.html").read_text()
    assert "search/gallery.png" in page and "skymaps" not in page  # no lens sky maps
