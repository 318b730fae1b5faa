"""The shared preview of simulated shards: a few samples of every kind, one row per kind,
each drawn as its case draws it (:meth:`skyscan.core.case.Case.picture`) or else as the
case's sample description does (stamps: colour composites; sequences: value against time;
named arrays: the first image)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["write_preview"]


def write_preview(case, shards: Sequence, out, per_kind: int = 4, title: str | None = None) -> Path:
    """Draw up to ``per_kind`` samples of every kind of ``case`` found in ``shards``.

    Parameters
    ----------
    case : skyscan.core.case.Case
    shards : sequence of path
        Parquet shards of the case, read in order until every kind has enough.
    out : path
        The PNG to write (atomically).
    per_kind : int
    title : str, optional
        Above the grid; by default the case's title.

    Returns
    -------
    Path
    """
    from skyscan.data.samples import describe
    from skyscan.data.shards import first_per_kind
    from skyscan.viz import color_composite, save_grid

    samples = describe(case)
    picked, meta = first_per_kind(shards, case.kinds, per_kind)
    bands = list(meta.get("bands") or [])
    pictures, labels, titles = [], [], []
    for kind in case.kinds:
        if not picked[kind]:
            continue
        titles.append(kind)
        for k in range(per_kind):
            if k < len(picked[kind]):
                sample, row = picked[kind][k]
                picture = case.picture(sample, bands)
                if picture is None:
                    picture = samples.picture(sample, {})
                if picture is None:
                    picture = color_composite(sample, bands)
                pictures.append(picture)
                labels.append(case.caption(row, float("nan")).replace(" p=nan", ""))
            else:
                pictures.append(np.full_like(pictures[-1], 255))
                labels.append("")
    if title is None:
        title = f"skyscan {case.title}: simulated examples, one row per kind"
    return save_grid(pictures, labels, out, ncols=per_kind, row_titles=titles, title=title)
