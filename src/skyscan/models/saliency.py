"""What a classifier looks at: integrated gradients (Sundararajan, Taly & Yan 2017) of an
exported model's logit with respect to its preprocessed input.

Integrated gradients need nothing but gradients of the model's output, so they work with any
exported TorchScript model of any case (Grad-CAM would need a named convolutional layer,
which TorchScript hides, and TTA wrappers average several).  The attribution of pixel ``p``
is ``(x_p - b_p) * mean over a in (0, 1] of d f(b + a (x - b)) / d x_p``, with the baseline
``b`` zero: in preprocessed units that is the sky level of every band, so the map says which
light moved the logit away from that of empty sky.  Attributions sum to
``f(x) - f(b)`` (completeness), up to the error of the ``steps``-point midpoint rule.

Maps are summed over bands: positive (drawn red) where light raises the logit, i.e. pushes
towards the positive class (lens, real transient), negative (blue) where it lowers it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["integrated_gradients", "saliency_maps"]


def integrated_gradients(model, x, steps: int = 32, batch_size: int = 128, target: int = 0):
    """Integrated gradients of a model's logit for preprocessed inputs.

    Parameters
    ----------
    model : torch.nn.Module or torch.jit.ScriptModule
        Preprocessed ``(N, C, H, W)`` float32 in, logits ``(N,)`` or ``(N, K)`` out; used in
        eval mode as given (``skyscan.models.card.load_model`` returns one).
    x : array_like, shape (N, C, H, W)
        Preprocessed samples (what the model scores).
    steps : int
        Points of the midpoint rule along the straight path from the zero baseline.
    batch_size : int
        Forward passes at once (samples times steps).
    target : int
        The logit column for a model with ``K > 1`` outputs.

    Returns
    -------
    ndarray, shape (N, C, H, W), float32
        The attribution of every input pixel; over a sample they sum to its logit minus the
        logit of the zero input.
    """
    import torch

    x = torch.tensor(np.asarray(x, dtype=np.float32))  # a copy: inputs may be read-only
    if x.ndim != 4:
        raise ValueError(f"expected (N, C, H, W) samples, got shape {tuple(x.shape)}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    alphas = (torch.arange(steps, dtype=torch.float32) + 0.5) / steps
    per_chunk = max(1, batch_size // steps)
    out = np.empty(tuple(x.shape), dtype=np.float32)
    with torch.enable_grad():
        for start in range(0, len(x), per_chunk):
            chunk = x[start : start + per_chunk]
            k = len(chunk)
            path = (alphas[:, None, None, None, None] * chunk[None]).reshape(-1, *chunk.shape[1:])
            path.requires_grad_(True)
            logits = model(path)
            logits = logits.reshape(len(path), -1)[:, target]
            (grad,) = torch.autograd.grad(logits.sum(), path)
            mean_grad = grad.reshape(steps, k, *chunk.shape[1:]).mean(dim=0)
            out[start : start + k] = (chunk * mean_grad).detach().numpy()
    return out


def saliency_maps(model, x, steps: int = 32, batch_size: int = 128) -> np.ndarray:
    """Integrated gradients summed over bands: one signed ``(H, W)`` map per sample.

    Parameters
    ----------
    model, x, steps, batch_size
        As :func:`integrated_gradients`.

    Returns
    -------
    ndarray, shape (N, H, W), float32
        Positive where the sample's light raises the logit, negative where it lowers it.
    """
    return integrated_gradients(model, x, steps=steps, batch_size=batch_size).sum(axis=1)
