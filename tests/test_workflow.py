"""The Snakemake workflow: a real small run from a config, dry runs, and config errors."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[1]
SNAKEMAKE = shutil.which("snakemake") or str(Path(sys.executable).parent / "snakemake")


def snakemake(*args, cwd):
    return subprocess.run(
        [SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
    )


@pytest.fixture()
def small_config(tmp_path):
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["results"] = str(tmp_path / "results")
    config["simulate"].update(n=300, shard_size=150)
    config["train"].update(epochs=1, batch_size=64)
    config["tiles"].update(grid=[2, 1], size=256)
    config["search"].update(order=13, workers=1)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_default_config_dry_run():
    result = snakemake("-n", "--quiet", "rules", cwd=ROOT)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_workflow_runs_and_resumes(small_config, tmp_path):
    result = snakemake("--cores", "2", "--configfile", str(small_config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    results = tmp_path / "results"
    assert sorted(p.name for p in (results / "sims").glob("shard-*.parquet")) == [
        "shard-00000.parquet",
        "shard-00001.parquet",
    ]
    assert (results / "sims" / "preview.png").stat().st_size > 10_000
    assert (results / "logs" / "simulate" / "shard-00000.log").exists()
    assert (results / "search" / "candidates.parquet").is_file()
    assert (results / "skymaps" / "skymaps.fits").is_file()
    # the run stamped the folder with its config: the same config says nothing, another warns
    assert (results / ".skyscan-config.json").is_file()
    assert "different config" not in result.stderr
    other = yaml.safe_load(small_config.read_text())
    other["seed"] = 7
    other_path = tmp_path / "other.yaml"
    other_path.write_text(yaml.safe_dump(other))
    warned = snakemake("-n", "--configfile", str(other_path), cwd=tmp_path)
    assert "written by a different config" in warned.stderr
    # nothing to redo
    again = snakemake("--cores", "2", "--configfile", str(small_config), "-n", cwd=tmp_path)
    assert "Nothing to be done" in again.stdout + again.stderr
    # one self-contained HTML report with the pictures and the comparison table
    report = tmp_path / "report.html"
    built = snakemake("--configfile", str(small_config), "--report", str(report), cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-3000:]
    html = report.read_text(errors="replace")
    for name in (
        "preview.png",
        "roc.png",
        "completeness.png",
        "comparison.md",
        "gallery.png",
        "footprint.png",
        "injection_recovery.md",
    ):
        assert name in html, name


def test_bad_config_key_stops_the_workflow(small_config, tmp_path):
    config = yaml.safe_load(small_config.read_text())
    config["simulate"]["supersamplng"] = 3
    small_config.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--configfile", str(small_config), cwd=tmp_path)
    assert result.returncode != 0
    assert "unknown config key 'simulate.supersamplng'" in result.stdout + result.stderr


@pytest.mark.slow
def test_lint_is_clean():
    result = snakemake("--lint", cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "good condition" in result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("config", sorted((ROOT / "config").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_dry_runs(config, tmp_path):
    result = snakemake(
        "-n",
        "--quiet",
        "rules",
        "--configfile",
        str(config),
        "--config",
        f"results={tmp_path}/results",
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def test_a_config_file_is_not_merged_into_the_default(tmp_path):
    """--configfile is the whole config: a kinds map of two kinds gets exactly those two,
    not the default config.yaml's six (keys left out take the schema's defaults)."""
    import json

    results = tmp_path / "results"
    path = tmp_path / "two.yaml"
    path.write_text(
        yaml.safe_dump(
            {"results": str(results), "simulate": {"n": 100, "kinds": {"lens": 1, "no_source": 1}}}
        )
    )
    target = str(results / "configs" / "simulate.json")
    result = snakemake(target, "--cores", "1", "--configfile", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    written = json.loads(Path(target).read_text())
    assert written["simulate"]["kinds"] == {"lens": 1, "no_source": 1}
    assert written["simulate"]["shard_size"] == 1000  # the schema's default, not config.yaml's
