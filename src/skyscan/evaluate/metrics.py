"""Classification metrics with exact tie handling (checked against scikit-learn in the tests).

Conventions: ``labels`` are 1 for lenses and 0 for non-lenses; a cutout is called a lens when
its score is strictly above the threshold.  Multi-class metrics (:func:`confusion_matrix`,
:func:`macro_f1`, :func:`multiclass_metrics`, :func:`fit_temperature_multiclass`) take class
indices ``0 .. K-1`` and ``(N, K)`` logits; a sample's predicted class is its largest logit.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "roc_curve",
    "auroc",
    "threshold_at_fpr",
    "tpr_at_fpr",
    "tpr_before_false_positives",
    "completeness_grid",
    "wilson_interval",
    "rates_at",
    "falls_along_columns",
    "auroc_bootstrap_interval",
    "tpr_at_fpr_table",
    "purity_at_prevalence",
    "reliability_curve",
    "fit_temperature",
    "expected_calibration_error",
    "confusion_matrix",
    "macro_f1",
    "multiclass_metrics",
    "fit_temperature_multiclass",
]


def _check(labels, scores):
    labels = np.asarray(labels).astype(np.int8).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"{len(labels)} labels but {len(scores)} scores")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinite values")
    n_pos = int(labels.sum())
    if n_pos == 0 or n_pos == len(labels):
        raise ValueError("need both positives and negatives to compute a ROC curve")
    return labels, scores


def roc_curve(labels, scores):
    """ROC curve over the distinct score values (ties move together).

    Returns
    -------
    fpr, tpr, thresholds : ndarray
        Starting at (0, 0) with threshold +inf; point ``k`` counts scores ``>= thresholds[k]``.
    """
    labels, scores = _check(labels, scores)
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    distinct = np.flatnonzero(np.diff(s)) if len(s) > 1 else np.array([], dtype=int)
    ends = np.r_[distinct, len(s) - 1]
    tp = np.cumsum(y)[ends]
    fp = (ends + 1) - tp
    fpr = np.r_[0.0, fp / (len(y) - y.sum())]
    tpr = np.r_[0.0, tp / y.sum()]
    return fpr, tpr, np.r_[np.inf, s[ends]]


def auroc(labels, scores) -> float:
    """Area under the ROC curve (ties count one half: the Mann-Whitney statistic)."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.trapezoid(tpr, fpr))


def threshold_at_fpr(labels, scores, fpr: float) -> float:
    """The lowest threshold whose false-positive rate does not exceed ``fpr``.

    With ``k = floor(fpr * n_negatives)``, the threshold is the ``(k+1)``-th highest non-lens
    score: at most ``k`` non-lenses score strictly above it.
    """
    labels, scores = _check(labels, scores)
    negatives = np.sort(scores[labels == 0])[::-1]
    k = int(np.floor(fpr * len(negatives) + 1e-9))
    return float(negatives[min(k, len(negatives) - 1)])


def tpr_at_fpr(labels, scores, fpr: float = 0.01) -> tuple[float, float]:
    """True-positive rate at a false-positive rate (e.g. 0.01: 99% rejection).

    Returns
    -------
    tpr, threshold : float
    """
    t = threshold_at_fpr(labels, scores, fpr)
    labels, scores = _check(labels, scores)
    return float((scores[labels == 1] > t).mean()), t


def tpr_before_false_positives(labels, scores, n: int) -> float:
    """Lens Finding Challenge TPR_n: the TPR reached before the ``n``-th false positive.

    ``n = 1`` is TPR0 (no false positive allowed), ``n = 10`` is TPR10 (Metcalf et al. 2019):
    the fraction of lenses scored strictly above the ``n``-th highest non-lens score.
    """
    labels, scores = _check(labels, scores)
    negatives = np.sort(scores[labels == 0])[::-1]
    if n > len(negatives):
        return 1.0  # fewer non-lenses than n: every lens comes before the n-th false positive
    return float((scores[labels == 1] > negatives[n - 1]).mean())


def completeness_grid(rows, cols, passed, row_bins, col_bins):
    """Fraction of positives above threshold in each bin of two stratifying quantities
    (for lenses: Einstein radius x S/N; see :class:`skyscan.core.case.Strata`).

    Parameters
    ----------
    rows, cols : array_like
        The two quantities of each positive (the grid's rows and columns).
    passed : array_like of bool
        Whether each positive scored above the threshold.
    row_bins, col_bins : sequence of float
        Bin edges (left-closed).

    Returns
    -------
    completeness : ndarray, shape (len(row_bins)-1, len(col_bins)-1)
        NaN where a bin holds no positive.
    counts : ndarray of int, same shape
    """
    rows = np.asarray(rows, dtype=np.float64)
    cols = np.asarray(cols, dtype=np.float64)
    passed = np.asarray(passed, dtype=bool)
    counts, _, _ = np.histogram2d(rows, cols, bins=[row_bins, col_bins])
    hits, _, _ = np.histogram2d(rows[passed], cols[passed], bins=[row_bins, col_bins])
    with np.errstate(invalid="ignore", divide="ignore"):
        completeness = np.where(counts > 0, hits / counts, np.nan)
    return completeness, counts.astype(int)


