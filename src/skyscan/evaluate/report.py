"""The evaluate stage: metrics, per-system scores, plots and the comparison with CMU DeepLens."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from skyscan.evaluate import metrics as M
from skyscan.sim.survey import ConfigError

__all__ = ["evaluate", "comparison_table", "DEEPLENS_PUBLISHED"]

#: Published CMU DeepLens figures (ANCHORS.md).
DEEPLENS_PUBLISHED = {
    "completeness_headline": 0.90,  # Lanusse et al. 2018: TPR at 99% rejection, θE>1.4", S/N>20
    "lfc_ground": {"auroc": 0.98, "tpr0": 0.09, "tpr10": 0.45},  # Metcalf et al. 2019
    "lfc_space": {"auroc": 0.92, "tpr0": 0.22, "tpr10": 0.29},
}


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def evaluate(card_path, dataset_dir, out_dir, config: dict) -> dict:
    """Score the test split with an exported model and write the evaluation products.

    Writes ``metrics.json``, ``scores.parquet``, ``roc.png``, ``completeness.png``,
    ``scores_by_kind.png``, ``false_positives.png``, ``missed_lenses.png`` and
    ``comparison.md`` into ``out_dir``.

    Returns
    -------
    dict
        The metrics.
    """
    from skyscan.data.datasets import load_split
    from skyscan.evaluate import plots
    from skyscan.evaluate.scoring import score_split
    from skyscan.train.export import load_exported

    ec = config["evaluate"]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model, card = load_exported(card_path)
    logits, meta = score_split(model, card, dataset_dir, "test")
    labels = meta.column("label").to_numpy().astype(np.int8)
    snr_col = f"snr_{ec['snr_band']}"
    if snr_col not in meta.column_names:
        bands = [c[4:] for c in meta.column_names if c.startswith("snr_")]
        raise ConfigError(
            f"config key 'evaluate.snr_band': {ec['snr_band']!r} is not a band of the dataset "
            f"(allowed: {', '.join(bands)})"
        )
    fpr, tpr, _ = M.roc_curve(labels, logits)
    auroc = M.auroc(labels, logits)
    tpr1, _ = M.tpr_at_fpr(labels, logits, 0.01)
    tpr_op, threshold = M.tpr_at_fpr(labels, logits, ec["fpr"])
    lens = labels == 1
    theta = meta.column("theta_E").to_numpy()[lens]
    snr = meta.column(snr_col).to_numpy()[lens]
    passed = logits[lens] > threshold
    grid, counts = M.completeness_grid(theta, snr, passed, ec["theta_E_bins"], ec["snr_bins"])
    head = (theta > 1.4) & (snr > 20)
    kinds = np.asarray(meta.column("kind").to_pylist())
    per_kind = {
        k: float((logits[(kinds == k)] > threshold).mean()) for k in sorted(set(kinds[~lens]))
    }
    metrics = {
        "model": card.get("name"),
        "n_test": int(len(labels)),
        "n_lenses": int(lens.sum()),
        "auroc": auroc,
        "tpr_at_fpr_1pct": tpr1,
        "tpr0": M.tpr_before_false_positives(labels, logits, 1),
        "tpr10": M.tpr_before_false_positives(labels, logits, 10),
        "operating_point": {"fpr": ec["fpr"], "tpr": tpr_op, "logit_threshold": threshold},
        "completeness_grid": {
            "theta_E_bins": ec["theta_E_bins"],
            "snr_bins": ec["snr_bins"],
            "snr_band": ec["snr_band"],
            "completeness": [
                [None if not np.isfinite(v) else float(v) for v in row] for row in grid
            ],
            "counts": counts.tolist(),
        },
        "headline": {
            "selection": f"theta_E > 1.4 and {snr_col} > 20",
            "n_lenses": int(head.sum()),
            "completeness": float(passed[head].mean()) if head.any() else None,
            "deeplens_published": DEEPLENS_PUBLISHED["completeness_headline"],
        },
        "false_positive_rate_by_kind": per_kind,
    }
    scores = meta.select(
        [
            c
            for c in meta.column_names
            if c in ("index", "kind", "label", "theta_E", "magnification") or c.startswith("snr_")
        ]
    )
    scores = scores.append_column("logit", pa.array(logits.astype(np.float64)))
    scores = scores.append_column("score", pa.array(_sigmoid(logits)))
    tmp = out_dir / ".scores.parquet.tmp"
    pq.write_table(scores, tmp, compression="zstd")
    os.replace(tmp, out_dir / "scores.parquet")

    prob = _sigmoid(logits)
    plots.plot_roc(
        fpr,
        tpr,
        auroc,
        out_dir / "roc.png",
        ec["fpr"],
        tpr_op,
        title=f"{card.get('name')} on {len(labels)} test cutouts",
    )
    plots.plot_completeness(
        grid,
        counts,
        ec["theta_E_bins"],
        ec["snr_bins"],
        out_dir / "completeness.png",
        ec["snr_band"],
        ec["fpr"],
    )
    plots.plot_score_histograms(
        prob, kinds, float(_sigmoid(threshold)), out_dir / "scores_by_kind.png"
    )
    images, _, spec = load_split(dataset_dir, "test")
    _galleries(images, spec, meta, logits, lens, ec["gallery"], out_dir)

    text = comparison_table(metrics)
    (out_dir / "comparison.md").write_text(text)
    tmp = out_dir / ".metrics.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=1) + "\n")
    os.replace(tmp, out_dir / "metrics.json")
    return metrics


def _galleries(images, spec, meta, logits, lens, n, out_dir: Path) -> None:
    from skyscan.viz import color_composite, save_grid

    bands = spec["bands"]
    scale = np.asarray(spec["scale"], dtype=np.float32)[:, None, None]
    theta = meta.column("theta_E").to_numpy()
    kinds = meta.column("kind").to_pylist()
    prob = _sigmoid(logits)

    def draw(rows, title, path):
        pics = [color_composite(np.asarray(images[r]) * scale, bands) for r in rows]
        labels = [
            f"{kinds[r]} p={prob[r]:.3f}" + (f'\nθE={theta[r]:.2f}"' if lens[r] else "")
            for r in rows
        ]
        if pics:
            save_grid(pics, labels, path, ncols=min(8, len(pics)), title=title)

    negatives = np.flatnonzero(~lens)
    top_fp = negatives[np.argsort(-logits[negatives], kind="stable")[:n]]
    draw(top_fp, "highest-scoring non-lenses (false positives)", out_dir / "false_positives.png")
    positives = np.flatnonzero(lens)
    missed = positives[np.argsort(logits[positives], kind="stable")[:n]]
    draw(missed, "lowest-scoring lenses", out_dir / "missed_lenses.png")


def comparison_table(metrics: dict) -> str:
    """Markdown table of skyscan's figures beside the published CMU DeepLens ones."""
    head = metrics["headline"]
    lfc = DEEPLENS_PUBLISHED["lfc_ground"]

    def fmt(v):
        return "n/a" if v is None else f"{v:.3f}"

    rows = [
        (
            'Completeness at 99% rejection, θE > 1.4" and S/N > 20',
            f"{fmt(head['completeness'])} ({head['n_lenses']} lenses)",
            "0.90 (Lanusse et al. 2018, LSST g-band sims)",
        ),
        ("AUROC", fmt(metrics["auroc"]), f"{lfc['auroc']} (LFC ground, Metcalf et al. 2019)"),
        ("TPR at 1% FPR", fmt(metrics["tpr_at_fpr_1pct"]), "-"),
        ("TPR0", fmt(metrics["tpr0"]), f"{lfc['tpr0']} (LFC ground)"),
        ("TPR10", fmt(metrics["tpr10"]), f"{lfc['tpr10']} (LFC ground)"),
    ]
    lines = [
        f"| metric | skyscan ({metrics['model']}, {metrics['n_test']} test cutouts) "
        "| CMU DeepLens (published) |",
        "|---|---|---|",
    ] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
    lines.append("")
    lines.append(
        "The published figures come from other simulations (LSST-like g band; the Lens Finding "
        "Challenge's 100,000 ground-based cutouts): compare trends, not third decimals. TPR0 "
        "and TPR10 depend on the test-set size (they count single false positives)."
    )
    return "\n".join(lines) + "\n"
