"""Config validation: defaults, and one-line errors naming the key."""

import pytest

from skyscan.cases.lenses.sim.population import Population
from skyscan.config import ConfigError, load_config, validate_config


def test_defaults_are_filled():
    config = validate_config({})
    assert config["survey"] == "lsst" and config["bands"] == ["g", "r", "i"]
    sim = config["simulate"]
    assert sim["supersampling"] == 3 and sim["stamp_size"] == 45
    assert sim["priors"]["theta_E"] == {"dist": "uniform", "low": 0.5, "high": 3.0}
    assert sim["kinds"]["lens"] == 0.5


def test_repository_config_is_valid():
    from pathlib import Path

    config = load_config(Path(__file__).parents[1] / "config.yaml")
    assert config["simulate"]["n"] >= 1000


def test_partial_override_keeps_other_defaults():
    config = validate_config(
        {
            "simulate": {
                "n": 100,
                "priors": {"theta_E": {"dist": "uniform", "low": 1.0, "high": 2.0}},
            }
        }
    )
    assert config["simulate"]["n"] == 100
    assert config["simulate"]["priors"]["theta_E"]["low"] == 1.0
    assert config["simulate"]["priors"]["lens_q"]["dist"] == "normal"


@pytest.mark.parametrize(
    "config, message",
    [
        ({"simulate": {"nn": 5}}, "unknown config key 'simulate.nn'"),
        ({"colour": 1}, "unknown config key 'colour'"),
        ({"simulate": {"n": "many"}}, "config key 'simulate.n': expected integer, got 'many'"),
        ({"simulate": {"n": 0}}, "config key 'simulate.n'"),
        ({"simulate": {"supersampling": 2.5}}, "config key 'simulate.supersampling'"),
        ({"simulate": {"exposures": "weekly"}}, "config key 'simulate.exposures'"),
        (
            {"simulate": {"priors": {"theta_E": {"dist": "gamma"}}}},
            "config key 'simulate.priors.theta_E.dist': 'gamma' is not one of",
        ),
        (
            {"simulate": {"priors": {"thetaE": {"dist": "constant", "value": 1}}}},
            "unknown config key 'simulate.priors.thetaE'",
        ),
        ({"simulate": {"kinds": {"lenses": 1}}}, "unknown config key 'simulate.kinds.lenses'"),
        ({"bands": "gri"}, "config key 'bands': expected array"),
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
            "config key 'simulate.priors.theta_E': low (3.0) must be below high (0.5)",
        ),
        (
            {"lens_q": {"dist": "normal", "mean": 0.7}},
            "config key 'simulate.priors.lens_q': dist normal needs 'sd'",
        ),
        (
            {"lens_q": {"dist": "uniform", "low": 0.2, "high": 0.9, "sd": 1}},
            "unknown config key 'simulate.priors.lens_q.sd' for dist uniform",
        ),
        (
            {"source_R_sersic": {"dist": "lognormal", "median": -1.0, "sigma": 0.5}},
            "'simulate.priors.source_R_sersic.median' must be > 0",
        ),
        (
            {"lens_colors": {"g-r": {"dist": "constant", "value": 1.0}}},
            "no colour chain connects band(s) g, r to the reference band 'i'",
        ),
    ],
)
def test_prior_errors_name_the_key(priors, message):
    config = validate_config({"simulate": {"priors": priors}})
    with pytest.raises(ConfigError) as err:
        Population(config["simulate"], config["bands"])
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
