"""Simulated survey tiles with injected lenses, for searching and injection-recovery.

A region of ``grid = [nx, ny]`` tiles of ``size x size`` pixels (overlapping by ``overlap``)
around ``center``; each tile is one FITS file per band with a TAN WCS (north up, east left),
pixels in e-/s, and header keywords ``BUNIT``, ``MAGZP``, ``SKYSIG``, ``EXPTIME``, ``BAND``.
Objects are field galaxies, stars, massive deflectors without a source, and injected lenses
(at a rate far above nature's so completeness can be measured), drawn per tile from
``SeedSequence(seed, spawn_key=(TILE_STREAM, tile))`` and rendered with the same renderer as
the training sets (each object as a stamp pasted at its sub-pixel position), then observed
with the band's noise over the whole tile.

Outputs (``out_dir``): ``{tile}_{band}.fits``, ``truth.parquet`` (every object: RA/Dec,
pixel position, kind, magnitudes, lens parameters), ``catalog.parquet`` (the objects to score:
deflector candidates passing the magnitude/colour cuts, as a real search selects them).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from skyscan.cases.lenses import sim
from skyscan.cases.lenses.sim import Observation, Population, add_noise, get_bands, get_survey
from skyscan.core.atomic import write_json_atomic, write_parquet_atomic
from skyscan.core.errors import ConfigError
from skyscan.tiles.io import write_tile_band

__all__ = ["TileSpec", "tile_grid", "tile_wcs", "make_tiles", "render_stamps", "paste_stamps"]

log = logging.getLogger(__name__)

TILE_STREAM = 7_000_001  # keeps tile randomness apart from the simulation blocks


@dataclass(frozen=True)
class TileSpec:
    """One tile: name, centre (deg), side (pixels) and pixel scale (arcsec)."""

    name: str
    ra: float
    dec: float
    size: int
    pixel_scale: float


def tile_wcs(spec: TileSpec):
    """The tile's celestial WCS: TAN, centred, north up, east left."""
    from astropy.wcs import WCS

    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [spec.ra, spec.dec]
    w.wcs.crpix = [(spec.size + 1) / 2, (spec.size + 1) / 2]  # FITS pixels are 1-based
    w.wcs.cdelt = [-spec.pixel_scale / 3600.0, spec.pixel_scale / 3600.0]
    w.wcs.cunit = ["deg", "deg"]
    w.wcs.radesys = "ICRS"
    return w


def tile_grid(center, grid, size: int, overlap: int, pixel_scale: float) -> list[TileSpec]:
    """Tiles on a tangent plane about ``center`` (RA, Dec in degrees), ``grid = [nx, ny]``."""
    from astropy.wcs import WCS

    nx, ny = (int(v) for v in grid)
    step = (size - overlap) * pixel_scale / 3600.0
    plane = WCS(naxis=2)
    plane.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    plane.wcs.crval = list(center)
    plane.wcs.crpix = [1.0, 1.0]  # 1-based: pixel (0, 0) of wcs_pix2world(origin=0)
    plane.wcs.cdelt = [-step, step]
    specs = []
    for j in range(ny):
        for i in range(nx):
            ra, dec = plane.wcs_pix2world([[i - (nx - 1) / 2, j - (ny - 1) / 2]], 0)[0]
            specs.append(
                TileSpec(f"tile-{j:02d}-{i:02d}", float(ra % 360), float(dec), size, pixel_scale)
            )
    return specs


def _field_params(rng, n, bands, x, y):
    """Field galaxies as renderer parameters (kind no_source: a Sersic and nothing else)."""
    galaxies = sim.field_galaxies(rng, n, bands, x, y)
    p = {"kind": np.full(n, "no_source", dtype=object)}
    p.update({f"lens_{k}": v for k, v in galaxies.items()})
    return p


def _star_params(rng, n, bands, x, y):
    """Stars (kind star_blend with an invisible host at mag 99)."""
    stars = sim.field_stars(rng, n, bands, x, y)
    p = {
        "kind": np.full(n, "star_blend", dtype=object),
        "lens_R_sersic": np.full(n, 0.5),
        "lens_n_sersic": np.full(n, 1.0),
        "lens_e1": np.zeros(n),
        "lens_e2": np.zeros(n),
        "lens_center_x": x,
        "lens_center_y": y,
    }
    p.update({f"star_{k}": v for k, v in stars.items()})
    for band in bands:
        p[f"lens_mag_{band}"] = np.full(n, 99.0)
    return p


