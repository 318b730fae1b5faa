"""The evaluate stage: metrics, per-stamp scores, plots and the comparison with the papers.

Shared by every science case: the case (named in the model card) says what the strata,
the headline selection, the published figures and the galleries are.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from skyscan.core.atomic import write_json_atomic, write_parquet_atomic, write_text_atomic
from skyscan.core.case import get_case
from skyscan.core.errors import MismatchError
from skyscan.evaluate import metrics as M

__all__ = ["evaluate", "sigmoid"]


def sigmoid(x):
    """The score of a logit (float64)."""
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def evaluate(card_path, dataset_dir, out_dir, config: dict) -> dict:
    """Score the test split with an exported model and write the evaluation products.

    Writes ``metrics.json``, ``scores.parquet``, ``roc.png``, ``completeness.png``,
    ``scores_by_kind.png``, the case's galleries (``false_positives.png``, ...) and
    ``comparison.md`` into ``out_dir``, each atomically.

    Parameters
    ----------
    card_path : str or Path
        The model card; its ``case`` picks the science case.
    dataset_dir : str or Path
        A dataset folder with a ``test`` split.
    out_dir : str or Path
    config : dict
        The validated config (its ``evaluate`` section).

    Returns
    -------
    dict
        The metrics.
    """
    from skyscan.data.datasets import load_split
    from skyscan.evaluate import plots
    from skyscan.evaluate.scoring import score_split
    from skyscan.models.card import load_model

    ec = config["evaluate"]
    out_dir = Path(out_dir)
    model, card = load_model(card_path)
    case = get_case(card.case)
    manifest_path = Path(dataset_dir) / "manifest.json"
    if manifest_path.is_file():
        data_case = json.loads(manifest_path.read_text()).get("case")
        if data_case is not None and data_case != card.case:
            raise MismatchError(
                f"{manifest_path}: the dataset is of case {data_case!r}, the model "
                f"{card_path} of case {card.case!r}",
                path=manifest_path,
            )
    logits, meta = score_split(model, card, dataset_dir, "test")
    labels = meta.column("label").to_numpy().astype(np.int8)
    positive = labels == 1
    columns = {c: meta.column(c).to_numpy(zero_copy_only=False) for c in meta.column_names}
    strata = case.strata(
        {c: v[positive] for c, v in columns.items()}, {**ec, **case.settings(config)}
    )
    fpr, tpr, _ = M.roc_curve(labels, logits)
    auroc = M.auroc(labels, logits)
    tpr1, _ = M.tpr_at_fpr(labels, logits, 0.01)
    tpr_op, threshold = M.tpr_at_fpr(labels, logits, ec["fpr"])
    passed = logits[positive] > threshold
    grid, counts = M.completeness_grid(
        strata.row_values, strata.col_values, passed, strata.row_bins, strata.col_bins
    )
    kinds = np.asarray(meta.column("kind").to_pylist())
    per_kind = {
        k: float((logits[(kinds == k)] > threshold).mean()) for k in sorted(set(kinds[~positive]))
    }
    metrics = {
        "model": card.name,
        "case": case.name,
        "n_test": int(len(labels)),
        "n_positive": int(positive.sum()),
        "auroc": auroc,
        "tpr_at_fpr_1pct": tpr1,
        "tpr0": M.tpr_before_false_positives(labels, logits, 1),
        "tpr10": M.tpr_before_false_positives(labels, logits, 10),
        "operating_point": {"fpr": ec["fpr"], "tpr": tpr_op, "logit_threshold": threshold},
        "completeness_grid": {
            **strata.record,
            "completeness": [
                [None if not np.isfinite(v) else float(v) for v in row] for row in grid
            ],
            "counts": counts.tolist(),
            "completeness_ci95": [
                [
                    M.wilson_interval(int(round(c * n)), int(n)) if n else None
                    for c, n in zip(row_c, row_n, strict=True)
                ]
                for row_c, row_n in zip(grid, counts, strict=True)
            ],
        },
        "headline": case.headline(strata, passed),
        "false_positive_rate_by_kind": per_kind,
        # Rates at the card's threshold (chosen on validation) and at score 0.5 (logit 0, as
        # the real/bogus papers report), with Wilson 95% intervals.
        "at_thresholds": {
            "validation": {
                **M.rates_at(labels, logits, card.threshold["logit"]),
                "chosen_on": card.threshold.get("split"),
                "target_fpr": card.threshold.get("fpr"),
            }
            if card.threshold
            else None,
            "score_0.5": M.rates_at(labels, logits, 0.0),
        },
    }
    thresholds = {"validation": card.threshold.get("logit"), "score_0.5": 0.0}
    metrics.update(case.extra_metrics(columns, labels, logits, thresholds))
    scores = meta.select(case.score_columns(meta.column_names))
    scores = scores.append_column("logit", pa.array(logits.astype(np.float64)))
    scores = scores.append_column("score", pa.array(sigmoid(logits)))
    write_parquet_atomic(scores, out_dir / "scores.parquet", compression="zstd")

    prob = sigmoid(logits)
    plots.plot_roc(
        fpr,
        tpr,
        auroc,
        out_dir / "roc.png",
        ec["fpr"],
        tpr_op,
        title=f"{card.name} on {len(labels)} test cutouts",
        positives=case.positives,
        negatives=case.negatives,
    )
    plots.plot_completeness(
        grid,
        counts,
        strata,
        out_dir / "completeness.png",
        ec["fpr"],
        positives=case.positives,
        negatives=case.negatives,
    )
    plots.plot_score_histograms(
        prob,
        kinds,
        float(sigmoid(threshold)),
        out_dir / "scores_by_kind.png",
        positive_kinds=case.positive_kinds,
        fpr=ec["fpr"],
    )
    images, _, spec = load_split(dataset_dir, "test")
    _galleries(case, images, spec, columns, logits, positive, ec["gallery"], out_dir)

    write_text_atomic(out_dir / "comparison.md", case.comparison_table(metrics))
    write_json_atomic(out_dir / "metrics.json", metrics)
    return metrics


def _galleries(case, images, spec, columns, logits, positive, n, out_dir: Path) -> None:
    from skyscan.viz import color_composite, save_grid

    bands = spec["bands"]
    scale = np.asarray(spec["scale"], dtype=np.float32)[:, None, None]
    prob = sigmoid(logits)
    names = list(columns)

    def caption(r):
        return case.caption({c: columns[c][r] for c in names}, prob[r])

    for stem, which, title in case.galleries:
        if which == "top_negatives":
            members = np.flatnonzero(~positive)
            rows = members[np.argsort(-logits[members], kind="stable")[:n]]
        elif which == "bottom_positives":
            members = np.flatnonzero(positive)
            rows = members[np.argsort(logits[members], kind="stable")[:n]]
        else:
            raise ValueError(f"case {case.name!r}: unknown gallery selection {which!r}")
        pics = []
        for r in rows:
            stamp = np.asarray(images[r]) * scale
            picture = case.picture(stamp, bands)
            pics.append(color_composite(stamp, bands) if picture is None else picture)
        if pics:
            save_grid(
                pics,
                [caption(r) for r in rows],
                out_dir / f"{stem}.png",
                ncols=min(8, len(pics)),
                title=title,
            )
