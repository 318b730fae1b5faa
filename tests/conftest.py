"""Shared fixtures and the lenstronomy reference renderer used by the physics tests."""

from __future__ import annotations

import numpy as np
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
    """Render system ``i`` in ``band`` with lenstronomy's ImageModel (the independent reference).

    SIE + SHEAR mass, SERSIC_ELLIPSE deflector light and source, Gaussian PSF (5 sigma),
    ``supersampling`` sub-pixels, amplitudes from magnitudes through lenstronomy's own
    ``magnitude2cps`` and ``total_flux``.
    """
    from lenstronomy.Data.imaging_data import ImageData
    from lenstronomy.Data.psf import PSF
    from lenstronomy.ImSim.image_model import ImageModel
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LightModel.light_model import LightModel
    from lenstronomy.Util import data_util

    pix = band.pixel_scale
    data = ImageData(
        image_data=np.zeros((stamp, stamp)),
        ra_at_xy_0=-(stamp - 1) / 2 * pix,
        dec_at_xy_0=-(stamp - 1) / 2 * pix,
        transform_pix2angle=np.diag([pix, pix]),
    )
    psf = PSF(psf_type="GAUSSIAN", fwhm=band.seeing, truncation=5, pixel_size=pix)
    light = LightModel(["SERSIC_ELLIPSE"])
    model = ImageModel(
        data,
        psf,
        LensModel(["SIE", "SHEAR"]),
        light,
        light,
        kwargs_numerics={"supersampling_factor": supersampling},
    )

    def g(key):
        return float(params[key][i])

    def sersic(prefix):
        kw = dict(
            R_sersic=g(f"{prefix}_R_sersic"),
            n_sersic=g(f"{prefix}_n_sersic"),
            e1=g(f"{prefix}_e1"),
            e2=g(f"{prefix}_e2"),
            center_x=g(f"{prefix}_center_x"),
            center_y=g(f"{prefix}_center_y"),
        )
        cps = data_util.magnitude2cps(g(f"{prefix}_mag_{band.name}"), band.zero_point)
        kw["amp"] = cps / light.total_flux([dict(kw, amp=1.0)])[0]
        return [kw]

    kwargs_lens = [
        dict(
            theta_E=g("theta_E"),
            e1=g("e1"),
            e2=g("e2"),
            center_x=g("center_x"),
            center_y=g("center_y"),
        ),
        dict(gamma1=g("gamma1"), gamma2=g("gamma2")),
    ]
    return model.image(kwargs_lens, sersic("source"), sersic("lens"))
