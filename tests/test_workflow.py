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
    with_fraction_splits(config)
    config["train"].update(epochs=1, batch_size=64)
    config["lenses"]["tiles"].update(grid=[2, 1], size=256)
    config["search"].update(partition_rows=20, workers=1)
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


#: The one override that shrinks any shipped config to a tiny run of the same rules and code
#: paths: few systems, one epoch on the CPU, one small tile.  Nothing else changes.
SHRINK = {
    "simulate": {"n": 400, "shard_size": 200, "compile": False, "device": "cpu"},
    "train": {"epochs": 1, "batch_size": 32, "accelerator": "cpu", "patience": None},
    "evaluate": {"bootstrap_resamples": 100},
    "search": {"partition_rows": 20, "workers": 1},
}
#: ... and in the config's own case section (a config holds no other case's section).
SHRINK_CASE = {
    "lenses": {"tiles": {"grid": [1, 1], "size": 256}},
    "transients": {"alerts": {"n": 24}},
}

SHIPPED_CONFIGS = sorted((ROOT / "config").glob("*.yaml"))

#: Configs whose tiny run needs more systems: lensparams.yaml simulates 5% non-lenses, and
#: the dataset stage wants both classes in every split.
SHRINK_SYSTEMS = {"lensparams.yaml": 1200}


def shrink(config: dict, results) -> dict:
    """``config`` with :data:`SHRINK` merged in and its results under ``results``."""

    def merge(base, over):
        out = dict(base)
        for key, value in over.items():
            out[key] = merge(base.get(key, {}), value) if isinstance(value, dict) else value
        return out

    case = config.get("case", "lenses")
    out = merge(config, {**SHRINK, case: SHRINK_CASE[case]}) | {"results": str(results)}
    real = (out.get("transients") or {}).get("real_alerts")
    if real:  # relative to the repository, where the shipped configs run
        out["transients"]["real_alerts"] = str(ROOT / real)
    return with_fraction_splits(out)


def with_fraction_splits(config: dict) -> dict:
    """The same shares of a smaller simulate.n: dataset.splits given as counts (which must
    sum to simulate.n) become fractions."""
    splits = (config.get("dataset") or {}).get("splits")
    if splits:
        total = sum(splits.values())
        config["dataset"] = {
            **config["dataset"],
            "splits": {k: v / total for k, v in splits.items()},
        }
    return config


