"""Paint simulated lensed arcs into a user's survey tiles, around galaxies of their catalogue.

Completeness measured on simulated tiles says little about real backgrounds (artefacts,
neighbours, real noise).  :func:`inject_arcs` takes real tiles (one FITS file per band, read
with :mod:`skyscan.tiles.io`) and a catalogue of galaxies, and adds around a random subset of
them the light of a lensed source, each galaxy being the deflector: its own light is the real
one, so only the source is rendered.  The source and the lens model (theta_E, ellipticity,
shear, source size, offset and magnitudes) come from the simulator's priors (the config's
``lenses.priors``), rendered with the survey's PSF by the same renderer as the training
sets (:func:`skyscan.cases.lenses.tiles.render_stamps`), and the added light gets its own Poisson
noise (the simulator's :func:`skyscan.cases.lenses.sim.add_noise` with no background term: the tile
already has its background noise).

Units: the renderer works in e-/s at the band's zero point; a tile whose header has
``MAGZP`` (the AB magnitude of one pixel unit; another keyword with ``zp_key``) gets the
light scaled by ``10**(0.4 (MAGZP - zero_point))``, one without is taken to be in the
survey's e-/s.

Outputs in ``out_dir``: ``{tile}_{band}.fits`` for every tile that received an arc, with the
input's headers (plus one ``HISTORY`` card) and storage: scaled integers stay integers with the
same ``BZERO``/``BSCALE``/``BLANK`` (the added light rounded to the integer step), floats stay
floats of the same width; ``BLANK``/NaN pixels stay blank and pixels outside every arc's stamp
are bit-identical.  ``injections.parquet``: one row per arc and tile (a galaxy in the overlap
of two tiles gets the same arc in both), see :func:`inject_arcs`.  The same inputs and seed
give the same bytes.
"""

from __future__ import annotations

import gzip
import io
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa

from skyscan.cases.lenses.sim import (
    Observation,
    Population,
    add_noise,
    best_band_snr,
    get_bands,
    get_survey,
)
from skyscan.cases.lenses.tiles import paste_stamps, render_stamps
from skyscan.core.atomic import write_bytes_atomic, write_parquet_atomic
from skyscan.core.errors import InputFileError, MismatchError, UsageError
from skyscan.tiles.io import find_tiles, read_band_unscaled, read_tile_wcs

__all__ = ["inject_arcs", "read_galaxies", "INJECT_STREAM", "PIXEL_SCALE_RTOL"]

log = logging.getLogger(__name__)

INJECT_STREAM = 7_000_002  # keeps injection randomness apart from simulations and tiles
#: Largest relative difference between a tile's pixel scale and the survey's.
PIXEL_SCALE_RTOL = 0.01
#: Magnitude of the deflector light in the rendered stamps: none (the galaxy is the real one).
NO_LIGHT = 99.0


