"""The transient real/bogus case's own pieces (its run of `rule all` at a tiny size is in
tests/test_workflow.py, with every shipped config)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from skyscan.core.case import get_case

ROOT = Path(__file__).parents[1]
SNAKEMAKE = shutil.which("snakemake") or str(Path(sys.executable).parent / "snakemake")


def test_transient_case_is_registered_with_its_section():
    from skyscan.cases.transients import simulate
    from skyscan.config import load_config

    case = get_case("transients")
    # written out here: the real (label 1) and bogus (label 0) kinds, in the simulator's order
    real = ("host_sn", "hostless", "variable_star")
    bogus = ("dipole", "cosmic_ray", "bad_pixel", "bright_star", "psf_mismatch", "edge")
    bogus += ("core_dipole", "ghost", "spike")
    assert case.positive_kinds == real and case.negative_kinds == bogus
    assert case.kinds == real + bogus
    assert case.label(real + bogus).tolist() == [1, 1, 1] + [0] * 9
    assert tuple(simulate.simulation_settings({})["kinds"]) == real + bogus  # what it draws
    assert case.stages == ("alerts",)
    config = load_config(ROOT / "config" / "transients-ztf.yaml")
    assert config["case"] == "transients" and config["transients"]["setup"] == "ztf"
    assert config["transients"]["alerts"]["n"] == 300


def test_unsorted_bins_name_the_key():
    """Checked when the config is loaded, not when the evaluation bins the completeness."""
    from skyscan.config import load_config
    from skyscan.core.errors import ConfigError

    config = {"case": "transients", "transients": {"mag_bins": [18, 17]}}
    with pytest.raises(ConfigError, match="'transients.mag_bins': bin edges must increase"):
        load_config(None, config, stage="evaluate")


def test_triplet_picture_puts_the_three_channels_side_by_side():
    stamp = np.random.default_rng(0).normal(0, 1, (3, 21, 21)).astype(np.float32)
    stamp[2, 10, 10] = 50.0
    picture = get_case("transients").picture(stamp, ["science", "reference", "difference"])
    assert picture.shape == (21, 3 * 21 + 2 * 2, 3) and picture.dtype == np.uint8
    assert picture[10, 2 * 23 + 10, 0] == 255  # the bright difference pixel is white


# config/transients-ztf.yaml runs `rule all` at a tiny size in tests/test_workflow.py
# (test_every_shipped_config_runs_rule_all_at_tiny_size), with this case's own checks.
