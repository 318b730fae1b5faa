"""Survey and band registry: the observing set-up that turns surface brightness into data.

A :class:`Band` holds everything the renderer needs to observe one filter: pixel scale,
exposure time per visit, number of visits in the full-depth coadd, sky brightness, zero point,
read noise and the PSF.  A :class:`Survey` is a named set of bands.  The built-in surveys copy
lenstronomy's ``SimulationAPI.ObservationConfig`` values (v1.14.2) so that a row simulated here
can be re-observed there; ``tests/test_survey.py`` checks every number against lenstronomy.

Units: arcsec, seconds, AB magnitudes (zero point = magnitude giving 1 e-/s), electrons.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace

from skyscan.core.errors import ConfigError

__all__ = ["Band", "Survey", "SURVEYS", "get_survey", "get_bands", "ConfigError"]


PSF_TYPES = ("gaussian", "moffat")


@dataclass(frozen=True)
class Band:
    """Observing conditions of one filter.

    Parameters
    ----------
    name : str
        Filter name, e.g. ``"g"``.
    pixel_scale : float
        Pixel size in arcsec.
    exposure_time : float
        Exposure time of one visit in seconds.
    sky_brightness : float
        Sky surface brightness in AB mag/arcsec^2.
    zero_point : float
        AB magnitude of a source giving 1 e-/s.
    read_noise : float
        Read noise per exposure in electrons.
    num_exposures : int
        Number of visits in the full-depth coadd.
    seeing : float
        PSF full width at half maximum in arcsec.
    psf_type : {"gaussian", "moffat"}
        PSF profile.
    moffat_beta : float
        Moffat power-law index (used only when ``psf_type == "moffat"``).
    """

    name: str
    pixel_scale: float
    exposure_time: float
    sky_brightness: float
    zero_point: float
    read_noise: float
    num_exposures: int
    seeing: float
    psf_type: str = "gaussian"
    moffat_beta: float = 3.5

    def __post_init__(self) -> None:
        for key in ("pixel_scale", "exposure_time", "seeing", "num_exposures"):
            value = getattr(self, key)
            if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
                raise ConfigError(
                    f"band {self.name!r}: {key} must be a positive number, got {value!r}"
                )
        if self.read_noise < 0:
            raise ConfigError(
                f"band {self.name!r}: read_noise must be >= 0, got {self.read_noise!r}"
            )
        if self.psf_type not in PSF_TYPES:
            raise ConfigError(
                f"band {self.name!r}: psf_type {self.psf_type!r} is not one of "
                f"{', '.join(PSF_TYPES)}"
            )
        if self.psf_type == "moffat" and not self.moffat_beta > 1:
            raise ConfigError(
                f"band {self.name!r}: moffat_beta must be > 1, got {self.moffat_beta!r}"
            )

    @property
    def sky_rate(self) -> float:
        """Sky count rate per pixel in e-/s."""
        return 10.0 ** (-0.4 * (self.sky_brightness - self.zero_point)) * self.pixel_scale**2

    def background_sigma(self, num_exposures: int) -> float:
        """Per-pixel Gaussian background noise in e-/s for a stack of ``num_exposures`` visits.

        ``sqrt(N RN^2 + N t sky pix^2) / (N t)``, the formula of lenstronomy's
        ``data_util.bkg_noise`` (sky Poisson noise in its Gaussian limit plus read noise).
        """
        t_total = num_exposures * self.exposure_time
        variance = num_exposures * self.read_noise**2 + t_total * self.sky_rate
        return math.sqrt(variance) / t_total

    def mag_to_rate(self, magnitude):
        """Convert AB magnitude(s) to a count rate in e-/s."""
        return 10.0 ** (-0.4 * (magnitude - self.zero_point))


@dataclass(frozen=True)
class Survey:
    """A named set of bands sharing a camera."""

    name: str
    bands: Mapping[str, Band] = field(default_factory=dict)

    def band(self, name: str) -> Band:
        """Return one band, with an error listing the allowed names if it is unknown."""
        try:
            return self.bands[name]
        except KeyError:
            allowed = ", ".join(self.bands)
            raise ConfigError(
                f"unknown band {name!r} for survey {self.name!r} (allowed: {allowed})"
            ) from None


def _make(name: str, camera: dict, bands: dict) -> Survey:
    return Survey(name, {b: Band(name=b, **camera, **obs) for b, obs in bands.items()})


def _obs(exposure_time, sky, zp, visits, seeing):
    return dict(
        exposure_time=exposure_time,
        sky_brightness=sky,
        zero_point=zp,
        num_exposures=visits,
        seeing=seeing,
    )


#: Built-in surveys (lenstronomy 1.14.2 ``ObservationConfig``; LSST visits are for 10 years,
#: DES for the 3-year coadd).
SURVEYS: dict[str, Survey] = {
    "lsst": _make(
        "lsst",
        dict(pixel_scale=0.2, read_noise=10.0),
        {
            "u": _obs(15.0, 22.99, 26.50, 140, 0.81),
            "g": _obs(15.0, 22.26, 28.30, 200, 0.77),
            "r": _obs(15.0, 21.20, 28.13, 460, 0.73),
            "i": _obs(15.0, 20.48, 27.79, 460, 0.71),
            "z": _obs(15.0, 19.60, 27.40, 400, 0.69),
            "y": _obs(15.0, 18.61, 26.58, 400, 0.68),
        },
    ),
    "des": _make(
        "des",
        dict(pixel_scale=0.263, read_noise=7.0),
        {
            "g": _obs(90.0, 22.01, 26.58, 10, 1.12),
            "r": _obs(90.0, 21.15, 26.78, 10, 0.96),
            "i": _obs(90.0, 19.89, 26.75, 10, 0.88),
            "z": _obs(90.0, 18.72, 26.48, 10, 0.84),
            "Y": _obs(45.0, 17.96, 25.40, 10, 0.90),
        },
    ),
}

#: LensPop's zero point: magnitude 30 gives 1 ADU per 25 s (LSST) or 90 s (DES) at 4.5 e-/ADU.
_LENSPOP_ZP = {"lsst": 30 + 2.5 * math.log10(4.5 / 25), "des": 30 + 2.5 * math.log10(4.5 / 90)}

#: LensPop's noise adds ``nexposures * 10 / 4.5`` to the variance of every pixel, whatever the
#: number of epochs observed (its Surveys.py and FastLensSim.ObserveLens): as one exposure's
#: read noise, sqrt of that many e-.
_LENSPOP_READ = {"lsst": math.sqrt(100 * 10 / 4.5), "des": math.sqrt(10 * 10 / 4.5)}

#: LensPop's observing set-ups (Collett 2015; LensPop's Surveys.py) for its best-single-epoch
#: tables: one epoch of 30/60/60 s (LSST) or 90 s (DES), the nominal skies, and the seeing of
#: the best epoch (the median of the table's per-lens seeing: 0.499" LSST, 1.07" DES; it
#: spans 0.47-0.54" and 1.06-1.07").  The best epoch's own sky is drawn with its seeing in
#: LensPop from distributions not published with the tables; the nominal sky stands in.
SURVEYS["lenspop_lsst_best_epoch"] = _make(
    "lenspop_lsst_best_epoch",
    dict(pixel_scale=0.18, read_noise=_LENSPOP_READ["lsst"]),
    {
        "g": _obs(30.0, 21.7, _LENSPOP_ZP["lsst"], 100, 0.499),
        "r": _obs(60.0, 20.7, _LENSPOP_ZP["lsst"], 100, 0.499),
        "i": _obs(60.0, 20.1, _LENSPOP_ZP["lsst"], 100, 0.499),
    },
)
SURVEYS["lenspop_des_best_epoch"] = _make(
    "lenspop_des_best_epoch",
    dict(pixel_scale=0.263, read_noise=_LENSPOP_READ["des"]),
    {
        b: _obs(90.0, sky, _LENSPOP_ZP["des"], 10, 1.07)
        for b, sky in zip("gri", (21.7, 20.7, 20.1), strict=True)
    },
)

_BAND_KEYS = {f.name for f in fields(Band)} - {"name"}


def get_survey(name: str, custom: Mapping | None = None) -> Survey:
    """Look up a survey by name, applying user definitions from the config.

    Parameters
    ----------
    name : str
        Survey name: a built-in (``lsst``, ``des``) or one defined in ``custom``.
    custom : mapping, optional
        The config's ``surveys`` section: ``{survey: {camera keys..., bands: {band: {keys}}}}``.
        A survey named like a built-in one updates it (e.g. a Moffat PSF for LSST ``g``);
        a new name defines a new survey, every band complete.

    Returns
    -------
    Survey

    Examples
    --------
    >>> get_survey("lsst").band("g").seeing
    0.77
    """
    custom = dict(custom or {})
    if name not in SURVEYS and name not in custom:
        allowed = ", ".join(sorted(set(SURVEYS) | set(custom)))
        raise ConfigError(f"unknown survey {name!r} (allowed: {allowed})")
    base = SURVEYS.get(name, Survey(name, {}))
    spec = dict(custom.get(name, {}))
    band_specs = dict(spec.pop("bands", {}) or {})
    for key in spec:
        if key not in _BAND_KEYS:
            raise ConfigError(
                f"unknown config key 'lenses.surveys.{name}.{key}' "
                f"(allowed: bands, {', '.join(sorted(_BAND_KEYS))})"
            )
    bands = {}
    for band_name in list(base.bands) + [b for b in band_specs if b not in base.bands]:
        overrides = {**spec, **(band_specs.get(band_name) or {})}
        for key in overrides:
            if key not in _BAND_KEYS:
                raise ConfigError(
                    f"unknown config key 'lenses.surveys.{name}.bands.{band_name}.{key}' "
                    f"(allowed: {', '.join(sorted(_BAND_KEYS))})"
                )
        if band_name in base.bands:
            bands[band_name] = replace(base.bands[band_name], **overrides)
        else:
            missing = sorted(_BAND_KEYS - set(overrides) - {"psf_type", "moffat_beta"})
            if missing:
                raise ConfigError(
                    f"config 'lenses.surveys.{name}.bands.{band_name}' is missing "
                    f"{', '.join(missing)}"
                )
            bands[band_name] = Band(name=band_name, **overrides)
    return Survey(name, bands)


def get_bands(survey: Survey, names) -> list[Band]:
    """Return the named bands of ``survey`` in order, failing on an unknown or repeated name."""
    names = list(names)
    if not names:
        raise ConfigError("config key 'lenses.bands' must name at least one band")
    if len(set(names)) != len(names):
        raise ConfigError(f"config key 'lenses.bands' repeats a band: {names}")
    return [survey.band(n) for n in names]
