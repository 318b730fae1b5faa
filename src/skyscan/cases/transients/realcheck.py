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

__all__ = ["agreement_with_drb", "agreement_table", "check_real_alerts", "REAL_DRB", "BOGUS_DRB"]

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

    from skyscan.evaluate.metrics import auroc as roc_auc_score
    from skyscan.evaluate.metrics import wilson_interval

    logits, scores, drb = (np.asarray(a, dtype=float) for a in (logits, scores, drb))
    keep = np.isfinite(drb) & np.isfinite(logits)
    logits, scores, drb = logits[keep], scores[keep], drb[keep]
    passed = logits >= threshold_logit
    real, bogus = drb > REAL_DRB, drb < BOGUS_DRB

    def rate(k: int, n: int) -> Mapping:
        return {"fraction": k / n if n else None, "ci95": wilson_interval(k, n)}

    rho = float(spearmanr(scores, drb).statistic) if len(drb) > 2 else None
    if rho is not None and not np.isfinite(rho):  # constant scores or drb
        rho = None
    ci = None
    if rho is not None:
        rng = np.random.default_rng(seed)
        boots = []
        for _ in range(2000):
            i = rng.integers(0, len(drb), len(drb))
            value = spearmanr(scores[i], drb[i]).statistic
            if np.isfinite(value):
                boots.append(value)
        if boots:
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


def agreement_table(figures: Mapping, name: str) -> str:
    """The figures of :func:`agreement_with_drb` as a Markdown table (value, 95% interval, n)."""

    def pct(r):
        lo, hi = r["ci95"] or (float("nan"), float("nan"))
        value = float("nan") if r["fraction"] is None else r["fraction"]
        return f"{100 * value:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"

    rho = figures["spearman"]
    rho_ci = rho["ci95"] or (float("nan"), float("nan"))
    rho_text = "-" if rho["rho"] is None else f"{rho['rho']:.3f} [{rho_ci[0]:.3f}, {rho_ci[1]:.3f}]"
    auroc = figures["auroc_drb_0.5"]
    median = figures["median_score_real"]
    return "\n".join(
        [
            f"| real ZTF alerts ({name}) | value | n |",
            "|---|---|---|",
            f"| drb > {REAL_DRB} passing the card's threshold | {pct(figures['real'])} "
            f"| {figures['real']['n']} |",
            f"| drb < {BOGUS_DRB} failing it | {pct(figures['bogus'])} | {figures['bogus']['n']} |",
            f"| Spearman with drb (bootstrap 95%) | {rho_text} | {figures['n']} |",
            f"| AUROC against drb > 0.5 | {'-' if auroc is None else f'{auroc:.3f}'} "
            f"| {figures['n']} |",
            f"| median score, drb > {REAL_DRB} | {'-' if median is None else f'{median:.3f}'} "
            f"| {figures['real']['n']} |",
        ]
    )


