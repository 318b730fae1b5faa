"""Pictures of a candidate for the grading page: one PNG strip per candidate.

Panels, left to right: a colour image (Lupton et al. 2004 through
:func:`astropy.visualization.make_lupton_rgb`, gri when the bands have them; a grey asinh
image with fewer than three bands), then each band with an asinh stretch, then each band
linear between the zscale limits (IRAF's, :class:`astropy.visualization.ZScaleInterval`).

Stamps come in units of their background sigma per band, so that a tile's stamp and a
simulated stamp look alike whatever their pixel units; north is up (row 0 at the bottom).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

__all__ = ["background_sigma", "colour_bands", "panel_names", "render_strip"]

#: Upscaling of each stamp pixel on the page (nearest neighbour: pixels stay visible).
ZOOM = 3
#: Gap between panels, in page pixels.
GAP = 4
#: asinh softening in background sigma of the single-band and grey panels.
SOFTENING = 3.0


def background_sigma(data: np.ndarray, max_pixels: int = 1_000_000) -> np.ndarray:
    """Background noise sigma of each band of a ``(bands, H, W)`` image.

    The median absolute deviation (scaled to a Gaussian sigma) of the finite pixels left
    after clipping at 3 sigma (sources out, iterated), on a regular subsample of at most
    ``max_pixels`` pixels: robust to the sources on the tile and fast on large tiles.

    Returns
    -------
    ndarray of float64, shape (bands,)
    """
    from astropy.stats import mad_std, sigma_clip

    nb, h, w = data.shape
    step = max(1, int(np.ceil(np.sqrt(h * w / max_pixels))))
    sigma = np.empty(nb)
    for b in range(nb):
        pixels = data[b, ::step, ::step]
        pixels = pixels[np.isfinite(pixels)]
        if pixels.size == 0:
            sigma[b] = np.nan
            continue
        kept = sigma_clip(pixels, sigma=3, maxiters=10, stdfunc="mad_std", masked=False)
        sigma[b] = mad_std(kept)
    return sigma


def colour_bands(bands: Sequence[str]) -> list[int] | None:
    """Indices of the (red, green, blue) bands of the colour image: i, r, g when present,
    else the last three bands in the card's (blue to red) order; None with fewer than 3."""
    bands = list(bands)
    if all(b in bands for b in "gri"):
        return [bands.index("i"), bands.index("r"), bands.index("g")]
    if len(bands) >= 3:
        return [len(bands) - 1, len(bands) - 2, len(bands) - 3]
    return None


#: The last panel of every strip: what the model looks at.
SALIENCY_PANEL = "saliency (integrated gradients: red raises the score, blue lowers it)"
#: Bumped when the strip's panels change, so that cached PNGs are drawn again.
STRIP_VERSION = 2


def panel_names(bands: Sequence[str]) -> list[str]:
    """Captions of the panels of :func:`render_strip`, in order."""
    first = "colour (Lupton)" if colour_bands(bands) else "grey (asinh)"
    return (
        [first] + [f"{b} asinh" for b in bands] + [f"{b} zscale" for b in bands] + [SALIENCY_PANEL]
    )


def _asinh(image: np.ndarray) -> np.ndarray:
    """asinh stretch in sigma units to [0, 1], white at the 99.5th percentile."""
    v = np.arcsinh(np.clip(image, 0, None) / SOFTENING)
    top = np.percentile(v, 99.5)
    return np.clip(v / top, 0, 1) if top > 0 else np.zeros_like(v)


def _zscale(image: np.ndarray) -> np.ndarray:
    from astropy.visualization import ZScaleInterval

    lo, hi = ZScaleInterval().get_limits(image)
    return np.clip((image - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(image)


def _colour(stamp: np.ndarray, bands: Sequence[str]) -> np.ndarray:
    from astropy.visualization import make_lupton_rgb

    rgb_index = colour_bands(bands)
    if rgb_index is None:
        grey = _asinh(stamp.mean(axis=0))
        return np.repeat((grey * 255).astype(np.uint8)[..., None], 3, axis=-1)
    red, green, blue = (stamp[k] for k in rgb_index)
    # In sigma units: linear over the first ~10 sigma, compressed (Q) above.
    return make_lupton_rgb(red, green, blue, minimum=-1.0, stretch=15.0, Q=8.0)


def render_strip(stamp: np.ndarray, bands: Sequence[str], saliency=None) -> bytes:
    """The PNG strip of one stamp.

    Parameters
    ----------
    stamp : ndarray, shape (bands, H, W)
        In units of the background sigma of each band; NaN pixels are drawn as 0.
    bands : sequence of str
    saliency : ndarray, shape (H, W), optional
        The model's signed saliency map of the stamp
        (:func:`skyscan.models.saliency.saliency_maps`), drawn by
        :func:`skyscan.viz.saliency_picture` as the last panel; None leaves it blank.

    Returns
    -------
    bytes
        PNG data; panels as :func:`panel_names` lists them.
    """
    from PIL import Image

    from skyscan.viz import saliency_picture

    stamp = np.nan_to_num(np.asarray(stamp, dtype=np.float32))
    nb, h, w = stamp.shape
    panels = [_colour(stamp, bands)]
    for stretch in (_asinh, _zscale):
        for b in range(nb):
            grey = (stretch(stamp[b]) * 255).astype(np.uint8)
            panels.append(np.repeat(grey[..., None], 3, axis=-1))
    if saliency is None:
        panels.append(np.full((h, w, 3), 255, dtype=np.uint8))
    else:
        if np.shape(saliency) != (h, w):
            raise ValueError(f"saliency map of shape {np.shape(saliency)} for a {h}x{w} stamp")
        panels.append(saliency_picture(saliency))
    width = len(panels) * w * ZOOM + (len(panels) - 1) * GAP
    strip = np.full((h * ZOOM, width, 3), 255, dtype=np.uint8)
    for k, panel in enumerate(panels):
        big = np.repeat(np.repeat(panel[::-1], ZOOM, axis=0), ZOOM, axis=1)  # north up
        x0 = k * (w * ZOOM + GAP)
        strip[:, x0 : x0 + w * ZOOM] = big
    buffer = io.BytesIO()
    Image.fromarray(strip).save(buffer, format="PNG", optimize=False, compress_level=1)
    return buffer.getvalue()
