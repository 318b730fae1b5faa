"""The top-scoring objects of a search as a PNG gallery of colour composites."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from skyscan.catalog.hats_catalog import partition_file
from skyscan.search.run import FLAG_EDGE, FLAG_NAN, SearchPlan, tile_cutouts
from skyscan.tiles.io import Tile, TileError, read_tile_wcs
from skyscan.viz import save_grid, stamp_caption, stamp_gallery

__all__ = ["write_gallery", "top_scored"]


def top_scored(plan: SearchPlan, n: int, extra=None) -> pa.Table:
    """The ``n`` highest-scoring rows of the search (streamed partition by partition)."""
    where = ["tile", "x", "y"] if plan.context.loader == "tiles" else list(extra or [])
    columns = [
        plan.context.id_column,
        plan.context.ra_column,
        plan.context.dec_column,
        *where,
        "logit",
        "score",
        "cutout_flags",
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
    """Draw the ``n`` highest-scoring objects (a wider ``size`` stamp than the model's) in
    Lupton colour with a 2" scale bar, each beside its residual after the central galaxy's
    smooth light is subtracted (:func:`skyscan.viz.gallery_figure`), and captioned with rank,
    id, RA/Dec, tile, calibrated score and any warning (tile edge, masked pixels).  How many
    are at or above the model's threshold is said once, in the title, not under every stamp.

    Returns
    -------
    Path
        ``OUT/gallery.png`` (a note in place of stamps when nothing was scored).
    """
    if plan.context.loader != "tiles":
        return _catalog_gallery(plan, n)
    top = top_scored(plan, n)
    out = plan.out_dir / "gallery.png"
    if top is None or len(top) == 0:
        return save_grid([np.ones((8, 8, 3))], ["no object was scored"], out, ncols=1)
    records = {r.name: r for task in plan.tasks for r in task.tiles}
    threshold = plan.card.threshold.get("logit") if plan.card.threshold else None
    rows = top.to_pydict()
    ctx = plan.context
    stamps, captions, cache, above, drawn = [], [], {}, 0, []
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
        flags = [
            f
            for bit, f in ((FLAG_EDGE, "tile edge"), (FLAG_NAN, "masked pixels"))
            if rows["cutout_flags"][k] & bit
        ]
        above += threshold is not None and rows["logit"][k] >= threshold
        drawn.append((name, rows["x"][k], rows["y"][k]))
        stamps.append(stamp[0])
        captions.append(
            f"#{k + 1} id {rows[ctx.id_column][k]}\n"
            + stamp_caption(
                ra=rows[ctx.ra_column][k],
                dec=rows[ctx.dec_column][k],
                tile=name,
                score=rows["score"][k],
                flags=flags,
            )
        )
    if not stamps:
        return save_grid([np.ones((8, 8, 3))], ["no stamp could be read"], out, ncols=1)
    return stamp_gallery(
        stamps,
        plan.card.bands,
        captions,
        next(t.pixel_scale for t in cache.values() if t is not None),  # the tiles' own
        out,
        title=_title(len(stamps), above if threshold is not None else None),
        saliency=_saliency(plan, cache, drawn),
    )


def _saliency(plan: SearchPlan, tiles: dict, drawn: list) -> list | None:
    """Integrated-gradient maps of the model over its own input (the card's stamp size, the
    search's preprocessing) at each drawn object; None for the pixel-mean benchmark scorer."""
    if plan.context.scorer != "model" or not drawn:
        return None
    from skyscan.data.preprocess import preprocess
    from skyscan.models.card import load_model
    from skyscan.models.saliency import saliency_maps

    model, card = load_model(plan.context.card_path)
    size = int(card.input_shape[-1])
    stamps = np.concatenate([tile_cutouts(tiles[name], [x], [y], size)[0] for name, x, y in drawn])
    return list(saliency_maps(model, preprocess(stamps, card.preprocessing)))


def _catalog_gallery(plan: SearchPlan, n: int):
    """The ``n`` highest-scoring objects of a search over catalogue rows, each drawn as its
    case's sample description draws a sample (e.g. a light curve)."""
    from skyscan.core.case import get_case
    from skyscan.data.samples import CATALOG_FLAGS, describe

    card = plan.card
    samples = describe(get_case(card.case), card.preprocessing)
    top = top_scored(plan, n, samples.catalog_columns())
    out = plan.out_dir / "gallery.png"
    if top is None or len(top) == 0:
        return save_grid([np.ones((8, 8, 3))], ["no object was scored"], out, ncols=1)
    payload, _ = samples.from_catalog(top, card.preprocessing)
    threshold = card.threshold.get("logit") if card.threshold else None
    rows = top.to_pydict()
    ctx = plan.context
    pictures, captions = [], []
    above = 0
    for k in range(len(top)):
        flags = [name for bit, name in CATALOG_FLAGS.items() if rows["cutout_flags"][k] & bit]
        above += threshold is not None and rows["logit"][k] >= threshold
        pictures.append(samples.picture(payload[k], card.preprocessing))
        captions.append(
            f"#{k + 1} id {rows[ctx.id_column][k]}\n"
            + stamp_caption(
                ra=rows[ctx.ra_column][k],
                dec=rows[ctx.dec_column][k],
                score=rows["score"][k],
                flags=flags,
            )
        )
    return stamp_gallery(
        pictures,
        [],
        captions,
        1.0,
        out,
        title=_title(len(pictures), above if threshold is not None else None),
        scale_bar_arcsec=0.0,
    )


def _title(shown: int, above: int | None) -> str:
    """The gallery's title: how many objects, and how many of them are candidates."""
    title = f"the {shown} highest-scoring objects"
    if above is not None:
        title += f" ({above} at or above the model's threshold)"
    return title