def read_galaxies(path: str | Path) -> pa.Table:
    """The user's galaxy catalogue: Parquet or CSV with ``ra``, ``dec`` (degrees) [, ``id``].

    Returns
    -------
    pyarrow.Table
        ``id`` (the row number if absent), ``ra``, ``dec`` and every ``mag_*`` column.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"catalogue {path} does not exist", path=path)
    try:
        if path.suffix.lower() in (".csv", ".txt"):
            from pyarrow import csv

            table = csv.read_csv(path)
        else:
            import pyarrow.parquet as pq

            table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputFileError(f"{path}: cannot read the catalogue ({first})", path=path) from None
    missing = [c for c in ("ra", "dec") if c not in table.column_names]
    if missing:
        raise InputFileError(
            f"{path}: catalogue lacks column(s) {', '.join(missing)} (degrees)", path=path
        )
    if "id" not in table.column_names:
        table = table.append_column("id", pa.array(np.arange(len(table), dtype=np.int64)))
    mags = [c for c in table.column_names if c.startswith("mag_")]
    return table.select(["id", "ra", "dec", *mags])


def _pixel_scale(wcs) -> float:
    from astropy.wcs.utils import proj_plane_pixel_scales

    return float(np.mean(proj_plane_pixel_scales(wcs)) * 3600.0)


def _choose(n_located: int, fraction: float | None, n: int | None, rng) -> np.ndarray:
    """Which located galaxies get an arc (sorted indices)."""
    if (fraction is None) == (n is None):
        raise UsageError("give exactly one of fraction (--fraction) or n (--n)")
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise UsageError(f"fraction must be in (0, 1], got {fraction!r}")
        count = int(round(fraction * n_located))
    else:
        if n < 1:
            raise UsageError(f"n must be >= 1, got {n!r}")
        if n > n_located:
            raise UsageError(f"n = {n} but only {n_located} catalogue galaxies lie on the tiles")
        count = n
    return np.sort(rng.choice(n_located, size=count, replace=False))


def _draw_sources(config: Mapping, bands: list[str], rng, n: int) -> dict[str, np.ndarray]:
    """Lens models and sources from the simulator's priors, the deflector's light off and
    its mass centred on the galaxy (the stamp centre)."""
    sim_cfg = dict(
        config["lenses"],
        kinds={"lens": 1, "no_source": 0, "companion": 0, "ring": 0, "spiral": 0, "star_blend": 0},
        neighbours={"field": 0, "star": 0, "min_distance": 0.0},  # the real sky has its own
    )
    params = Population(sim_cfg, bands).draw(rng, n)
    # The galaxy's catalogue position is the mass centre: move every component by the drawn
    # deflector offset, keeping the source where the priors put it relative to the mass.
    cx, cy = np.asarray(params["center_x"]), np.asarray(params["center_y"])
    for key in list(params):
        if key.endswith("center_x"):
            params[key] = np.asarray(params[key]) - cx
        elif key.endswith("center_y"):
            params[key] = np.asarray(params[key]) - cy
    for band in bands:
        params[f"lens_mag_{band}"] = np.full(n, NO_LIGHT)
    # Its (invisible) Sersic must not size the stamps: only the lensed light does.
    params["lens_R_sersic"] = np.full(n, 0.1)
    return params


def _unit_scale(header, band, zp_key: str) -> float:
    """Tile units per e-/s of the survey band."""
    if zp_key in header:
        return float(10.0 ** (0.4 * (float(header[zp_key]) - band.zero_point)))
    return 1.0


def _add_to_image(hdu, added: np.ndarray) -> int:
    """Add ``added`` (physical units) to the HDU's stored pixels in place; returns how many
    pixels changed.  Integers are rounded to the integer step and clipped to the type's range;
    blank pixels (``BLANK`` or NaN) are left alone."""
    raw = hdu.data
    bscale = float(hdu.header.get("BSCALE", 1.0))
    step = added / bscale  # BZERO shifts both sides equally
    if raw.dtype.kind in "iu":
        delta = np.rint(step).astype(np.int64)
        change = delta != 0
        if "BLANK" in hdu.header:
            blank = int(hdu.header["BLANK"])
            change &= raw != blank
        else:
            blank = None
        info = np.iinfo(raw.dtype)
        new = np.clip(raw[change].astype(np.int64) + delta[change], info.min, info.max)
        if blank is not None:  # a value that lands on BLANK would read as missing
            new = np.where(new == blank, blank + (1 if blank < info.max else -1), new)
        raw[change] = new.astype(raw.dtype)
    else:
        change = (step != 0) & np.isfinite(raw)
        raw[change] = (raw[change].astype(np.float64) + step[change]).astype(raw.dtype)
    return int(change.sum())


def _write_hdul(hdul, path: Path) -> None:
    """Write an HDU list atomically, gzipped (with a fixed time stamp) for ``.gz`` names."""
    buffer = io.BytesIO()
    hdul.writeto(buffer, output_verify="silentfix")
    data = buffer.getvalue()
    if path.name.endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    write_bytes_atomic(path, data)


def _noise_seed(seed: int, tile: int, group: int) -> int:
    """The noise seed of one tile's group of stamps (a 63-bit integer for torch)."""
    ss = np.random.SeedSequence(seed, spawn_key=(INJECT_STREAM, tile, group))
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def _truth(galaxies: pa.Table, rows, tile: str, params, bands, columns) -> pa.Table:
    """Rows of ``injections.parquet`` for one tile (see :func:`inject_arcs`)."""
    rows = np.asarray(rows)
    n = len(rows)
    snr = columns["snr"]
    best, index, order = best_band_snr({f"snr_{b}": snr[:, k] for k, b in enumerate(bands)})
    out = {
        "id": galaxies.column("id").take(pa.array(rows)),
        "ra": galaxies.column("ra").take(pa.array(rows)).cast(pa.float64()),
        "dec": galaxies.column("dec").take(pa.array(rows)).cast(pa.float64()),
        "tile": pa.array([tile] * n),
        "x": pa.array(columns["px"]),
        "y": pa.array(columns["py"]),
        "stamp": pa.array(columns["stamp"]),
    }
    truth_keys = ("theta_E", "e1", "e2", "gamma1", "gamma2")
    truth_keys += ("source_R_sersic", "source_n_sersic", "source_e1", "source_e2")
    for key in truth_keys:
        out[key] = pa.array(np.asarray(params[key], np.float64))
    out["source_dx"] = pa.array(params["source_center_x"] - params["center_x"])
    out["source_dy"] = pa.array(params["source_center_y"] - params["center_y"])
    for band in bands:
        out[f"source_mag_{band}"] = pa.array(np.asarray(params[f"source_mag_{band}"], np.float64))
    for k, band in enumerate(bands):
        out[f"flux_{band}"] = pa.array(columns["flux"][:, k])
    out["magnification"] = pa.array(columns["magnification"])
    for k, band in enumerate(bands):
        out[f"snr_{band}"] = pa.array(snr[:, k])
    out["snr_best"] = pa.array(np.asarray(best, np.float64))
    out["best_band"] = pa.array([order[i] for i in index], pa.string())
    for name in galaxies.column_names:
        if name.startswith("mag_"):
            out[name] = galaxies.column(name).take(pa.array(rows))
    return pa.table(out)


