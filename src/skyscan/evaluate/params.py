"""Judging a parameter network: errors, biases and interval coverage on the test positives.

The estimates come from :meth:`skyscan.models.card.ModelCard.parameter_estimates` (values,
1-sigma uncertainties and 68% intervals in physical units).  Coverage is the fraction of true
values inside the 68% interval, with a Wilson 95% interval and the sample size; for a
``log`` parameter (the Einstein radius) the interval is the back-transformed one, which holds
the truth exactly when the interval of the log does.

Examples
--------
>>> import numpy as np
>>> z = np.random.default_rng(0).normal(size=(20000, 1)) * 2.0  # sigmas 2x too small
>>> float(np.round(fit_uncertainty_scale(z)[0], 1))
2.0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from skyscan.core.atomic import save_figure_atomic
from skyscan.evaluate.metrics import wilson_interval

__all__ = [
    "COVERAGE_68",
    "fit_uncertainty_scale",
    "interval_coverage",
    "relative_errors",
    "parameter_metrics",
    "plot_parameter_scatter",
    "evaluate_parameters",
]

#: Probability mass within one sigma of a Gaussian's mean.
COVERAGE_68 = 0.6826894921370859


def fit_uncertainty_scale(normalised_residuals, level: float = COVERAGE_68) -> np.ndarray:
    """One factor per parameter that makes ``level`` intervals hold ``level`` of the truths.

    Parameters
    ----------
    normalised_residuals : array_like, shape (N, P)
        ``(truth - mean) / sigma`` of each estimate (e.g. on the validation split).
    level : float
        The interval's nominal coverage (68.27% for one sigma).

    Returns
    -------
    ndarray, shape (P,)
        The ``level`` quantile of ``|residual|`` per parameter: multiplying the sigmas by it
        makes the one-sigma interval hold exactly ``level`` of these residuals.
    """
    z = np.abs(np.asarray(normalised_residuals, dtype=np.float64))
    if z.ndim != 2 or len(z) == 0:
        raise ValueError(f"expected (N, P) residuals with N > 0, got shape {z.shape}")
    if not np.isfinite(z).all():
        raise ValueError("normalised residuals contain NaN or infinite values")
    return np.quantile(z, level, axis=0)


def interval_coverage(truth, low, high) -> dict:
    """Fraction of ``truth`` inside ``[low, high]``, with its Wilson 95% interval and size."""
    truth, low, high = (np.asarray(a, dtype=np.float64) for a in (truth, low, high))
    inside = (truth >= low) & (truth <= high)
    k, n = int(inside.sum()), int(inside.size)
    return {
        "coverage": k / n if n else None,
        "coverage_ci95": wilson_interval(k, n),
        "n": n,
    }


def relative_errors(truth, estimate, off: float = 0.30) -> dict:
    """Relative errors ``(estimate - truth) / truth``: median absolute, median (the bias) and
    the fraction off by more than ``off`` (with its Wilson 95% interval)."""
    truth = np.asarray(truth, dtype=np.float64)
    rel = (np.asarray(estimate, dtype=np.float64) - truth) / truth
    k, n = int((np.abs(rel) > off).sum()), int(rel.size)
    return {
        "median_abs_rel_error": float(np.median(np.abs(rel))) if n else None,
        "median_rel_bias": float(np.median(rel)) if n else None,
        f"fraction_off_{round(100 * off)}pct": k / n if n else None,
        f"fraction_off_{round(100 * off)}pct_ci95": wilson_interval(k, n),
        "n": n,
    }


def parameter_metrics(
    estimates: Mapping[str, Mapping[str, np.ndarray]],
    truth: Mapping[str, np.ndarray],
    transforms: Sequence[str],
    selection: np.ndarray | None = None,
) -> dict:
    """Per-parameter accuracy and 68% coverage of estimates against the truth.

    Parameters
    ----------
    estimates : mapping
        ``name -> {"value", "sigma", "low", "high"}`` (physical units).
    truth : mapping
        ``name -> true values``, row for row.
    transforms : sequence of str
        Each parameter's transform, in the order of ``estimates``: a ``log`` parameter also
        gets relative errors (:func:`relative_errors`).
    selection : ndarray of bool, optional
        Rows to judge (default all).

    Returns
    -------
    dict
        ``name -> {median_abs_error, median_bias, median_sigma, coverage68, ...}``.
    """
    out = {}
    for name, transform in zip(estimates, transforms, strict=True):
        est = estimates[name]
        keep = np.ones(len(est["value"]), dtype=bool) if selection is None else selection
        t = np.asarray(truth[name], dtype=np.float64)[keep]
        v = np.asarray(est["value"], dtype=np.float64)[keep]
        entry = {
            "n": int(keep.sum()),
            "median_abs_error": float(np.median(np.abs(v - t))) if len(t) else None,
            "median_bias": float(np.median(v - t)) if len(t) else None,
            "median_sigma": float(np.median(est["sigma"][keep])) if len(t) else None,
            "coverage68": interval_coverage(t, est["low"][keep], est["high"][keep]),
        }
        if transform == "log":
            entry.update(relative_errors(t, v))
        out[name] = entry
    return out


def plot_parameter_scatter(truth, value, sigma, path, name, unit="", title=""):
    """Predicted against true values with 1-sigma error bars and the one-to-one line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    truth, value, sigma = (np.asarray(a, dtype=np.float64) for a in (truth, value, sigma))
    fig, ax = plt.subplots(figsize=(4.6, 4.4), layout="constrained")
    ax.errorbar(truth, value, yerr=sigma, fmt="none", lw=0.3, alpha=0.15, color="C0")
    ax.plot(truth, value, ".", ms=2, alpha=0.6, color="C0")
    lo = float(min(truth.min(), value.min())) if len(truth) else 0.0
    hi = float(max(truth.max(), value.max())) if len(truth) else 1.0
    ax.plot([lo, hi], [lo, hi], color="C3", lw=1)
    label = f"{name} ({unit})" if unit else name
    ax.set_xlabel(f"true {label}")
    ax.set_ylabel(f"predicted {label}")
    ax.set_title(title or f"{name}: {len(truth)} test lenses", fontsize=9)
    ax.grid(alpha=0.3)
    out = save_figure_atomic(fig, Path(path), dpi=120)
    plt.close(fig)
    return out