@pytest.mark.slow
@pytest.mark.parametrize("config", SHIPPED_CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_runs_rule_all_at_tiny_size(config, tmp_path):
    """Every file in config/ runs `rule all` to the end (at a tiny size): a config either
    runs or fails at load time naming its key, never halfway through."""
    import json

    tiny = shrink(yaml.safe_load(config.read_text()), tmp_path / "results")
    tiny["simulate"]["n"] = SHRINK_SYSTEMS.get(config.name, tiny["simulate"]["n"])
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny))
    result = snakemake("--cores", "2", "--configfile", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    results = tmp_path / "results"
    if tiny["train"].get("target") == "parameters":  # a parameter network's own evaluation
        metrics = json.loads((results / "evaluation" / "param_metrics.json").read_text())
        assert metrics["model"] == f"skyscan-{tiny['train']['model']}"
        assert metrics["parameters"] and metrics["n_selected"] >= 0
        return
    metrics = json.loads((results / "evaluation" / "metrics.json").read_text())
    assert metrics["model"] == f"skyscan-{tiny['train']['model']}"
    assert metrics["operating_point"]["chosen_on"] == "val"
    assert (results / "evaluation" / "comparison.md").stat().st_size > 200
    CONFIG_CHECKS.get(config.name, lambda results: None)(results)


def _check_deeplens(results):
    import json

    metrics = json.loads((results / "evaluation" / "metrics.json").read_text())
    assert metrics["setup"]["bands"] == ["g"] and metrics["setup"]["exposures"] == "single"
    assert metrics["setup"]["negative_kinds"] == ["no_source"]
    assert "**Like for like**" in (results / "evaluation" / "comparison.md").read_text()
    assert (results / "search" / "candidates.parquet").is_file()
    assert (results / "skymaps" / "skymaps.json").is_file()


def _check_transients_ztf(results):
    import json

    import pyarrow.parquet as pq

    metrics = json.loads((results / "evaluation" / "metrics.json").read_text())
    assert metrics["case"] == "transients" and metrics["model"] == "skyscan-vgg6"
    assert metrics["completeness_grid"]["mag_bins"] == [13.5, 15, 17, 18, 19, 20, 21]
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
    # the real-alert check (transients.real_alerts: the development set of `make setup`)
    real = json.loads((results / "evaluation" / "real_alerts.json").read_text())
    assert real["n"] == 414 and real["real"]["n"] == 378
    assert "| drb > 0.9 passing" in (results / "evaluation" / "real_alerts.md").read_text()
    assert (results / "evaluation" / "real_alerts.png").stat().st_size > 5000
    assert "real_alerts.png" in (results / "index.html").read_text()


CONFIG_CHECKS = {
    "deeplens-cpu.yaml": _check_deeplens,
    "paper-deeplens.yaml": _check_deeplens,
    "transients-ztf.yaml": _check_transients_ztf,
}


@pytest.mark.parametrize("config", SHIPPED_CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads_in_a_second(config):
    """Cross-key checks run at load time: the shipped configs pass them as whole configs,
    in well under a second, keeping every value the file gives and filling every section."""
    import time

    from skyscan.config import schema, validate_config

    given = yaml.safe_load(config.read_text())
    start = time.perf_counter()
    loaded = validate_config(given)  # raises ConfigError naming the key on a problem
    seconds = time.perf_counter() - start
    assert seconds < 1.0, f"{config.name} took {seconds:.2f} s to validate"
    assert given == yaml.safe_load(config.read_text())  # the caller's mapping is not modified

    def leaves(mapping, prefix=()):
        for key, value in mapping.items():
            if isinstance(value, dict) and value:
                yield from leaves(value, (*prefix, key))
            else:
                yield (*prefix, key), value

    for path, value in leaves(given):
        got = loaded
        for key in path:
            got = got[key]
        assert got == value, f"{config.name}: {'.'.join(path)} is {got!r}, the file says {value!r}"
    # every section filled with its defaults: the shared ones and the config's own case's
    assert set(schema(loaded["case"])["properties"]) <= set(loaded)


@pytest.mark.parametrize(
    "change, key",
    [
        ({"lenses": {"bands": ["g"]}}, "lenses.tiles.catalog.band"),
        ({"lenses": {"bands": ["g", "i"], "snr_band": "z"}}, "lenses.snr_band"),
        ({"train": {"model": "vgg6"}}, "train.model"),
        ({"simulate": {"n": 30}}, "simulate.n"),
        ({"lenses": {"tiles": {"overlap": 20, "grid": [2, 1]}}}, "lenses.tiles.overlap"),
        ({"tiles": {"grid": [1, 1]}}, "tiles"),  # the old layout: moved to lenses.tiles
    ],
)
def test_cross_key_problems_fail_at_load_naming_the_key(change, key, tmp_path):
    """The mistakes that used to surface hours into a run (a catalogue band that is not
    simulated, an S/N band that is not, a transient model on lens stamps, a split with no
    systems, tiles that cut cutouts) fail at load time, in Snakemake's first second."""
    config = shrink(yaml.safe_load((ROOT / "config.yaml").read_text()), tmp_path / "results")
    for section, value in change.items():
        if isinstance(value, dict):
            config[section] = {**config.get(section, {}), **value}
        else:
            config[section] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--configfile", str(path), cwd=tmp_path)
    assert result.returncode != 0
    assert f"config key '{key}'" in result.stdout + result.stderr


def test_a_config_file_is_not_merged_into_the_default(tmp_path):
    """--configfile is the whole config: a kinds map of two kinds gets exactly those two,
    not the default config.yaml's six (keys left out take the schema's defaults)."""
    import json

    results = tmp_path / "results"
    path = tmp_path / "two.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "results": str(results),
                "simulate": {"n": 100},
                "lenses": {"kinds": {"lens": 1, "no_source": 1}},
            }
        )
    )
    target = str(results / "configs" / "simulate.json")
    result = snakemake(target, "--cores", "1", "--configfile", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    written = json.loads(Path(target).read_text())
    assert written["lenses"]["kinds"] == {"lens": 1, "no_source": 1}
    assert written["simulate"]["shard_size"] == 1000  # the schema's default, not config.yaml's