def wilson_interval(k: int, n: int, z: float = 1.959964) -> list[float] | None:
    """Wilson score interval of a binomial rate ``k / n`` (95% for the default ``z``).

    Returns ``[low, high]``, or None when ``n == 0``.
    """
    if n <= 0:
        return None
    p = k / n
    denom = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    # the interval always holds the estimate (rounding can leave 1 - 1e-16 above k = n)
    return [float(min(p, max(0.0, centre - half))), float(max(p, min(1.0, centre + half)))]


def rates_at(labels, scores, threshold: float) -> dict:
    """Confusion rates of ``scores > threshold`` with Wilson 95% intervals.

    Returns
    -------
    dict
        ``threshold``, ``n_positive``, ``n_negative``, ``tpr``, ``fnr``, ``fpr``,
        ``accuracy``, and ``<rate>_ci95`` for each rate.
    """
    labels = np.asarray(labels).astype(np.int8).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    above = scores > threshold
    pos, neg = labels == 1, labels == 0
    tp, fp = int((above & pos).sum()), int((above & neg).sum())
    n_pos, n_neg = int(pos.sum()), int(neg.sum())
    correct = tp + (n_neg - fp)
    out = {"threshold": float(threshold), "n_positive": n_pos, "n_negative": n_neg}
    for name, k, n in (
        ("tpr", tp, n_pos),
        ("fnr", n_pos - tp, n_pos),
        ("fpr", fp, n_neg),
        ("accuracy", correct, n_pos + n_neg),
    ):
        out[name] = k / n if n else None
        out[f"{name}_ci95"] = wilson_interval(k, n)
    return out


def fit_temperature(labels, logits) -> float:
    """Temperature scaling (Guo et al. 2017): the ``T`` that minimises the log loss of
    ``sigmoid(logit / T)`` on held-out data (the validation split), searched in [0.05, 50]."""
    from scipy.optimize import minimize_scalar

    labels, logits = _check(labels, logits)

    def log_loss(log_t):
        z = logits / np.exp(log_t)
        # log(1 + e^-z) for positives, log(1 + e^z) for negatives, computed stably
        return float(np.mean(np.logaddexp(0.0, np.where(labels == 1, -z, z))))

    result = minimize_scalar(log_loss, bounds=(np.log(0.05), np.log(50.0)), method="bounded")
    return float(np.exp(result.x))


def expected_calibration_error(labels, probabilities, bins: int = 15) -> float:
    """Expected calibration error: the count-weighted mean |accuracy - confidence| of the
    predicted positive-class probability in ``bins`` equal-width bins."""
    labels = np.asarray(labels, dtype=np.float64).ravel()
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    which = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            total += sel.sum() * abs(labels[sel].mean() - p[sel].mean())
    return float(total / len(p))


