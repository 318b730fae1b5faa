"""The skyscan command: --help for every verb, a real run, and one-line errors."""

import re
import subprocess
import sys

import pytest

from skyscan.cli import main

#: The verbs the skyscan command offers, shared and the cases', written out here (not read
#: from skyscan.cli, which generates the help): a verb dropped or added fails the tests.
EXPECTED_VERBS = {
    # shared
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
    # the lens case's
    "make-tiles",
    "inject",
    # the transient case's
    "make-alerts",
    "score-alerts",
    "check-real-alerts",
}


def run_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "skyscan.cli", *args], capture_output=True, text=True, cwd=cwd
    )


def test_top_level_help_lists_every_verb():
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    # each verb is an indented "  verb  summary" line, under whichever heading
    listed = re.findall(r"^  (\S+)  ", result.stdout, flags=re.MULTILINE)
    assert sorted(listed) == sorted(EXPECTED_VERBS)  # each once, none missing, none extra


def test_top_level_version(capsys):
    import skyscan

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"skyscan {skyscan.__version__}"


@pytest.mark.parametrize("verb", sorted(EXPECTED_VERBS))
def test_every_verb_has_help(verb):
    result = run_cli(verb, "--help")
    assert result.returncode == 0, result.stderr
    assert f"skyscan {verb}" in result.stdout


#: The sections of ``skyscan --help`` in order: the shared verbs, then each case's own verbs
#: under its name (written out here, like EXPECTED_VERBS).
EXPECTED_SECTIONS = [
    (
        "shared verbs",
        [
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
        ],
    ),
    ("lenses", ["make-tiles", "inject"]),
    ("transients", ["make-alerts", "score-alerts", "check-real-alerts"]),
]


def help_sections(text: str) -> list[tuple[str, list[str]]]:
    """(heading before its colon, verbs) of each block of ``skyscan --help`` that lists verbs."""
    sections = []
    for block in text.strip().split("\n\n"):
        heading, *rest = block.splitlines()
        verbs = [line.split()[0] for line in rest if line.startswith("  ")]
        if verbs:
            sections.append((heading.split(":", 1)[0], verbs))
    return sections


def test_top_level_help_lists_shared_verbs_then_each_case_under_its_name(capsys):
    assert sorted(v for _, verbs in EXPECTED_SECTIONS for v in verbs) == sorted(EXPECTED_VERBS)
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert help_sections(out) == EXPECTED_SECTIONS
    assert "\nlenses: galaxy-galaxy strong lenses" in out  # a case's heading has its title
    shared = out.split("shared verbs:\n", 1)[1].split("\n\n", 1)[0]
    assert "lens" not in shared  # the shared verbs are described for every case


