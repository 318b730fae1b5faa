"""The simulation preview: example systems of every kind as labelled colour composites."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from skyscan.cases.lenses.sim.population import KINDS
from skyscan.data.shards import first_per_kind
from skyscan.viz import color_composite, save_grid

__all__ = ["write_preview"]


def _label(row: dict, snr_band: str) -> str:
    kind = row["kind"]
    if kind == "lens":
        return (
            f'lens θE={row["theta_E"]:.2f}"\nS/N({snr_band})={row[f"snr_{snr_band}"]:.0f}'
            f" μ={row['magnification']:.1f}"
        )
    return kind.replace("_", " ")


def write_preview(shards, out: str | Path, per_kind: int = 4) -> Path:
    """Write a grid PNG with up to ``per_kind`` examples of each kind found in ``shards``.

    Parameters
    ----------
    shards : sequence of path
        Simulation shards, read in order until every kind has enough examples.
    out : str or Path
        PNG file.
    per_kind : int
        Columns of the grid.

    Returns
    -------
    Path
    """
    if per_kind < 1:
        raise ValueError(f"per_kind must be >= 1, got {per_kind}")
    picked, meta = first_per_kind(shards, KINDS, per_kind)
    bands = list(meta["bands"])
    snr_band = "g" if "g" in bands else bands[0]
    pictures, labels, titles = [], [], []
    for kind in KINDS:
        if not picked[kind]:
            continue
        titles.append(kind)
        for k in range(per_kind):
            if k < len(picked[kind]):
                image, row = picked[kind][k]
                pictures.append(color_composite(image, bands))
                labels.append(_label(row, snr_band))
            else:
                pictures.append(np.zeros((*meta["shape"][-2:], 3), dtype=np.uint8))
                labels.append("")
    depth = "noise-free" if not meta.get("noise", True) else "noisy"
    title = (
        f"skyscan simulation preview - {meta['survey']} {''.join(bands)}, "
        f'{meta["shape"][1]}x{meta["shape"][2]} px at {meta["pixel_scale"]}", {depth}'
    )
    return save_grid(pictures, labels, out, ncols=per_kind, row_titles=titles, title=title)
