"""The skyscan command: --help for every verb, a real run, and one-line errors."""

import subprocess
import sys

import pytest

from skyscan.cli import main

#: The verbs the skyscan command offers, written out here (not read from skyscan.cli.COMMANDS,
#: which generates the help): a verb dropped from or added to the command fails the tests.
EXPECTED_VERBS = {
    "simulate",
    "preview",
    "dataset",
    "train",
    "evaluate",
    "evaluate-params",
    "tiles",
    "catalog",
    "search",
    "skymaps",
    "grade",
    "inject",
    "make-alerts",
    "score-alerts",
}


def run_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "skyscan.cli", *args], capture_output=True, text=True, cwd=cwd
    )


def test_top_level_help_lists_every_verb():
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    verbs_section = result.stdout.split("verbs:\n", 1)[1].split("\n\n", 1)[0]
    listed = {line.split()[0] for line in verbs_section.splitlines() if line.strip()}
    assert listed == EXPECTED_VERBS


def test_top_level_version(capsys):
    import skyscan

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"skyscan {skyscan.__version__}"


@pytest.mark.parametrize("verb", sorted(EXPECTED_VERBS))
def test_every_verb_has_help(verb):
    result = run_cli(verb, "--help")
    assert result.returncode == 0, result.stderr
    assert f"skyscan {verb}" in result.stdout


def test_unknown_verb(capsys):
    assert main(["simulat"]) == 2
    assert "unknown verb 'simulat'" in capsys.readouterr().err


def test_simulate_and_preview(tmp_path):
    out = tmp_path / "sims"
    result = run_cli(
        "simulate", "--n", "60", "--shard-size", "30", "--seed", "3", "--out", str(out), "--quiet"
    )
    assert result.returncode == 0, result.stderr
    shards = sorted(out.glob("shard-*.parquet"))
    assert len(shards) == 2
    png = tmp_path / "preview.png"
    result = run_cli("preview", *map(str, shards), "--out", str(png), "--per-kind", "2")
    assert result.returncode == 0, result.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "config_text, message",
    [
        ("simulate:\n  n: 10\n  supersample: 3\n", "unknown config key 'simulate.supersample'"),
        ("bands: [g, r, q]\n", "unknown band 'q' for survey 'lsst'"),
        ("survey: euclid\n", "unknown survey 'euclid' (allowed: des, lsst)"),
        ("surveys: {lsst: {bands: {g: {seeing: 0}}}}\n", "seeing must be a positive number"),
        (
            "simulate:\n  priors:\n    theta_E: {dist: uniform, low: 2, high: 1}\n",
            "'simulate.priors.theta_E': low (2) must be below high (1)",
        ),
    ],
)
def test_bad_config_is_one_line_and_writes_nothing(tmp_path, config_text, message):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(config_text)
    out = tmp_path / "sims"
    result = run_cli("simulate", "--config", str(cfg), "--out", str(out), "--quiet")
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert not out.exists() or not any(out.iterdir())


def test_preview_of_a_corrupt_shard_names_the_file(tmp_path):
    bad = tmp_path / "shard-00000.parquet"
    bad.write_bytes(b"PAR1 not really")
    result = run_cli("preview", str(bad), "--out", str(tmp_path / "p.png"))
    assert result.returncode == 1
    assert str(bad) in result.stderr