def auroc_bootstrap_interval(
    labels, scores, n_resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> list[float]:
    """Percentile bootstrap interval of the AUROC, resampling positives and negatives
    separately (so every resample has both classes and the class sizes of the data).

    The AUROC of a resample is the Mann-Whitney statistic from mid-ranks, so ties count one
    half as in :func:`auroc`.  Deterministic for a given ``seed``.
    """
    from scipy.stats import rankdata

    labels, scores = _check(labels, scores)
    pos, neg = scores[labels == 1], scores[labels == 0]
    rng = np.random.default_rng(seed)
    n_pos, n_neg = len(pos), len(neg)
    values = np.empty(n_resamples)
    for k in range(n_resamples):
        p = pos[rng.integers(0, n_pos, n_pos)]
        q = neg[rng.integers(0, n_neg, n_neg)]
        ranks = rankdata(np.concatenate([p, q]))
        values[k] = (ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    tail = (1 - level) / 2
    lo, hi = np.quantile(values, [tail, 1 - tail])
    return [float(lo), float(hi)]


def tpr_at_fpr_table(labels, scores, fprs=(0.01, 0.001, 0.0001), min_false_positives: int = 10):
    """TPR at each false-positive rate on one split, with Wilson intervals.

    A rate is only quoted when the split has at least ``min_false_positives / fpr``
    non-lenses (10 false positives at the threshold); otherwise its value is None with the
    reason.

    Returns
    -------
    values, intervals, reasons : dict
        Keyed by the rate written as in ``"0.01"``.
    """
    labels, scores = _check(labels, scores)
    n_neg = int(np.sum(labels == 0))
    n_pos = int(np.sum(labels == 1))
    values, intervals, reasons = {}, {}, {}
    for f in fprs:
        key = f"{f:g}"
        need = int(np.ceil(min_false_positives / f - 1e-9))
        if n_neg < need:
            values[key] = None
            intervals[key] = None
            reasons[key] = (
                f"needs at least {need:,} test negatives ({min_false_positives} false "
                f"positives at FPR {f:g}); the split has {n_neg:,}"
            )
            continue
        tpr, _ = tpr_at_fpr(labels, scores, f)
        values[key] = tpr
        intervals[key] = wilson_interval(int(round(tpr * n_pos)), n_pos)
    return values, intervals, reasons


def purity_at_prevalence(tpr: float, fpr: float, tpr_ci95, fpr_ci95, prevalence: float) -> dict:
    """Purity (precision) of a search at a true prevalence of positives, from its rates.

    ``purity = p TPR / (p TPR + (1 - p) FPR)``.  The interval combines the ends of the
    rates' 95% intervals (lowest TPR with highest FPR, and the reverse): conservative, as
    the two are measured on disjoint samples.

    Returns
    -------
    dict
        ``prevalence``, ``purity``, ``purity_ci95`` and ``per_1000_selected`` (expected
        true positives among 1,000 objects above threshold).
    """

    def purity(t, f):
        num = prevalence * t
        den = num + (1 - prevalence) * f
        return float(num / den) if den > 0 else None

    value = purity(tpr, fpr)
    interval = None
    if tpr_ci95 is not None and fpr_ci95 is not None:
        lo, hi = purity(tpr_ci95[0], fpr_ci95[1]), purity(tpr_ci95[1], fpr_ci95[0])
        interval = [0.0 if lo is None else lo, 1.0 if hi is None else hi]
    return {
        "prevalence": float(prevalence),
        "purity": value,
        "purity_ci95": interval,
        "per_1000_selected": None if value is None else round(1000 * value, 1),
    }


def reliability_curve(labels, probabilities, bins: int = 15):
    """Observed positive fraction against mean predicted probability, per equal-width bin.

    Returns
    -------
    list of dict
        One entry per non-empty bin: ``low``, ``high``, ``n``, ``mean_probability``,
        ``positive_fraction`` and its Wilson ``positive_fraction_ci95``.
    """
    labels = np.asarray(labels, dtype=np.int64).ravel()
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    which = np.minimum((p * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        sel = which == b
        n = int(sel.sum())
        if n:
            k = int(labels[sel].sum())
            out.append(
                {
                    "low": b / bins,
                    "high": (b + 1) / bins,
                    "n": n,
                    "mean_probability": float(p[sel].mean()),
                    "positive_fraction": k / n,
                    "positive_fraction_ci95": wilson_interval(k, n),
                }
            )
    return out


def falls_along_columns(intervals) -> list[dict]:
    """Where a completeness grid falls significantly along its columns (e.g. as S/N rises):
    every pair of cells in one row, column ``j`` left of column ``k``, whose 95% intervals do
    not overlap with ``k`` below ``j``.  Empty cells (None) are skipped.

    Parameters
    ----------
    intervals : nested list
        ``[row][column] -> [low, high]`` or None (``completeness_ci95``).

    Returns
    -------
    list of dict
        ``row``, ``from_column``, ``to_column`` of each significant fall; empty when the
        completeness does not fall within the intervals.
    """
    out = []
    for r, row in enumerate(intervals):
        for j, a in enumerate(row):
            for k in range(j + 1, len(row)):
                b = row[k]
                if a is not None and b is not None and b[1] < a[0]:
                    out.append({"row": r, "from_column": j, "to_column": k})
    return out


# --------------------------------------------------------------------------------------
# Multi-class


def _check_classes(labels, n_classes: int | None, what: str = "labels") -> tuple[np.ndarray, int]:
    labels = np.asarray(labels).ravel()
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        if not np.array_equal(labels, np.round(labels)):
            raise ValueError(f"{what} must be class indices 0 .. K-1")
    labels = labels.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise ValueError(f"{what} must be class indices 0 .. K-1, got {labels.min()}")
    k = int(labels.max()) + 1 if labels.size else 0
    if n_classes is None:
        n_classes = k
    elif k > n_classes:
        raise ValueError(f"{what} hold class {k - 1}, but there are {n_classes} classes")
    return labels, int(n_classes)


def confusion_matrix(labels, predicted, n_classes: int | None = None) -> np.ndarray:
    """Counts ``(K, K)`` (int64) of samples of true class ``i`` (row) predicted as class
    ``j`` (column); ``K`` is ``n_classes`` or one more than the largest class seen.

    Examples
    --------
    >>> confusion_matrix([0, 1, 2, 2], [0, 2, 2, 1]).tolist()
    [[1, 0, 0], [0, 0, 1], [0, 1, 1]]
    """
    labels, k_labels = _check_classes(labels, n_classes)
    predicted, k_predicted = _check_classes(predicted, n_classes, "predictions")
    k = max(k_labels, k_predicted)
    if labels.shape != predicted.shape:
        raise ValueError(f"{len(labels)} labels but {len(predicted)} predictions")
    return np.bincount(labels * k + predicted, minlength=k * k).reshape(k, k).astype(np.int64)


def _per_class(matrix: np.ndarray):
    """Support, predictions, precision, recall and F1 of each class of a confusion matrix
    (precision or recall 0 where its denominator is 0, as scikit-learn's
    ``zero_division=0``)."""
    tp = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return support, predicted, precision, recall, f1


def macro_f1(labels, predicted, n_classes: int | None = None) -> float:
    """The unweighted mean of the per-class F1 scores over the classes that occur among the
    labels or the predictions (a class absent from both has no F1 and is left out; a class
    present in only one of them scores 0).  Equals scikit-learn's
    ``f1_score(average="macro", zero_division=0)`` over those classes; NaN with no samples.
    """
    matrix = confusion_matrix(labels, predicted, n_classes)
    support, n_predicted, _, _, f1 = _per_class(matrix)
    seen = (support + n_predicted) > 0
    return float(f1[seen].mean()) if seen.any() else float("nan")


def multiclass_metrics(labels, logits, classes=None) -> dict:
    """Accuracy, macro-F1, per-class precision, recall and F1 and the confusion matrix of
    ``(N, K)`` logits, every rate with its sample size and Wilson 95% interval.

    Parameters
    ----------
    labels : array_like of int, shape (N,)
        True class indices.
    logits : array_like, shape (N, K)
        One score per class (the largest is the prediction).
    classes : sequence of str, optional
        Names of the K classes (default ``"0" .. "K-1"``).

    Returns
    -------
    dict
        ``n``, ``accuracy`` (+ ``accuracy_ci95``), ``macro_f1``, ``per_class`` (name ->
        ``n`` (support), ``n_predicted``, ``precision`` (+ ``_ci95``, over ``n_predicted``),
        ``recall`` (+ ``_ci95``, over ``n``), ``f1``) and ``confusion_matrix``
        (``counts[true][predicted]`` with ``classes``).
    """
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2:
        raise ValueError(f"logits of shape {logits.shape}, expected (N, K)")
    if not np.isfinite(logits).all():
        raise ValueError("logits contain NaN or infinite values")
    k = logits.shape[1]
    labels, _ = _check_classes(labels, k)
    if len(labels) != len(logits):
        raise ValueError(f"{len(labels)} labels but {len(logits)} rows of logits")
    names = [str(c) for c in classes] if classes is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise ValueError(f"{len(names)} class names for {k} logits per sample")
    matrix = confusion_matrix(labels, logits.argmax(axis=1), k)
    support, n_predicted, precision, recall, f1 = _per_class(matrix)
    tp = np.diag(matrix)
    n, correct = int(len(labels)), int(tp.sum())
    per_class = {}
    for i, name in enumerate(names):
        per_class[name] = {
            "n": int(support[i]),
            "n_predicted": int(n_predicted[i]),
            "precision": float(precision[i]) if n_predicted[i] else None,
            "precision_ci95": wilson_interval(int(tp[i]), int(n_predicted[i])),
            "recall": float(recall[i]) if support[i] else None,
            "recall_ci95": wilson_interval(int(tp[i]), int(support[i])),
            "f1": float(f1[i]) if support[i] + n_predicted[i] else None,
        }
    return {
        "n": n,
        "accuracy": correct / n if n else None,
        "accuracy_ci95": wilson_interval(correct, n),
        "macro_f1": macro_f1(labels, logits.argmax(axis=1), k) if n else None,
        "per_class": per_class,
        "confusion_matrix": {
            "rows": "true class",
            "columns": "predicted class",
            "classes": names,
            "counts": matrix.tolist(),
        },
    }


def fit_temperature_multiclass(labels, logits) -> float:
    """Temperature scaling of ``(N, K)`` logits (Guo et al. 2017): the ``T`` that minimises
    the log loss of ``softmax(logits / T)`` on held-out data, searched in [0.05, 50]."""
    from scipy.optimize import minimize_scalar

    logits = np.asarray(logits, dtype=np.float64)
    labels, _ = _check_classes(labels, logits.shape[1])
    if not len(labels) or not np.isfinite(logits).all():
        raise ValueError("need finite logits of at least one sample to fit a temperature")
    rows = np.arange(len(labels))

    def log_loss(log_t):
        z = logits / np.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[rows, labels]))

    result = minimize_scalar(log_loss, bounds=(np.log(0.05), np.log(50.0)), method="bounded")
    return float(np.exp(result.x))
