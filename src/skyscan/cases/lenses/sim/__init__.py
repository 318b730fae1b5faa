"""Strong-lens and galaxy simulation: profiles, PSF, surveys, populations, the field, batched
renderer.

The names below are the simulator's public API, what other packages (survey tiles, later
science cases) use; the submodules are its internals (``pyproject.toml`` holds the
import-linter contract that keeps ``skyscan.tiles`` to this API).
"""

from skyscan.cases.lenses.sim.detectability import DETECTABLE_DEFAULTS, best_band_snr, detectable
from skyscan.cases.lenses.sim.field import field_galaxies, field_stars, magnitude_counts
from skyscan.cases.lenses.sim.population import BLOCK_SIZE, KINDS, Population, block_rng
from skyscan.cases.lenses.sim.profiles import phi_q_to_ellipticity, sersic_b_n, sersic_total_flux
from skyscan.cases.lenses.sim.psf import fwhm_to_sigma, psf_kernel_radius
from skyscan.cases.lenses.sim.render import Observation, add_noise, render
from skyscan.cases.lenses.sim.survey import Band, Survey, get_bands, get_survey

__all__ = [
    "BLOCK_SIZE",
    "DETECTABLE_DEFAULTS",
    "KINDS",
    "Band",
    "Observation",
    "Population",
    "Survey",
    "add_noise",
    "best_band_snr",
    "block_rng",
    "detectable",
    "field_galaxies",
    "field_stars",
    "fwhm_to_sigma",
    "get_bands",
    "get_survey",
    "magnitude_counts",
    "phi_q_to_ellipticity",
    "psf_kernel_radius",
    "render",
    "sersic_b_n",
    "sersic_total_flux",
]
