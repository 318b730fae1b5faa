"""Config validation: defaults, and one-line errors naming the key."""

import pytest

from skyscan.cases.lenses.sim.population import Population
from skyscan.config import ConfigError, load_config, validate_config


def test_defaults_are_filled():
    config = validate_config({})
    lens = config["lenses"]  # the default case's own section
    assert lens["survey"] == "lsst" and lens["bands"] == ["g", "r", "i"]
    assert lens["supersampling"] == 3 and lens["stamp_size"] == 45
    assert lens["priors"]["theta_E"] == {"dist": "uniform", "low": 0.5, "high": 3.0}
    assert lens["kinds"]["lens"] == 0.5
    assert lens["snr_band"] == "g" and lens["tiles"]["grid"] == [2, 2]
    assert config["simulate"]["n"] == 4000 and "transients" not in config


def test_repository_config_is_valid():
    from pathlib import Path

    config = load_config(Path(__file__).parents[1] / "config.yaml")
    assert config["simulate"]["n"] >= 1000


def test_partial_override_keeps_other_defaults():
    config = validate_config(
        {
            "simulate": {"n": 100},
            "lenses": {"priors": {"theta_E": {"dist": "uniform", "low": 1.0, "high": 2.0}}},
        }
    )
    assert config["simulate"]["n"] == 100
    assert config["lenses"]["priors"]["theta_E"]["low"] == 1.0
    assert config["lenses"]["priors"]["lens_q"]["dist"] == "normal"


