"""Exports of the grades: every grade, the consensus, the graders' statistics, and the
consensus-labelled stamps that go back into training.

Written atomically into the results folder:

``grades.parquet``
    One row per (grader, item): ``grader``, ``id`` (candidate id; null for a simulated
    stamp), ``simulated``, ``sim_row`` and ``sim_label`` (the test-split row and its label;
    null for a candidate), ``grade`` (0-3), ``graded_at`` (UTC).
``consensus.parquet``
    One row per candidate graded by at least 3 graders: ``id``, ``ra``, ``dec``, ``tile``,
    ``score``, ``mean_grade``, ``n_graders``, ``class`` (A: mean > 2.5, B: 1.5 to 2.5, C).
``grader_stats.json``
    Each grader's completeness and purity on the simulated stamps (Wilson 95% intervals).
``graded_stamps.parquet``
    An image shard (:mod:`skyscan.data.shards`) of the candidates whose consensus makes them
    training examples: ``mean_grade >= 2.5`` a lens (label 1), ``<= 0.5`` a hard negative
    (label 0).  Pixels are in the training images' units: each band divided by the tile's
    background sigma and multiplied by the model card's ``preprocessing.scale``.  The
    dataset stage adds them to the training split (``dataset.graded_examples``).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa

from skyscan.core.atomic import write_json_atomic, write_parquet_atomic
from skyscan.data.shards import images_to_array, write_table_atomic
from skyscan.vet.store import MIN_GRADERS, GradeStore, consensus, grader_stats

__all__ = [
    "LENS_MEAN",
    "NEGATIVE_MEAN",
    "export_grades",
    "export_training_stamps",
    "GRADED_KINDS",
]

log = logging.getLogger(__name__)

#: Consensus mean grade from which a candidate is a training lens.
LENS_MEAN = 2.5
#: Consensus mean grade up to which a candidate is a training hard negative.
NEGATIVE_MEAN = 0.5
#: ``kind`` of the graded examples in the shard and the dataset (label 1, label 0).
GRADED_KINDS = ("graded_lens", "graded_negative")

# One export at a time per process: two graders' requests must not race to write an older
# snapshot over a newer one.
_EXPORT_LOCK = threading.Lock()


def _id_lookup(candidates: pa.Table) -> tuple[dict, pa.DataType]:
    ids = candidates.column("id")
    return {str(v): v for v in ids.to_pylist()}, ids.type


def export_grades(store: GradeStore, candidates: pa.Table, out_dir) -> dict:
    """Write ``grades.parquet``, ``consensus.parquet`` and ``grader_stats.json``.

    Parameters
    ----------
    store : GradeStore
    candidates : pyarrow.Table
        The search's candidates (``id``, ``ra``, ``dec``, ``tile``, ``score``).
    out_dir : str or Path

    Returns
    -------
    dict
        ``{"grades": n, "consensus": n, "graders": n}``.
    """
    out_dir = Path(out_dir)
    with _EXPORT_LOCK:
        rows = store.all_grades()
        ids, id_type = _id_lookup(candidates)
        grades = pa.table(
            {
                "grader": pa.array([r["grader"] for r in rows], pa.string()),
                "id": pa.array(
                    [None if r["simulated"] else ids.get(r["ref"]) for r in rows], id_type
                ),
                "simulated": pa.array([bool(r["simulated"]) for r in rows], pa.bool_()),
                "sim_row": pa.array(
                    [int(r["ref"]) if r["simulated"] else None for r in rows], pa.int64()
                ),
                "sim_label": pa.array(
                    [r["label"] if r["simulated"] else None for r in rows], pa.int8()
                ),
                "grade": pa.array([r["grade"] for r in rows], pa.int8()),
                "graded_at": pa.array(
                    np.round(np.array([r["graded_at"] for r in rows], dtype=np.float64) * 1e6)
                    .astype(np.int64)
                    .astype("datetime64[us]"),
                    pa.timestamp("us", tz="UTC"),
                ),
            }
        )
        write_parquet_atomic(grades, out_dir / "grades.parquet")
        agreed = consensus(rows, MIN_GRADERS)
        position = {str(v): k for k, v in enumerate(candidates.column("id").to_pylist())}
        take = pa.array([position[r["ref"]] for r in agreed if r["ref"] in position], pa.int64())
        agreed = [r for r in agreed if r["ref"] in position]
        table = candidates.select(["id", "ra", "dec", "tile", "score"]).take(take)
        table = table.append_column(
            "mean_grade", pa.array([r["mean_grade"] for r in agreed], pa.float64())
        )
        table = table.append_column(
            "n_graders", pa.array([r["n_graders"] for r in agreed], pa.int32())
        )
        table = table.append_column("class", pa.array([r["class"] for r in agreed], pa.string()))
        write_parquet_atomic(table, out_dir / "consensus.parquet")
        stats = grader_stats(rows)
        write_json_atomic(out_dir / "grader_stats.json", stats)
    return {"grades": len(grades), "consensus": len(table), "graders": len(stats["graders"])}


def export_training_stamps(session, out_dir=None) -> dict:
    """Write ``graded_stamps.parquet``: the consensus-labelled candidates' raw stamps.

    Parameters
    ----------
    session : skyscan.vet.session.GradingSession
        Gives the store, the candidates, the tiles and the model card.
    out_dir : str or Path, optional
        Default: the results folder.

    Returns
    -------
    dict
        ``{"positives": n, "negatives": n, "skipped_flagged": n}``; cutouts that cross a tile
        edge or hold masked pixels are left out (zero padding is not sky).
    """
    sources = session.sources
    out_dir = Path(out_dir) if out_dir is not None else sources.results
    card = sources.card
    agreed = consensus(session.store.all_grades(), MIN_GRADERS)
    labelled = {
        r["ref"]: (1 if r["mean_grade"] >= LENS_MEAN else 0, r)
        for r in agreed
        if r["mean_grade"] >= LENS_MEAN or r["mean_grade"] <= NEGATIVE_MEAN
    }
    cand = sources.candidates
    ids = [str(v) for v in cand.column("id").to_pylist()]
    rows = [k for k, i in enumerate(ids) if i in labelled]
    target = np.asarray(card.preprocessing["scale"], dtype=np.float32)[:, None, None]
    tile_of = cand.column("tile").to_pylist()
    xs = cand.column("x").to_numpy(zero_copy_only=False)
    ys = cand.column("y").to_numpy(zero_copy_only=False)
    images, kept, skipped = [], [], 0
    for tile in sorted({tile_of[k] for k in rows}):
        here = [k for k in rows if tile_of[k] == tile]
        stamps, flags, sigma = session.tiles.raw(tile, xs[here], ys[here])
        scaled = stamps / sigma[:, None, None].astype(np.float32) * target
        for k, stamp, flag in zip(here, scaled, flags, strict=True):
            if flag:
                skipped += 1
                continue
            images.append(stamp)
            kept.append(k)
    shape = [len(card.bands), *[int(v) for v in card.input_shape[-2:]]]
    labels = [labelled[ids[k]][0] for k in kept]
    table = cand.select(["id", "ra", "dec", "tile", "score"]).take(pa.array(kept, pa.int64()))
    table = table.append_column("label", pa.array(labels, pa.int8()))
    table = table.append_column(
        "kind", pa.array([GRADED_KINDS[0] if v else GRADED_KINDS[1] for v in labels], pa.string())
    )
    table = table.append_column(
        "mean_grade", pa.array([labelled[ids[k]][1]["mean_grade"] for k in kept], pa.float64())
    )
    table = table.append_column(
        "n_graders", pa.array([labelled[ids[k]][1]["n_graders"] for k in kept], pa.int32())
    )
    array = np.asarray(images, dtype=np.float32).reshape(len(kept), *shape)
    table = table.append_column("image", images_to_array(array))
    from skyscan import __version__

    write_table_atomic(
        table,
        out_dir / "graded_stamps.parquet",
        {
            "bands": list(card.bands),
            "shape": shape,
            "pixel_scale": card.pixel_scale,
            "survey": card.survey,
            "skyscan_version": __version__,
            "units": "training images' units (tile / tile background sigma x card scale)",
            "background_sigma": list(card.preprocessing["scale"]),
            "source": "skyscan grade: consensus of >= 3 graders",
            "lens_mean": LENS_MEAN,
            "negative_mean": NEGATIVE_MEAN,
            "skipped_flagged": skipped,
        },
    )
    n_lens = int(sum(labels))
    return {"positives": n_lens, "negatives": len(labels) - n_lens, "skipped_flagged": skipped}
