"""The search: score every object of a HATS catalogue on the survey tiles that cover it.

One task per partition of the input catalogue (its adaptive HEALPix pixels), run in this
process or on Dask workers (one per GPU, or per core).  A task receives only its own
partition file and the records of the tiles that touch it (from the tile index,
:mod:`skyscan.search.tile_index`), so planning costs grow with partitions + tiles and no
worker sees the whole plan.  In the task each object goes to the tile where it lies furthest
from the edges (positions through each tile's own WCS and celestial frame); stamps are cut
from sections of the tile read for a batch of nearby objects, so a large tile is never read
whole; the model card's preprocessing and network score them in batches.

Output ``OUT/scores`` is a HATS catalogue (``lsdb.open_catalog`` reads it): the input's
columns and ``_healpix_29`` plus ``tile``, ``x``, ``y`` (0-based pixel), ``logit``,
``score`` (calibrated probability) and ``cutout_flags``, in the input's partitions, each sorted by
``_healpix_29`` then id, so the bytes do not depend on the number of workers.
``OUT/candidates.parquet`` holds only the objects at or above the model's operating threshold
(at most ``top_n`` of them).  Each finished partition leaves a marker in ``OUT/progress``
after its file: a re-run (after ``kill -9`` too) redoes only missing partitions and those
whose tiles failed, and drops the failures that pass.  A tile that cannot be read moves its
objects to the next tile that covers them.  A lock on ``OUT`` keeps two searches apart.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from skyscan.catalog.hats_catalog import (
    HEALPIX_COLUMN,
    open_hats,
    partition_file,
    write_hats_metadata,
)
from skyscan.core.atomic import write_json_atomic, write_parquet_atomic
from skyscan.core.case import CandidateAnnotation, get_case
from skyscan.core.errors import InputFileError, MismatchError, ResourceError
from skyscan.core.paths import path_for_record
from skyscan.data.preprocess import preprocess
from skyscan.models.card import ModelCard, load_model, read_card
from skyscan.search.tile_index import TileRecord, read_tile_index
from skyscan.skymap.healpix import radec_to_pixel
from skyscan.tiles.io import Tile, TileError, read_tile_section, read_tile_wcs, sky_to_pixel

__all__ = [
    "FLAG_EDGE",
    "FLAG_NAN",
    "OUTPUT_COLUMNS",
    "SearchPlan",
    "PartitionTask",
    "plan_search",
    "score_partition",
    "run_search",
    "cutouts",
]

log = logging.getLogger(__name__)

FLAG_EDGE = 1  # the cutout crosses the tile edge: padded with zeros
FLAG_NAN = 2  # NaN or blank pixels in the cutout: set to zero

#: Columns the search adds to the input's.
OUTPUT_COLUMNS = ("tile", "x", "y", "logit", "score", "cutout_flags")

#: A tile's pixel scale may differ from the model's by this fraction at most.
PIXEL_SCALE_TOLERANCE = 0.01
#: Background noise beyond this factor of the training images' is reported as a warning.
NOISE_WARNING_RATIO = 2.0


@dataclass(frozen=True)
class PartitionTask:
    """One partition: its input file, the tiles touching it and their index pixels."""

    order: int
    pixel: int
    source: str
    tiles: tuple
    tile_pixels: tuple
    identity: str


@dataclass(frozen=True)
class SearchContext:
    """What every task shares (small: sent with each task)."""

    card_path: str
    card: ModelCard
    ra_column: str
    dec_column: str
    id_column: str
    index_order: int
    out_dir: str
    batch_size: int
    scorer: str = "model"
    #: where samples come from: "tiles" (stamps cut from survey tiles) or "catalog" (the
    #: catalogue's own rows, through the case's sample description)
    loader: str = "tiles"


@dataclass
class SearchPlan:
    """The partitions to score, the shared context, and what planning found."""

    context: SearchContext
    tasks: list
    problems: dict
    noise: dict
    catalog_dir: Path
    catalog_name: str
    creation_date: str | None
    input_schema: pa.Schema
    partitions_without_tiles: int
    index_dir: Path | None
    tiles_source: dict
    top_n: int | None = None
    parameters: str | None = None
    #: share of positives among the objects searched (candidates' probability_at_prevalence)
    prevalence: float | None = None

    @property
    def out_dir(self) -> Path:
        return Path(self.context.out_dir)

    @property
    def card(self) -> ModelCard:
        return self.context.card

    @property
    def scores_dir(self) -> Path:
        return self.out_dir / "scores"

    def output_file(self, task: PartitionTask) -> Path:
        return partition_file(self.scores_dir, task.order, task.pixel)


def _marker(out_dir: Path, order: int, pixel: int) -> Path:
    return Path(out_dir) / "progress" / f"Norder={order}" / f"Npix={pixel}.json"


def plan_search(
    card_path,
    index_dir,
    catalog_dir,
    out_dir,
    *,
    batch_size: int = 512,
    top_n: int | None = None,
    id_column: str = "id",
    scorer: str = "model",
    parameters=None,
    prevalence: float | None = None,
) -> SearchPlan:
    """Pair each partition of a HATS catalogue with the tiles that touch it.

    Parameters
    ----------
    card_path : path
        The exported model's card (bands, stamp size, pixel scale, preprocessing).
    index_dir : path or None
        A tile index (:func:`skyscan.search.tile_index.build_tile_index`) for samples cut
        from survey tiles; None when the case's samples are the catalogue's own rows (e.g.
        nested light curves: :meth:`skyscan.data.samples.SampleDescription.from_catalog`).
    catalog_dir : path
        A HATS catalogue (``skyscan catalog import`` makes one from Parquet, CSV or FITS).
    out_dir : path
        The search folder.
    batch_size : int
        Stamps per forward pass.
    top_n : int, optional
        Keep at most this many candidates (highest scores) in ``candidates.parquet``.
    id_column : str
        The catalogue's identifier column.
    scorer : str
        ``"model"``; ``"mean-pixel"`` replaces the network by the stamp's mean, for
        benchmarks of the orchestration alone.
    parameters : path, optional
        A parameter network's card (``train.target: parameters``): the candidates get its
        estimates and 68% intervals and the vetting flag.
    prevalence : float, optional
        Share of positives among the objects searched: the candidates of a binary classifier
        get ``probability_at_prevalence`` (:meth:`ModelCard.probability_at_prevalence`).

    Returns
    -------
    SearchPlan
    """
    card_path = Path(card_path)
    card = read_card(card_path)
    if index_dir is None:
        plan = _plan_catalog_search(
            card_path, card, catalog_dir, out_dir, batch_size, top_n, id_column, scorer
        )
        return replace(plan, prevalence=prevalence)
    index = read_tile_index(index_dir)
    missing = [b for b in card.bands if b not in index.bands]
    if missing:
        raise MismatchError(
            f"{index_dir}: the tile index has bands {index.bands}, but the model "
            f"{card_path} needs {card.bands} (rebuild the index with its bands)",
            path=index_dir,
        )
    catalog, info, ra_column, dec_column, schema = _open_catalog(catalog_dir, id_column)
    clash = [c for c in OUTPUT_COLUMNS if c in schema.names]
    if clash:  # the input's own tile/x/y/score... columns are kept under another name
        log.info("input column(s) %s kept as %s", clash, [f"input_{c}" for c in clash])
    problems = dict(index.problems)
    pixels = [(int(p.order), int(p.pixel)) for p in catalog.get_healpix_pixels()]
    touching = index.tiles_for_partitions(pixels)
    used = np.unique(np.concatenate(list(touching.values()))) if touching else []
    usable: dict[int, TileRecord] = {}  # only the tiles some partition touches
    noise = {}
    for tile_id, record in index.records(used).items():
        reason = _refusal(record, card)
        if reason:
            problems[record.name] = reason
            continue
        usable[tile_id] = record
        noise[record.name] = _noise_ratios(record, card, index.bands)
    by_tile = index.pixels_by_tile(usable)
    base = {
        "card": card.to_dict(),
        "catalog": _catalog_identity(Path(catalog_dir)),
        "index_order": index.order,
        "batch_size": int(batch_size),
        "scorer": scorer,
        "version": 2,
    }
    keys = {k: _record_key(record) for k, record in usable.items()}
    tasks = []
    for order, pixel in sorted(pixels):
        ids = [int(k) for k in touching.get((order, pixel), []) if int(k) in usable]
        if not ids:
            continue
        ids.sort(key=lambda k: usable[k].name)
        identity = _digest({**base, "tiles": [keys[k] for k in ids]})
        tasks.append(
            PartitionTask(
                order,
                pixel,
                str(partition_file(catalog.catalog_base_dir, order, pixel)),
                tuple(usable[k] for k in ids),
                tuple(by_tile[k] for k in ids),
                identity,
            )
        )
    context = SearchContext(
        str(card_path),
        card,
        ra_column,
        dec_column,
        id_column,
        index.order,
        str(Path(out_dir)),
        int(batch_size),
        scorer,
    )
    return SearchPlan(
        context,
        tasks,
        problems,
        noise,
        Path(catalog_dir),
        str(info.catalog_name),
        getattr(info, "hats_creation_date", None),
        schema,
        len(pixels) - len(tasks),
        Path(index_dir),
        {"tiles": index.tiles_folder, "pattern": index.pattern, "hdu": index.hdu},
        top_n,
        str(parameters) if parameters else None,
        prevalence,
    )


def _open_catalog(catalog_dir, id_column: str):
    """The HATS catalogue, its position columns and schema; the id and positions must exist."""
    catalog = open_hats(catalog_dir)
    info = catalog.catalog_info
    ra_column, dec_column = info.ra_column or "ra", info.dec_column or "dec"
    schema = _input_schema(catalog, catalog_dir)
    for column in (ra_column, dec_column, id_column):
        if column not in schema.names:
            raise InputFileError(
                f"{catalog_dir}: no column {column!r} (columns: {', '.join(schema.names[:12])})",
                path=catalog_dir,
            )
    return catalog, info, ra_column, dec_column, schema


def _plan_catalog_search(
    card_path, card, catalog_dir, out_dir, batch_size, top_n, id_column, scorer
):
    """Every partition of a catalogue whose rows hold the samples themselves (no tiles)."""
    from skyscan.data.samples import describe

    samples = describe(get_case(card.case), card.preprocessing)
    if not samples.reads_catalog:
        raise MismatchError(
            f"{card_path}: {samples.kind} samples are cut from survey tiles: give a tile index "
            "(--index) or the tiles (--tiles)",
            path=card_path,
        )
    catalog, info, ra_column, dec_column, schema = _open_catalog(catalog_dir, id_column)
    missing = [c for c in samples.catalog_columns() if c not in schema.names]
    if missing:
        raise InputFileError(
            f"{catalog_dir}: no column {', '.join(map(repr, missing))} for the model's "
            f"{samples.kind} (columns: {', '.join(schema.names[:12])})",
            path=catalog_dir,
        )
    base = {
        "card": card.to_dict(),
        "catalog": _catalog_identity(Path(catalog_dir)),
        "batch_size": int(batch_size),
        "scorer": scorer,
        "loader": "catalog",
        "version": 2,
    }
    pixels = sorted((int(p.order), int(p.pixel)) for p in catalog.get_healpix_pixels())
    tasks = [
        PartitionTask(
            order,
            pixel,
            str(partition_file(catalog.catalog_base_dir, order, pixel)),
            (),
            (),
            _digest({**base, "partition": [order, pixel]}),
        )
        for order, pixel in pixels
    ]
    context = SearchContext(
        str(card_path),
        card,
        ra_column,
        dec_column,
        id_column,
        0,
        str(Path(out_dir)),
        int(batch_size),
        scorer,
        "catalog",
    )
    return SearchPlan(
        context,
        tasks,
        {},
        {},
        Path(catalog_dir),
        str(info.catalog_name),
        getattr(info, "hats_creation_date", None),
        schema,
        0,
        None,
        {},
        top_n,
        None,
    )


#: Output columns of a search over the catalogue's own rows (no tile, no pixel position).
CATALOG_OUTPUT_COLUMNS = ("logit", "score", "cutout_flags")


def _score_catalog_partition(task: PartitionTask, context: SearchContext, table) -> dict:
    """Score a partition whose rows hold the samples (the case's sample description reads
    them), and write its file and marker atomically."""
    from skyscan.data.samples import FLAG_EMPTY, describe

    card = context.card
    samples = describe(get_case(card.case), card.preprocessing)
    try:
        payload, flags = samples.from_catalog(table, card.preprocessing)
    except MismatchError as exc:
        raise InputFileError(f"{task.source}: {exc}", path=task.source) from None
    keep = np.flatnonzero((flags & FLAG_EMPTY) == 0)
    logits = np.full(len(table), np.nan)
    for start in range(0, len(keep), context.batch_size):
        rows = keep[start : start + context.batch_size]
        batch = samples.apply(payload[rows], card.preprocessing)
        logits[rows] = _score_batch(context, np.ascontiguousarray(batch))
    out = table.take(pa.array(keep)).rename_columns(
        [f"input_{c}" if c in CATALOG_OUTPUT_COLUMNS else c for c in table.column_names]
    )
    out = out.append_column("logit", pa.array(logits[keep]))
    out = out.append_column("score", pa.array(card.probability(logits[keep])))
    out = out.append_column("cutout_flags", pa.array(flags[keep]))
    out = out.sort_by([(HEALPIX_COLUMN, "ascending"), (context.id_column, "ascending")])
    out_dir = Path(context.out_dir)
    path = partition_file(out_dir / "scores", task.order, task.pixel)
    if len(out):
        write_parquet_atomic(out, path, compression="zstd")
    else:
        path.unlink(missing_ok=True)
    result = {
        "identity": task.identity,
        "rows": len(out),
        "off_tiles": int(len(table) - len(keep)),  # not scored: no sample in the row
        "lost": 0,
        "failures": {},
    }
    write_json_atomic(_marker(out_dir, task.order, task.pixel), result)
    return result


def _input_schema(catalog, catalog_dir) -> pa.Schema:
    base = Path(catalog.catalog_base_dir)
    for name in ("_common_metadata", "_metadata"):
        path = base / "dataset" / name
        if path.is_file():
            return pq.read_schema(path).remove_metadata()
    raise InputFileError(f"{catalog_dir}: no dataset/_common_metadata", path=catalog_dir)


def _refusal(record: TileRecord, card: ModelCard) -> str | None:
    """Why a tile cannot be searched with this model, or None."""
    if card.pixel_scale and record.pixel_scale:
        ratio = record.pixel_scale / float(card.pixel_scale)
        if abs(ratio - 1) > PIXEL_SCALE_TOLERANCE:
            return (
                f"pixel scale {record.pixel_scale:.4f}\"/pix differs from the model's "
                f'{float(card.pixel_scale):.4f}"/pix by {100 * abs(ratio - 1):.1f}% '
                f"(more than {100 * PIXEL_SCALE_TOLERANCE:.0f}%): resample it with `skyscan "
                f"tiles resample FILES --pixel-scale {float(card.pixel_scale):g} --out DIR`, "
                "or train a model at the survey's pixel scale"
            )
    return None


def _noise_ratios(record: TileRecord, card: ModelCard, index_bands) -> dict:
    """Tile background sigma over the training images', per band (None if unknown)."""
    scale = card.preprocessing.get("scale") if card.preprocessing else None
    if not scale or not record.noise or card.preprocessing.get("normalise"):
        return {}  # unknown, or a per-stamp normalised model: the tile's units do not matter
    return {
        band: float(record.noise[index_bands.index(band)]) / float(s)
        for band, s in zip(card.bands, scale, strict=False)
        if float(s) > 0
    }