@pytest.mark.parametrize(
    "config, message",
    [
        ({"simulate": {"nn": 5}}, "unknown config key 'simulate.nn'"),
        ({"colour": 1}, "unknown config key 'colour'"),
        ({"simulate": {"n": "many"}}, "config key 'simulate.n': expected integer, got 'many'"),
        ({"simulate": {"n": 0}}, "config key 'simulate.n'"),
        ({"lenses": {"supersampling": 2.5}}, "config key 'lenses.supersampling'"),
        ({"lenses": {"exposures": "weekly"}}, "config key 'lenses.exposures'"),
        (
            {"lenses": {"priors": {"theta_E": {"dist": "gamma"}}}},
            "config key 'lenses.priors.theta_E.dist': 'gamma' is not one of",
        ),
        (
            {"lenses": {"priors": {"thetaE": {"dist": "constant", "value": 1}}}},
            "unknown config key 'lenses.priors.thetaE'",
        ),
        ({"lenses": {"kinds": {"lenses": 1}}}, "unknown config key 'lenses.kinds.lenses'"),
        ({"lenses": {"bands": "gri"}}, "config key 'lenses.bands': expected array"),
        ({"case": "transients", "transients": {"setup": "lsst"}}, "'transients.setup'"),
    ],
)
def test_schema_errors_name_the_key(config, message):
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "priors, message",
    [
        (
            {"theta_E": {"dist": "uniform", "low": 3.0, "high": 0.5}},
            "config key 'lenses.priors.theta_E': low (3.0) must be below high (0.5)",
        ),
        (
            {"lens_q": {"dist": "normal", "mean": 0.7}},
            "config key 'lenses.priors.lens_q': dist normal needs 'sd'",
        ),
        (
            {"lens_q": {"dist": "uniform", "low": 0.2, "high": 0.9, "sd": 1}},
            "unknown config key 'lenses.priors.lens_q.sd' for dist uniform",
        ),
        (
            {"source_R_sersic": {"dist": "lognormal", "median": -1.0, "sigma": 0.5}},
            "'lenses.priors.source_R_sersic.median' must be > 0",
        ),
        (
            {"lens_colors": {"g-r": {"dist": "constant", "value": 1.0}}},
            "no colour chain connects band(s) g, r to the reference band 'i'",
        ),
    ],
)
def test_prior_errors_name_the_key(priors, message):
    config = validate_config({"lenses": {"priors": priors}})
    with pytest.raises(ConfigError) as err:
        Population(config["lenses"], config["lenses"]["bands"])
    assert message in str(err.value)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("simulate: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_integers_must_be_ints():
    """JSON Schema counts 1.0 as an integer; here a count given as 1.0 is refused by name."""
    with pytest.raises(ConfigError, match=r"'search\.workers': expected integer, got 1\.0"):
        load_config(None, {"search": {"workers": 1.0}})
    with pytest.raises(ConfigError, match=r"'search\.workers': expected integer, got True"):
        load_config(None, {"search": {"workers": True}})
    assert load_config(None, {"search": {"workers": 3}})["search"]["workers"] == 3


@pytest.mark.parametrize(
    "old, value, new",
    [
        ("survey", "des", "lenses.survey"),
        ("bands", ["g"], "lenses.bands"),
        ("surveys", {}, "lenses.surveys"),
        ("simulate.priors", {}, "lenses.priors"),
        ("simulate.kinds", {"lens": 1}, "lenses.kinds"),
        ("simulate.neighbours", {"field": 0}, "lenses.neighbours"),
        ("simulate.supersampling", 3, "lenses.supersampling"),
        ("simulate.stamp_size", 45, "lenses.stamp_size"),
        ("simulate.exposures", "single", "lenses.exposures"),
        ("simulate.reference_band", "g", "lenses.reference_band"),
        ("evaluate.snr_band", "g", "lenses.snr_band"),
        ("evaluate.theta_E_bins", [0.5, 3.0], "lenses.theta_E_bins"),
        ("evaluate.snr_bins", [0, 20], "lenses.snr_bins"),
        ("tiles", {"grid": [1, 1]}, "lenses.tiles"),
    ],
)
def test_old_key_names_give_their_new_place(old, value, new):
    """A config of the layout before the case sections names the new place in one line."""
    section, _, key = old.partition(".")
    config = {section: {key: value}} if key else {section: value}
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    assert str(err.value) == f"config key {old!r} moved to {new!r}"
    assert err.value.key == old
    # a transient config gets the same line, saying whose key it is
    with pytest.raises(ConfigError, match=f"moved to '{new}' \\(a setting of case 'lenses'"):
        validate_config({"case": "transients", **config})


def test_another_cases_section_is_refused_naming_it():
    """A config holds its own case's section only: nothing of another case slips in."""
    with pytest.raises(ConfigError) as err:
        validate_config({"case": "transients", "lenses": {"bands": ["g"]}})
    assert "config key 'lenses': the settings of case 'lenses'" in str(err.value)
    assert "this config's case is 'transients'" in str(err.value)
    with pytest.raises(ConfigError, match="config key 'transients': the settings of case"):
        load_config(None, {"transients": {"setup": "hits"}})  # case: lenses by default
    # and none is filled in: a transient config carries no lens key, nor the other way round
    transient = validate_config({"case": "transients", "train": {"model": "vgg6"}})
    assert "lenses" not in transient and transient["transients"]["setup"] == "ztf"
    assert "transients" not in validate_config({})


@pytest.mark.parametrize(
    "config, key",
    [
        ({"lenses": {"kinds": {"lens": 0}}}, "lenses.kinds"),
        ({"lenses": {"bands": ["g", "g"]}}, "lenses.bands"),
        ({"lenses": {"bands": ["r", "i"], "snr_band": "g"}}, "lenses.snr_band"),
        ({"lenses": {"theta_E_bins": [0.5, 2.0, 1.0]}}, "lenses.theta_E_bins"),
        ({"lenses": {"snr_bins": [0, 20, 20]}}, "lenses.snr_bins"),
        ({"lenses": {"bands": ["g"], "tiles": {}}}, "lenses.tiles.catalog.band"),
        ({"lenses": {"tiles": {"overlap": 300, "size": 256}}}, "lenses.tiles.overlap"),
        (
            {"lenses": {"stamp_size": 45, "tiles": {"overlap": 20, "grid": [2, 1]}}},
            "lenses.tiles.overlap",
        ),
        ({"case": "transients", "transients": {"kinds": {"hostless": 0}}}, "transients.kinds"),
        ({"case": "transients", "transients": {"mag_min": 20.0}}, "transients.mag_min"),
        (
            {"case": "transients", "transients": {"setup": "ztf", "mag_min": 19}},
            "transients.mag_min",
        ),
        ({"case": "transients", "transients": {"mag_bins": [18, 17]}}, "transients.mag_bins"),
        ({"case": "transients", "transients": {"snr_bins": [0, 5, 5]}}, "transients.snr_bins"),
        ({"case": "transients", "transients": {"mag_mode": 21.5}}, "transients.mag_mode"),
        (
            {"case": "transients", "transients": {"mag_min": 14, "mag_mode": 13.9}},
            "transients.mag_mode",
        ),
        ({"case": "transients", "transients": {"field_stars": -1}}, "transients.field_stars"),
        ({"case": "transients", "dataset": {"detectable": {}}}, "dataset.detectable"),
    ],
)
def test_semantic_checks_run_at_load(config, key):
    """Every check between keys runs when the config is loaded (the schema, then
    check_cross_keys and the case's check_config), not when a stage reads the key."""
    with pytest.raises(ConfigError) as err:
        load_config(None, config)
    assert f"config key '{key}'" in str(err.value) and "\n" not in str(err.value)
    assert err.value.key == key


def test_a_faint_enough_hits_set_up_passes():
    """mag_min is judged against the set-up's own limit (HiTS is 4 mag deeper than ZTF)."""
    config = load_config(
        None, {"case": "transients", "transients": {"setup": "hits", "mag_min": 21}}
    )
    assert config["transients"]["mag_min"] == 21


SMALL_SPLITS = {"train": 0.8, "val": 0.1, "test": 0.1}


def test_a_verb_checks_only_the_keys_it_reads():
    """`skyscan simulate --n 30` on config.yaml: 30 systems are too few for its dataset splits,
    which is the dataset stage's business, not the simulation's."""
    from pathlib import Path

    path = Path(__file__).parents[1] / "config.yaml"
    with pytest.raises(ConfigError, match="config key 'dataset.splits'.*simulate.n \\(30\\)"):
        load_config(path, {"simulate": {"n": 30}})  # every key given is checked
    with pytest.raises(ConfigError, match="config key 'simulate.n'"):
        load_config(None, {"simulate": {"n": 30}, "dataset": {"splits": SMALL_SPLITS}})
    assert load_config(path, {"simulate": {"n": 30}}, stage="simulate")["simulate"]["n"] == 30
    # the evaluation's S/N band against the simulated bands: checked for a whole config (the
    # workflow's) and where no stage is named; the simulation reads no S/N band, and the
    # evaluation judges it against its dataset's bands
    bad = {"lenses": {"bands": ["r", "i"], "snr_band": "g", "tiles": {"catalog": {"band": "i"}}}}
    with pytest.raises(ConfigError, match="'lenses.snr_band'"):
        load_config(None, bad)
    with pytest.raises(ConfigError, match="'lenses.snr_band'"):
        validate_config(bad)
    assert load_config(None, bad, stage="simulate")["lenses"]["bands"] == ["r", "i"]
    assert load_config(None, bad, stage="evaluate")["lenses"]["snr_band"] == "g"
    # the schema still checks every key, whatever the stage
    with pytest.raises(ConfigError, match="unknown config key 'train.epoch'"):
        load_config(None, {"train": {"epoch": 3}}, stage="simulate")


def test_stage_parts_hold_the_case_part_they_read():
    """The workflow hands each stage the keys it reads: the simulation gets the lens set-up
    and population but not the strata, the evaluation the strata only."""
    from skyscan.config import stage_config

    config = validate_config({})
    simulate = stage_config(config, "simulate")
    assert set(simulate) == {"seed", "case", "simulate", "lenses"}
    assert {"priors", "bands", "stamp_size"} <= set(simulate["lenses"])
    assert not {"snr_band", "tiles"} & set(simulate["lenses"])
    evaluate = stage_config(config, "evaluate")
    assert set(evaluate["lenses"]) == {"snr_band", "theta_E_bins", "snr_bins"}
    assert set(stage_config(config, "train")) == {"seed", "train"}
    # each part loads alone, with its case
    for stage in ("simulate", "evaluate", "tiles", "dataset"):
        assert validate_config(stage_config(config, stage), whole=False)["case"] == "lenses"
    transient = validate_config({"case": "transients", "train": {"model": "vgg6"}})
    assert set(stage_config(transient, "simulate")["transients"]) == {
        "setup",
        "kinds",
        "mag_min",
        "nuclear_fraction",
        "variable_delta_max",
        "field_stars",
        "mag_mode",
    }
    assert "transients" not in stage_config(transient, "dataset")


@pytest.mark.parametrize(
    "lenses, key, reason",
    [
        ({"survey": "hsc"}, "lenses.survey", "unknown survey 'hsc'"),
        ({"survey": "DES"}, "lenses.survey", "unknown survey 'DES'"),
        ({"survey": "des", "bands": ["g", "r", "i", "y"]}, "lenses.bands", "unknown band 'y'"),
    ],
)
def test_unknown_survey_or_band_fails_at_load(lenses, key, reason):
    """A survey or band the simulator lacks fails when the config is read (so in
    `snakemake -n`), naming the key, not in rule simulate with the reason in a log."""
    with pytest.raises(ConfigError, match=f"config key '{key}': {reason}"):
        load_config(None, {"lenses": lenses})
    assert load_config(None, {"lenses": {"survey": "des", "bands": ["g", "r", "i", "Y"]}})


def test_splits_are_fractions_or_counts_that_sum_to_n():
    """dataset.splits hold one thing: the share of the simulated systems, as fractions that
    sum to 1 or counts that sum to simulate.n; counts beyond n are refused, not rescaled."""
    counts = {"train": 600, "val": 300, "test": 300}
    with pytest.raises(ConfigError, match=r"'dataset.splits'.*sum to 1200.*simulate.n \(400\)"):
        load_config(None, {"simulate": {"n": 400}, "dataset": {"splits": counts}})
    ok = {"train": 200, "val": 100, "test": 100}
    assert load_config(None, {"simulate": {"n": 400}, "dataset": {"splits": ok}})
    fractions = {"train": 0.5, "val": 0.25, "test": 0.25}
    assert load_config(None, {"simulate": {"n": 400}, "dataset": {"splits": fractions}})
    # a verb reading only the simulation does not judge the splits
    assert load_config(
        None, {"simulate": {"n": 400}, "dataset": {"splits": counts}}, stage="simulate"
    )