def make_tiles(config: Mapping, out_dir: str | Path) -> dict:
    """Render the configured tiles, truth catalog and input catalog into ``out_dir``.

    Returns
    -------
    dict
        A summary (tiles, counts per kind), also written as ``tiles.json``.
    """

    lens = config["lenses"]  # the case's section: set-up, priors, tiles
    tc = lens["tiles"]
    survey = get_survey(lens["survey"], lens.get("surveys"))
    bands = get_bands(survey, lens["bands"])
    names = [b.name for b in bands]
    if tc["catalog"]["band"] not in names or not set(tc["catalog"]["color"] or []) <= set(names):
        raise ConfigError(
            f"config key 'lenses.tiles.catalog': band {tc['catalog']['band']!r} and colour "
            f"{tc['catalog']['color']} must use the simulated bands {names}"
        )
    pix = bands[0].pixel_scale
    stamp = int(tc["stamp_size"])
    obs = Observation(bands, stamp, lens["supersampling"], lens["exposures"])
    tile_obs = Observation(bands, tc["size"], 1, lens["exposures"])
    observations = {stamp: obs}
    sim_defl = dict(
        lens,
        kinds={"no_source": 1, "lens": 0, "companion": 0, "ring": 0, "spiral": 0, "star_blend": 0},
        # The tile draws its own field objects over the whole tile: none in the stamps too.
        neighbours={"field": 0, "star": 0, "min_distance": 0.0},
    )
    sim_lens = dict(sim_defl, kinds={**sim_defl["kinds"], "no_source": 0, "lens": 1})
    populations = {"deflector": Population(sim_defl, names), "lens": Population(sim_lens, names)}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    specs = tile_grid(tc["center"], tc["grid"], tc["size"], tc["overlap"], pix)
    area_arcmin2 = (tc["size"] * pix / 60.0) ** 2
    truth_parts = []
    for t, spec in enumerate(specs):
        ss = np.random.SeedSequence(int(config["seed"]), spawn_key=(TILE_STREAM, t))
        rng = np.random.default_rng(ss)
        noise_seed = int(ss.generate_state(2, dtype=np.uint64)[1] >> np.uint64(1))
        counts = {
            k: int(rng.poisson(tc["densities"][k] * area_arcmin2))
            for k in ("field", "star", "deflector", "lens")
        }
        image = np.zeros((len(bands), tc["size"], tc["size"]), dtype=np.float32)
        rows = []
        margin = 8
        for kind in ("field", "star", "deflector", "lens"):
            n = counts[kind]
            if n == 0:
                continue
            px = rng.uniform(margin, tc["size"] - 1 - margin, n)
            py = rng.uniform(margin, tc["size"] - 1 - margin, n)
            cx, cy = np.round(px), np.round(py)
            dx, dy = (px - cx) * pix, (py - cy) * pix
            if kind == "field":
                params = _field_params(rng, n, names, dx, dy)
            elif kind == "star":
                params = _star_params(rng, n, names, dx, dy)
            else:
                params = populations[kind].draw(rng, n)
                params = _shift(params, dx, dy)
            magnification = np.full(n, np.nan)
            snr = np.full((n, len(bands)), np.nan)
            for sel, part in render_stamps(params, tile_obs, observations, stamp):
                paste_stamps(image, part.image, cx[sel].astype(int), cy[sel].astype(int))
                magnification[sel] = part.magnification
                snr[sel] = part.snr
            result = RenderSummary(magnification, snr)
            rows.append(_truth_rows(kind, params, result, px, py, names))
        noisy = add_noise(
            _as_tensor(image)[None],
            tile_obs.background_sigma(),
            [tile_obs.exposure_time(b) for b in bands],
            noise_seed,
        )[0].numpy()
        wcs = tile_wcs(spec)
        for k, band in enumerate(bands):
            header = wcs.to_header()
            header.update(
                BUNIT="electron/s",
                BAND=band.name,
                SURVEY=survey.name,
                MAGZP=band.zero_point,
                SKYSIG=float(tile_obs.background_sigma()[k]),
                EXPTIME=tile_obs.exposure_time(band),
                PIXSCALE=pix,
            )
            path = out_dir / f"{spec.name}_{band.name}.fits"
            write_tile_band(path, noisy[k], header)
        truth = pa.concat_tables(rows) if rows else None
        if truth is not None:
            ra, dec = wcs.wcs_pix2world(
                truth.column("x").to_numpy(), truth.column("y").to_numpy(), 0
            )
            truth = truth.append_column("ra", pa.array(ra % 360)).append_column(
                "dec", pa.array(dec)
            )
            truth = truth.append_column("tile", pa.array([spec.name] * len(truth)))
            truth_parts.append(truth)
        log.info("%s: %s", spec.name, counts)
    truth = pa.concat_tables(truth_parts, promote_options="default")
    truth = truth.append_column("id", pa.array(np.arange(len(truth), dtype=np.int64)))
    _write_parquet(truth, out_dir / "truth.parquet")
    catalog = _select(truth, tc["catalog"])
    _write_parquet(catalog, out_dir / "catalog.parquet")
    summary = {
        "tiles": [spec.__dict__ for spec in specs],
        "bands": names,
        "objects": {
            k: int(np.sum(np.asarray(truth.column("kind").to_pylist()) == k))
            for k in ("field", "star", "deflector", "lens")
        },
        "catalog_rows": len(catalog),
    }
    write_json_atomic(out_dir / "tiles.json", summary)
    return summary


