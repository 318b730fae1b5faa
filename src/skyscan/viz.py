"""Pictures of cutouts: colour composites, residuals without the central galaxy's smooth
light, and labelled grids (matplotlib, Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from skyscan.core.atomic import save_figure_atomic

__all__ = [
    "GalleryCell",
    "border_background",
    "color_composite",
    "gallery_figure",
    "residual_image",
    "residual_picture",
    "smooth_model",
    "save_grid",
    "draw_stamp",
    "draw_scale_bar",
    "stamp_caption",
    "stamp_gallery",
    "write_results_index",
]

# Preferred (red, green, blue) band triplets, reddest first.
_RGB_ORDER = ("y", "Y", "z", "i", "r", "g", "u")


def border_background(image: np.ndarray, width: int | None = None):
    """Sky level and noise of each band of a cutout, from its outer border.

    The border is where a cutout centred on an object is mostly sky; the median and the median
    absolute deviation (scaled to a Gaussian sigma) ignore the few sources that fall there.

    Parameters
    ----------
    image : ndarray, shape (bands, H, W) or (H, W)
    width : int, optional
        Border width in pixels; default ``max(2, min(H, W) // 8)``.

    Returns
    -------
    level, sigma : ndarray of float64, shape (bands,) (scalars for a 2-d image)
    """
    from astropy.stats import mad_std

    image = np.asarray(image, dtype=np.float64)
    flat = image.ndim == 2
    cube = image[None] if flat else image
    h, w = cube.shape[-2:]
    width = max(2, min(h, w) // 8) if width is None else int(width)
    edge = np.ones((h, w), bool)
    edge[width : h - width, width : w - width] = False
    pixels = cube[:, edge]
    level = np.nanmedian(pixels, axis=1) if pixels.size else np.zeros(len(cube))
    sigma = np.array([mad_std(p, ignore_nan=True) for p in pixels]) if pixels.size else level * 0
    level, sigma = np.nan_to_num(level), np.nan_to_num(sigma)
    return (level[0], sigma[0]) if flat else (level, sigma)


def _rgb_channels(image: np.ndarray, bands: Sequence[str]) -> list[int]:
    """Indices of the (R, G, B) channels: the three reddest bands, or one band three times."""
    order = sorted(
        range(len(bands)),
        key=lambda k: _RGB_ORDER.index(bands[k]) if bands[k] in _RGB_ORDER else len(_RGB_ORDER) + k,
    )
    return order[:3] if len(bands) >= 3 else [order[0]] * 3


def color_composite(
    image: np.ndarray,
    bands: Sequence[str],
    q: float = 15.0,
    stretch: float | None = None,
    minimum: float | Sequence[float] | None = None,
    *,
    softening: float = 2.0,
    percentile: float = 99.9,
) -> np.ndarray:
    """An RGB picture of one ``(bands, H, W)`` cutout with an asinh (Lupton) stretch.

    Lupton et al. (2004, PASP 116, 133) colour: astropy's ``make_lupton_rgb``.  The three
    reddest bands become R, G, B (``i, r, g`` for ``g, r, i``); one or two bands give grey
    (the same asinh stretch on every channel).

    Unless ``stretch`` is given, the stretch is set per cutout so that a faint feature next to
    a bright core shows: the asinh softening (where the stretch turns from linear to
    logarithmic) is ``softening`` times the noise sigma of the intensity (the mean of R, G, B)
    on the cutout's border (:func:`border_background`), so features of a few sigma are well above
    black; and the top of the stretch is set so that only the ``100 - percentile`` per cent
    brightest pixels reach full scale in any channel, so a bright core keeps its shape instead
    of being clipped flat.  The black level is then each band's border median (the sky).

    Parameters
    ----------
    image : ndarray, shape (bands, H, W)
    bands : sequence of str
        Band names in channel order.
    q : float
        Asinh softening (astropy's ``make_lupton_rgb`` ``Q``), with an explicit ``stretch``.
    stretch : float, optional
        Linear stretch (``make_lupton_rgb``'s); default per cutout (see above).
    minimum : float or sequence of 3 float, optional
        The black level (per R, G, B channel); default 0 with an explicit ``stretch``, else
        each band's sky level.
    softening : float
        Asinh softening in noise sigma of the intensity (without an explicit ``stretch``).
    percentile : float
        Per cent of pixels kept below full scale (without an explicit ``stretch``).

    Returns
    -------
    ndarray, shape (H, W, 3), uint8
    """
    from astropy.visualization import make_lupton_rgb

    image = np.nan_to_num(np.asarray(image, dtype=np.float64))
    channels = _rgb_channels(image, bands)
    r, g, b = (image[k] for k in channels)
    if stretch is None:
        q, stretch, minimum = _auto_lupton(image[channels], minimum, softening, percentile)
    elif minimum is None:
        minimum = 0.0
    with np.errstate(invalid="ignore", divide="ignore"):  # blank pixels: 0/0 inside astropy
        return make_lupton_rgb(r, g, b, minimum=minimum, stretch=stretch, Q=q)


def _auto_lupton(rgb: np.ndarray, minimum, softening: float, percentile: float):
    """``(Q, stretch, minimum)`` for ``make_lupton_rgb`` from a cutout's own noise and peak.

    Lupton's stretch is ``f(I) = slope(Q) * asinh(I * Q / stretch)`` with
    ``slope(Q) = 0.1 / asinh(0.1 Q)`` on the mean intensity ``I`` of R, G, B above the black
    level, and a channel ``x`` is drawn as ``x f(I) / I`` (full scale at 1).  So the softening
    is ``stretch / Q`` in intensity units, and the slope sets where full scale falls.
    """
    if minimum is None:
        minimum = border_background(rgb)[0]
    minimum = np.broadcast_to(np.asarray(minimum, dtype=np.float64), (3,))
    above = rgb - minimum[:, None, None]
    intensity = above.mean(axis=0)
    _, noise = border_background(intensity)
    top = float(np.percentile(np.abs(intensity), percentile))
    # Noise-free cutouts (simulations) have no sigma: soften at a small fraction of the top.
    soft = softening * noise if noise > 0 else 1e-3 * top
    if not soft > 0:
        return 8.0, 1.0, minimum  # a blank cutout: any stretch draws it black
    # Channel value at full scale per unit slope; its percentile sets the slope.  Pixels
    # within the noise count as 0: where R, G, B nearly cancel, x / I is noise, and letting
    # it set the slope would stretch an empty sky until its noise is full-contrast confetti.
    level = np.zeros(intensity.shape)
    bright = intensity > 2 * soft
    level[bright] = np.arcsinh(intensity[bright] / soft) * above.max(axis=0)[bright]
    level[bright] /= intensity[bright]
    peak = float(np.percentile(level, percentile))
    if noise > 0:
        # Full scale at least 25 sigma up: a cutout of little but noise is not stretched
        # until its noise is a full-contrast confetti.
        peak = max(peak, np.arcsinh(25 * noise / soft))
    slope = 1.0 / max(peak, 1e-6)
    # Invert slope(Q); beyond Q ~ 1e10 astropy caps Q anyway.
    q = 10.0 * np.sinh(min(0.1 / slope, 23.0))
    return q, soft * q, minimum


def _light_centre(image: np.ndarray, search: float = 3.0) -> tuple[float, float]:
    """``(x, y)`` of the light-weighted centroid of the brightest pixel near the middle.

    The brightest pixel within ``search`` pixels of the middle, then the centroid of the
    positive light in the 5 x 5 box around it: sub-pixel, so the central annuli are centred
    on the galaxy and its steep core leaves no dipole behind.
    """
    h, w = image.shape
    yy, xx = np.mgrid[:h, :w]
    cy, cx = (h - 1) / 2, (w - 1) / 2
    near = np.hypot(xx - cx, yy - cy) <= search
    k = np.flatnonzero(near.ravel())[np.argmax(image[near])]
    py, px = divmod(int(k), w)
    box = (slice(max(py - 2, 0), py + 3), slice(max(px - 2, 0), px + 3))
    weight = np.clip(image[box] - np.median(image), 0, None)
    if not weight.sum() > 0:
        return float(px), float(py)
    return float((xx[box] * weight).sum() / weight.sum()), float(
        (yy[box] * weight).sum() / weight.sum()
    )


def smooth_model(
    image: np.ndarray,
    centre: tuple[float, float] | None = None,
    width: float = 1.0,
    mask: np.ndarray | None = None,
    harmonics: Sequence[int] = (2, 4),
) -> np.ndarray:
    """The smooth light of a cutout's central object: azimuthal medians and even harmonics.

    Each annulus of ``width`` pixels around ``centre`` is replaced by its median, and the
    profile is interpolated in radius (linearly in its asinh).  Features that cover a small
    part of an annulus (arcs, neighbours, spiral arms) barely move its median, so they stay
    in ``image - model`` while the central galaxy's light goes; a feature that fills its
    annulus (a complete ring) goes too.

    An elongated galaxy is not round but is point-symmetric, so the model adds, annulus by
    annulus, the ``cos m phi`` and ``sin m phi`` terms (``m`` in ``harmonics``: 2 for the
    elongation, 4 for boxy or discy isophotes) fitted to the point-symmetric part of the
    image, ``min(image, image rotated by 180 degrees about the centre)``, where they are
    significant (3 standard errors).  A one-sided arc is absent from that part, so its light
    is left in ``image - model``; unlike subtracting the rotated image itself, features with
    a counterpart on the other side of the centre (a second image) are kept too.

    Parameters
    ----------
    image : ndarray, shape (H, W)
    centre : (float, float), optional
        ``(x, y)`` in pixels; default the light-weighted centroid of the brightest pixel within
        3 pixels of the middle.
    width : float
        Annulus width in pixels (half of it within 4 pixels of the centre, where the profile
        is steep).
    mask : ndarray of bool, shape (H, W), optional
        Pixels to leave out of the medians (e.g. features found on a first pass); an annulus
        with fewer than a third of its pixels left keeps them all.
    harmonics : sequence of int
        Even harmonics fitted beyond 2 pixels from the centre, in annuli that lie wholly
        inside the cutout; empty for a round model.

    Returns
    -------
    ndarray, shape (H, W)
    """
    image = np.nan_to_num(np.asarray(image, dtype=np.float64))
    h, w = image.shape
    x0, y0 = _light_centre(image) if centre is None else centre
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    radius = np.hypot(xx - x0, yy - y0).ravel()
    # Annulus 0 holds the centre's own pixel(s); finer annuli in the steep core.
    inner = 4.0
    ring = np.where(
        radius < inner,
        np.floor(2 * radius / width + 0.5),
        np.floor(2 * inner / width + 0.5) + np.floor((radius - inner) / width + 0.5),
    ).astype(int)
    order = np.argsort(ring, kind="stable")
    _, first = np.unique(ring[order], return_index=True)
    groups = np.split(order, first[1:])
    nodes = np.array([np.median(radius[group]) for group in groups])
    values = image.ravel()
    harmonic = np.zeros(h * w)
    if len(harmonics):
        harmonic = _harmonic_part(image, (x0, y0), radius, groups, nodes, harmonics)
    # Medians of the image less its harmonics: leaving out (masking) part of an elongated
    # annulus then does not bias its median.
    rest = values - harmonic
    keep = np.ones(h * w, bool) if mask is None else ~np.asarray(mask, bool).ravel()
    radii, medians = np.empty(len(groups)), np.empty(len(groups))
    for k, group in enumerate(groups):
        kept = group[keep[group]]
        group = kept if 3 * len(kept) >= len(group) and len(kept) else group
        radii[k] = np.median(radius[group])
        medians[k] = np.median(rest[group])
    # Interpolated in asinh of the profile: logarithmic where it is bright, so the convex
    # core of a galaxy is not overestimated between annuli, and linear near zero.
    _, noise = border_background(image)
    soft = noise if noise > 0 else 1e-3 * max(np.abs(medians).max(), 1e-300)
    profile = soft * np.sinh(np.interp(radius, radii, np.arcsinh(medians / soft)))
    return (profile + harmonic).reshape(h, w)


def _harmonic_part(image, centre, radius, groups, nodes, harmonics) -> np.ndarray:
    """The even harmonics of :func:`smooth_model`, flattened: fitted annulus by annulus to
    the point-symmetric part of ``image`` (where significant) and interpolated in radius."""
    from scipy.ndimage import map_coordinates

    h, w = image.shape
    x0, y0 = centre
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    rotated = map_coordinates(image, [2 * y0 - yy, 2 * x0 - xx], order=3, mode="nearest")
    symmetric = np.minimum(image, rotated).ravel()
    # The symmetric part less its own radial profile: the profile's slope across an annulus
    # would otherwise alias into the harmonics through the square pixel grid.
    symmetric -= np.interp(radius, nodes, [np.median(symmetric[g]) for g in groups])
    phi = np.arctan2(yy - y0, xx - x0).ravel()
    coefficients = np.zeros((len(groups), 2 * len(harmonics)))
    room = min(x0, y0, w - 1 - x0, h - 1 - y0)
    for k, group in enumerate(groups):
        if nodes[k] < 2 or nodes[k] + 1 > room or len(group) < 4 * len(harmonics) + 4:
            continue
        columns = [np.ones(len(group))]
        for m in harmonics:
            columns += [np.cos(m * phi[group]), np.sin(m * phi[group])]
        design = np.stack(columns, axis=1)
        fit = np.linalg.lstsq(design, symmetric[group], rcond=None)[0]
        error = np.std(symmetric[group] - design @ fit) * np.sqrt(2 / len(group))
        for j in range(len(harmonics)):
            c, s = fit[1 + 2 * j], fit[2 + 2 * j]
            if np.hypot(c, s) > 3 * error:
                coefficients[k, 2 * j : 2 * j + 2] = c, s
    out = np.zeros(h * w)
    for j, m in enumerate(harmonics):
        out += np.interp(radius, nodes, coefficients[:, 2 * j]) * np.cos(m * phi)
        out += np.interp(radius, nodes, coefficients[:, 2 * j + 1]) * np.sin(m * phi)
    return out


def _feature_mask(residual: np.ndarray, centre: tuple[float, float]) -> np.ndarray:
    """Pixels of one-sided positive features of a residual in noise sigma (arcs, neighbours).

    Smoothed by the typical seeing (a Gaussian of 1 pixel), a feature is above 3 sigma of
    the smoothed noise and brighter than the point opposite it through ``centre``: an
    elongated galaxy's symmetric lobes are not masked (masking them would bias the medians
    low all round), while an arc is.
    """
    from scipy.ndimage import gaussian_filter, map_coordinates

    smooth = gaussian_filter(residual, 1.0, mode="nearest")
    _, noise = border_background(smooth)
    if not noise > 0:
        return np.zeros(residual.shape, bool)
    h, w = residual.shape
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    opposite = map_coordinates(smooth, [2 * centre[1] - yy, 2 * centre[0] - xx], order=1)
    return (smooth > 3 * noise) & (smooth - opposite > 2 * noise)


def residual_image(image: np.ndarray, centre: tuple[float, float] | None = None) -> np.ndarray:
    """A cutout without its central object's smooth light, in units of the noise sigma.

    Each band has its sky level and :func:`smooth_model` (around one common centre, from the
    sum of the bands) subtracted and is divided by its border noise
    (:func:`border_background`); the bands are then summed and divided by the square root of
    their number, so the result is again in noise sigma and a feature in any band shows.
    The models are made twice: the second time without the one-sided features the first
    residual shows, so a long arc does not raise its annulus's median and dig a dark
    trough beside itself.

    Parameters
    ----------
    image : ndarray, shape (bands, H, W) or (H, W)
    centre : (float, float), optional
        ``(x, y)`` of the central object in pixels (see :func:`smooth_model`).

    Returns
    -------
    ndarray, shape (H, W), float64
    """
    image = np.nan_to_num(np.asarray(image, dtype=np.float64))
    cube = image[None] if image.ndim == 2 else image
    level, sigma = border_background(cube)
    # Noise-free cutouts (simulations) have no sigma: then each band in units of its peak.
    scale = np.where(sigma > 0, sigma, np.abs(cube).max(axis=(1, 2)))
    scale = np.where(scale > 0, scale, 1.0)
    normed = (cube - level[:, None, None]) / scale[:, None, None]
    if centre is None:
        centre = _light_centre(normed.sum(axis=0))
    norm = np.sqrt(len(cube))
    first = sum(band - smooth_model(band, centre) for band in normed) / norm
    mask = _feature_mask(first, centre)
    if not mask.any():
        return first
    return sum(band - smooth_model(band, centre, mask=mask) for band in normed) / norm


def residual_picture(
    residual: np.ndarray, softening: float = 2.0, percentile: float = 99.5, cmap: str = "gray"
) -> np.ndarray:
    """An RGB picture of a residual with a stretch symmetric about zero.

    ``asinh(x / a) / asinh(top / a)`` mapped from [-1, 1] onto the colour map, zero at its
    middle: ``a`` is ``softening`` times the residual's border noise (features of a few sigma
    stand well clear of zero) and ``top`` the ``percentile`` of ``|residual|`` within a
    quarter of the stamp's side from its middle (at least 5 ``a``), so neither a leftover
    core nor a bright neighbour swamps the rest.

    Parameters
    ----------
    residual : ndarray, shape (H, W)
        E.g. :func:`residual_image`.
    softening : float
        In units of the border noise.
    percentile : float
    cmap : str
        A matplotlib colour map (diverging or grey: negative dark, positive light).

    Returns
    -------
    ndarray, shape (H, W, 3), uint8
    """
    from matplotlib import colormaps

    residual = np.nan_to_num(np.asarray(residual, dtype=np.float64))
    _, noise = border_background(residual)
    # The range from the middle of the stamp, where the features to see are: a bright
    # neighbour further out is clipped rather than dimming them.
    h, w = residual.shape
    yy, xx = np.mgrid[:h, :w]
    middle = np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2) <= max(min(h, w) / 4, 2)
    top = float(np.percentile(np.abs(residual[middle]), percentile))
    soft = softening * noise if noise > 0 else 1e-3 * top
    if not soft > 0:
        scaled = np.zeros_like(residual)
    else:
        # At least a few sigma of range, so pure noise is not stretched to full contrast.
        top = max(top, 5 * soft)
        scaled = np.clip(np.arcsinh(residual / soft) / np.arcsinh(top / soft), -1, 1)
    rgba = colormaps[cmap](0.5 + 0.5 * scaled)
    return (rgba[..., :3] * 255 + 0.5).astype(np.uint8)


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
        P=0.987  tile edge
        lens  θE=1.23"  S/N=45     (the kind, then the case's own truth)

    Parameters
    ----------
    ra, dec : float, optional
        Degrees.
    tile : str, optional
    score : float, optional
        The (calibrated) probability.
    flags : str or sequence of str, optional
        Warnings about the stamp (e.g. ``tile edge``), shown after the score as they are.
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
        parts.append(flags if isinstance(flags, str) else ", ".join(flags))
    if parts:
        lines.append("  ".join(parts))
    shown = [str(kind)] if kind else []
    for template, value in truth:
        if finite(value):
            shown.append(template.format(float(value)))
    if shown:
        lines.append("  ".join(shown))
    return "\n".join(lines)


def _is_picture(stamp: np.ndarray) -> bool:
    """Whether ``stamp`` is an RGB picture already made rather than ``(bands, H, W)`` data."""
    return stamp.ndim == 3 and stamp.shape[-1] == 3 and stamp.dtype == np.uint8


def _bare(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def draw_stamp(
    ax,
    stamp: np.ndarray,
    bands: Sequence[str],
    caption: str,
    pixel_scale: float,
    scale_bar_arcsec: float = 2.0,
    q: float = 8.0,
    residual_ax=None,
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
        Lines under the stamp (the axes' x label).
    pixel_scale : float
        Arcsec per pixel.
    scale_bar_arcsec : float
        Scale bar length; 0 for none.
    q : float
        Lupton's softening ``Q``; unused, as the stretch is set per stamp
        (:func:`color_composite`), and kept for callers that pass it.
    residual_ax : matplotlib Axes, optional
        Where to draw the stamp without its central object's smooth light
        (:func:`residual_image`, :func:`residual_picture`); left blank for a picture.

    Returns
    -------
    matplotlib.lines.Line2D or None
        The scale bar.
    """
    stamp = np.asarray(stamp)
    picture = stamp if _is_picture(stamp) else color_composite(stamp, bands)
    ax.imshow(picture, origin="lower", interpolation="nearest")
    _bare(ax)
    ax.set_xlabel(caption, fontsize=6.5, family="monospace", linespacing=1.15)
    if residual_ax is not None:
        _bare(residual_ax)
        if not _is_picture(stamp):
            residual = residual_picture(residual_image(stamp))
            residual_ax.imshow(residual, origin="lower", interpolation="nearest")
        else:
            residual_ax.set_axis_off()
    if scale_bar_arcsec:
        return draw_scale_bar(ax, pixel_scale, scale_bar_arcsec)
    return None


#: Caption font size (points), the smallest it may shrink to, and its line spacing.
CAPTION_POINTS = 6.5
_MIN_CAPTION_POINTS = 4.0
_LINESPACING = 1.15
#: Layout of a gallery, inches: gap between a stamp's two panels, margin around each cell.
_PANEL_GAP = 0.03
_CELL_PAD = 0.1


def _wrap(text: str, chars: int) -> str:
    """Every line of ``text`` wrapped at ``chars`` characters (continuations indented)."""
    import textwrap

    out = []
    for line in text.splitlines() or [""]:
        out += textwrap.wrap(
            line, max(chars, 8), subsequent_indent=" ", break_on_hyphens=False
        ) or [""]
    return "\n".join(out)


def _chars_across(inches: float, points: float) -> int:
    """Monospace characters that fit in ``inches`` at ``points`` (DejaVu Sans Mono: 0.602 em
    a character), less a little room for rounding."""
    return int(inches * 72 / (0.602 * points)) - 1


def _fit_text(text, box, renderer) -> None:
    """Shrink (then cut) a Text artist until its drawn extent lies inside ``box`` (display
    pixels): a caption never runs into the next stamp or off the figure."""

    def inside():
        extent = text.get_window_extent(renderer)
        return (
            extent.x0 >= box.x0 - 0.5
            and extent.x1 <= box.x1 + 0.5
            and extent.y0 >= box.y0 - 0.5
            and extent.y1 <= box.y1 + 0.5
        )

    size = text.get_fontsize()
    while not inside() and size > _MIN_CAPTION_POINTS:
        size = max(size - 0.5, _MIN_CAPTION_POINTS)
        text.set_fontsize(size)
    lines = text.get_text().splitlines()
    while not inside() and len(lines) > 1:  # too tall: drop lines from the end
        lines = lines[:-1]
        lines[-1] = lines[-1][:-1] + "…"
        text.set_text("\n".join(lines))
    while not inside() and lines and len(lines[0]) > 1:  # one line, too wide: cut it
        lines[0] = lines[0][:-2] + "…"
        text.set_text(lines[0])


@dataclass(frozen=True)
class GalleryCell:
    """One stamp of a gallery figure (:func:`gallery_figure`).

    Attributes
    ----------
    colour : matplotlib Axes
        The colour (or grey, or ready-made) picture.
    residual : matplotlib Axes or None
        The residual panel beside it, if any.
    caption : matplotlib Text
        The caption under the panels.
    box : matplotlib.transforms.Bbox
        The caption's room under the panels, in figure coordinates (0 to 1): the caption
        lies inside it.
    """

    colour: Any
    residual: Any
    caption: Any
    box: Any


def saliency_picture(saliency: np.ndarray, percentile: float = 99.5) -> np.ndarray:
    """An RGB picture (uint8, in the map's own row order) of a signed saliency map: white
    where nothing moves the score, red where light raises it, blue where it lowers it,
    symmetric limits at ``percentile`` of ``|map|``.

    Parameters
    ----------
    saliency : ndarray, shape (H, W)
    percentile : float

    Returns
    -------
    ndarray, shape (H, W, 3), uint8
    """
    from matplotlib import colormaps

    m = np.nan_to_num(np.asarray(saliency, dtype=np.float64))
    top = np.percentile(np.abs(m), percentile)
    scaled = np.clip(m / top, -1, 1) if top > 0 else np.zeros_like(m)
    rgb = colormaps["RdBu_r"]((scaled + 1) / 2)[..., :3]
    return (rgb * 255).round().astype(np.uint8)


def _centred_on(picture: np.ndarray, shape) -> np.ndarray:
    """``picture`` (h, w, 3) on a white canvas of ``shape``, their centre pixels (index
    ``(n - 1) // 2``, as cutouts are centred) on top of each other; cropped where larger."""
    h, w = picture.shape[:2]
    H, W = (int(v) for v in shape)
    if (h, w) == (H, W):
        return picture
    canvas = np.full((H, W, 3), 255, dtype=np.uint8)
    # offset of the picture's first row/column on the canvas (negative: cropped)
    dy, dx = (H - 1) // 2 - (h - 1) // 2, (W - 1) // 2 - (w - 1) // 2
    ys, xs = slice(max(dy, 0), min(dy + h, H)), slice(max(dx, 0), min(dx + w, W))
    canvas[ys, xs] = picture[ys.start - dy : ys.stop - dy, xs.start - dx : xs.stop - dx]
    return canvas


def gallery_figure(
    stamps: Sequence[np.ndarray],
    bands: Sequence[str],
    captions: Sequence[str],
    pixel_scale: float,
    ncols: int | None = None,
    title: str | None = None,
    scale_bar_arcsec: float = 2.0,
    cell_inches: float = 1.9,
    residual: bool = True,
    dpi: float = 110,
    saliency: Sequence[np.ndarray | None] | None = None,
):
    """A grid of stamps, each in colour with its residual beside it and its caption under.

    The colour is :func:`color_composite`'s per-stamp asinh stretch; the residual panel
    (:func:`residual_image`, :func:`residual_picture`) is the stamp without its central
    object's smooth light, so a faint arc under a bright galaxy shows.  Ready-made RGB
    pictures span both panels.  Captions are wrapped to their cell's width, and shrunk or
    cut if they still do not fit, so none runs into its neighbour.

    Parameters
    ----------
    stamps, bands, captions, pixel_scale, ncols, title, scale_bar_arcsec, cell_inches
        As :func:`stamp_gallery`.
    residual : bool
        Draw the residual panels (stamps given as data only).
    dpi : float
        Of the figure (and so of the caption fitting).
    saliency : sequence of ndarray or None, optional
        One signed ``(h, w)`` map per stamp (:func:`skyscan.models.saliency.saliency_maps`
        over the model's input, which may be smaller than the stamp), drawn as a last panel
        by :func:`saliency_picture`; None for a stamp leaves its panel empty.

    Returns
    -------
    fig : matplotlib.figure.Figure
        With an Agg canvas (no pyplot state).
    cells : list of GalleryCell
        One per stamp, in order.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.transforms import Bbox

    if len(stamps) != len(captions):
        raise ValueError(f"{len(stamps)} stamps but {len(captions)} captions")
    if not len(stamps):
        raise ValueError("no stamps to draw")
    stamps = [np.asarray(stamp) for stamp in stamps]
    residual = residual and not all(_is_picture(stamp) for stamp in stamps)
    if saliency is not None and len(saliency) != len(stamps):
        raise ValueError(f"{len(stamps)} stamps but {len(saliency)} saliency maps")
    with_saliency = saliency is not None and any(m is not None for m in saliency)
    ncols = ncols or min((4 if residual else 6) - (1 if with_saliency else 0), len(stamps))
    nrows = int(np.ceil(len(stamps) / ncols))
    side = cell_inches
    stamp_w = 2 * side + _PANEL_GAP if residual else side
    cell_w = stamp_w + (side + _PANEL_GAP if with_saliency else 0.0)
    chars = _chars_across(cell_w - 0.04, CAPTION_POINTS)
    wrapped = [_wrap(caption, chars) for caption in captions]
    lines = max(text.count("\n") + 1 for text in wrapped)
    # DejaVu's line height is about 1.17 em; times the spacing, plus a little room.
    caption_h = (lines * 1.17 * _LINESPACING * CAPTION_POINTS) / 72 + 0.06
    if residual:
        note = (
            "each stamp: colour (asinh, softened at 2 sigma of its sky noise) | residual: its "
            "central galaxy's smooth light subtracted (grey: 0, white: excess)"
        )
        title = f"{title}\n{note}" if title else note
    if with_saliency:
        note = (
            "saliency: integrated gradients of the model's logit over its input, summed over "
            "its channels (red: light that raises the score, blue: lowers it); beside a "
            "stamp drawn as data, centred at the stamp's scale"
        )
        title = f"{title}\n{note}" if title else note
    width = ncols * cell_w + (ncols + 1) * _CELL_PAD
    title_text = ""
    if title:
        # about 0.55 em a character at 8.5 pt: long titles wrap instead of being cut
        title_text = "\n".join(
            _wrap(part, int(width * 72 / (0.55 * 8.5)) - 2) for part in title.splitlines()
        )
    title_h = (title_text.count("\n") + 1) * 8.5 * 1.35 / 72 + 0.12 if title else 0.0
    row_h = side + caption_h + _CELL_PAD
    height = title_h + nrows * row_h + _CELL_PAD
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    renderer = fig.canvas.get_renderer()
    if title:
        fig.text(
            0.5, 1 - 0.06 / height, title_text, ha="center", va="top", fontsize=8.5,
            linespacing=1.2,
        )  # fmt: skip

    def frac(x, y, w, h):
        return (x / width, y / height, w / width, h / height)

    cells = []
    for k, (stamp, text) in enumerate(zip(stamps, wrapped, strict=True)):
        row, col = divmod(k, ncols)
        x = _CELL_PAD + col * (cell_w + _CELL_PAD)
        top = height - title_h - _CELL_PAD - row * row_h
        y_panel = top - side
        if _is_picture(stamp) or not residual:
            colour = fig.add_axes(frac(x, y_panel, stamp_w, side))
            other = None
        else:
            colour = fig.add_axes(frac(x, y_panel, side, side))
            other = fig.add_axes(frac(x + side + _PANEL_GAP, y_panel, side, side))
        draw_stamp(colour, stamp, bands, "", pixel_scale, scale_bar_arcsec, residual_ax=other)
        if with_saliency:
            ax = fig.add_axes(frac(x + stamp_w + _PANEL_GAP, y_panel, side, side))
            _bare(ax)
            if saliency[k] is not None:
                picture = saliency_picture(saliency[k])
                if not _is_picture(stamp):  # the model's input, centred at the stamp's scale
                    picture = _centred_on(picture, stamp.shape[-2:])
                ax.imshow(picture, origin="lower", interpolation="nearest")
        box = Bbox.from_bounds(*frac(x, y_panel - caption_h, cell_w, caption_h))
        caption = fig.text(
            (x + 0.02) / width,
            (y_panel - 0.03) / height,
            text,
            ha="left",
            va="top",
            fontsize=CAPTION_POINTS,
            family="monospace",
            linespacing=_LINESPACING,
        )
        _fit_text(caption, box.transformed(fig.transFigure), renderer)
        cells.append(GalleryCell(colour, other, caption, box))
    return fig, cells


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
    residual: bool = True,
    saliency: Sequence[np.ndarray | None] | None = None,
) -> Path:
    """Save a grid of stamps in colour, each with its residual, scale bar and caption.

    See :func:`gallery_figure` for the panels.

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
        Stamps per row (default up to 4 with residual panels, else up to 6).
    title : str, optional
    scale_bar_arcsec : float
        Length of each stamp's scale bar (0: none).
    q : float
        Unused (the stretch is set per stamp); kept for callers that pass it.
    cell_inches : float
        Side of one panel.
    residual : bool
        Draw a residual panel beside each stamp given as data.
    saliency : sequence of ndarray or None, optional
        A saliency map per stamp, drawn as a last panel (see :func:`gallery_figure`).

    Returns
    -------
    Path
    """
    if len(stamps) != len(captions):
        raise ValueError(f"{len(stamps)} stamps but {len(captions)} captions")
    if not len(stamps):
        raise ValueError(f"{path}: no stamps to draw")
    fig, _ = gallery_figure(
        stamps,
        bands,
        captions,
        pixel_scale,
        ncols=ncols,
        title=title,
        scale_bar_arcsec=scale_bar_arcsec,
        cell_inches=cell_inches,
        residual=residual,
        saliency=saliency,
    )
    return save_figure_atomic(fig, Path(path), dpi=fig.dpi)


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
