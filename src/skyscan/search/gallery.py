"""The top-scoring objects of a search as a PNG gallery of colour composites."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from skyscan.catalog.hats_catalog import partition_file
from skyscan.search.run import FLAG_EDGE, FLAG_NAN, SearchPlan, tile_cutouts
from skyscan.tiles.io import Tile, TileError, read_tile_wcs
from skyscan.viz import color_composite, save_grid

__all__ = ["write_gallery", "top_scored"]


def top_scored(plan: SearchPlan, n: int) -> pa.Table:
    """The ``n`` highest-scoring rows of the search (streamed partition by partition)."""
    columns = [
        plan.context.id_column,
        plan.context.ra_column,
        plan.context.dec_column,
        "tile",
        "x",
        "y",
        "logit",
        "score",
        "flags",
    ]
    best = None
    for task in plan.tasks:
        path = partition_file(plan.scores_dir, task.order, task.pixel)
        if not path.is_file():
            continue
        table = pq.read_table(path, columns=columns)
        best = table if best is None else pa.concat_tables([best, table])
        best = best.sort_by([("score", "descending"), (columns[0], "ascending")]).slice(0, n)
    return best


def write_gallery(plan: SearchPlan, n: int = 24, size: int = 63):
    """Draw the ``n`` highest-scoring objects (a wider ``size`` stamp than the model's), each
    labelled with its rank, calibrated score, id and whether it passed the threshold.

    Returns
    -------
    Path
        ``OUT/gallery.png`` (a note in place of stamps when nothing was scored).
    """
    top = top_scored(plan, n)
    out = plan.out_dir / "gallery.png"
    if top is None or len(top) == 0:
        return save_grid([np.ones((8, 8, 3))], ["no object was scored"], out, ncols=1)
    records = {r.name: r for task in plan.tasks for r in task.tiles}
    threshold = plan.card.threshold.get("logit") if plan.card.threshold else None
    rows = top.to_pydict()
    idc = plan.context.id_column
    pictures, labels, cache = [], [], {}
    for k in range(len(top)):
        name = rows["tile"][k]
        if name not in cache:
            record = records[name]
            tile = Tile(name, {b: record.paths[b] for b in plan.card.bands}, record.hdu)
            try:
                cache[name] = read_tile_wcs(tile)
            except TileError:
                cache[name] = None
        if cache[name] is None:
            continue
        try:
            stamp, _ = tile_cutouts(cache[name], [rows["x"][k]], [rows["y"][k]], size)
        except TileError:
            continue
        pictures.append(color_composite(stamp[0], plan.card.bands))
        mark = "" if threshold is None else (" *" if rows["logit"][k] >= threshold else "")
        notes = ("edge " if rows["flags"][k] & FLAG_EDGE else "") + (
            "masked" if rows["flags"][k] & FLAG_NAN else ""
        )
        labels.append(f"#{k + 1} p={rows['score'][k]:.3f}{mark}\nid {rows[idc][k]} {notes}")
    if not pictures:
        return save_grid([np.ones((8, 8, 3))], ["no stamp could be read"], out, ncols=1)
    return save_grid(
        pictures,
        labels,
        out,
        ncols=min(8, len(pictures)),
        title=f"the {len(pictures)} highest-scoring objects"
        + (" (* at or above the model's threshold)" if threshold is not None else ""),
    )