def _record_key(record: TileRecord) -> list:
    """What identifies a tile's part in a partition's result: the index's record (a changed
    tile file is re-indexed, and a partition whose tile failed is retried anyway), so
    planning reads no file of the tiles."""
    return [record.name, record.paths, record.hdu, list(record.shape), record.pixel_scale]


def _catalog_identity(catalog_dir: Path) -> str:
    digest = hashlib.sha256()
    for name in ("hats.properties", "partition_info.csv", "dataset/_metadata"):
        path = catalog_dir / name
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _digest(data) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- scoring


_MODELS: dict = {}


def _model(card_path: str):
    """The exported model, loaded once per worker process."""
    if card_path not in _MODELS:
        import torch

        torch.set_num_threads(1)
        _MODELS[card_path] = load_model(card_path)[0]
    return _MODELS[card_path]


def _score_batch(context: SearchContext, batch: np.ndarray) -> np.ndarray:
    if context.scorer == "mean-pixel":  # orchestration benchmarks only: no network
        return batch.reshape(len(batch), -1).mean(axis=1, dtype=np.float64)
    import torch

    with torch.inference_mode():
        return _model(context.card_path)(torch.from_numpy(batch)).double().numpy()


def cutouts(data: np.ndarray, x, y, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``size x size`` stamps centred on the nearest pixels to ``(x, y)`` (0-based) of an
    image already in memory.

    Returns
    -------
    stamps : ndarray, shape (N, bands, size, size), float32
        Zero-padded beyond the image; NaN pixels set to zero.
    flags : ndarray of int32
        ``FLAG_EDGE`` and/or ``FLAG_NAN`` per stamp.
    """
    nb, h, w = data.shape
    r = (size - 1) // 2
    cx = np.round(np.asarray(x)).astype(int)
    cy = np.round(np.asarray(y)).astype(int)
    stamps = np.zeros((len(cx), nb, size, size), dtype=np.float32)
    flags = np.zeros(len(cx), dtype=np.int32)
    for k in range(len(cx)):
        x0, y0 = cx[k] - r, cy[k] - r
        xs, ys, xe, ye = max(x0, 0), max(y0, 0), min(x0 + size, w), min(y0 + size, h)
        if (xs, ys, xe, ye) != (x0, y0, x0 + size, y0 + size):
            flags[k] |= FLAG_EDGE
        stamps[k, :, ys - y0 : ye - y0, xs - x0 : xe - x0] = data[:, ys:ye, xs:xe]
    bad = ~np.isfinite(stamps)
    if bad.any():
        flags[bad.reshape(len(cx), -1).any(axis=1)] |= FLAG_NAN
        stamps[bad] = 0.0
    return stamps, flags


def tile_cutouts(tile: Tile, x, y, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Stamps of a tile on disk, reading only the sections they need.

    Nearby stamps share one section read (their bounding box, when it is not much larger
    than the stamps themselves); scattered ones are read one by one.  Same output as
    :func:`cutouts`.
    """
    h, w = tile.shape
    r = (size - 1) // 2
    x0 = np.round(np.asarray(x)).astype(int) - r
    y0 = np.round(np.asarray(y)).astype(int) - r
    n = len(x0)
    nb = len(tile.paths)
    stamps = np.empty((n, nb, size, size), dtype=np.float32)
    if n == 0:
        return stamps, np.zeros(0, np.int32)
    bx0, by0 = int(x0.min()), int(y0.min())
    bx1, by1 = int(x0.max()) + size, int(y0.max()) + size
    if (bx1 - bx0) * (by1 - by0) <= max(4 * n * size * size, 512 * 512):
        section = read_tile_section(tile, bx0, bx1, by0, by1)
        for k in range(n):
            a, b = y0[k] - by0, x0[k] - bx0
            stamps[k] = section[:, a : a + size, b : b + size]
    else:
        for k in range(n):
            stamps[k] = read_tile_section(
                tile, int(x0[k]), int(x0[k]) + size, int(y0[k]), int(y0[k]) + size
            )
    inside_w = np.clip(np.minimum(x0 + size, w) - np.maximum(x0, 0), 0, size)
    inside_h = np.clip(np.minimum(y0 + size, h) - np.maximum(y0, 0), 0, size)
    outside = size * size - inside_w * inside_h
    flags = np.where(outside > 0, FLAG_EDGE, 0).astype(np.int32)
    bad = ~np.isfinite(stamps)
    nonfinite = bad.reshape(n, -1).sum(axis=1)
    flags[nonfinite > nb * outside] |= FLAG_NAN
    stamps[bad] = 0.0
    return stamps, flags


_TILES: dict = {}
#: Tile headers kept per worker process (neighbouring partitions share tiles).
TILE_CACHE_SIZE = 256


def _tile_header(record: TileRecord, bands: tuple) -> Tile:
    """The tile with its WCS read (cached per process while its files are unchanged)."""
    stats = []
    for band in bands:
        try:
            st = os.stat(record.paths[band])
            stats.append((st.st_size, st.st_mtime_ns))
        except OSError:
            stats.append(None)
    key = (record.name, tuple(record.paths[b] for b in bands), record.hdu, tuple(stats))
    tile = _TILES.get(key)
    if tile is None:
        tile = Tile(record.name, {b: Path(record.paths[b]) for b in bands}, record.hdu)
        read_tile_wcs(tile)  # raises TileError: not cached, so a fixed file is read again
        if len(_TILES) >= TILE_CACHE_SIZE:
            _TILES.pop(next(iter(_TILES)))
        _TILES[key] = tile
    return tile


def _use_system_memory_pool() -> None:
    """Arrow's own allocator (jemalloc/mimalloc) keeps what partitions freed: a process that
    scored 338 partitions of 10^7 rows peaked at 2.27 GB, 1.35 GB with the system allocator
    (measured here with the trivial scorer).  Set once per worker process."""
    if pa.default_memory_pool().backend_name != "system":
        pa.set_memory_pool(pa.system_memory_pool())


def score_partition(task: PartitionTask, context: SearchContext) -> dict:
    """Score one partition and write its file and marker atomically.

    Returns
    -------
    dict
        ``rows`` written, ``off_tiles`` (objects on no tile), ``lost`` (objects whose every
        tile failed) and ``failures`` ``{tile: reason}``.
    """
    _use_system_memory_pool()
    card = context.card
    spec = card.preprocessing
    size = int(card.input_shape[-1])
    out_dir = Path(context.out_dir)
    try:
        table = pq.read_table(task.source)
    except (OSError, pa.ArrowException) as exc:
        raise InputFileError(
            f"{task.source}: unreadable catalogue partition ({type(exc).__name__}: {exc})",
            path=task.source,
        ) from None
    if context.loader == "catalog":
        return _score_catalog_partition(task, context, table)
    ra = table.column(context.ra_column).to_numpy().astype(np.float64)
    dec = table.column(context.dec_column).to_numpy().astype(np.float64)
    n, ntiles = len(table), len(task.tiles)
    index_pixel = radec_to_pixel(ra, dec, context.index_order)
    margin = np.full((ntiles, n), -np.inf)
    xs = np.full((ntiles, n), np.nan)
    ys = np.full((ntiles, n), np.nan)
    failures: dict[str, str] = {}
    tiles: dict[int, Tile] = {}
    for k, record in enumerate(task.tiles):
        near = np.flatnonzero(np.isin(index_pixel, task.tile_pixels[k]))
        if not len(near):
            continue
        try:
            tile = _tile_header(record, tuple(card.bands))
        except TileError as exc:
            failures[record.name] = str(exc)
            continue
        x, y = sky_to_pixel(tile, ra[near], dec[near])
        h, w = tile.shape
        m = np.minimum(np.minimum(x + 0.5, w - 0.5 - x), np.minimum(y + 0.5, h - 0.5 - y))
        margin[k, near] = np.where(np.isfinite(m), m, -np.inf)
        xs[k, near], ys[k, near] = x, y
        tiles[k] = tile
    on_tiles = (margin > 0).any(axis=0) if ntiles else np.zeros(n, bool)
    chosen = np.full(n, -1)
    logits = np.full(n, np.nan)
    flags = np.zeros(n, np.int32)
    scored = np.zeros(n, bool)

    def assign(rows):
        if len(rows):
            best = np.argmax(margin[:, rows], axis=0)
            ok = margin[best, rows] > 0
            chosen[rows] = np.where(ok, best, -1)

    assign(np.arange(n))
    while True:
        pending = (chosen >= 0) & ~scored
        if not pending.any():
            break
        k = int(chosen[pending].min())
        rows = np.flatnonzero(pending & (chosen == k))
        try:
            _score_on_tile(tiles[k], xs[k], ys[k], rows, size, spec, context, logits, flags, scored)
        except TileError as exc:  # move what is left of it to the next tile covering it
            failures[task.tiles[k].name] = str(exc)
            margin[k, :] = -np.inf
            assign(rows[~scored[rows]])
    # objects on a failed tile and on no other: exact when the tile failed at read time; when
    # its header failed, all those in its index pixels (a slightly larger footprint)
    near_failed = np.zeros(n, bool)
    for k, record in enumerate(task.tiles):
        if record.name in failures and k not in tiles:
            near_failed |= np.isin(index_pixel, task.tile_pixels[k])
    lost = (on_tiles | near_failed) & ~scored
    keep = np.flatnonzero(scored)
    tile_names = np.array([r.name for r in task.tiles] or [""], dtype=object)
    out = table.take(pa.array(keep)).rename_columns(
        [f"input_{c}" if c in OUTPUT_COLUMNS else c for c in table.column_names]
    )
    out = out.append_column("tile", pa.array(tile_names[chosen[keep]].tolist(), pa.string()))
    out = out.append_column("x", pa.array(xs[chosen[keep], keep]))
    out = out.append_column("y", pa.array(ys[chosen[keep], keep]))
    out = out.append_column("logit", pa.array(logits[keep]))
    out = out.append_column("score", pa.array(card.probability(logits[keep])))
    out = out.append_column("cutout_flags", pa.array(flags[keep]))
    out = out.sort_by([(HEALPIX_COLUMN, "ascending"), (context.id_column, "ascending")])
    path = partition_file(out_dir / "scores", task.order, task.pixel)
    if len(out):
        write_parquet_atomic(out, path, compression="zstd")
    else:
        path.unlink(missing_ok=True)
    result = {
        "identity": task.identity,
        "rows": len(out),
        "off_tiles": int((~on_tiles).sum()),
        "lost": int(lost.sum()),
        "failures": failures,
    }
    write_json_atomic(_marker(out_dir, task.order, task.pixel), result)
    return result


def _score_on_tile(tile, x_all, y_all, rows, size, spec, context, logits, flags, scored):
    """Score ``rows`` on ``tile`` in batches of nearby objects (row-major order)."""
    rows = rows[np.lexsort((x_all[rows], y_all[rows]))]
    for start in range(0, len(rows), context.batch_size):
        batch = rows[start : start + context.batch_size]
        stamps, f = tile_cutouts(tile, x_all[batch], y_all[batch], size)
        logits[batch] = _score_batch(context, preprocess(stamps, spec))
        flags[batch] = f
        scored[batch] = True


# --------------------------------------------------------------------------- running


def _complete(plan: SearchPlan, task: PartitionTask) -> dict | None:
    """The marker of a finished partition of this search (None if it must be redone)."""
    marker = _marker(plan.out_dir, task.order, task.pixel)
    try:
        done = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    if done.get("identity") != task.identity:
        return None
    if done.get("rows"):
        try:
            pq.ParquetFile(plan.output_file(task)).metadata  # noqa: B018 (footer readable)
        except (OSError, pa.ArrowException):
            return None
    return done


class _Lock:
    """An exclusive lock on the search folder, released with the process."""

    def __init__(self, out_dir: Path):
        self.path = Path(out_dir) / ".search.lock"
        self.fd = None

    def __enter__(self):
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise ResourceError(
                f"{self.path.parent}: another search is writing here (lock {self.path})",
                path=self.path.parent,
            ) from None
        return self

    def __exit__(self, *exc):
        # Removed while still held, so no other search can hold it between the two steps (a
        # waiting one fails at once: LOCK_NB); a crash leaves the file, which is harmless.
        self.path.unlink(missing_ok=True)
        os.close(self.fd)


def _remove_stale(plan: SearchPlan) -> int:
    """Delete partition files and markers that are not partitions of this plan (an earlier
    catalogue's), so they cannot be merged into this result."""
    wanted = {plan.output_file(t) for t in plan.tasks}
    markers = {_marker(plan.out_dir, t.order, t.pixel) for t in plan.tasks}
    removed = 0
    for path in (plan.scores_dir / "dataset").glob("Norder=*/Dir=*/Npix=*.parquet"):
        if path not in wanted:
            path.unlink()
            removed += 1
    for path in (plan.out_dir / "progress").glob("Norder=*/Npix=*.json"):
        if path not in markers:
            path.unlink()
    return removed


def run_search(
    plan: SearchPlan, workers: int = 1, progress: bool = True, cluster: Mapping | None = None
) -> dict:
    """Score every partition not yet complete, then write the HATS metadata, the candidates
    and the summary.

    Parameters
    ----------
    plan : SearchPlan
    workers : int
        Dask worker processes (one thread each); 0 runs in this process without Dask.
    progress : bool
        Show a progress bar.
    cluster : mapping, optional
        ``{"kind": "slurm", ...}`` to run the workers as SLURM jobs through dask-jobqueue;
        default a ``LocalCluster``.

    Returns
    -------
    dict
        Summary (also ``summary.json``; the failures are in ``failures.json``) and
        ``timings``: seconds to start the cluster, to score, and to write the metadata.
    """
    from tqdm import tqdm

    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 0:
        raise InputFileError(f"search.workers must be an integer >= 0, got {workers!r}")
    with _Lock(plan.out_dir):
        stale = _remove_stale(plan)
        todo, done = [], {}
        for task in plan.tasks:
            marker = _complete(plan, task)
            if marker is None or marker["failures"]:
                todo.append(task)  # never done, or done with failed tiles: retry
            else:
                done[(task.order, task.pixel)] = marker
        skipped = len(done)
        errors: dict[str, str] = {}
        bar = tqdm(total=len(todo), unit="partition", desc="search", disable=not progress)
        timings = {"cluster_start_s": 0.0}
        started = time.perf_counter()
        if workers == 0 or not todo:
            for task in todo:
                try:
                    done[(task.order, task.pixel)] = score_partition(task, plan.context)
                except InputFileError as exc:
                    errors[f"partition {task.order}/{task.pixel}"] = str(exc)
                bar.update()
        else:
            _run_dask(plan, todo, workers, cluster, done, errors, bar, timings)
        bar.close()
        timings["scoring_s"] = time.perf_counter() - started - timings["cluster_start_s"]
        finishing = time.perf_counter()
        summary = _finish(plan, done, errors, skipped, len(todo), stale)
        timings["finish_s"] = time.perf_counter() - finishing
    # timings stay out of summary.json, which is the same bytes for the same search
    return {**summary, "timings": timings}


def _run_dask(plan, todo, workers, cluster, done, errors, bar, timings) -> None:
    from dask.distributed import as_completed

    from skyscan.search.cluster import start_cluster

    started = time.perf_counter()
    with start_cluster(cluster, workers, plan.out_dir / "slurm-logs") as client:
        timings["cluster_start_s"] = time.perf_counter() - started
        context = client.scatter(plan.context, broadcast=True)
        futures = {
            client.submit(score_partition, task, context, retries=1, pure=False): task
            for task in todo
        }
        for future in as_completed(futures):
            task = futures[future]
            try:
                done[(task.order, task.pixel)] = future.result()
            except Exception as exc:  # after the retry: record and carry on
                errors[f"partition {task.order}/{task.pixel}"] = f"{type(exc).__name__}: {exc}"
            bar.update()


def _finish(plan: SearchPlan, done: dict, errors: dict, skipped: int, tried: int, stale: int):
    failures = dict(plan.problems)
    for marker in done.values():
        failures.update(marker["failures"])
    failures.update(errors)
    written = sorted(key for key, m in done.items() if m["rows"])
    rows = sum(m["rows"] for m in done.values())
    schema = _output_schema(plan, written)
    write_hats_metadata(
        plan.scores_dir,
        written,
        schema,
        rows,
        name=f"{plan.catalog_name}_scores",
        ra_column=plan.context.ra_column,
        dec_column=plan.context.dec_column,
        creation_date=plan.creation_date,
    )
    candidates, known = _write_candidates(plan, written, schema)
    source = dict(plan.tiles_source)
    if source.get("tiles") is not None:
        source["tiles"] = _recorded(source["tiles"], plan.out_dir)
    summary = {
        "partitions": len(plan.tasks),
        "partitions_without_tiles": plan.partitions_without_tiles,
        "scored_now": tried,
        "skipped_complete": skipped,
        "removed_stale": stale,
        "rows": rows,
        "off_tiles": sum(m["off_tiles"] for m in done.values()),
        "lost_to_failed_tiles": sum(m["lost"] for m in done.values()),
        "candidates": candidates,
        **known,
        "threshold": plan.card.threshold,
        "prevalence": plan.prevalence,
        "training_prevalence": plan.card.training_prevalence,
        "failures": len(failures),
        "noise_ratio": _noise_summary(plan),
        # paths relative to the search folder, so the record reads from any directory
        "catalog": _recorded(plan.catalog_dir, plan.out_dir),
        "index": _recorded(plan.index_dir, plan.out_dir),
        **source,  # where the grading page finds the tiles
        "card": _recorded(plan.context.card_path, plan.out_dir),
        # the parameter network (the grading page gives hidden simulations its estimates too)
        **({"parameters": _recorded(plan.parameters, plan.out_dir)} if plan.parameters else {}),
        "scores": _recorded(plan.scores_dir, plan.out_dir),
    }
    _write_json(plan.out_dir / "failures.json", failures)
    _write_json(plan.out_dir / "summary.json", summary)
    for warning in summary["noise_ratio"]["warnings"]:
        log.warning("%s", warning)
    return {**summary, "failures": failures}


def _output_schema(plan: SearchPlan, written) -> pa.Schema:
    if written:
        return pq.read_schema(partition_file(plan.scores_dir, *written[0])).remove_metadata()
    on_tiles = plan.context.loader == "tiles"
    names = OUTPUT_COLUMNS if on_tiles else CATALOG_OUTPUT_COLUMNS
    fields = [f.with_name(f"input_{f.name}") if f.name in names else f for f in plan.input_schema]
    where = [
        pa.field("tile", pa.string()),
        pa.field("x", pa.float64()),
        pa.field("y", pa.float64()),
    ]
    return pa.schema(
        fields
        + (where if on_tiles else [])
        + [
            pa.field("logit", pa.float64()),
            pa.field("score", pa.float64()),
            pa.field("cutout_flags", pa.int32()),
        ]
    )


def _write_candidates(plan: SearchPlan, written, schema) -> tuple[int, dict]:
    """``candidates.parquet``: rows at or above the operating threshold (at most ``top_n``),
    highest score first, with the columns the science case adds (the lens case: the nearest
    known lens).  Returns their number and the case's summary."""
    threshold = plan.card.threshold.get("logit") if plan.card.threshold else None
    parts = []
    for order, pixel in written:
        table = pq.read_table(partition_file(plan.scores_dir, order, pixel))
        if threshold is not None:
            table = table.filter(pc.greater_equal(table.column("logit"), threshold))
        if plan.top_n is not None and len(table) > plan.top_n:
            table = _top(table, plan.top_n, plan.context.id_column)
        parts.append(table)
    merged = pa.concat_tables(parts) if parts else schema.empty_table()
    merged = _top(merged, plan.top_n or len(merged), plan.context.id_column)
    if (
        plan.prevalence is not None
        and plan.card.task == "binary"
        and plan.card.training_prevalence is not None  # a card of an older or untrained model
    ):
        merged = merged.append_column(
            "probability_at_prevalence",
            pa.array(
                plan.card.probability_at_prevalence(
                    merged.column("logit").to_numpy(), plan.prevalence
                ),
                type=pa.float64(),
            ),
        )
    if plan.parameters:
        merged = _add_parameters(plan, merged)
    case = get_case(plan.card.case)
    known = {}
    if isinstance(case, CandidateAnnotation):
        merged, known = case.annotate_candidates(
            merged, plan.context.ra_column, plan.context.dec_column
        )
    write_parquet_atomic(merged, plan.out_dir / "candidates.parquet", compression="zstd")
    return len(merged), known


def _add_parameters(plan: SearchPlan, candidates: pa.Table) -> pa.Table:
    """Each candidate's physical parameters from a parameter network (its own card: bands,
    stamp, preprocessing): ``<name>``, ``<name>_lo``, ``<name>_hi`` (68% interval) per
    parameter, and ``params_implausible`` where the card's vetting thresholds flag it."""
    from skyscan.evaluate.vetting import flag_implausible

    card = read_card(plan.parameters)
    if not card.targets or "names" not in card.targets:
        raise MismatchError(
            f"{plan.parameters}: not a parameter network's card (no targets)",
            path=plan.parameters,
        )
    missing = [b for b in card.bands if b not in plan.card.bands]
    if missing:
        raise MismatchError(
            f"{plan.parameters}: needs band(s) {missing}, the search's tiles hold "
            f"{plan.card.bands}",
            path=plan.parameters,
        )
    size = int(card.input_shape[-1])
    records = {r.name: r for task in plan.tasks for r in task.tiles}
    n = len(candidates)
    outputs = None
    names = candidates.column("tile").to_pylist()
    x = candidates.column("x").to_numpy()
    y = candidates.column("y").to_numpy()
    import torch

    model = load_model(plan.parameters)[0]
    for name in sorted(set(names)):
        rows = np.flatnonzero(np.asarray(names, dtype=object) == name)
        tile = _tile_header(records[name], tuple(card.bands))
        stamps, _ = tile_cutouts(tile, x[rows], y[rows], size)
        with torch.inference_mode():
            out = model(torch.from_numpy(preprocess(stamps, card.preprocessing))).double()
        if outputs is None:
            outputs = np.full((n, out.shape[1]), np.nan)
        outputs[rows] = out.numpy()
    if outputs is None:
        outputs = np.zeros((0, 2 * len(card.targets["names"])))
    estimates = card.parameter_estimates(outputs)
    for pname, est in estimates.items():
        column = pname.lower()
        candidates = candidates.append_column(column, pa.array(est["value"]))
        candidates = candidates.append_column(f"{column}_lo", pa.array(est["low"]))
        candidates = candidates.append_column(f"{column}_hi", pa.array(est["high"]))
    vetting = card.targets.get("vetting")
    if vetting:
        est = estimates[vetting.get("parameter", card.targets["names"][0])]
        flags = flag_implausible(est["value"], est["sigma"], vetting)
        candidates = candidates.append_column("params_implausible", pa.array(flags))
    return candidates


def _top(table: pa.Table, n: int, id_column: str) -> pa.Table:
    order = table.sort_by([("score", "descending"), (id_column, "ascending")])
    return order.slice(0, n)


def _noise_summary(plan: SearchPlan) -> dict:
    """Median tile/training noise ratio per band, and the tiles beyond the warning factor."""
    bands = plan.card.bands if plan.context.loader == "tiles" else []
    per_band = {
        b: [r[b] for r in plan.noise.values() if b in r and np.isfinite(r[b])] for b in bands
    }
    warnings = []
    for name, ratios in sorted(plan.noise.items()):
        low, high = 1 / NOISE_WARNING_RATIO, NOISE_WARNING_RATIO
        off = {b: v for b, v in ratios.items() if not low <= v <= high}
        if off:
            text = ", ".join(f"{b} {v:.2f}x" for b, v in off.items())
            warnings.append(f"tile {name}: background noise {text} the training images'")
    return {
        "median": {b: (float(np.median(v)) if v else None) for b, v in per_band.items()},
        "tiles": len(plan.noise),
        "warnings": warnings,
    }


def _recorded(path, out_dir: Path) -> str | None:
    return None if path is None else path_for_record(path, out_dir)


def _write_json(path: Path, data) -> None:
    write_json_atomic(path, json.loads(json.dumps(data, default=str)))
