"""Which simulated lenses a survey could find: the LensPop detectability selection.

Collett (2015, ApJ 811, 20; the ``LensPop`` code) calls a lens detectable in a survey when, in
its *best band* (the band of highest lensed-source S/N):

1. the lensed source's optimal-aperture S/N exceeds 20,
2. the total magnification of the source exceeds 3, and
3. the lensed images are resolved from the deflector:
   ``theta_E**2 > R_source**2 + (seeing / 2)**2``, with the band's PSF FWHM as seeing.

The simulator stores every ingredient per row: ``snr_<band>`` (the same optimal-aperture S/N,
:func:`skyscan.cases.lenses.sim.render.optimal_snr`), ``magnification``, ``theta_E`` and
``source_R_sersic`` (arcsec); the seeing of each band comes from the survey registry or from a
shard's ``psf`` metadata.  The thresholds are a mapping (the config's ``dataset.detectable``):

``min_snr``
    S/N the best band must exceed (LensPop: 20).
``snr_bands``
    ``"any"`` (the best of all simulated bands, as LensPop) or a list of band names the best
    band is chosen from.
``min_magnification``
    Magnification the source must exceed (LensPop: 3); ``None`` skips the cut.
``resolved``
    Whether to require resolved images in the best band (LensPop: yes).

Rows that are not lenses (no ``snr_*`` value: NaN) are never detectable.

Examples
--------
>>> import numpy as np
>>> meta = {"snr_g": np.array([30.0, 30.0, 10.0]), "magnification": np.array([5.0, 2.0, 5.0]),
...         "theta_E": np.array([1.2, 1.2, 1.2]), "source_R_sersic": np.array([0.2, 0.2, 0.2])}
>>> detectable(meta, {"g": 0.9}, {"min_snr": 20, "min_magnification": 3}).tolist()
[True, False, False]
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from skyscan.core.errors import ConfigError

__all__ = ["DETECTABLE_DEFAULTS", "best_band_snr", "detectable", "seeing_of"]

#: Collett (2015) thresholds.
DETECTABLE_DEFAULTS = {
    "min_snr": 20.0,
    "snr_bands": "any",
    "min_magnification": 3.0,
    "resolved": True,
}

KEY = "dataset.detectable"


def _snr_bands(meta: Mapping, snr_bands) -> list[str]:
    available = [c[4:] for c in meta if str(c).startswith("snr_")]
    if snr_bands in (None, "any"):
        if not available:
            raise ConfigError(
                f"config key '{KEY}': the table has no snr_<band> column to select on",
                key=KEY,
            )
        return available
    if isinstance(snr_bands, str) or not len(snr_bands):
        raise ConfigError(
            f"config key '{KEY}.snr_bands': expected 'any' or a list of bands, got {snr_bands!r}",
            key=f"{KEY}.snr_bands",
        )
    missing = [b for b in snr_bands if b not in available]
    if missing:
        raise ConfigError(
            f"config key '{KEY}.snr_bands': {', '.join(map(repr, missing))} "
            f"not simulated (allowed: {', '.join(available)})",
            key=f"{KEY}.snr_bands",
        )
    return list(snr_bands)


def best_band_snr(meta: Mapping, snr_bands="any") -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The S/N of each row in its best band, and which band that is.

    Parameters
    ----------
    meta : mapping
        Column name -> array, with ``snr_<band>`` columns.
    snr_bands : "any" or list of str
        The bands to choose from (``"any"``: every ``snr_*`` column).

    Returns
    -------
    snr : ndarray of float
        Highest S/N of each row (NaN where every band is NaN, e.g. non-lenses).
    band : ndarray of int
        Index into ``bands`` of the best band (0 where ``snr`` is NaN).
    bands : list of str
        The bands considered, in column order.
    """
    bands = _snr_bands(meta, snr_bands)
    stack = np.stack([np.asarray(meta[f"snr_{b}"], dtype=float) for b in bands], axis=1)
    finite = np.isfinite(stack)
    filled = np.where(finite, stack, -np.inf)
    band = filled.argmax(axis=1)
    snr = np.where(finite.any(axis=1), filled[np.arange(len(stack)), band], np.nan)
    return snr, band, bands


def seeing_of(survey_or_psf) -> dict[str, float]:
    """PSF FWHM (arcsec) of each band, from a :class:`~skyscan.cases.lenses.sim.survey.Survey`, a
    ``{band: fwhm}`` mapping, or a shard's metadata (``bands`` and ``psf`` keys)."""
    bands = getattr(survey_or_psf, "bands", None)
    if bands is not None and not isinstance(survey_or_psf, Mapping):  # a Survey
        return {name: float(b.seeing) for name, b in bands.items()}
    if "psf" in survey_or_psf and "bands" in survey_or_psf:  # shard metadata
        return {
            b: float(p["fwhm"])
            for b, p in zip(survey_or_psf["bands"], survey_or_psf["psf"], strict=True)
        }
    return {str(b): float(v) for b, v in survey_or_psf.items()}


def detectable(meta: Mapping, seeing, criteria: Mapping | None = None) -> np.ndarray:
    """Mask of the rows a survey could detect as lenses (Collett 2015, in the best band).

    Parameters
    ----------
    meta : mapping
        Column name -> array: ``snr_<band>``, ``magnification``, ``theta_E``,
        ``source_R_sersic`` (the last two only when ``resolved``).
    seeing : Survey or mapping
        The bands' PSF FWHM in arcsec (see :func:`seeing_of`); used when ``resolved``.
    criteria : mapping, optional
        Thresholds (keys of :data:`DETECTABLE_DEFAULTS`; missing keys take those defaults).
        Each cut is strict, as in LensPop: S/N above ``min_snr``, magnification above
        ``min_magnification``.

    Returns
    -------
    ndarray of bool
        True for detectable rows; False for rows without a lensed source (NaN S/N).
    """
    c = {**DETECTABLE_DEFAULTS, **dict(criteria or {})}
    unknown = sorted(set(c) - set(DETECTABLE_DEFAULTS))
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {', '.join(f'{KEY}.{k}' for k in unknown)} "
            f"(allowed: {', '.join(DETECTABLE_DEFAULTS)})",
            key=KEY,
        )
    snr, band, bands = best_band_snr(meta, c["snr_bands"])
    with np.errstate(invalid="ignore"):
        keep = snr > float(c["min_snr"])
        if c["min_magnification"] is not None:
            keep &= np.asarray(meta["magnification"], dtype=float) > float(c["min_magnification"])
        if c["resolved"]:
            fwhm = seeing_of(seeing)
            missing = [b for b in bands if b not in fwhm]
            if missing:
                raise ConfigError(
                    f"config key '{KEY}.resolved': no PSF FWHM known for band(s) "
                    f"{', '.join(missing)}",
                    key=f"{KEY}.resolved",
                )
            s = np.array([fwhm[b] for b in bands], dtype=float)[band]
            theta_e = np.asarray(meta["theta_E"], dtype=float)
            r_src = np.asarray(meta["source_R_sersic"], dtype=float)
            keep &= theta_e**2 > r_src**2 + (s / 2) ** 2
    return keep
