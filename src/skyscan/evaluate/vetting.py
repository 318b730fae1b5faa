"""The vetting flag of a parameter network: candidates whose estimated Einstein radius or
its uncertainty is implausible for a lens (thresholds chosen at training time; what the flag
removes is measured by :func:`skyscan.vet.params.measure_vetting`).

A non-lens that a classifier calls a lens still gets an Einstein radius from the parameter
network, but often one outside the range lenses have or with an uncertainty no lens gets
(Schuldt et al. 2023, HOLISMOKES XVI, removed 29% of false positives so).  The thresholds
are chosen on the validation lenses, so that at most ``max_lens_loss`` of them are flagged:
the predicted value must lie in the training range, and its relative uncertainty must not
exceed what the validation lenses show.

Examples
--------
>>> import numpy as np
>>> value = np.array([1.0, 1.5, 2.0, 9.0]); sigma = np.array([0.05, 0.1, 0.1, 0.1])
>>> t = choose_thresholds(value[:3], sigma[:3], value_range=(0.5, 3.0), max_lens_loss=0.0)
>>> flag_implausible(value, sigma, t).tolist()
[False, False, False, True]
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["choose_thresholds", "flag_implausible", "flag_summary"]


def choose_thresholds(
    value, sigma, value_range: tuple[float, float], max_lens_loss: float = 0.01
) -> dict:
    """Thresholds flagging at most ``max_lens_loss`` of the given (validation) lenses.

    Parameters
    ----------
    value, sigma : array_like
        Estimated Einstein radii of validation lenses and their (calibrated) 1-sigma
        uncertainties.
    value_range : pair of float
        Plausible Einstein radii (the training range, i.e. the prior's).
    max_lens_loss : float
        Largest fraction of these lenses the flag may remove.

    Returns
    -------
    dict
        ``low``, ``high`` (the value range), ``max_rel_sigma`` (largest plausible
        ``sigma / value``), ``max_lens_loss``, the fraction of these lenses flagged
        (``lens_loss_val``) and their number (``n_val``).
    """
    value = np.asarray(value, dtype=np.float64)
    rel = np.asarray(sigma, dtype=np.float64) / value
    low, high = (float(v) for v in value_range)
    outside = (value < low) | (value > high)
    n = len(value)
    if n == 0:
        raise ValueError("no validation lenses to choose thresholds on")
    # The remaining budget goes to the uncertainty cut: keep all but the `allowed` largest.
    allowed = int(np.floor(max_lens_loss * n + 1e-9)) - int(outside.sum())
    inside = np.sort(rel[~outside])[::-1]
    if len(inside) == 0:
        max_rel = float("inf")
    elif allowed < len(inside):
        max_rel = float(inside[max(allowed, 0)])  # flagged: strictly above this
    else:
        max_rel = 0.0
    thresholds = {"low": low, "high": high, "max_rel_sigma": max_rel}
    flagged = flag_implausible(value, np.asarray(sigma, dtype=np.float64), thresholds)
    return {
        **thresholds,
        "max_lens_loss": float(max_lens_loss),
        "lens_loss_val": float(flagged.mean()),
        "n_val": n,
    }


def flag_implausible(value, sigma, thresholds: Mapping) -> np.ndarray:
    """True for candidates whose Einstein radius is outside ``[low, high]`` or whose relative
    uncertainty exceeds ``max_rel_sigma`` (:func:`choose_thresholds`)."""
    value = np.asarray(value, dtype=np.float64)
    rel = np.asarray(sigma, dtype=np.float64) / value
    bad = ~np.isfinite(value) | ~np.isfinite(rel)
    with np.errstate(invalid="ignore"):
        bad |= value < thresholds["low"]
        bad |= value > thresholds["high"]
        bad |= rel > thresholds["max_rel_sigma"]
    return bad


def flag_summary(flags, labels, passed=None) -> dict:
    """What the flag removes: the fraction of non-lenses and of lenses flagged (with Wilson
    95% intervals and counts), and, with ``passed`` (the classifier's calls), the fraction
    of its false positives flagged and of its true positives lost."""
    from skyscan.evaluate.metrics import wilson_interval

    flags = np.asarray(flags, dtype=bool)
    labels = np.asarray(labels).astype(bool)

    def rate(mask):
        k, n = int((flags & mask).sum()), int(mask.sum())
        return {"fraction": k / n if n else None, "ci95": wilson_interval(k, n), "k": k, "n": n}

    out = {"non_lenses_flagged": rate(~labels), "lenses_flagged": rate(labels)}
    if passed is not None:
        passed = np.asarray(passed, dtype=bool)
        out["false_positives_flagged"] = rate(passed & ~labels)
        out["true_positives_flagged"] = rate(passed & labels)
    return out