def inject_arcs(
    catalog: str | Path,
    tiles_dir: str | Path,
    out_dir: str | Path,
    config: Mapping,
    *,
    fraction: float | None = None,
    n: int | None = None,
    seed: int | None = None,
    pattern: str = "{tile}_{band}.fits",
    hdu: int | None = None,
    zp_key: str = "MAGZP",
    noise: bool = True,
) -> dict:
    """Add lensed arcs around catalogue galaxies to real tiles; write them and the truth.

    Parameters
    ----------
    catalog : str or Path
        Galaxies (:func:`read_galaxies`); those on a tile, at least ``tiles.stamp_size / 2``
        pixels inside its edge, may be chosen.
    tiles_dir : str or Path
        Folder of the tiles (``pattern``; bands as ``config["lenses"]["bands"]``).
    out_dir : str or Path
        Where the new tiles and ``injections.parquet`` go (must differ from ``tiles_dir``).
    config : mapping
        A validated config: its ``lenses`` section's ``survey``/``surveys`` and ``bands``
        (PSF, zero points, depth), ``priors``, ``supersampling``, ``exposures`` and
        ``tiles.stamp_size`` (the smallest rendering stamp), and ``seed`` (unless ``seed``
        is given).
    fraction, n : optional
        Exactly one: the fraction, or number, of the catalogue galaxies on the tiles that get
        an arc.
    seed : int, optional
        Overrides ``config["seed"]``.
    pattern, hdu
        As for :func:`skyscan.tiles.io.find_tiles`.
    zp_key : str
        Header keyword of the tile's zero point (AB mag of one pixel unit).
    noise : bool
        Add the arcs' own Poisson noise (off only for tests of the rendering itself).

    Returns
    -------
    dict
        A summary: tiles read and written, galaxies on the tiles, arcs injected.

    Notes
    -----
    ``injections.parquet`` columns: ``id``, ``ra``, ``dec`` (the galaxy's, degrees), ``tile``,
    ``x``, ``y`` (0-based pixel position of the mass centre in that tile), ``stamp`` (side in
    pixels of the rendered stamp: pixels outside it are unchanged), ``theta_E``, ``e1``,
    ``e2``, ``gamma1``, ``gamma2`` (the SIE + shear), ``source_R_sersic``,
    ``source_n_sersic``, ``source_e1``, ``source_e2``, ``source_dx``, ``source_dy`` (source
    centre minus mass centre, arcsec along the tile's +x, +y pixel axes),
    ``source_mag_<band>`` (AB, unlensed), ``flux_<band>`` (the noise-free added light in the
    tile's units), ``magnification``,
    ``snr_<band>`` (LensPop optimal-aperture S/N at the survey's depth), ``snr_best`` and
    ``best_band``, and the catalogue's ``mag_*`` columns.
    """
    import torch

    tiles_dir, out_dir = Path(tiles_dir), Path(out_dir)
    if out_dir.resolve() == tiles_dir.resolve():
        raise UsageError(f"{out_dir}: the output folder must not be the tiles' folder")
    lens = config["lenses"]  # the case's section: set-up, priors, tiles.stamp_size
    survey = get_survey(lens["survey"], lens.get("surveys"))
    bands = get_bands(survey, lens["bands"])
    names = [b.name for b in bands]
    pix = bands[0].pixel_scale
    seed = int(config["seed"] if seed is None else seed)
    galaxies = read_galaxies(catalog)
    tiles, problems = find_tiles(tiles_dir, names, pattern, hdu)
    for name, reason in problems.items():
        log.warning("tile %s skipped: %s", name, reason)
    smallest = int(lens["tiles"]["stamp_size"])
    margin = smallest // 2

    # Where each galaxy falls: (galaxy row, tile index, x, y) for every tile holding it.
    ra = galaxies.column("ra").to_numpy(zero_copy_only=False).astype(np.float64)
    dec = galaxies.column("dec").to_numpy(zero_copy_only=False).astype(np.float64)
    hits: list[tuple[int, int, float, float]] = []
    for t, tile in enumerate(tiles):
        read_tile_wcs(tile)
        scale = _pixel_scale(tile.wcs)
        if abs(scale / pix - 1) > PIXEL_SCALE_RTOL:
            raise MismatchError(
                f"{next(iter(tile.paths.values()))}: pixel scale {scale:.4g} arcsec, but survey "
                f"{survey.name!r} has {pix:g} (choose the survey with --survey or --config)",
                path=next(iter(tile.paths.values())),
            )
        h, w = tile.shape
        x, y = tile.wcs.all_world2pix(ra, dec, 0)
        inside = (
            np.isfinite(x)
            & (x >= margin)
            & (x <= w - 1 - margin)
            & (y >= margin)
            & (y <= h - 1 - margin)
        )
        hits += [(int(g), t, float(x[g]), float(y[g])) for g in np.flatnonzero(inside)]
    located = np.unique([g for g, *_ in hits]) if hits else np.zeros(0, dtype=np.int64)
    if not len(located):
        raise InputFileError(
            f"{catalog}: no catalogue galaxy lies on the tiles in {tiles_dir} (at least "
            f"{margin} pixels inside an edge)",
            path=catalog,
        )
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(INJECT_STREAM,)))
    chosen = located[_choose(len(located), fraction, n, rng)]
    params = _draw_sources(config, names, rng, len(chosen))
    slot = {int(g): k for k, g in enumerate(chosen)}

    observation = Observation(bands, smallest, lens["supersampling"], lens["exposures"])
    observations = {smallest: observation}
    exposure = [observation.exposure_time(b) for b in bands]
    rows = []
    written = 0
    for t, tile in enumerate(tiles):
        mine = [(g, x, y) for g, tt, x, y in hits if tt == t and g in slot]
        if not mine:
            continue
        k = np.array([slot[g] for g, _, _ in mine])
        px = np.array([x for _, x, _ in mine])
        py = np.array([y for _, _, y in mine])
        cx, cy = np.round(px), np.round(py)
        here = {key: np.asarray(value)[k] for key, value in params.items()}
        for key in here:  # the sub-pixel offset of the galaxy from its stamp's centre
            if key.endswith("center_x"):
                here[key] = here[key] + (px - cx) * pix
            elif key.endswith("center_y"):
                here[key] = here[key] + (py - cy) * pix
        h, w = tile.shape
        added = np.zeros((len(bands), h, w), dtype=np.float64)
        magnification = np.full(len(k), np.nan)
        snr = np.full((len(k), len(bands)), np.nan)
        flux = np.zeros((len(k), len(bands)))
        stamp = np.zeros(len(k), dtype=np.int32)
        groups = render_stamps(here, observation, observations, smallest)
        for group, (sel, part) in enumerate(groups):
            image = part.image
            flux[sel] = image.sum(axis=(2, 3), dtype=np.float64)
            if noise:  # Poisson noise of the added light alone: no background term
                image = add_noise(
                    torch.from_numpy(image),
                    np.zeros(len(bands)),
                    exposure,
                    _noise_seed(seed, t, group),
                ).numpy()
            paste_stamps(added, image, cx[sel].astype(int), cy[sel].astype(int))
            magnification[sel] = part.magnification
            snr[sel] = part.snr
            stamp[sel] = image.shape[-1]
        changed = 0
        for b, band in enumerate(bands):
            path = tile.paths[band.name]
            hdul, index, _ = read_band_unscaled(path, tile.hdu)
            header = hdul[index].header
            scale = _unit_scale(header, band, zp_key)
            flux[:, b] *= scale
            changed += _add_to_image(hdul[index], added[b] * scale)
            header.add_history(
                f"skyscan inject: {len(k)} lensed arc(s) added (seed {seed}); "
                "truth in injections.parquet"
            )
            _write_hdul(hdul, out_dir / path.name)
            written += 1
        columns = {
            "px": px,
            "py": py,
            "flux": flux,
            "stamp": stamp,
            "magnification": magnification,
            "snr": snr,
        }
        rows.append(_truth(galaxies, [g for g, _, _ in mine], tile.name, here, names, columns))
        log.info("%s: %d arc(s), %d pixel value(s) changed", tile.name, len(k), changed)
    truth = pa.concat_tables(rows)
    truth = truth.replace_schema_metadata(
        {
            "survey": survey.name,
            "bands": ",".join(names),
            "pixel_scale": repr(pix),
            "seed": str(seed),
            "units": "ra, dec deg; x, y pixels (0-based); theta_E, R, dx, dy arcsec; "
            "flux in the tile's pixel units",
        }
    )
    write_parquet_atomic(truth, out_dir / "injections.parquet", compression="zstd")
    return {
        "tiles_read": len(tiles),
        "tiles_skipped": problems,
        "files_written": written,
        "galaxies_on_tiles": int(len(located)),
        "arcs": int(len(chosen)),
        "rows": len(truth),
    }