@dataclass
class RenderSummary:
    """Per-object measurements kept for the truth catalog."""

    magnification: np.ndarray
    snr: np.ndarray


STAMP_SIZES = (63, 127, 255, 511)


def _stamp_sizes(params, bands, tile_obs, smallest: int) -> np.ndarray:
    """Smallest stamp (from STAMP_SIZES, at least ``smallest``) that holds each object's light.

    The deflector's Sersic must fall below 5% of the background noise per pixel inside the
    stamp, in every band, and a lens's images (within 1.5 theta_E + 5 source radii) must fit.
    Bright n = 4 wings reach tens of arcsec: a fixed stamp would cut them into squares.
    """
    from skyscan.cases.lenses.sim import psf_kernel_radius, sersic_b_n, sersic_total_flux

    pix = bands[0].pixel_scale
    r_e = np.asarray(params["lens_R_sersic"], np.float64)
    n = np.asarray(params["lens_n_sersic"], np.float64)
    bn = sersic_b_n(n)
    unit = sersic_total_flux(r_e, n)
    radius = np.zeros(len(r_e))
    for k, band in enumerate(bands):
        rate = band.mag_to_rate(np.asarray(params[f"lens_mag_{band.name}"], np.float64))
        ratio = rate / unit * pix**2 / (0.05 * tile_obs.background_sigma()[k])
        reach = r_e * np.maximum(1 + np.log(np.maximum(ratio, 1.0)) / bn, 1.0) ** n
        radius = np.maximum(radius, reach)
    if "theta_E" in params and "source_R_sersic" in params:
        lensing = 1.5 * np.asarray(params["theta_E"], np.float64) + 5 * np.nan_to_num(
            np.asarray(params["source_R_sersic"], np.float64)
        )
        radius = np.maximum(radius, np.where(params["kind"] == "lens", lensing, 0.0))
    psf = max(psf_kernel_radius(b) for b in bands)
    side = 2 * (radius / pix + psf + 2) + 1
    sizes = np.array([s for s in STAMP_SIZES if s >= smallest] or [smallest])
    pick = np.searchsorted(sizes, side)
    return sizes[np.minimum(pick, len(sizes) - 1)]


