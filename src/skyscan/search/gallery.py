"""The top candidates of a search as a PNG gallery of colour composites."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

from skyscan.search.run import SearchPlan, cutouts
from skyscan.tiles.io import Tile, TileError, load_tile
from skyscan.viz import color_composite, save_grid

__all__ = ["write_gallery"]


def write_gallery(plan: SearchPlan, n: int = 24, size: int = 63):
    """Draw the ``n`` highest-scoring candidates (a wider ``size`` stamp than the model's).

    Returns the PNG path, or None when there is no candidate.
    """
    path = plan.out_dir / "candidates.parquet"
    table = pq.read_table(path)
    if len(table) == 0:
        return None
    order = np.argsort(-table.column("score").to_numpy(), kind="stable")[:n]
    top = table.take(order).to_pydict()
    pictures, labels = [], []
    cache: dict[str, Tile] = {}
    for k in range(len(order)):
        name = top["tile"][k]
        if name not in cache:
            try:
                cache[name] = load_tile(Tile(name, plan.tiles[name].paths, plan.tiles[name].hdu))
            except TileError:
                continue
        stamp, _ = cutouts(cache[name].data, [top["x"][k]], [top["y"][k]], size)
        pictures.append(color_composite(stamp[0], plan.card.bands))
        labels.append(f"#{k + 1} p={top['score'][k]:.3f}\nid {top['id'][k]}")
    return save_grid(
        pictures,
        labels,
        plan.out_dir / "gallery.png",
        ncols=min(8, len(pictures)),
        title=f"top {len(pictures)} candidates of {len(table)} scored",
    )
