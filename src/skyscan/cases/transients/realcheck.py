"""How a real/bogus model trained on simulations carries to real alerts: its scores beside
ZTF's own deep real/bogus score (``drb``, Duev et al. 2019) on real public alert packets.

ZTF's drb is not ground truth, but it is the survey's own, well-validated classifier; the
figures say how far a simulation-trained model agrees with it.  Every rate has its sample
size and a Wilson 95% interval; the Spearman correlation has a bootstrap 95% interval
(2,000 resamples of the alerts, fixed seed, so the same scores give the same figures).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["agreement_with_drb", "REAL_DRB", "BOGUS_DRB"]

#: drb above which ZTF calls an alert surely real, and below which surely bogus
REAL_DRB, BOGUS_DRB = 0.9, 0.1


def agreement_with_drb(
    logits: np.ndarray, scores: np.ndarray, drb: np.ndarray, threshold_logit: float, seed: int = 0
) -> dict:
    """Agreement of a model's scores with ZTF's drb on the same alerts.

    Parameters
    ----------
    logits, scores : ndarray
        The model's logits and calibrated probabilities, one per alert.
    drb : ndarray
        ZTF's deep real/bogus score of each alert (NaN: absent; such alerts are left out).
    threshold_logit : float
        The model card's operating threshold (``threshold.logit``): an alert passes when its
        logit is at or above it.
    seed : int
        Seed of the bootstrap.

    Returns
    -------
    dict
        ``n`` (alerts with a drb), ``real`` (drb > 0.9: ``n``, ``passed``, ``fraction``,
        ``ci95``), ``bogus`` (drb < 0.1: ``n``, ``failed``, ``fraction``, ``ci95``),
        ``spearman`` (``rho``, ``ci95``), ``median_score_real``, ``auroc_drb_0.5``
        (drb > 0.5 as the label; None when one class is empty).
    """
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    from skyscan.evaluate.metrics import wilson_interval

    logits, scores, drb = (np.asarray(a, dtype=float) for a in (logits, scores, drb))
    keep = np.isfinite(drb) & np.isfinite(logits)
    logits, scores, drb = logits[keep], scores[keep], drb[keep]
    passed = logits >= threshold_logit
    real, bogus = drb > REAL_DRB, drb < BOGUS_DRB

    def rate(k: int, n: int) -> Mapping:
        return {"fraction": k / n if n else None, "ci95": wilson_interval(k, n)}

    rho = float(spearmanr(scores, drb).statistic) if len(drb) > 2 else None
    ci = None
    if rho is not None:
        rng = np.random.default_rng(seed)
        boots = []
        for _ in range(2000):
            i = rng.integers(0, len(drb), len(drb))
            value = spearmanr(scores[i], drb[i]).statistic
            if np.isfinite(value):
                boots.append(value)
        ci = [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))]
    label = drb > 0.5
    auroc = float(roc_auc_score(label, scores)) if 0 < label.sum() < len(label) else None
    return {
        "n": int(len(drb)),
        "threshold_logit": float(threshold_logit),
        "real": {
            "drb_above": REAL_DRB,
            "n": int(real.sum()),
            "passed": int((passed & real).sum()),
            **rate(int((passed & real).sum()), int(real.sum())),
        },
        "bogus": {
            "drb_below": BOGUS_DRB,
            "n": int(bogus.sum()),
            "failed": int((~passed & bogus).sum()),
            **rate(int((~passed & bogus).sum()), int(bogus.sum())),
        },
        "spearman": {"rho": rho, "ci95": ci},
        "median_score_real": float(np.median(scores[real])) if real.any() else None,
        "auroc_drb_0.5": auroc,
    }