def render_stamps(params, tile_obs, observations: dict, smallest: int):
    """Render systems noise-free on stamps just large enough for their light, by size.

    Each system is rendered by the simulator (:func:`.sim.render`, the renderer of the
    training sets) on the smallest stamp of :data:`STAMP_SIZES` that holds its light (see
    :func:`_stamp_sizes`), systems of one size together.

    Parameters
    ----------
    params : mapping of str to array
        The systems' renderer columns, centred on their stamp (sub-pixel offsets included).
    tile_obs : Observation
        The tile's observation (its bands and depth set the stamp sizes).
    observations : dict
        Stamp side -> :class:`skyscan.cases.lenses.sim.Observation`; must hold ``smallest``, whose
        super-sampling and exposures are used for the others, which are added to it.
    smallest : int
        The smallest stamp side.

    Yields
    ------
    rows : ndarray of int
        The systems of this stamp size (indices into ``params``).
    result : RenderResult
        Their noise-free stamps ``(len(rows), bands, S, S)`` in e-/s, magnification, S/N.
    """
    template = observations[smallest]
    bands = list(template.bands)
    need = _stamp_sizes(params, bands, tile_obs, smallest)
    for size in np.unique(need):
        rows = np.flatnonzero(need == size)
        if int(size) not in observations:
            observations[int(size)] = Observation(
                bands, int(size), template.supersampling, template.exposures
            )
        yield (
            rows,
            sim.render(  # the public function, not the internal module
                {k: np.asarray(v)[rows] for k, v in params.items()},
                observations[int(size)],
                None,
            ),
        )


def _as_tensor(array):
    import torch

    return torch.from_numpy(array)


def _shift(params, dx, dy):
    """Move every component of drawn systems by (dx, dy) arcsec (their sub-pixel offset)."""
    out = dict(params)
    for key in list(out):
        if key.endswith("center_x"):
            out[key] = np.asarray(out[key]) + dx
        elif key.endswith("center_y"):
            out[key] = np.asarray(out[key]) + dy
    return out


def paste_stamps(image, stamps, cx, cy) -> None:
    """Add stamps ``(N, bands, S, S)`` centred on integer pixels ``(cx, cy)`` into the tile
    ``image`` ``(bands, H, W)`` in place, clipping at its edges."""
    _, h, w = image.shape
    s = stamps.shape[-1]
    r = (s - 1) // 2
    for k in range(len(stamps)):
        x0, y0 = cx[k] - r, cy[k] - r
        xs, ys = max(x0, 0), max(y0, 0)
        xe, ye = min(x0 + s, w), min(y0 + s, h)
        image[:, ys:ye, xs:xe] += stamps[k][:, ys - y0 : ye - y0, xs - x0 : xe - x0]


def _truth_rows(kind, params, result, px, py, bands):
    n = len(px)
    cols = {
        "kind": pa.array([kind] * n),
        "label": pa.array(np.full(n, 1 if kind == "lens" else 0, dtype=np.int8)),
        "x": pa.array(px),
        "y": pa.array(py),
    }
    prefix = "star" if kind == "star" else "lens"
    for band in bands:
        cols[f"mag_{band}"] = pa.array(np.asarray(params[f"{prefix}_mag_{band}"], np.float64))
    nan = np.full(n, np.nan)
    for key in ("theta_E", "e1", "e2", "gamma1", "gamma2", "source_R_sersic", "lens_R_sersic"):
        cols[key] = pa.array(np.asarray(params.get(key, nan), np.float64))
    cols["magnification"] = pa.array(result.magnification)
    for k, band in enumerate(bands):
        cols[f"snr_{band}"] = pa.array(result.snr[:, k])
    return pa.table(cols)


def _select(truth, cuts):
    """The input catalog: galaxies brighter than the magnitude cut and redder than the colour
    cut (no colour cut when ``color`` is null, e.g. for a single band)."""
    kind = np.asarray(truth.column("kind").to_pylist())
    mag = truth.column(f"mag_{cuts['band']}").to_numpy()
    keep = (kind != "star") & (mag < cuts["max_mag"])
    if cuts.get("color"):
        a, b = cuts["color"]
        color = truth.column(f"mag_{a}").to_numpy() - truth.column(f"mag_{b}").to_numpy()
        keep &= color > cuts["min_color"]
    picked = truth.filter(pa.array(keep))
    return picked.select(["id", "ra", "dec", "tile", f"mag_{cuts['band']}"])


def _write_parquet(table, path: Path) -> None:
    write_parquet_atomic(table, path, compression="zstd")