def check_real_alerts(card_path, alerts, out_dir=None, progress: bool = False) -> dict:
    """Score real alerts carrying ZTF's ``drb`` with a model card and compare the two.

    Parameters
    ----------
    card_path : path
        The transient model card.
    alerts : path
        Alerts in any form :func:`~skyscan.cases.transients.scoring.score_alerts` reads, with
        ``drb`` in their candidate records (public ZTF alerts).
    out_dir : path, optional
        Where to write ``real_alerts.json`` (the figures), ``real_alerts.md`` (their table and
        what they mean), ``real_alerts.parquet`` (every alert's scores) and
        ``real_alerts.png`` (the model's logit against drb).  Nothing is written without it.
    progress : bool
        Show a progress bar while scoring.

    Returns
    -------
    dict
        ``alerts``, ``model`` and the figures of :func:`agreement_with_drb`.

    Raises
    ------
    skyscan.core.errors.InputFileError
        When ``alerts`` does not exist (it is fetched by ``make setup``).
    """
    import json
    import tempfile
    from pathlib import Path

    import pyarrow.parquet as pq

    from skyscan.cases.transients.scoring import score_alerts
    from skyscan.core.atomic import write_json_atomic
    from skyscan.core.errors import InputFileError
    from skyscan.models.card import read_card

    alerts = Path(alerts)
    if not alerts.exists():
        raise InputFileError(
            f"{alerts}: no such file (the real alerts are fetched at set-up: make setup, "
            "or scripts/fetch_real_alerts.py)",
            path=str(alerts),
        )
    card = read_card(card_path)
    with tempfile.TemporaryDirectory() as tmp:
        scores_path = Path(tmp) / "scores.parquet"
        failures_path = Path(tmp) / "failures.json"
        summary = score_alerts(
            card_path, [alerts], scores_path, progress=progress, failures_out=failures_path
        )
        scores = pq.read_table(scores_path)
        failures = json.loads(failures_path.read_text())
    table = scores.to_pydict()
    drb = np.array([np.nan if v is None else v for v in table["drb"]], dtype=float)
    if not np.isfinite(drb).any():
        raise InputFileError(
            f"{alerts}: none of its {len(drb)} scored alert(s) carries ZTF's drb, so there is "
            "nothing to compare with (public ZTF alert packets carry it; FITS triplets and "
            "skyscan's demonstration alerts do not)",
            path=str(alerts),
        )
    # the card's operating threshold (chosen on validation); logit 0 when it has none
    threshold_source = "card" if (card.threshold or {}).get("logit") is not None else "logit 0"
    threshold = (card.threshold or {}).get("logit", 0.0)
    figures = agreement_with_drb(table["logit"], table["score"], drb, threshold)
    result = {
        "alerts": str(alerts),
        "model": str(card_path),
        "n_scored": summary["n_scored"],
        "n_failed": summary["n_failed"],
        "threshold_source": threshold_source,
        **figures,
    }
    if out_dir is not None:
        out_dir = Path(out_dir)
        _write_check(out_dir, result, scores, drb, np.asarray(table["logit"], float))
        write_json_atomic(out_dir / "real_alerts_failures.json", failures)
    return result


def _write_check(out, result: Mapping, scores, drb, logits) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skyscan.core.atomic import (
        save_figure_atomic,
        write_json_atomic,
        write_parquet_atomic,
        write_text_atomic,
    )

    out.mkdir(parents=True, exist_ok=True)
    name = result["alerts"].rsplit("/", 1)[-1]
    write_json_atomic(out / "real_alerts.json", result)
    threshold = (
        f"the card's threshold ({result['threshold_logit']:.3f}, chosen on its validation split)"
        if result.get("threshold_source", "card") == "card"
        else "logit 0 (score 0.5: the card records no threshold)"
    )
    failed = result.get("n_failed") or 0
    text = [
        f"# The model on real ZTF alerts: {name}",
        "",
        agreement_table(result, name),
        "",
        "ZTF's deep real/bogus score (drb, Duev et al. 2019) is the survey's own classifier, "
        "not ground truth. Rates are Wilson 95% intervals; an alert passes when its logit is "
        f"at or above {threshold}. "
        + (
            f"{failed} alert(s) could not be decoded (real_alerts_failures.json). "
            if failed
            else ""
        )
        + "Alerts the simulator was calibrated on (the public development set of "
        "config/transients-ztf.yaml) give development figures, not an independent test.",
        "",
    ]
    write_text_atomic(out / "real_alerts.md", "\n".join(text))
    write_parquet_atomic(scores, out / "real_alerts.parquet")
    fig, ax = plt.subplots(figsize=(6, 4))
    keep = np.isfinite(drb)
    ax.scatter(np.clip(1 - drb[keep], 1e-6, 1), logits[keep], s=6, alpha=0.6)
    ax.axhline(result["threshold_logit"], color="C3", lw=1, label="card's threshold")
    ax.axvline(1 - REAL_DRB, color="0.5", ls=":", lw=1, label=f"drb = {REAL_DRB}")
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("1 - drb (ZTF's deep real/bogus; right: surely real)")
    ax.set_ylabel("model logit")
    real = result["real"]
    ax.set_title(
        f"{name}\n{real['passed']} of {real['n']} with drb > {REAL_DRB} pass; Spearman "
        + ("-" if result["spearman"]["rho"] is None else f"{result['spearman']['rho']:.2f}"),
        fontsize=9,
    )
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    save_figure_atomic(fig, out / "real_alerts.png", dpi=100)
    plt.close(fig)
