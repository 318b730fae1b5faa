"""Lensed sources with star-forming clumps (``lenses.source_model: clumpy``)."""

import numpy as np
import pytest
import torch
from conftest import NO_NEIGHBOURS, lenstronomy_image, lsst_bands

from skyscan.cases.lenses.sim.population import Population
from skyscan.cases.lenses.sim.profiles import SOURCE_CLUMPS, clumps_total_flux, sersic_total_flux
from skyscan.cases.lenses.sim.render import Observation, render
from skyscan.config import load_config
from skyscan.core.seeding import block_rng


def draw_clumpy(n, seed=3, **priors):
    lens = {
        "kinds": {
            "lens": 1.0,
            "no_source": 0.0,
            "companion": 0.0,
            "ring": 0.0,
            "spiral": 0.0,
            "star_blend": 0.0,
        },  # fmt: skip
        "neighbours": NO_NEIGHBOURS,
        "source_model": "clumpy",
        "priors": priors,
    }
    config = load_config(None, {"lenses": lens})
    pop = Population(config["lenses"], ["g", "r", "i"], pixel_scale=0.2)
    return pop.draw(block_rng(seed, 0)[0], n)


@pytest.fixture(scope="module")
def clumpy():
    params = draw_clumpy(20, source_clumpy={"dist": "constant", "value": 1.0})
    assert (params["source_clumps"] >= 1).all()
    return params


def _amps(params):
    return np.stack([params[f"source_clump{j}_amp"] for j in range(1, SOURCE_CLUMPS + 1)], 1)


def _sigmas(params):
    return np.stack([params[f"source_clump{j}_sigma"] for j in range(1, SOURCE_CLUMPS + 1)], 1)


def test_clumpy_lenses_match_lenstronomy(clumpy):
    """20 clumpy lenses (Sersic disc + 1-6 Gaussian clumps through SIE + shear, Gaussian PSF,
    3x super-sampling), g r i: relative L2 difference from lenstronomy's SERSIC_ELLIPSE +
    GAUSSIAN source below 1e-7 in float64, the smooth source's tolerance in test_render."""
    bands = lsst_bands()
    obs = Observation(bands, 45, 3, "coadd")
    ours = render(clumpy, obs, None, dtype=torch.float64).image
    ref = np.array([[lenstronomy_image(clumpy, i, b) for b in bands] for i in range(20)])
    diff = np.linalg.norm((ours - ref).reshape(60, -1), axis=1)
    err = diff / np.linalg.norm(ref.reshape(60, -1), axis=1)
    assert err.max() < 1e-7, err.max()


def test_clumps_carry_the_drawn_share_of_the_light(clumpy):
    """The clumps hold source_clump_flux of the source's light, the magnitude is of the whole
    source, and unused slots are empty."""
    host = sersic_total_flux(clumpy["source_R_sersic"], clumpy["source_n_sersic"])
    clumps = clumps_total_flux(_sigmas(clumpy), _amps(clumpy))
    np.testing.assert_allclose(clumps / (host + clumps), clumpy["source_clump_fraction"], 1e-12)
    used = (_amps(clumpy) > 0).sum(axis=1)
    np.testing.assert_array_equal(used, clumpy["source_clumps"])
    band = lsst_bands(("g",))[0]
    obs = Observation([band], 45, 3, "coadd")
    res = render(clumpy, obs, None, dtype=torch.float64)
    # all of the source's light is in the stamp for these small sources: magnification x
    # the source's count rate is the lensed light
    assert np.all(np.isfinite(res.magnification)) and np.all(res.magnification > 0)


def test_clumpy_share_and_counts_follow_the_priors():
    params = draw_clumpy(2000)
    clumpy = params["source_clumps"] > 0
    assert abs(clumpy.mean() - 0.6) < 0.04  # Guo et al. 2015's clumpy share
    counts = params["source_clumps"][clumpy]
    assert counts.min() >= 1 and counts.max() <= SOURCE_CLUMPS
    fraction = params["source_clump_fraction"][clumpy]
    assert fraction.min() >= 0.1 and fraction.max() <= 0.4
    assert (params["source_clump_fraction"][~clumpy] == 0).all()


def test_smooth_sources_draw_no_clumps():
    config = load_config(None, {"lenses": {"neighbours": NO_NEIGHBOURS}})
    params = Population(config["lenses"], ["g"], pixel_scale=0.2).draw(block_rng(1, 0)[0], 10)
    assert not any(k.startswith("source_clump") for k in params)
