"""Re-render any simulated row with lenstronomy (optional dependency: ``pip install lenstronomy``).

Columns follow lenstronomy's names, so a row maps one to one onto its keyword arguments:
``['SIE', 'SHEAR']`` for the mass and ``['SERSIC_ELLIPSE']`` for the deflector light, the
source and each line-of-sight neighbour galaxy (more unlensed light profiles), amplitudes
converted from magnitudes by lenstronomy's own ``magnitude2cps`` and ``total_flux``.  The tests
use this as the independent reference for skyscan's renderer.  Stars are not mapped: lenstronomy
draws a point source by shifting a PSF kernel, which differs from skyscan's analytic PSF
sampled at pixel centres by percents, so a row with a neighbour star is refused.

Examples
--------
>>> from skyscan.data.shards import read_images
>>> images, table, meta = read_images("results/sims/shard-00000.parquet")  # doctest: +SKIP
>>> row = table.slice(0, 1).to_pylist()[0]                                  # doctest: +SKIP
>>> band = get_survey("lsst").band("g")                                     # doctest: +SKIP
>>> lenstronomy_image(row, band)  # the noise-free g image of a lens row     # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from skyscan.cases.lenses.sim.survey import Band

__all__ = [
    "lenstronomy_kwargs",
    "lenstronomy_image_model",
    "lenstronomy_image",
    "neighbour_galaxies",
]


def lenstronomy_kwargs(row: Mapping[str, float], band: Band):
    """lenstronomy keyword arguments of one lens row in one band.

    Parameters
    ----------
    row : mapping
        One row of a simulation shard (column name -> value).
    band : Band
        The band whose zero point converts magnitudes to amplitudes.

    Returns
    -------
    kwargs_lens, kwargs_source, kwargs_lens_light : list of dict
        For ``LensModel(['SIE', 'SHEAR'])``, ``LightModel(['SERSIC_ELLIPSE'])`` and a
        ``LightModel`` of ``SERSIC_ELLIPSE`` profiles: the deflector's, then the row's
        neighbour galaxies' (:func:`neighbour_galaxies` of them).
    """
    from lenstronomy.LightModel.light_model import LightModel
    from lenstronomy.Util import data_util

    light = LightModel(["SERSIC_ELLIPSE"])

    def sersic(prefix):
        kw = {
            key: float(row[f"{prefix}_{key}"])
            for key in ("R_sersic", "n_sersic", "e1", "e2", "center_x", "center_y")
        }
        cps = data_util.magnitude2cps(float(row[f"{prefix}_mag_{band.name}"]), band.zero_point)
        kw["amp"] = cps / light.total_flux([dict(kw, amp=1.0)])[0]
        return [kw]

    star = row.get(f"neighbour_star_mag_{band.name}")
    if star is not None and np.isfinite(float(star)):
        raise ValueError("a row with a neighbour star has no lenstronomy equivalent here")
    mass = {k: float(row[k]) for k in ("theta_E", "e1", "e2", "center_x", "center_y")}
    shear = {k: float(row[k]) for k in ("gamma1", "gamma2")}
    lens_light = sersic("lens")
    for name in _neighbours(row, band):
        lens_light += sersic(name)
    return [mass, shear], _source(row, band, sersic), lens_light


def _clump_slots(row: Mapping[str, float]) -> list[int]:
    """The row's source clumps (``lenses.source_model: clumpy``) with a positive amplitude."""
    out, j = [], 1
    while f"source_clump{j}_amp" in row:
        amp = row[f"source_clump{j}_amp"]
        if amp is not None and np.isfinite(float(amp)) and float(amp) > 0:
            out.append(j)
        j += 1
    return out


def _source(row: Mapping[str, float], band: Band, sersic) -> list[dict]:
    """The source's Sersic and its clumps as lenstronomy ``GAUSSIAN`` profiles (whose ``amp``
    is a total flux): the magnitude is of the whole source, so the Sersic's amplitude is the
    count rate over the unit-amplitude flux of Sersic and clumps together."""
    from lenstronomy.Util import data_util

    (disc,) = sersic("source")
    slots = _clump_slots(row)
    if not slots:
        return [disc]
    cps = data_util.magnitude2cps(float(row[f"source_mag_{band.name}"]), band.zero_point)
    unit_disc = cps / disc["amp"]  # the unit-amplitude Sersic's flux
    sigma = [float(row[f"source_clump{j}_sigma"]) for j in slots]
    clump_unit = [
        2 * np.pi * s**2 * float(row[f"source_clump{j}_amp"])
        for j, s in zip(slots, sigma, strict=True)
    ]
    amp = cps / (unit_disc + sum(clump_unit))
    out = [dict(disc, amp=amp)]
    for j, s, unit in zip(slots, sigma, clump_unit, strict=True):
        out.append(
            {
                "amp": amp * unit,
                "sigma": s,
                "center_x": float(row[f"source_clump{j}_x"]),
                "center_y": float(row[f"source_clump{j}_y"]),
            }
        )
    return out


def _neighbours(row: Mapping[str, float], band: Band) -> list[str]:
    """Prefixes of the row's filled neighbour-galaxy slots."""
    out, k = [], 1
    while f"neighbour{k}_mag_{band.name}" in row:
        if np.isfinite(float(row[f"neighbour{k}_mag_{band.name}"])):
            out.append(f"neighbour{k}")
        k += 1
    return out


def neighbour_galaxies(row: Mapping[str, float], band: Band) -> int:
    """Number of line-of-sight neighbour galaxies of the row (extra deflector-light profiles)."""
    return len(_neighbours(row, band))


def lenstronomy_image_model(
    band: Band, stamp_size: int = 45, supersampling: int = 3, neighbours: int = 0, clumps: int = 0
):
    """lenstronomy ``ImageModel`` on skyscan's pixel grid with the band's Gaussian PSF, with
    ``neighbours`` line-of-sight galaxies besides the deflector's light.

    Pixel ``[j, i]`` is centred on ``((i - (n-1)/2) pix, (j - (n-1)/2) pix)`` as in skyscan.
    """
    from lenstronomy.Data.imaging_data import ImageData
    from lenstronomy.Data.psf import PSF
    from lenstronomy.ImSim.image_model import ImageModel
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LightModel.light_model import LightModel

    if band.psf_type != "gaussian":
        raise ValueError(f"band {band.name!r}: only Gaussian PSFs map onto lenstronomy here")
    pix = band.pixel_scale
    corner = -(stamp_size - 1) / 2 * pix
    data = ImageData(
        image_data=np.zeros((stamp_size, stamp_size)),
        ra_at_xy_0=corner,
        dec_at_xy_0=corner,
        transform_pix2angle=np.diag([pix, pix]),
    )
    psf = PSF(psf_type="GAUSSIAN", fwhm=band.seeing, truncation=5, pixel_size=pix)
    return ImageModel(
        data,
        psf,
        LensModel(["SIE", "SHEAR"]),
        LightModel(["SERSIC_ELLIPSE"] + ["GAUSSIAN"] * clumps),
        LightModel(["SERSIC_ELLIPSE"] * (1 + neighbours)),
        kwargs_numerics={"supersampling_factor": supersampling},
    )


def lenstronomy_image(
    row: Mapping[str, float], band: Band, stamp_size: int = 45, supersampling: int = 3
) -> np.ndarray:
    """Noise-free image of one lens row in one band, rendered by lenstronomy (e-/s per pixel)."""
    model = lenstronomy_image_model(
        band, stamp_size, supersampling, neighbour_galaxies(row, band), len(_clump_slots(row))
    )
    return model.image(*lenstronomy_kwargs(row, band))
