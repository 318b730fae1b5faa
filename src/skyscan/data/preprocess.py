"""The preprocessing shared by training and inference (CMU DeepLens's recipe).

Each band is divided by its background noise sigma and clipped at +-``clip`` sigma.  The
specification is a small JSON-able dict written next to every dataset and into every model
card, so that the search applies exactly the transform the model was trained on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from skyscan.core.errors import MismatchError

__all__ = ["make_spec", "preprocess", "check_compatible"]

METHOD = "noise-scaled-clip"


def make_spec(bands: Sequence[str], background_sigma: Sequence[float], clip: float, shape) -> dict:
    """A preprocessing specification.

    Parameters
    ----------
    bands : sequence of str
    background_sigma : sequence of float
        Per-band background noise in the images' units (e-/s per pixel).
    clip : float
        Clip at +-clip after scaling.
    shape : sequence of int
        ``(bands, H, W)`` of the inputs.
    """
    return {
        "method": METHOD,
        "bands": list(bands),
        "scale": [float(s) for s in background_sigma],
        "clip": float(clip),
        "shape": [int(v) for v in shape],
        "input_units": "e-/s per pixel",
    }


def preprocess(images, spec: Mapping):
    """Apply ``spec`` to ``(N, bands, H, W)`` images (numpy or torch); returns float32.

    NaN pixels become 0 (the background level) so a masked pixel cannot poison a batch;
    callers that care flag such cutouts before (the dataset builder drops them).
    """
    if spec.get("method") != METHOD:
        raise MismatchError(f"unknown preprocessing method {spec.get('method')!r}")
    scale = np.asarray(spec["scale"], dtype=np.float32)
    clip = float(spec["clip"])
    if isinstance(images, torch.Tensor):
        s = torch.as_tensor(scale, device=images.device)[None, :, None, None]
        out = torch.nan_to_num(images.float() / s, nan=0.0)
        return out.clamp_(-clip, clip)
    out = np.asarray(images, dtype=np.float32) / scale[None, :, None, None]
    np.nan_to_num(out, copy=False, nan=0.0)
    return np.clip(out, -clip, clip, out=out)


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
