"""The preprocessing shared by training and inference.

Each band is divided by its background noise sigma, then stretched:

``noise-scaled-asinh`` (default)
    ``asinh(x / a)`` with ``a`` the softening in background sigma: linear within a few sigma
    of the sky, logarithmic above, so a bright arc stays distinct from its bright host
    instead of saturating (Lupton et al. 1999's stretch, per band).
``noise-scaled-clip``
    CMU DeepLens's recipe: clipped at +-``clip`` sigma.  At coadd depth bright arcs saturate
    the clip, and such lenses were found far less often than faint ones.

The specification is a small JSON-able dict written next to every dataset and into every
model card, so that the search applies exactly the transform the model was trained on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from skyscan.core.errors import MismatchError

__all__ = ["make_spec", "preprocess", "invert", "check_compatible", "METHODS"]

#: Stretch name in the config (``dataset.stretch``) -> method name in the spec.
METHODS = {"asinh": "noise-scaled-asinh", "clip": "noise-scaled-clip"}


def make_spec(
    bands: Sequence[str],
    background_sigma: Sequence[float],
    clip: float,
    shape,
    stretch: str = "clip",
    softening: float = 3.0,
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
    """
    if stretch not in METHODS:
        raise ValueError(f"unknown stretch {stretch!r} (allowed: {', '.join(METHODS)})")
    spec = {
        "method": METHODS[stretch],
        "bands": list(bands),
        "scale": [float(s) for s in background_sigma],
    }
    if stretch == "clip":
        spec["clip"] = float(clip)
    else:
        spec["softening"] = float(softening)
    spec.update(shape=[int(v) for v in shape], input_units="e-/s per pixel")
    return spec


def preprocess(images, spec: Mapping):
    """Apply ``spec`` to ``(N, bands, H, W)`` images (numpy or torch); returns float32.

    NaN pixels become 0 (the background level) so a masked pixel cannot poison a batch;
    callers that care flag such cutouts before (the dataset builder drops them).
    """
    method = spec.get("method")
    if method not in METHODS.values():
        raise MismatchError(f"unknown preprocessing method {method!r}")
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
