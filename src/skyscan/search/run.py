"""The search: assign catalog objects to tiles and HEALPix partitions, score them with Dask.

One task per HEALPix pixel (NESTED, ``search.order``): the worker loads the exported model
once, reads the tiles its objects lie on, cuts stamps (padding and flagging at edges and NaN
pixels), applies the model card's preprocessing, scores in large batches and writes the
partition ``Norder=K/Dir=D/Npix=P.parquet`` atomically.  Partitions already complete for the
same model and catalog are skipped, so a re-run after a crash (even ``kill -9``) redoes only
what is missing; the merged catalog is sorted by object id and therefore the same whatever
the order or the number of workers.  Tiles that cannot be read are recorded with the reason
in ``failures.json`` and every other partition still finishes.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from skyscan.core.atomic import write_json_atomic, write_parquet_atomic
from skyscan.core.errors import InputFileError
from skyscan.data.preprocess import check_compatible, preprocess
from skyscan.models.card import ModelCard, load_model, read_card
from skyscan.skymap.healpix import ORDER_MAX, partition_path, radec_to_pixel
from skyscan.tiles.io import Tile, TileError, find_tiles, load_tile, read_tile_wcs

__all__ = ["FLAG_EDGE", "FLAG_NAN", "SearchPlan", "plan_search", "score_partition", "run_search"]

log = logging.getLogger(__name__)

FLAG_EDGE = 1  # the cutout crosses the tile edge: padded with zeros
FLAG_NAN = 2  # NaN pixels in the cutout: set to zero


@dataclass
class SearchPlan:
    """What to score where: per-partition object tables, tiles, model and output layout."""

    card_path: Path
    card: ModelCard
    tiles: dict[str, Tile]
    partitions: dict[int, pa.Table]
    order: int
    out_dir: Path
    identity: str
    problems: dict[str, str]
    outside: int
    batch_size: int = 512

    def path(self, pixel: int) -> Path:
        return partition_path(self.out_dir / "partitions", self.order, pixel)


def _read_catalog(path: Path) -> pa.Table:
    if not path.is_file():
        raise InputFileError(f"catalog {path} does not exist", path=path)
    try:
        if path.suffix in (".csv", ".txt"):
            from pyarrow import csv

            table = csv.read_csv(path)
        else:
            table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise InputFileError(f"{path}: cannot read the catalog ({exc})", path=path) from None
    missing = [c for c in ("ra", "dec") if c not in table.column_names]
    if missing:
        raise InputFileError(
            f"{path}: catalog lacks column(s) {', '.join(missing)} (degrees)", path=path
        )
    if "id" not in table.column_names:
        table = table.append_column("id", pa.array(np.arange(len(table), dtype=np.int64)))
    return table.select(["id", "ra", "dec"])


def plan_search(
    card_path,
    tile_folder,
    catalog_path,
    out_dir,
    order: int = 11,
    pattern: str = "{tile}_{band}.fits",
    hdu: int | None = None,
) -> SearchPlan:
    """Assign every catalog object to the tile where it lies furthest from the edges, and to
    its HEALPix pixel at ``order``.

    Returns
    -------
    SearchPlan
    """
    card_path = Path(card_path)
    card = read_card(card_path)
    bands = card.bands
    tiles, problems = find_tiles(tile_folder, bands, pattern, hdu)
    usable = {}
    for tile in tiles:
        try:
            usable[tile.name] = read_tile_wcs(tile)
        except TileError as exc:
            problems[tile.name] = str(exc)
    if not usable:  # nothing to search: say why rather than write an empty catalog
        _write_json(Path(out_dir) / "failures.json", problems)
        name, reason = next(iter(sorted(problems.items())))
        raise TileError(
            f"{tile_folder}: none of the {len(problems)} tile(s) is usable ({name}: {reason}; "
            f"every reason in {Path(out_dir) / 'failures.json'})",
            path=tile_folder,
        )
    catalog_path = Path(catalog_path)
    catalog = _read_catalog(catalog_path)
    ra = catalog.column("ra").to_numpy().astype(np.float64)
    dec = catalog.column("dec").to_numpy().astype(np.float64)
    best = np.full(len(catalog), -np.inf)
    where = np.full(len(catalog), -1)
    xs, ys = np.full(len(catalog), np.nan), np.full(len(catalog), np.nan)
    names = sorted(usable)
    for k, name in enumerate(names):
        tile = usable[name]
        x, y = tile.wcs.all_world2pix(ra, dec, 0)  # with SIP or other distortions
        h, w = tile.shape
        margin = np.minimum(np.minimum(x + 0.5, w - 0.5 - x), np.minimum(y + 0.5, h - 0.5 - y))
        better = np.isfinite(margin) & (margin > 0) & (margin > best)
        best[better], where[better] = margin[better], k
        xs[better], ys[better] = x[better], y[better]
    inside = where >= 0
    pixel = radec_to_pixel(ra, dec, order)
    fine = radec_to_pixel(ra, dec, ORDER_MAX)
    table = pa.table(
        {
            "id": catalog.column("id"),
            "ra": ra,
            "dec": dec,
            "tile": pa.array([names[k] if k >= 0 else "" for k in where]),
            "x": xs,
            "y": ys,
            f"healpix_{order}": pixel,
            "healpix_29": fine,
        }
    ).filter(pa.array(inside))
    partitions = {}
    pix = table.column(f"healpix_{order}").to_numpy()
    for p in np.unique(pix):
        partitions[int(p)] = table.filter(pa.array(pix == p))
    identity = hashlib.sha256(
        json.dumps(
            {
                "card": card.to_dict(),
                "catalog": hashlib.sha256(catalog_path.read_bytes()).hexdigest(),
                "order": order,
                "tiles": sorted(usable),
            },
            sort_keys=True,
            default=str,
        ).encode()
    ).hexdigest()[:16]
    return SearchPlan(
        card_path,
        card,
        usable,
        partitions,
        order,
        Path(out_dir),
        identity,
        problems,
        int((~inside).sum()),
    )


_MODELS: dict = {}


def _model(card_path: Path):
    """The exported model, loaded once per worker process."""
    key = str(card_path)
    if key not in _MODELS:
        import torch

        torch.set_num_threads(1)
        _MODELS[key] = load_model(card_path)[0]
    return _MODELS[key]


def cutouts(data: np.ndarray, x, y, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``size x size`` stamps centred on the nearest pixels to ``(x, y)`` (0-based).

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


def score_partition(plan: SearchPlan, pixel: int) -> dict:
    """Score one partition and write it atomically; returns ``{rows, failures}``."""
    import torch

    from skyscan.data.shards import write_table_atomic

    rows = plan.partitions[pixel]
    spec = plan.card.preprocessing
    size = spec["shape"][-1]
    model = _model(plan.card_path)
    tile_names = rows.column("tile").to_pylist()
    logits = np.full(len(rows), np.nan, dtype=np.float64)
    flags = np.zeros(len(rows), dtype=np.int32)
    failures = {}
    for name in sorted(set(tile_names)):
        sel = np.flatnonzero(np.asarray(tile_names) == name)
        tile = plan.tiles[name]
        try:
            loaded = load_tile(Tile(tile.name, tile.paths, tile.hdu))
            check_compatible(spec, list(tile.paths), (len(tile.paths), size, size), f"tile {name}")
        except (TileError, ValueError) as exc:
            failures[name] = str(exc)
            continue
        stamps, f = cutouts(
            loaded.data, rows.column("x").to_numpy()[sel], rows.column("y").to_numpy()[sel], size
        )
        flags[sel] = f
        batch = preprocess(stamps, spec)
        with torch.inference_mode():
            for start in range(0, len(batch), plan.batch_size):
                chunk = torch.from_numpy(batch[start : start + plan.batch_size])
                logits[sel[start : start + len(chunk)]] = model(chunk).double().numpy()
    scored = np.isfinite(logits)
    table = rows.filter(pa.array(scored))
    table = table.append_column("logit", pa.array(logits[scored]))
    table = table.append_column("score", pa.array(1 / (1 + np.exp(-logits[scored]))))
    table = table.append_column("flags", pa.array(flags[scored]))
    table = table.sort_by("id")
    write_table_atomic(
        table,
        plan.path(pixel),
        {
            "search_identity": plan.identity,
            "order": plan.order,
            "pixel": pixel,
            "failures": failures,
        },
    )
    return {"rows": len(table), "failures": failures}


def _complete(plan: SearchPlan, pixel: int) -> bool:
    path = plan.path(pixel)
    if not path.is_file():
        return False
    try:
        meta = pq.read_schema(path).metadata or {}
        pq.ParquetFile(path).metadata  # noqa: B018  (footer readable: not truncated)
    except (OSError, pa.ArrowException):
        return False
    return json.loads(meta.get(b"search_identity", b'""')) == plan.identity


def run_search(
    plan: SearchPlan, workers: int = 1, progress: bool = True, cluster: Mapping | None = None
) -> dict:
    """Score every partition not yet complete, merge, and write the summary.

    Parameters
    ----------
    plan : SearchPlan
    workers : int
        Dask worker processes (one thread each); 0 runs in this process without Dask.
    progress : bool
        Show a progress bar.
    cluster : mapping, optional
        ``{"kind": "slurm", ...}`` to run the workers as SLURM jobs through dask-jobqueue
        (the remaining keys go to ``SLURMCluster``); default a ``LocalCluster``.

    Returns
    -------
    dict
        Summary: partitions done and skipped, rows, failures (also ``summary.json``).
    """
    from tqdm import tqdm

    todo = [p for p in sorted(plan.partitions) if not _complete(plan, p)]
    skipped = len(plan.partitions) - len(todo)
    failures = dict(plan.problems)
    bar = tqdm(total=len(todo), unit="partition", desc="search", disable=not progress)
    results = {}
    if workers <= 0 or not todo:
        for p in todo:
            results[p] = score_partition(plan, p)
            bar.update()
    else:
        from dask.distributed import Client, LocalCluster, as_completed

        if cluster and cluster.get("kind") == "slurm":
            from dask_jobqueue import SLURMCluster

            options = {k: v for k, v in cluster.items() if k != "kind"}
            dask_cluster = SLURMCluster(**options)
            dask_cluster.scale(jobs=workers)
        else:
            dask_cluster = LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
            )
        with dask_cluster, Client(dask_cluster) as client:
            remote_plan = client.scatter(plan, broadcast=True)
            futures = {
                client.submit(score_partition, remote_plan, p, retries=2, pure=False): p
                for p in todo
            }
            for future in as_completed(futures):
                p = futures[future]
                try:
                    results[p] = future.result()
                except Exception as exc:  # after the retries: record and carry on
                    failures[f"partition {p}"] = f"{type(exc).__name__}: {exc}"
                bar.update()
    bar.close()
    for result in results.values():
        failures.update(result["failures"])
    merged = _merge(plan)
    summary = {
        "partitions": len(plan.partitions),
        "scored_now": len(results),
        "skipped_complete": skipped,
        "rows": merged,
        "outside_tiles": plan.outside,
        "failures": failures,
        "order": plan.order,
    }
    _write_json(plan.out_dir / "failures.json", failures)
    _write_json(plan.out_dir / "summary.json", summary)
    return summary


def _merge(plan: SearchPlan) -> int:
    tables = [
        pq.read_table(plan.path(p)) for p in sorted(plan.partitions) if plan.path(p).is_file()
    ]
    tables = [t.replace_schema_metadata(None) for t in tables]
    merged = pa.concat_tables(tables).sort_by("id") if tables else pa.table({})
    write_parquet_atomic(merged, plan.out_dir / "candidates.parquet", compression="zstd")
    return len(merged)


def _write_json(path: Path, data) -> None:
    write_json_atomic(path, json.loads(json.dumps(data, default=str)))
