"""Pictures of cutouts: colour composites and labelled grids (matplotlib, Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from skyscan.core.atomic import save_figure_atomic

__all__ = ["color_composite", "save_grid"]

# Preferred (red, green, blue) band triplets, reddest first.
_RGB_ORDER = ("y", "Y", "z", "i", "r", "g", "u")


def color_composite(image: np.ndarray, bands: Sequence[str], q: float = 15.0) -> np.ndarray:
    """An RGB picture of one ``(bands, H, W)`` cutout with an asinh (Lupton) stretch.

    The three reddest bands become R, G, B (``i, r, g`` for ``g, r, i``); one or two bands give
    grey.  The stretch is set per cutout from its 99.5th percentile with a strong asinh
    softening, so faint arcs show next to bright deflectors.

    Parameters
    ----------
    image : ndarray, shape (bands, H, W)
    bands : sequence of str
        Band names in channel order.
    q : float
        Asinh softening (astropy's ``make_lupton_rgb`` ``Q``).

    Returns
    -------
    ndarray, shape (H, W, 3), uint8
    """
    from astropy.visualization import make_lupton_rgb

    image = np.nan_to_num(np.asarray(image, dtype=np.float64))
    order = sorted(
        range(len(bands)),
        key=lambda k: _RGB_ORDER.index(bands[k]) if bands[k] in _RGB_ORDER else len(_RGB_ORDER) + k,
    )
    if len(bands) >= 3:
        r, g, b = (image[k] for k in order[:3])
    else:
        r = g = b = image[order[0]]
    peak = np.percentile(np.stack([r, g, b]), 99.5)
    stretch = max(peak, 1e-12) / 8
    with np.errstate(invalid="ignore", divide="ignore"):  # blank pixels: 0/0 inside astropy
        return make_lupton_rgb(r, g, b, minimum=0.0, stretch=stretch, Q=q)


def save_grid(
    pictures: Sequence[np.ndarray],
    labels: Sequence[str],
    path: str | Path,
    ncols: int,
    row_titles: Sequence[str] | None = None,
    title: str | None = None,
    cell_inches: float = 1.9,
) -> Path:
    """Save RGB pictures as a labelled grid PNG, atomically.

    Parameters
    ----------
    pictures : sequence of ndarray (H, W, 3)
    labels : sequence of str
        One caption per picture, drawn on it.
    path : str or Path
    ncols : int
        Pictures per row.
    row_titles : sequence of str, optional
        A title at the left of each row.
    title : str, optional
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nrows = max(1, int(np.ceil(len(pictures) / ncols)))
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(ncols * cell_inches, nrows * cell_inches + (0.4 if title else 0)),
        squeeze=False,
        layout="constrained",
    )
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    for k, (pic, label) in enumerate(zip(pictures, labels, strict=True)):
        ax = axes[k // ncols][k % ncols]
        ax.imshow(pic, origin="lower", interpolation="nearest")
        ax.text(
            0.03,
            0.97,
            label,
            transform=ax.transAxes,
            va="top",
            ha="left",
            fontsize=6.5,
            color="white",
            family="monospace",
            bbox=dict(facecolor="black", alpha=0.45, pad=1.5, edgecolor="none"),
        )
    if row_titles:
        for r, text in enumerate(row_titles[:nrows]):
            axes[r][0].set_ylabel(text, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    save_figure_atomic(fig, path, dpi=110)
    plt.close(fig)
    return path
