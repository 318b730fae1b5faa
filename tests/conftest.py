"""Shared fixtures and the lenstronomy reference renderer used by the physics tests."""

from __future__ import annotations

import pytest
import torch

from skyscan.config import load_config
from skyscan.sim.population import Population, block_rng
from skyscan.sim.survey import get_bands, get_survey

ONLY_LENSES = {"lens": 1, "no_source": 0, "companion": 0, "ring": 0, "spiral": 0, "star_blend": 0}


@pytest.fixture(autouse=True)
def _single_thread():
    torch.set_num_threads(1)


def draw_params(n: int, seed: int = 1, kinds=None, bands=("g", "r", "i"), priors=None):
    """Draw ``n`` systems from the default population (optionally only some kinds)."""
    sim = {"kinds": kinds or ONLY_LENSES}
    if priors:
        sim["priors"] = priors
    config = load_config(None, {"simulate": sim, "bands": list(bands)})
    pop = Population(config["simulate"], list(bands))
    params_rng, _ = block_rng(seed, 0)
    return pop.draw(params_rng, n)


def lsst_bands(names=("g", "r", "i")):
    return get_bands(get_survey("lsst"), names)


def lenstronomy_image(params: dict, i: int, band, stamp: int = 45, supersampling: int = 3):
    """Render system ``i`` of drawn ``params`` in ``band`` with lenstronomy (the reference)."""
    from skyscan.sim.lenstronomy_interop import lenstronomy_image as render_row

    row = {k: v[i] for k, v in params.items()}
    return render_row(row, band, stamp, supersampling)
