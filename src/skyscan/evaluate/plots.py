"""Evaluation plots (matplotlib, Agg): ROC, completeness heat map, score histograms,
reliability diagram."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from skyscan.core.atomic import save_figure_atomic

__all__ = ["plot_roc", "plot_completeness", "plot_score_histograms", "plot_reliability"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    return save_figure_atomic(fig, path, dpi=120)


def plot_roc(
    fpr,
    tpr,
    auroc: float,
    path,
    operating_fpr: float,
    operating_tpr: float,
    title="",
    positives="positives",
    negatives="negatives",
):
    """ROC curve with a logarithmic false-positive axis and the operating point marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4), layout="constrained")
    positive = fpr > 0
    ax.plot(fpr[positive], tpr[positive], color="C0", label=f"skyscan (AUROC {auroc:.3f})")
    ax.plot(
        [operating_fpr],
        [operating_tpr],
        "o",
        color="C3",
        label=f"TPR {operating_tpr:.2f} at FPR {operating_fpr:g}",
    )
    ax.axvline(operating_fpr, color="0.7", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_xlim(max(1.0 / max(len(fpr), 2), 1e-4), 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel(f"false-positive rate ({negatives} called {positives})")
    ax.set_ylabel("true-positive rate (completeness)")
    ax.set_title(title or "ROC on the test split", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    out = _save(fig, path)
    plt.close(fig)
    return out


def plot_completeness(
    grid, counts, strata, path, fpr: float, positives="positives", negatives="negatives"
):
    """Completeness at a fixed false-positive rate in a case's strata (e.g. theta_E x S/N).

    Parameters
    ----------
    grid, counts : array, shape (rows, cols)
        Completeness and number of positives per bin.
    strata : skyscan.core.case.Strata
        Bin edges and axis labels.
    path : str or Path
        PNG to write (atomically).
    fpr : float
        The false-positive rate of the threshold.
    positives, negatives : str
        Nouns for the title.
    """
    plt = _pyplot()
    grid = np.asarray(grid, dtype=float)
    fig, ax = plt.subplots(figsize=(6, 4.2), layout="constrained")
    masked = np.ma.masked_invalid(grid)
    im = ax.imshow(masked, origin="lower", cmap="viridis", vmin=0, vmax=1, aspect="auto")
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            text = "-" if counts[i, j] == 0 else f"{grid[i, j]:.2f}\n({counts[i, j]})"
            color = "white" if (not np.isfinite(grid[i, j]) or grid[i, j] < 0.6) else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color=color)

    def labels(edges):
        return [
            f"{a:g}-{b:g}" if b < 1e5 else f">{a:g}"
            for a, b in zip(edges[:-1], edges[1:], strict=True)
        ]

    ax.set_xticks(range(len(strata.col_bins) - 1), labels(strata.col_bins))
    ax.set_yticks(range(len(strata.row_bins) - 1), labels(strata.row_bins))
    ax.set_xlabel(strata.col_label)
    ax.set_ylabel(strata.row_label)
    ax.set_title(
        f"completeness at {100 * (1 - fpr):g}% rejection of {negatives} ({positives} per bin)",
        fontsize=9,
    )
    fig.colorbar(im, ax=ax, label="completeness")
    out = _save(fig, path)
    plt.close(fig)
    return out


def plot_score_histograms(scores, kinds, threshold: float, path, positive_kinds=(), fpr=0.01):
    """Score distributions per kind: which negatives look most like positives."""
    plt = _pyplot()
    kinds = np.asarray(kinds)
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    bins = np.linspace(0, 1, 41)
    for k, kind in enumerate(sorted(set(kinds), key=lambda s: (s not in positive_kinds, s))):
        sel = kinds == kind
        ax.hist(
            scores[sel],
            bins=bins,
            histtype="step",
            lw=1.5 if kind in positive_kinds else 1.0,
            density=True,
            color=f"C{k}",
            label=f"{kind} ({sel.sum()})",
        )
    ax.axvline(threshold, color="k", ls="--", lw=0.8, label=f"{100 * fpr:g}% FPR threshold")
    ax.set_yscale("log")
    ax.set_xlabel("score (sigmoid of the logit)")
    ax.set_ylabel("density")
    ax.set_title("test-split scores by kind", fontsize=10)
    ax.legend(fontsize=7, loc="upper center")
    out = _save(fig, path)
    plt.close(fig)
    return out


def plot_reliability(curves: dict, path, title: str = ""):
    """Reliability diagram: observed positive fraction (Wilson 95% bars) against the mean
    predicted probability, one line per curve (e.g. before and after calibration).

    Parameters
    ----------
    curves : dict
        Label -> output of :func:`skyscan.evaluate.metrics.reliability_curve`.
    path : str or Path
        PNG to write (atomically).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4.4), layout="constrained")
    ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls="--", label="perfect calibration")
    for k, (label, bins) in enumerate(curves.items()):
        x = np.array([b["mean_probability"] for b in bins])
        y = np.array([b["positive_fraction"] for b in bins])
        ci = np.array([b["positive_fraction_ci95"] for b in bins]).reshape(-1, 2)
        ax.errorbar(
            x + 0.004 * k,
            y,
            yerr=[np.maximum(y - ci[:, 0], 0), np.maximum(ci[:, 1] - y, 0)],
            fmt="o-",
            ms=3,
            lw=1,
            capsize=2,
            color=f"C{k}",
            label=label,
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted probability (bin mean)")
    ax.set_ylabel("observed fraction of positives")
    ax.set_title(title or "reliability on the test split", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    out = _save(fig, path)
    plt.close(fig)
    return out
