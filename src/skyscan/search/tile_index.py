"""The tile index: which survey tiles cover which HEALPix pixel, built once per tile set.

Each tile's footprint (its four corners in ICRS, through its own WCS and celestial frame) is
covered by NESTED HEALPix pixels at one ``order`` (``healpy.query_polygon``, inclusive), and
the pairs ``(pixel, tile)`` are stored as Parquet.  The search then finds the tiles of a
catalogue partition by a right shift of these pixels, so planning costs grow with objects +
tiles instead of their product, and each task receives only the tiles its partition touches.

Layout of an index folder::

    coverage.parquet   pixel (int64, NESTED at ``order``), tile_id (row of tiles.parquet)
    tiles.parquet      one row per usable tile: name, band file paths, shape, pixel scale,
                       background noise per band, celestial frame, file sizes
    index.json         order, bands, pattern, hdu, folder, problems {tile: reason}

The tile folder and the band files are recorded relative to the index folder
(:func:`skyscan.core.paths.path_for_record`; ``"relative_to": "index"`` in ``index.json``), so
the index reads from any working directory and moves together with its tiles.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from skyscan.core.atomic import write_json_atomic, write_parquet_atomic
from skyscan.core.errors import InputFileError
from skyscan.core.paths import path_for_record, resolve_recorded
from skyscan.skymap.healpix import coarsen, pixels_in_polygon
from skyscan.tiles.io import (
    Tile,
    TileError,
    find_tiles,
    pixel_to_sky,
    read_tile_wcs,
    tile_background_noise,
)

__all__ = ["TileIndex", "TileRecord", "build_tile_index", "read_tile_index", "auto_order"]

log = logging.getLogger(__name__)

#: Most pixels of the index per tile side: ~4 x 4 pixels cover a tile at the chosen order.
PIXELS_PER_SIDE = 4
MAX_ORDER = 16


@dataclass(frozen=True)
class TileRecord:
    """What a worker needs to read one tile: its band files and what the index measured."""

    name: str
    paths: dict
    hdu: int | None
    shape: tuple
    pixel_scale: float
    noise: tuple
    frame: str

    def tile(self) -> Tile:
        """A :class:`skyscan.tiles.io.Tile` for reading (WCS loaded lazily)."""
        return Tile(self.name, {b: Path(p) for b, p in self.paths.items()}, self.hdu)


@dataclass
class TileIndex:
    """A loaded tile index (see the module docstring).

    ``pixels`` and ``tile_ids`` are the coverage pairs (tile ids index ``names``); the tile
    records are built only for the tiles asked for, so planning against 10^5 tiles does not
    turn every tile into Python objects.
    """

    folder: Path
    order: int
    bands: list
    pixels: np.ndarray
    tile_ids: np.ndarray
    names: list
    table: pa.Table
    problems: dict
    tiles_folder: str
    pattern: str
    hdu: int | None
    #: True: the recorded paths are relative to the index folder; False: an index written
    #: before they were, whose relative paths meant the directory ``tiles index`` ran in.
    index_relative: bool = True

    def resolve(self, recorded: str) -> str:
        """A path recorded in this index as an absolute path (usable from any directory)."""
        base = self.folder.resolve()  # the records are relative to the real folder
        if self.index_relative:
            path = base / recorded
        else:  # an older index: beside the index when there, else where it was written
            path = resolve_recorded(recorded, base)
        return os.path.normpath(os.path.abspath(path))

    def records(self, tile_ids) -> dict:
        """``{tile id: TileRecord}`` for the ids asked for (one read of their rows); their
        paths are absolute."""
        ids = [int(k) for k in tile_ids]
        rows = self.table.take(pa.array(ids, pa.int64())).to_pylist()
        return {
            k: TileRecord(
                row["name"],
                {b: self.resolve(p) for b, p in json.loads(row["paths"]).items()},
                row["hdu"],
                (int(row["height"]), int(row["width"])),
                float(row["pixel_scale"]),
                tuple(float(v) for v in row["noise"]),
                row["frame"],
            )
            for k, row in zip(ids, rows, strict=True)
        }

    def tiles_for_partitions(self, partitions) -> dict:
        """Ids of the tiles touching each catalogue partition.

        Parameters
        ----------
        partitions : iterable of (order, pixel)

        Returns
        -------
        dict
            ``{(order, pixel): sorted array of tile ids}`` (only partitions with tiles).
        """
        partitions = list(partitions)
        out: dict = {}
        for k in sorted({int(o) for o, _ in partitions}):
            wanted = np.array([p for o, p in partitions if o == k], dtype=np.int64)
            if k <= self.order:
                keys = coarsen(self.pixels, self.order, k)
                query = wanted
            else:  # partitions finer than the index: look up their ancestor
                keys = self.pixels
                query = coarsen(wanted, k, self.order)
            order = np.argsort(keys, kind="stable")
            keys_sorted, ids_sorted = keys[order], self.tile_ids[order]
            lo = np.searchsorted(keys_sorted, query, side="left")
            hi = np.searchsorted(keys_sorted, query, side="right")
            for p, a, b in zip(wanted.tolist(), lo.tolist(), hi.tolist(), strict=True):
                if b > a:
                    out[(k, p)] = np.unique(ids_sorted[a:b])
        return out

    def pixels_by_tile(self, tile_ids) -> dict:
        """``{tile id: its index pixels}`` for the ids asked for (one pass over the pairs)."""
        wanted = np.isin(self.tile_ids, np.asarray(list(tile_ids), dtype=self.tile_ids.dtype))
        ids, pixels = self.tile_ids[wanted], self.pixels[wanted]
        order = np.argsort(ids, kind="stable")
        ids, pixels = ids[order], pixels[order]
        if not len(ids):
            return {}
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        ends = list(starts[1:]) + [len(ids)]
        return {int(ids[a]): pixels[a:b] for a, b in zip(starts, ends, strict=True)}


def auto_order(side_deg: float) -> int:
    """The coarsest order whose pixels are at most a quarter of ``side_deg`` (capped at 16)."""
    pixel_deg = math.sqrt(4 * math.pi / 12) * 180 / math.pi  # order 0, ~58.6 deg
    k = 0
    while k < MAX_ORDER and pixel_deg / 2**k > side_deg / PIXELS_PER_SIDE:
        k += 1
    return k


def _footprint_corners(tile: Tile) -> tuple[np.ndarray, np.ndarray]:
    """ICRS positions of a tile's four outer corners (healpy needs a convex polygon without
    collinear vertices: the edges of a TAN tile are great circles to well within a pixel of
    the index, and the cover is inclusive)."""
    h, w = tile.shape
    x = np.array([-0.5, w - 0.5, w - 0.5, -0.5])
    y = np.array([-0.5, -0.5, h - 0.5, h - 0.5])
    return pixel_to_sky(tile, x, y)


def build_tile_index(
    folder,
    bands,
    out_dir,
    pattern: str = "{tile}_{band}.fits",
    hdu: int | None = None,
    order: int | None = None,
    progress: bool = False,
    pixel_scale: float | None = None,
) -> dict:
    """Index the tiles of ``folder``: coverage per HEALPix pixel, noise, pixel scale.

    Tiles that cannot be used (a missing band, an unreadable file, no celestial WCS, an
    all-NaN or constant image, pixels of another size than ``pixel_scale``) are recorded with
    the reason in ``index.json`` and left out.

    The noise recorded is each band's background sigma per pixel, divided for a resampled
    band by its ``RSMPCORR`` keyword (:mod:`skyscan.tiles.resample`), so that it is the noise
    of the tile's depth and compares with the training images' uncorrelated noise.

    Parameters
    ----------
    folder : path
        The tile files.
    bands : sequence of str
        Bands every tile must have (the model card's).
    out_dir : path
        The index folder (see the module docstring).
    pattern, hdu
        File names with ``{tile}`` and ``{band}``; the image HDU (None: the first with a WCS).
    order : int, optional
        HEALPix order of the coverage; default: about 4 x 4 pixels per tile side.
    progress : bool
        Show a progress bar.
    pixel_scale : float, optional
        The model's pixel scale (arcsec; the card's ``pixel_scale``): tiles whose pixels
        differ from it on either axis by more than the search's tolerance
        (``skyscan.search.run.PIXEL_SCALE_TOLERANCE``) are left out.  None: any scale.

    Returns
    -------
    dict
        ``tiles``, ``pairs``, ``order`` and ``problems``.
    """
    from tqdm import tqdm

    out_dir = Path(out_dir)
    bands = list(bands)
    found, problems = find_tiles(folder, bands, pattern, hdu)
    usable: list[Tile] = []
    noise: dict[str, list] = {}
    for tile in tqdm(found, desc="tile index", unit="tile", disable=not progress):
        try:
            read_tile_wcs(tile)
            reason = _pixel_scale_refusal(tile, pixel_scale) if pixel_scale else None
            if reason:  # before the noise: no pixel of a refused tile is read
                problems[tile.name] = reason
                continue
            # Resampling correlates the noise: the per-pixel sigma drops while the noise per
            # unit area (what detection depends on) does not.  Dividing by the factor the
            # resampling measured gives the sigma of uncorrelated noise of the same depth,
            # which is what the search compares with the training images' (run.py
            # `_noise_ratios`).
            noise[tile.name] = [
                float(s) / tile.noise_correlation.get(b, 1.0)
                for b, s in zip(tile.paths, tile_background_noise(tile), strict=True)
            ]
        except TileError as exc:
            problems[tile.name] = str(exc)
            continue
        usable.append(tile)
    if order is None:
        sides = [max(t.shape) * t.pixel_scale / 3600 for t in usable]
        order = auto_order(float(np.median(sides))) if sides else 10
    pix_chunks, name_chunks = [], []
    for tile in usable:
        ra, dec = _footprint_corners(tile)
        if not (np.isfinite(ra).all() and np.isfinite(dec).all()):
            problems[tile.name] = "the WCS does not map the tile's corners to the sky"
            continue
        pixels = pixels_in_polygon(ra, dec, order, inclusive=True)
        pix_chunks.append(pixels)
        name_chunks.append(np.full(len(pixels), tile.name, dtype=object))
    usable = [t for t in usable if t.name not in problems]
    pixels = np.concatenate(pix_chunks) if pix_chunks else np.zeros(0, np.int64)
    names = np.concatenate(name_chunks) if name_chunks else np.zeros(0, object)
    order_rows = np.lexsort((names.astype(str), pixels)) if len(pixels) else np.zeros(0, int)
    tile_id = {t.name: k for k, t in enumerate(usable)}
    coverage = pa.table(
        {
            "pixel": pa.array(pixels[order_rows], pa.int64()),
            "tile_id": pa.array([tile_id[n] for n in names[order_rows]], pa.int32()),
        }
    )
    tiles = pa.table(
        {
            "name": [t.name for t in usable],
            "paths": [
                json.dumps({b: _recorded_file(p, out_dir) for b, p in t.paths.items()})
                for t in usable
            ],
            "hdu": pa.array([t.hdu for t in usable], pa.int64()),
            "height": [int(t.shape[0]) for t in usable],
            "width": [int(t.shape[1]) for t in usable],
            "pixel_scale": [float(t.pixel_scale) for t in usable],
            "noise": [noise[t.name] for t in usable],
            "frame": [_frame_name(t) for t in usable],
            "bytes": [sum(Path(p).stat().st_size for p in t.paths.values()) for t in usable],
        }
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    write_parquet_atomic(coverage, out_dir / "coverage.parquet")
    write_parquet_atomic(tiles, out_dir / "tiles.parquet")
    meta = {
        "order": int(order),
        "bands": bands,
        "pattern": pattern,
        "hdu": hdu,
        # relative to the index folder, so the index reads from any working directory
        "folder": path_for_record(folder, out_dir),
        "relative_to": "index",
        "tiles": len(usable),
        "pairs": len(coverage),
        "problems": dict(sorted(problems.items())),
    }
    write_json_atomic(out_dir / "index.json", meta)
    if not usable:  # nothing to search: say why rather than write an empty index
        name, reason = next(iter(sorted(problems.items())))
        raise TileError(
            f"{folder}: none of the {len(problems)} tile(s) is usable ({name}: {reason}; "
            f"every reason in {out_dir / 'index.json'})",
            path=folder,
        )
    log.info(
        "indexed %d tile(s) into %d (pixel, tile) pairs at order %d",
        len(usable),
        len(coverage),
        order,
    )
    return {k: meta[k] for k in ("tiles", "pairs", "order", "problems")}


def _recorded_file(path, out_dir: Path) -> str:
    """A band file as the index records it: its folder relative to the index folder (the
    file name kept as found, even when it is a link the folder's resolution would follow)."""
    path = Path(path)
    return (Path(path_for_record(path.parent, out_dir)) / path.name).as_posix()


def _pixel_scale_refusal(tile: Tile, expected: float) -> str | None:
    """Why the search would refuse this tile's pixels for a model at ``expected`` arcsec,
    or None (both axes checked, at the search's tolerance)."""
    from astropy.wcs.utils import proj_plane_pixel_scales

    # run.py imports this module: import its tolerance here, when first needed.
    from skyscan.search.run import PIXEL_SCALE_TOLERANCE

    expected = float(expected)
    scales = proj_plane_pixel_scales(tile.wcs) * 3600.0
    worst = float(np.max(np.abs(scales / expected - 1)))
    if worst <= PIXEL_SCALE_TOLERANCE:
        return None
    if abs(scales[0] / scales[1] - 1) < 1e-3:
        theirs = f'{scales.mean():.4g}"/pixel'
    else:
        theirs = f'{scales[0]:.4g}" x {scales[1]:.4g}"/pixel'
    files = " ".join(shlex.quote(str(p)) for p in tile.paths.values())
    return (
        f"pixel scale {theirs} differs from the model's {expected:.4g}\"/pixel by {worst:.1%} "
        f"(more than {PIXEL_SCALE_TOLERANCE:.0%}): resample it with `skyscan tiles resample "
        f"{files} --pixel-scale {expected:g} --out DIR`, or train a model at the survey's "
        "pixel scale"
    )


def _frame_name(tile: Tile) -> str:
    frame = getattr(tile, "frame", None)
    if frame is None:
        return ""
    name = frame.name
    equinox = getattr(frame, "equinox", None)
    return f"{name}({equinox})" if equinox is not None and name in ("fk4", "fk5") else name


def read_tile_index(folder) -> TileIndex:
    """Load an index written by :func:`build_tile_index`.

    The tile folder and the records' band files come back as absolute paths, resolved
    against the index folder (an index written before paths were recorded relative to it:
    beside it when they exist there, else as written).

    Returns
    -------
    TileIndex

    Raises
    ------
    InputFileError
        Naming the folder when it is not a complete index (with the command that makes one).
    """
    folder = Path(folder)
    need = [folder / n for n in ("coverage.parquet", "tiles.parquet", "index.json")]
    missing = [p.name for p in need if not p.is_file()]
    if missing:
        raise InputFileError(
            f"{folder}: not a tile index (missing {', '.join(missing)}; make one with "
            f"`skyscan tiles index TILES --out {folder}`)",
            path=folder,
        )
    try:
        meta = json.loads((folder / "index.json").read_text())
        coverage = pq.read_table(folder / "coverage.parquet")
        tiles = pq.read_table(folder / "tiles.parquet")
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise InputFileError(
            f"{folder}: unreadable tile index ({type(exc).__name__}: {exc})", path=folder
        ) from None
    index = TileIndex(
        folder,
        int(meta["order"]),
        list(meta["bands"]),
        coverage.column("pixel").to_numpy().astype(np.int64),
        coverage.column("tile_id").to_numpy().astype(np.int32),
        tiles.column("name").to_pylist(),
        tiles,
        dict(meta.get("problems", {})),
        meta["folder"],
        meta["pattern"],
        meta["hdu"],
        meta.get("relative_to") == "index",
    )
    index.tiles_folder = index.resolve(meta["folder"])
    return index
