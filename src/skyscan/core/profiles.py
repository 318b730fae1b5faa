"""Analytic light-profile and PSF-width helpers shared by the cases' simulators (numpy and
scipy only, so a case can use them without importing another case or torch).

Conventions are lenstronomy's (``R_sersic`` in arcsec, ``amp = 1`` normalisation).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

__all__ = ["fwhm_to_sigma", "sersic_b_n", "sersic_total_flux", "SERSIC_SMOOTHING"]

#: Smallest Sersic radius (arcsec) a profile is evaluated at (lenstronomy's smoothing).
SERSIC_SMOOTHING = 1e-4  # arcsec; lenstronomy's SersicUtil default


def fwhm_to_sigma(fwhm: float) -> float:
    """Gaussian sigma from the full width at half maximum."""
    return fwhm / (2 * math.sqrt(2 * math.log(2)))


def sersic_b_n(n):
    """lenstronomy's approximation ``b_n = 1.9992 n - 0.3271`` (floored at 1e-5)."""
    return np.maximum(1.9992 * np.asarray(n, dtype=np.float64) - 0.3271, 1e-5)


def sersic_total_flux(R_sersic, n_sersic):
    """Total flux of a Sersic profile with ``amp = 1`` (flux units x arcsec^2).

    ``2 pi n R^2 e^{b_n} b_n^{-2n} Gamma(2n)``, exact for lenstronomy's product-average
    ellipse, which preserves area.
    """
    n = np.asarray(n_sersic, dtype=np.float64)
    r = np.maximum(np.asarray(R_sersic, dtype=np.float64), SERSIC_SMOOTHING)
    bn = sersic_b_n(n)
    return 2 * np.pi * n * r**2 * np.exp(bn) * bn ** (-2 * n) * special.gamma(2 * n)
