"""The field: galaxies and stars seen along any line of sight, by number counts.

One set of distributions for every place the simulator puts unrelated objects on the sky: the
survey tiles' field galaxies and stars (:mod:`skyscan.cases.lenses.tiles`) and the line-of-sight
neighbours scattered over every training stamp (:meth:`.population.Population.draw`),
so that a stamp's neighbours look like the objects around a tile's candidates.

Magnitudes follow number counts ``dN/dm ~ 10^(slope m)`` in the i band; other bands follow
from fixed colour tables.  Galaxies are elliptical Sersics whose size shrinks with magnitude;
stars are points.  Densities (objects per square arcminute) are the caller's:
``lenses.tiles.densities`` and ``lenses.neighbours`` in the config, both 40 galaxies and 4 stars by
default.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from skyscan.cases.lenses.sim.profiles import phi_q_to_ellipticity

__all__ = [
    "GALAXY_MAGS",
    "STAR_MAGS",
    "magnitude_counts",
    "field_galaxies",
    "field_stars",
    "scatter",
]

#: i-band magnitude range and count slope of field galaxies and of stars.
GALAXY_MAGS = (19.0, 25.5, 0.3)
STAR_MAGS = (16.0, 24.0, 0.15)

#: Band minus i colours of a typical field galaxy (scaled by 1 + a per-galaxy tint) and of a
#: star per unit of its g - i colour.
_GALAXY_COLORS = {"u": 0.9, "g": 0.6, "r": 0.25, "i": 0.0, "z": -0.15, "y": -0.25, "Y": -0.25}
_STAR_COLORS = {"u": 1.6, "g": 1.0, "r": 0.35, "i": 0.0, "z": -0.15, "y": -0.25, "Y": -0.25}


def magnitude_counts(rng: np.random.Generator, n: int, lo: float, hi: float, slope: float):
    """Magnitudes with number counts ``dN/dm ~ 10^(slope m)`` between ``lo`` and ``hi``.

    Parameters
    ----------
    rng : numpy.random.Generator
    n : int
    lo, hi, slope : float

    Returns
    -------
    ndarray, shape (n,)
        One uniform per magnitude, by inverse transform.
    """
    u = rng.random(n)
    a, b = 10 ** (slope * lo), 10 ** (slope * hi)
    return np.log10(a + u * (b - a)) / slope


def field_galaxies(
    rng: np.random.Generator, n: int, bands: Sequence[str], x, y
) -> dict[str, np.ndarray]:
    """Field galaxies at ``(x, y)``: Sersic parameters and magnitudes.

    Parameters
    ----------
    rng : numpy.random.Generator
    n : int
    bands : sequence of str
        Band names; bands outside the colour table take the i magnitude.
    x, y : array_like, shape (n,)
        Centres, arcsec.

    Returns
    -------
    dict
        ``R_sersic`` (arcsec, ~0.5" at i = 22, smaller when fainter), ``n_sersic``, ``e1``,
        ``e2``, ``center_x``, ``center_y`` and ``mag_<band>`` (AB), lenstronomy's names
        without a component prefix.  The draws come in a fixed order, ``n`` of each.
    """
    mag_i = magnitude_counts(rng, n, *GALAXY_MAGS)
    q = np.clip(rng.normal(0.65, 0.2, n), 0.2, 1.0)
    e1, e2 = phi_q_to_ellipticity(np.pi * rng.random(n), q)
    tint = rng.normal(0, 0.25, n)
    out = {
        "R_sersic": np.clip(
            np.exp(rng.normal(np.log(0.5), 0.4, n)) * 10 ** (-0.1 * (mag_i - 22)), 0.08, 3.0
        ),
        "n_sersic": rng.uniform(0.8, 4.0, n),
        "e1": e1,
        "e2": e2,
        "center_x": np.asarray(x, np.float64),
        "center_y": np.asarray(y, np.float64),
    }
    for band in bands:
        out[f"mag_{band}"] = mag_i + _GALAXY_COLORS.get(band, 0.0) * (1 + tint)
    return out


def field_stars(
    rng: np.random.Generator, n: int, bands: Sequence[str], x, y
) -> dict[str, np.ndarray]:
    """Stars at ``(x, y)``: ``center_x``, ``center_y`` and ``mag_<band>`` (AB).

    Parameters
    ----------
    rng : numpy.random.Generator
    n : int
    bands : sequence of str
    x, y : array_like, shape (n,)
        Positions, arcsec.

    Returns
    -------
    dict
        g - i colours uniform in 0.2-2.5 (blue halo to red dwarf stars).
    """
    mag_i = magnitude_counts(rng, n, *STAR_MAGS)
    gi = rng.uniform(0.2, 2.5, n)
    out = {"center_x": np.asarray(x, np.float64), "center_y": np.asarray(y, np.float64)}
    for band in bands:
        out[f"mag_{band}"] = mag_i + _STAR_COLORS.get(band, 0.0) * gi
    return out


def scatter(
    rng: np.random.Generator, n: int, half_side: float, min_distance: float = 0.0, tries: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """Positions uniform over the square ``|x|, |y| <= half_side`` outside a central disc.

    Each position is the first of ``tries`` uniform candidates that lies at least
    ``min_distance`` from the centre: rejection sampling with a fixed number of draws, so the
    draw stays a function of the generator state.  If all ``tries`` fall inside the disc
    (probability ``(pi d^2 / 4 h^2)^tries``, 1e-11 for a 1" disc in a 9" stamp), the last is
    pushed out radially to the disc's edge.

    Parameters
    ----------
    rng : numpy.random.Generator
    n : int
    half_side, min_distance : float
        Arcsec; ``min_distance`` must be below ``half_side``.
    tries : int

    Returns
    -------
    x, y : ndarray, shape (n,)
    """
    if not 0 <= min_distance < half_side:
        raise ValueError(f"min_distance {min_distance} must be in [0, half side {half_side})")
    cand = rng.uniform(-half_side, half_side, (2, tries, n))
    r = np.hypot(cand[0], cand[1])
    ok = r >= min_distance
    pick = np.where(ok.any(axis=0), ok.argmax(axis=0), tries - 1)
    x, y = cand[0, pick, np.arange(n)], cand[1, pick, np.arange(n)]
    r = r[pick, np.arange(n)]
    push = np.where(r < min_distance, min_distance / np.maximum(r, 1e-12), 1.0)
    return x * push, y * push
