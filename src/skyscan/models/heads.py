"""Task heads shared by every case's networks: the regression head's Gaussian likelihood.

A regression network outputs, for each of ``P`` (normalised) targets, a mean and a
log-variance, ``(N, 2 * P)``, means first (Perreault Levasseur et al. 2017); it is trained with
:func:`gaussian_nll` and its log-variances are clipped to :data:`LOG_VARIANCE_RANGE`
wherever they are read.
"""

from __future__ import annotations

import torch

__all__ = ["LOG_VARIANCE_RANGE", "gaussian_nll"]

#: Bounds of the predicted log-variance (normalised units): keeps exp() finite early in
#: training without limiting any sensible uncertainty (e^-9 is a 1% sigma, e^5 twelve).
LOG_VARIANCE_RANGE = (-9.0, 5.0)


def gaussian_nll(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean Gaussian negative log-likelihood (constant dropped) of targets under the network's
    means and log-variances.

    Parameters
    ----------
    output : torch.Tensor, shape (N, 2 * P)
        Means ``[:, :P]`` and log-variances ``[:, P:]``.
    target : torch.Tensor, shape (N, P)

    Returns
    -------
    torch.Tensor
        ``mean(0.5 * (log s^2 + (y - mu)^2 / s^2))`` over rows and parameters.
    """
    n = target.shape[-1]
    if output.shape[-1] != 2 * n:
        raise ValueError(f"output has {output.shape[-1]} columns, expected 2 x {n} targets")
    mean = output[..., :n]
    log_var = output[..., n:].clamp(*LOG_VARIANCE_RANGE)
    return (0.5 * (log_var + (target - mean) ** 2 * torch.exp(-log_var))).mean()