@pytest.mark.parametrize("verb", sorted(EXPECTED_VERBS))
def test_every_verb_has_version(verb, capsys):
    import skyscan

    with pytest.raises(SystemExit) as exit_:
        main([verb, "--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"skyscan {verb} {skyscan.__version__}"


@pytest.mark.parametrize("verb", ["simulate", "preview", "dataset", "train", "evaluate"])
def test_generic_verbs_do_not_speak_of_lenses_only(verb, capsys):
    with pytest.raises(SystemExit):
        main([verb, "--help"])
    text = capsys.readouterr().out.lower()
    # a lens may appear as an example ("e.g. ... for lenses"), never as what the verb is about
    assert re.sub(r"e\.g\.[^)]*\)|\(e\.g\.[^)]*", "", text).count("lens") == 0, text


@pytest.mark.parametrize(
    "verb, sub", [("catalog", "import"), ("tiles", "index"), ("tiles", "resample")]
)
def test_a_verb_with_sub_commands_lists_them(verb, sub, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([verb, "--help"])
    assert exit_.value.code == 0
    assert re.search(rf"^\s+{sub}\s+\S", capsys.readouterr().out, flags=re.MULTILINE)
    with pytest.raises(SystemExit) as exit_:
        main([verb, sub, "--help"])
    assert exit_.value.code == 0
    assert f"usage: skyscan {verb} {sub}" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [[], ["--out", "x"], ["nope"]])
def test_a_missing_or_unknown_sub_command_is_a_usage_error(argv, capsys):
    assert main(["catalog", *argv]) == 2
    err = capsys.readouterr().err
    assert "(allowed: import)" in err.splitlines()[-1]


@pytest.mark.parametrize(
    "verb, option", [("catalog", "import"), ("train", None), ("tiles", "index")]
)
def test_verbs_that_read_settings_take_config(verb, option, capsys):
    argv = [verb, option, "--help"] if option else [verb, "--help"]
    with pytest.raises(SystemExit):
        main(argv)
    assert "--config" in capsys.readouterr().out


def test_train_takes_architecture_and_model_is_the_old_spelling(capsys):
    from skyscan.cli import train

    args = train.parser().parse_args(["--dataset", "d", "--out", "o", "--architecture", "vgg6"])
    assert train.architecture(args) == "vgg6"
    assert capsys.readouterr().err == ""
    old = train.parser().parse_args(["--dataset", "d", "--out", "o", "--model", "vgg6"])
    assert train.architecture(old) == "vgg6"
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "use --architecture" in err
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = capsys.readouterr().out
    assert "--architecture" in help_text and "--model" not in help_text


def test_train_names_the_config_key_of_an_unknown_architecture(tmp_path, capsys):
    argv = ["train", "--dataset", str(tmp_path / "d"), "--out", str(tmp_path / "m")]
    assert main([*argv, "--architecture", "nope"]) == 2
    assert "config key 'train.model': unknown model 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


class _VerbCase:
    """A made-up science case that only brings verbs (for the registry tests)."""

    @staticmethod
    def make(name, verbs):
        from skyscan.core.case import Case

        cls = type("MadeUp", (Case,), {"name": name, "title": f"made-up {name}", "verbs": verbs})
        return cls()


def test_a_new_case_brings_its_verbs_without_editing_the_cli(monkeypatch, capsys):
    from skyscan.core import case as cases

    registry = cases.CaseRegistry(None)
    registry.register(_VerbCase.make("maps", {"score-maps": ("skyscan.cli.grade", "score")}))
    monkeypatch.setattr(cases, "default_registry", registry)
    assert main(["--help"]) == 0
    sections = help_sections(capsys.readouterr().out)
    assert sections[1:] == [("maps", ["score-maps"])]
    with pytest.raises(SystemExit):
        main(["score-maps", "--version"])  # dispatched to the case's module
    assert main(["make-alerts"]) == 2  # not a verb without the transient case
    assert "unknown verb 'make-alerts'" in capsys.readouterr().err


@pytest.mark.parametrize("taken", ["train", "inject"])
def test_a_case_verb_may_not_repeat_another(monkeypatch, capsys, taken):
    from skyscan.core import case as cases

    registry = cases.CaseRegistry()  # the real cases, plus one that repeats a verb
    registry.register(_VerbCase.make("zz", {taken: ("skyscan.cli.grade", "again")}))
    monkeypatch.setattr(cases, "default_registry", registry)
    assert main(["--help"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("skyscan: error: case 'zz': its verb") and taken in err


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
        ("lenses:\n  bands: [g, r, q]\n", "unknown band 'q' for survey 'lsst'"),
        (
            "lenses:\n  survey: euclid\n",
            "unknown survey 'euclid' (allowed: des, lenspop"
            "_des_best_epoch, lenspop_lsst_best_epoch, lsst)",
        ),
        (
            "lenses:\n  surveys: {lsst: {bands: {g: {seeing: 0}}}}\n",
            "seeing must be a positive number",
        ),
        (
            "lenses:\n  priors:\n    theta_E: {dist: uniform, low: 2, high: 1}\n",
            "'lenses.priors.theta_E': low (2) must be below high (1)",
        ),
        ("simulate:\n  priors: {}\n", "config key 'simulate.priors' moved to 'lenses.priors'"),
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


def test_no_help_text_shows_a_doubled_percent():
    """argparse formats %-signs in option help but prints descriptions as they are: a "1%%"
    written for one shows up doubled in the other."""
    import importlib

    from skyscan.cli import all_commands

    for verb, (module_name, _) in all_commands().items():
        module = importlib.import_module(module_name)
        for name in dir(module):
            if name.endswith("parser") and callable(getattr(module, name)):
                try:
                    text = getattr(module, name)().format_help()
                except TypeError:  # a helper that needs arguments, not a verb's parser
                    continue
                assert "%%" not in text, f"{verb}: {name}() help shows '%%'"


def test_position_options_have_help_and_make_alerts_names_the_config(tmp_path, capsys):
    """`catalog import --help` says what --ra/--dec/--id-column do; make-alerts on a lens
    config names the config to give."""
    with pytest.raises(SystemExit):
        main(["catalog", "import", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option, written in (("--ra-column", "'ra'"), ("--dec-column", "'dec'"), ("--id", "'id'")):
        assert re.search(rf"{option}\S* \S+ .*written as {written}", text), option
    out, truth = str(tmp_path / "a.parquet"), str(tmp_path / "t.parquet")
    assert main(["make-alerts", "--out", out, "--truth", truth]) != 0
    assert "--config config/transients-ztf.yaml" in capsys.readouterr().err
