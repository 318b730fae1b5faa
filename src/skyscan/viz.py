"""Pictures of cutouts: colour composites and labelled grids (matplotlib, Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from skyscan.core.atomic import save_figure_atomic

__all__ = [
    "color_composite",
    "save_grid",
    "draw_stamp",
    "draw_scale_bar",
    "stamp_caption",
    "stamp_gallery",
    "write_results_index",
]

# Preferred (red, green, blue) band triplets, reddest first.
_RGB_ORDER = ("y", "Y", "z", "i", "r", "g", "u")


def color_composite(
    image: np.ndarray,
    bands: Sequence[str],
    q: float = 15.0,
    stretch: float | None = None,
    minimum: float = 0.0,
) -> np.ndarray:
    """An RGB picture of one ``(bands, H, W)`` cutout with an asinh (Lupton) stretch.

    Lupton et al. (2004, PASP 116, 133) colour: astropy's ``make_lupton_rgb``.  The three
    reddest bands become R, G, B (``i, r, g`` for ``g, r, i``); one or two bands give grey
    (the same asinh stretch on every channel).  Unless ``stretch`` is given it is set per
    cutout from its 99.5th percentile with a strong asinh softening, so faint arcs show next
    to bright deflectors.

    Parameters
    ----------
    image : ndarray, shape (bands, H, W)
    bands : sequence of str
        Band names in channel order.
    q : float
        Asinh softening (astropy's ``make_lupton_rgb`` ``Q``).
    stretch : float, optional
        Linear stretch (``make_lupton_rgb``'s); default from the cutout's 99.5th percentile.
    minimum : float
        The black level.

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
    if stretch is None:
        peak = np.percentile(np.stack([r, g, b]), 99.5)
        stretch = max(peak, 1e-12) / 8
    with np.errstate(invalid="ignore", divide="ignore"):  # blank pixels: 0/0 inside astropy
        return make_lupton_rgb(r, g, b, minimum=minimum, stretch=stretch, Q=q)


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
        import textwrap

        # about 12 characters an inch at 9 pt: a long title wraps instead of being cut
        fig.suptitle(textwrap.fill(title, max(40, int(ncols * cell_inches * 12))), fontsize=9)
    save_figure_atomic(fig, path, dpi=110)
    plt.close(fig)
    return path


def draw_scale_bar(ax, pixel_scale: float, arcsec: float = 2.0, color: str = "white"):
    """Draw a horizontal bar of ``arcsec`` in the lower left of an image axis.

    Parameters
    ----------
    ax : matplotlib Axes
        Showing an image in pixel coordinates (``imshow``, one data unit per pixel).
    pixel_scale : float
        Arcsec per pixel.
    arcsec : float
        The bar's length on the sky.

    Returns
    -------
    matplotlib.lines.Line2D
        The bar: its data length is ``arcsec / pixel_scale`` pixels.
    """
    if not pixel_scale > 0:
        raise ValueError(f"pixel_scale must be > 0 arcsec, got {pixel_scale!r}")
    length = arcsec / pixel_scale
    x0, x1 = sorted(ax.get_xlim())
    y0, y1 = sorted(ax.get_ylim())
    start_x = x0 + 0.06 * (x1 - x0)
    start_y = y0 + 0.07 * (y1 - y0)
    (bar,) = ax.plot(
        [start_x, start_x + length], [start_y, start_y], color=color, lw=2.0, solid_capstyle="butt"
    )
    ax.text(
        start_x + length / 2,
        start_y + 0.03 * (y1 - y0),
        f"{arcsec:g}\u2033",
        color=color,
        ha="center",
        va="bottom",
        fontsize=6.5,
    )
    ax.set_xlim(x0, x1)  # plotting must not widen the image's axes
    ax.set_ylim(y0, y1)
    return bar


def stamp_caption(
    ra: float | None = None,
    dec: float | None = None,
    tile: str | None = None,
    score: float | None = None,
    flags: Sequence[str] | str | None = None,
    kind: str | None = None,
    truth=(),
) -> str:
    """The multi-line caption under a stamp: position, tile, score, flags; simulated truth.

    Lines with nothing to say are left out, e.g.::

        RA 150.123456 Dec +2.345678
        tile-00-01
        P=0.987  flags: edge
        lens  θE=1.23"  S/N=45     (the kind, then the case's own truth)

    Parameters
    ----------
    ra, dec : float, optional
        Degrees.
    tile : str, optional
    score : float, optional
        The (calibrated) probability.
    flags : str or sequence of str, optional
    kind : str, optional
        Simulated truth: the kind.
    truth : sequence of (template, value)
        Further simulated truth the case shows after the kind, each a format template and a
        number (e.g. the lens case's ``('θE={:.2f}"', 1.23)``); entries whose value is None
        or not finite are left out.
    """

    def finite(v):
        return v is not None and np.isfinite(float(v))

    lines = []
    if finite(ra) and finite(dec):
        lines.append(f"RA {float(ra):.6f} Dec {float(dec):+.6f}")
    if tile:
        lines.append(str(tile))
    parts = []
    if finite(score):
        parts.append(f"P={float(score):.3f}")
    if flags:
        parts.append("flags: " + (flags if isinstance(flags, str) else ",".join(flags)))
    if parts:
        lines.append("  ".join(parts))
    shown = [str(kind)] if kind else []
    for template, value in truth:
        if finite(value):
            shown.append(template.format(float(value)))
    if shown:
        lines.append("  ".join(shown))
    return "\n".join(lines)


def draw_stamp(
    ax,
    stamp: np.ndarray,
    bands: Sequence[str],
    caption: str,
    pixel_scale: float,
    scale_bar_arcsec: float = 2.0,
    q: float = 8.0,
):
    """Draw one stamp on ``ax``: Lupton colour, a scale bar and the caption under it.

    Parameters
    ----------
    ax : matplotlib Axes
    stamp : ndarray
        ``(bands, H, W)`` data, or an RGB picture ``(H, W, 3)`` uint8 already made (e.g. a
        science case's own, such as science / reference / difference side by side).
    bands : sequence of str
        Band names of ``stamp``'s channels (see :func:`color_composite`).
    caption : str
        Lines under the stamp.
    pixel_scale : float
        Arcsec per pixel.
    scale_bar_arcsec : float
        Scale bar length; 0 for none.
    q : float
        Lupton's softening ``Q``.

    Returns
    -------
    matplotlib.lines.Line2D or None
        The scale bar.
    """
    stamp = np.asarray(stamp)
    is_picture = stamp.ndim == 3 and stamp.shape[-1] == 3 and stamp.dtype == np.uint8
    picture = stamp if is_picture else color_composite(stamp, bands, q=q)
    ax.imshow(picture, origin="lower", interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_xlabel(caption, fontsize=6.5, family="monospace", linespacing=1.15)
    if scale_bar_arcsec:
        return draw_scale_bar(ax, pixel_scale, scale_bar_arcsec)
    return None


def stamp_gallery(
    stamps: Sequence[np.ndarray],
    bands: Sequence[str],
    captions: Sequence[str],
    pixel_scale: float,
    path: str | Path,
    ncols: int | None = None,
    title: str | None = None,
    scale_bar_arcsec: float = 2.0,
    q: float = 8.0,
    cell_inches: float = 1.9,
) -> Path:
    """Save a grid of stamps in Lupton colour with scale bars and captions, atomically.

    Parameters
    ----------
    stamps : sequence of ndarray
        Each ``(bands, H, W)`` in linear flux units, or an RGB picture (see
        :func:`draw_stamp`).
    bands : sequence of str
        Channel names: three or more give colour (reddest three as R, G, B, e.g. g, r, i as
        B, G, R), fewer give a grey asinh picture.
    captions : sequence of str
        One (multi-line, see :func:`stamp_caption`) caption per stamp.
    pixel_scale : float
        Arcsec per pixel (for the scale bars).
    path : str or Path
        The PNG (or any format matplotlib writes, from the suffix).
    ncols : int, optional
        Stamps per row (default up to 6).
    title : str, optional
    scale_bar_arcsec : float
        Length of each stamp's scale bar (0: none).
    q : float
        Lupton's softening.
    cell_inches : float
        Side of one stamp.

    Returns
    -------
    Path
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if len(stamps) != len(captions):
        raise ValueError(f"{len(stamps)} stamps but {len(captions)} captions")
    if not len(stamps):
        raise ValueError(f"{path}: no stamps to draw")
    path = Path(path)
    ncols = ncols or min(6, len(stamps))
    nrows = int(np.ceil(len(stamps) / ncols))
    lines = max(caption.count("\n") + 1 for caption in captions)
    caption_inches = 0.12 * lines + 0.05
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(
            ncols * cell_inches,
            nrows * (cell_inches + caption_inches) + (0.4 if title else 0),
        ),
        squeeze=False,
        layout="constrained",
    )
    for ax in axes.ravel()[len(stamps) :]:
        ax.set_axis_off()
    for k, (stamp, caption) in enumerate(zip(stamps, captions, strict=True)):
        draw_stamp(
            axes[k // ncols][k % ncols], stamp, bands, caption, pixel_scale, scale_bar_arcsec, q
        )
    if title:
        import textwrap

        # about 12 characters an inch at 9 pt: a long title wraps instead of being cut
        fig.suptitle(textwrap.fill(title, max(40, int(ncols * cell_inches * 12))), fontsize=9)
    save_figure_atomic(fig, path, dpi=110)
    plt.close(fig)
    return path


def write_results_index(path: str | Path, sections, title: str = "skyscan results") -> Path:
    """Write an HTML landing page linking every plot with a one-line caption, atomically.

    Parameters
    ----------
    path : str or Path
        The page (e.g. ``results/index.html``); links are relative to its folder.
    sections : sequence of (str, sequence of (path, str))
        Section titles in order, each with its plots and their one-line captions.  Plots
        that do not exist are listed as missing rather than linked.
    title : str

    Returns
    -------
    Path
    """
    import html
    import os

    from skyscan.core.atomic import write_text_atomic

    path = Path(path)
    root = path.parent
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "figure{display:inline-block;margin:0 1em 1.5em 0;vertical-align:top;max-width:520px}"
        "img{max-width:100%;border:1px solid #ccc}figcaption{font-size:0.9em}</style>",
        f"</head><body><h1>{html.escape(title)}</h1>",
    ]
    toc = []
    body = []
    for number, (heading, plots) in enumerate(sections):
        anchor = f"s{number}"
        toc.append(f'<li><a href="#{anchor}">{html.escape(heading)}</a></li>')
        body.append(f'<h2 id="{anchor}">{html.escape(heading)}</h2>')
        for plot, caption in plots:
            plot = Path(plot)
            href = html.escape(Path(os.path.relpath(plot, root)).as_posix())
            text = html.escape(caption)
            if plot.is_file():
                image = f'<img src="{href}" alt="{text}" loading="lazy">'
                body.append(
                    f'<figure><a href="{href}">{image}</a>'
                    f"<figcaption><b>{html.escape(plot.name)}</b>: {text}</figcaption></figure>"
                )
            else:
                body.append(f"<p>{html.escape(plot.name)} (missing): {text}</p>")
    parts += ["<ul>", *toc, "</ul>", *body, "</body></html>"]
    return write_text_atomic(path, "\n".join(parts) + "\n")
