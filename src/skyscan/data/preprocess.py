"""The preprocessing shared by training and inference.

Each band is divided by its background noise sigma, then stretched:

``noise-scaled-asinh`` (default)
    ``asinh(x / a)`` with ``a`` the softening in background sigma: linear within a few sigma
    of the sky, logarithmic above, so a bright arc stays distinct from its bright host
    instead of saturating (Lupton et al. 1999's stretch, per band).
``noise-scaled-clip``
    CMU DeepLens's recipe: clipped at +-``clip`` sigma.  At coadd depth bright arcs saturate
    the clip, and such lenses were found far less often than faint ones.

With ``normalise="per-stamp"`` (``dataset.normalise: per_stamp``) each band of each stamp is
first put in units of its own noise: its median subtracted and divided by its normalised
median absolute deviation (1.4826 MAD), so that the stretch sees the same numbers whatever
the data's units, zero point, gain or background (real alerts' cutouts against the
simulation's e-/s).  braai (Duev et al. 2019) normalises each cutout by its own norm for the
same reason; median and MAD are robust to the source itself and to a few bad pixels.  The
stretch's ``scale`` is then 1 (units of stamp sigma).

The specification is a small JSON-able dict written next to every dataset and into every
model card, so that the search applies exactly the transform the model was trained on.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from skyscan.core.errors import MismatchError

__all__ = ["make_spec", "preprocess", "invert", "check_compatible", "METHODS", "NORMALISE"]

#: Stretch name in the config (``dataset.stretch``) -> method name in the spec.
METHODS = {"asinh": "noise-scaled-asinh", "clip": "noise-scaled-clip"}
#: Normalisation in the config (``dataset.normalise``) -> its name in the spec (absent: the
#: survey's background sigma per band, the spec's ``scale``).
NORMALISE = {"background": None, "per_stamp": "per-stamp"}
#: normalised MAD: 1.4826 MAD is a Gaussian's sigma
MAD_TO_SIGMA = 1.4826


def make_spec(
    bands: Sequence[str],
    background_sigma: Sequence[float],
    clip: float,
    shape,
    stretch: str = "clip",
    softening: float = 3.0,
    normalise: str = "background",
) -> dict:
    """A preprocessing specification.

    Parameters
    ----------
    bands : sequence of str
    background_sigma : sequence of float
        Per-band background noise in the images' units (e-/s per pixel).
    clip : float
        For ``stretch="clip"``: clip at +-clip after scaling.
    shape : sequence of int
        ``(bands, H, W)`` of the inputs.
    stretch : {"clip", "asinh"}
    softening : float
        For ``stretch="asinh"``: the softening ``a`` in background sigma.
    normalise : {"background", "per_stamp"}
        Divide by the survey's ``background_sigma`` per band, or put each stamp's band in
        units of its own median and MAD (then ``scale`` is 1).
    """
    if stretch not in METHODS:
        raise ValueError(f"unknown stretch {stretch!r} (allowed: {', '.join(METHODS)})")
    if normalise not in NORMALISE:
        raise ValueError(f"unknown normalise {normalise!r} (allowed: {', '.join(NORMALISE)})")
    per_stamp = NORMALISE[normalise] is not None
    spec = {
        "method": METHODS[stretch],
        "bands": list(bands),
        "scale": [1.0] * len(bands) if per_stamp else [float(s) for s in background_sigma],
    }
    if per_stamp:
        spec["normalise"] = NORMALISE[normalise]
    if stretch == "clip":
        spec["clip"] = float(clip)
    else:
        spec["softening"] = float(softening)
    units = "any (each stamp in units of its own median and MAD)" if per_stamp else "e-/s per pixel"
    spec.update(shape=[int(v) for v in shape], input_units=units)
    return spec


def per_stamp_normalise(images):
    """Each band of each ``(N, bands, H, W)`` stamp minus its median, over its normalised
    median absolute deviation (NaN pixels ignored; a flat band is only centred).

    Invariant, for any gain ``g > 0`` and offset ``b`` per band: ``f(g x + b) = f(x)``.
    """
    if isinstance(images, torch.Tensor):
        x = images.float()
        flat = x.flatten(2)
        med = flat.nanmedian(dim=2).values[..., None]
        mad = (flat - med).abs().nanmedian(dim=2).values[..., None] * MAD_TO_SIGMA
        tiny = torch.finfo(torch.float32).tiny
        sigma = torch.where(torch.isfinite(mad) & (mad > tiny), mad, torch.ones_like(mad))
        return ((flat - med) / sigma).view_as(x)
    x = np.asarray(images, dtype=np.float32)
    flat = x.reshape(x.shape[0], x.shape[1], -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN band gives NaN: centred
        med = np.nanmedian(flat, axis=2, keepdims=True)
        mad = np.nanmedian(np.abs(flat - med), axis=2, keepdims=True) * np.float32(MAD_TO_SIGMA)
    tiny = np.finfo(np.float32).tiny
    sigma = np.where(np.isfinite(mad) & (mad > tiny), mad, np.float32(1.0))
    return ((flat - med) / sigma).astype(np.float32).reshape(x.shape)


def preprocess(images, spec: Mapping):
    """Apply ``spec`` to ``(N, bands, H, W)`` images (numpy or torch); returns float32.

    NaN pixels become 0 (the background level) so a masked pixel cannot poison a batch;
    callers that care flag such cutouts before (the dataset builder drops them).
    """
    method = spec.get("method")
    if method not in METHODS.values():
        raise MismatchError(f"unknown preprocessing method {method!r}")
    normalise = spec.get("normalise")
    if normalise not in NORMALISE.values():
        raise MismatchError(f"unknown preprocessing normalise {normalise!r}")
    if normalise is not None:
        images = per_stamp_normalise(images)
    scale = np.asarray(spec["scale"], dtype=np.float32)
    if method == METHODS["asinh"]:
        scale = scale * np.float32(spec["softening"])
    if isinstance(images, torch.Tensor):
        s = torch.as_tensor(scale, device=images.device)[None, :, None, None]
        out = torch.nan_to_num(images.float() / s, nan=0.0)
        if method == METHODS["asinh"]:
            return torch.asinh_(out)
        return out.clamp_(-float(spec["clip"]), float(spec["clip"]))
    out = np.asarray(images, dtype=np.float32) / scale[None, :, None, None]
    np.nan_to_num(out, copy=False, nan=0.0)
    if method == METHODS["asinh"]:
        return np.arcsinh(out, out=out)
    return np.clip(out, -float(spec["clip"]), float(spec["clip"]), out=out)


def invert(images, spec: Mapping) -> np.ndarray:
    """Back to e-/s per pixel from preprocessed ``(..., bands, H, W)`` images (for pictures;
    clipped pixels stay at the clip)."""
    out = np.asarray(images, dtype=np.float32)
    scale = np.asarray(spec["scale"], dtype=np.float32)[:, None, None]
    if spec.get("method") == METHODS["asinh"]:
        return np.sinh(out) * scale * np.float32(spec["softening"])
    return out * scale


def check_compatible(spec: Mapping, bands: Sequence[str], shape, what: str) -> None:
    """Fail with a message naming ``what`` unless ``bands`` and ``shape`` match ``spec``."""
    if list(bands) != list(spec["bands"]):
        raise MismatchError(
            f"{what}: bands {list(bands)} do not match the model's {list(spec['bands'])}"
        )
    if [int(v) for v in shape] != list(spec["shape"]):
        raise MismatchError(
            f"{what}: cutout shape {list(shape)} does not match the model's {spec['shape']}"
        )