def _numeric_columns(meta) -> dict:
    import pyarrow as pa

    return {
        c: meta.column(c).to_numpy()
        for c in meta.column_names
        if pa.types.is_floating(meta.schema.field(c).type)
    }


def evaluate_parameters(card_path, dataset_dir, out_dir) -> dict:
    """Judge a parameter network on the positives of a dataset's test split.

    Writes ``param_metrics.json`` (per parameter on the case's selection, e.g. theta_E >= 1"
    and S/N >= 20 for lenses: median absolute and relative errors, median bias, fraction off
    by more than 30%, 68% coverage with Wilson 95% intervals and sample sizes; the same on
    every test positive; the case's goals and whether each is met) and a scatter plot of the
    first parameter, predicted against true (``<name>.png``, e.g. ``theta_E.png``), into
    ``out_dir``.

    Parameters
    ----------
    card_path : str or Path
        The parameter network's model card.
    dataset_dir : str or Path
        A dataset of the card's case, with a ``test`` split.
    out_dir : str or Path

    Returns
    -------
    dict
        The metrics as written.
    """
    from skyscan.core.atomic import write_json_atomic
    from skyscan.core.case import get_case
    from skyscan.core.errors import InputFileError
    from skyscan.evaluate.scoring import score_split
    from skyscan.models.card import load_model

    model, card = load_model(card_path)
    if not card.targets:
        raise InputFileError(
            f"{card_path}: a classifier's card; evaluate-params needs a parameter network",
            path=card_path,
        )
    case = get_case(card.case)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs, meta = score_split(model, card, dataset_dir, "test")
    positive = meta.column("label").to_numpy() == 1
    if not positive.any():
        raise InputFileError(f"{dataset_dir}: the test split holds no positives", path=dataset_dir)
    columns = {k: v[positive] for k, v in _numeric_columns(meta).items()}
    estimates = card.parameter_estimates(outputs[positive])
    names, transforms = card.targets["names"], card.targets["transforms"]
    selection, text = case.parameter_selection(columns)
    judged = parameter_metrics(estimates, columns, transforms, selection)
    metrics = {
        "model": card.name,
        "dataset": str(dataset_dir),
        "selection": text,
        "n_selected": int(selection.sum()),
        "n_test_positives": int(positive.sum()),
        "parameters": judged,
        "all_test_positives": parameter_metrics(estimates, columns, transforms),
        "uncertainty_scale": dict(
            zip(names, card.targets.get("uncertainty_scale") or [1.0] * len(names), strict=True)
        ),
        "goals": case.parameter_goals,
        "goals_met": _goals_met(judged, case.parameter_goals),
    }
    first = names[0]
    unit = card.targets["units"][0]
    plot_parameter_scatter(
        columns[first][selection],
        estimates[first]["value"][selection],
        estimates[first]["sigma"][selection],
        out_dir / f"{first}.png",
        name=first,
        unit=unit,
        title=f"{first}: {int(selection.sum())} test {case.positives}\n({text})",
    )
    write_json_atomic(out_dir / "param_metrics.json", metrics)
    return metrics


def _goals_met(metrics: Mapping, goals: Mapping) -> dict:
    """Each goal's verdict: True, False, or None when the figure is missing."""
    out: dict = {}
    for name, entries in goals.items():
        if name == "coverage68":
            for p, m in metrics.items():
                c = m["coverage68"]["coverage"]
                out[f"{p}.coverage68"] = (
                    None if c is None else entries["min"] <= c <= entries["max"]
                )
            continue
        for key, goal in entries.items():
            value = metrics.get(name, {}).get(key)
            if value is None:
                out[f"{name}.{key}"] = None
            elif "max_abs" in goal:
                out[f"{name}.{key}"] = abs(value) <= goal["max_abs"]
            else:
                out[f"{name}.{key}"] = value <= goal["max"]
                if "stretch" in goal:
                    out[f"{name}.{key}.stretch"] = value <= goal["stretch"]
    return out
