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
from skyscan.core.case import Worst, get_case
from skyscan.core.errors import MismatchError
from skyscan.evaluate import metrics as M

__all__ = ["evaluate", "sigmoid"]


def sigmoid(x):
    """The score of a logit (float64)."""
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def evaluate(card_path, dataset_dir, out_dir, config: dict) -> dict:
    """Score the test split with an exported model and write the evaluation products.

    Writes ``metrics.json``, ``scores.parquet``, ``roc.png``, ``completeness.png``,
    ``scores_by_kind.png``, ``reliability.png``, the case's galleries
    (``false_positives.png``, ...) and ``comparison.md`` into ``out_dir``, each atomically.
    The operating threshold is chosen on the ``val`` split and reported on ``test``.

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
    if card.targets:
        raise MismatchError(
            f"{card_path}: a parameter network's card (it classifies nothing): judge it with "
            "`skyscan evaluate-params`",
            path=card_path,
        )
    case = get_case(card.case)
    manifest_path = Path(dataset_dir) / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    if manifest:
        data_case = manifest.get("case")
        if data_case is not None and data_case != card.case:
            raise MismatchError(
                f"{manifest_path}: the dataset is of case {data_case!r}, the model "
                f"{card_path} of case {card.case!r}",
                path=manifest_path,
            )
    logits, meta = score_split(model, card, dataset_dir, "test")
    labels = meta.column("label").to_numpy().astype(np.int8)
    positive = labels == 1
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    columns = {c: meta.column(c).to_numpy(zero_copy_only=False) for c in meta.column_names}
    strata = case.strata(
        {c: v[positive] for c, v in columns.items()}, {**ec, **case.settings(config)}
    )
    # The operating threshold is chosen on the validation split at evaluate.fpr and every
    # rate at it is measured on the test split: the test split never picks its own threshold.
    val_logits, val_meta = score_split(model, card, dataset_dir, "val")
    val_labels = val_meta.column("label").to_numpy().astype(np.int8)
    threshold = M.threshold_at_fpr(val_labels, val_logits, ec["fpr"])
    at_op = M.rates_at(labels, logits, threshold)
    passed = logits[positive] > threshold

    fpr, tpr, _ = M.roc_curve(labels, logits)
    auroc = M.auroc(labels, logits)
    tpr_map, tpr_map_ci, tpr_map_reason = M.tpr_at_fpr_table(labels, logits)
    grid, counts = M.completeness_grid(
        strata.row_values, strata.col_values, passed, strata.row_bins, strata.col_bins
    )
    hits = np.rint(np.nan_to_num(grid) * counts).astype(int)
    grid_ci = [
        [M.wilson_interval(int(k), int(n)) for k, n in zip(rk, rn, strict=True)]
        for rk, rn in zip(hits, counts, strict=True)
    ]
    kinds = np.asarray(meta.column("kind").to_pylist())
    per_kind, per_kind_ci = {}, {}
    for k in sorted(set(kinds[~positive])):
        above = logits[kinds == k] > threshold
        per_kind[k] = float(above.mean())
        per_kind_ci[k] = M.wilson_interval(int(above.sum()), len(above))
    head = case.headline(strata, passed)
    ci = None
    if head.n and head.completeness is not None:
        ci = M.wilson_interval(int(round(head.completeness * head.n)), head.n)
    headline = head.to_dict(ci)
    probability = card.probability(logits)
    raw_probability = sigmoid(logits)
    metrics = {
        "model": card.name,
        "case": case.name,
        "setup": {
            "survey": card.survey,
            "bands": list(card.bands),
            "exposures": manifest.get("exposures"),
            "negative_kinds": sorted(set(kinds[~positive])),
            "preprocessing": card.preprocessing.get("method"),
            "tta": card.scoring.get("tta") if card.scoring else None,
            "simulation": manifest.get("simulation"),
        },
        "n_test": int(len(labels)),
        "n_positive": n_pos,
        "n_negative": n_neg,
        "n_val_negative": int(np.sum(val_labels == 0)),
        "auroc": auroc,
        "auroc_ci95": M.auroc_bootstrap_interval(
            labels, logits, n_resamples=ec["bootstrap_resamples"], seed=int(config["seed"])
        ),
        # Read off the test split's own ROC curve (a property of the curve, not an
        # operating point): quoted only with at least 10 false positives at the rate.
        "tpr_at_fpr": tpr_map,
        "tpr_at_fpr_ci95": tpr_map_ci,
        "tpr_at_fpr_reason": tpr_map_reason,
        "tpr_at_fpr_1pct": tpr_map["0.01"],
        "tpr_at_fpr_1pct_ci95": tpr_map_ci["0.01"],
        "tpr0": M.tpr_before_false_positives(labels, logits, 1),
        "tpr10": M.tpr_before_false_positives(labels, logits, 10),
        "operating_point": {
            "chosen_on": "val",
            "target_fpr": ec["fpr"],
            "logit_threshold": threshold,
            "probability_threshold": float(card.probability(np.array([threshold]))[0]),
            **{k: at_op[k] for k in ("tpr", "tpr_ci95", "fpr", "fpr_ci95")},
            "n_positive": n_pos,
            "n_negative": n_neg,
        },
        "purity": M.purity_at_prevalence(
            at_op["tpr"], at_op["fpr"], at_op["tpr_ci95"], at_op["fpr_ci95"], ec["prevalence"]
        ),
        "completeness_grid": {
            **strata.record,
            "completeness": [
                [None if not np.isfinite(v) else float(v) for v in row] for row in grid
            ],
            "counts": counts.tolist(),
            "completeness_ci95": grid_ci,
            # pairs of cells where the completeness falls along the columns (e.g. as S/N
            # rises) beyond the intervals: it should not
            "falls_along_columns": M.falls_along_columns(grid_ci),
        },
        "headline": headline,
        "false_positive_rate_by_kind": per_kind,
        "false_positive_rate_by_kind_ci95": per_kind_ci,
        "calibration": {
            **(card.calibration or {"method": None}),
            "ece_test_before": M.expected_calibration_error(labels, raw_probability),
            "ece_test_after": M.expected_calibration_error(labels, probability),
        },
        # Rates at the card's threshold (the deployed one, chosen on validation at
        # train.threshold_fpr) and at score 0.5 (logit 0, as the real/bogus papers report).
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
    thresholds = {
        "validation": card.threshold.get("logit") if card.threshold else None,
        "score_0.5": 0.0,
        # The operating point's (evaluate.fpr on validation) and a tenfold stricter one.
        "operating": threshold,
        "val_fpr_0.001": M.threshold_at_fpr(val_labels, val_logits, 0.001),
    }
    metrics.update(case.extra_metrics(columns, labels, logits, thresholds))
    scores = meta.select(case.score_columns(meta.column_names))
    scores = scores.append_column("logit", pa.array(logits.astype(np.float64)))
    scores = scores.append_column("score", pa.array(probability.astype(np.float64)))
    write_parquet_atomic(scores, out_dir / "scores.parquet", compression="zstd")

    plots.plot_roc(
        fpr,
        tpr,
        auroc,
        out_dir / "roc.png",
        at_op["fpr"],
        at_op["tpr"],
        title=f"{card.name} on {len(labels)} test cutouts ({n_neg} {case.negatives})",
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
        probability,
        kinds,
        float(card.probability(np.array([threshold]))[0]),
        out_dir / "scores_by_kind.png",
        positive_kinds=case.positive_kinds,
        fpr=ec["fpr"],
    )
    t = card.calibration.get("temperature") if card.calibration else None
    plots.plot_reliability(
        {
            "sigmoid(logit)": M.reliability_curve(labels, raw_probability),
            **(
                {
                    f"calibrated (T = {t:.2f}, fitted on val)": M.reliability_curve(
                        labels, probability
                    )
                }
                if t
                else {}
            ),
        },
        out_dir / "reliability.png",
        title=f"reliability on {len(labels)} test cutouts",
    )
    images, _, spec = load_split(dataset_dir, "test")
    _galleries(
        case,
        images,
        spec,
        columns,
        logits,
        probability,
        positive,
        ec["gallery"],
        out_dir,
        manifest,
        model=model,
    )

    write_text_atomic(out_dir / "comparison.md", case.comparison_table(metrics))
    write_json_atomic(out_dir / "metrics.json", metrics)
    return metrics


def _galleries(
    case, images, spec, columns, logits, prob, positive, n, out_dir: Path, manifest, model=None
) -> None:
    """The case's galleries, each sample drawn as its sample description says (stamps: Lupton
    colour with a 2" scale bar when the dataset records its pixel scale), captioned by the
    case (kind, calibrated probability, simulated truth); image samples with ``model`` get
    its integrated-gradient saliency panel (:mod:`skyscan.models.saliency`)."""
    from skyscan.data.samples import describe
    from skyscan.viz import stamp_gallery

    samples = describe(case, spec)
    bands = spec.get("bands", [])
    pixel_scale, scale_bar = samples.gallery_scale_bar(manifest)
    names = list(columns)

    def caption(r):
        return case.caption({c: columns[c][r] for c in names}, prob[r])

    for gallery in case.galleries:
        stem, title = gallery.stem, gallery.title
        if gallery.worst is Worst.TOP_NEGATIVES:
            members = np.flatnonzero(~positive)
            rows = members[np.argsort(-logits[members], kind="stable")[:n]]
        else:
            members = np.flatnonzero(positive)
            rows = members[np.argsort(logits[members], kind="stable")[:n]]
        stamps = []
        for r in rows:
            stamp = samples.invert(images[r], spec)
            picture = case.picture(stamp, bands)
            if picture is None:
                picture = samples.picture(stamp, spec)
            stamps.append(stamp if picture is None else picture)
        if stamps:
            saliency = None
            if model is not None and samples.kind == "stamps":
                from skyscan.models.saliency import saliency_maps

                saliency = list(saliency_maps(model, np.asarray(images[rows])))
            stamp_gallery(
                stamps,
                bands,
                [caption(r) for r in rows],
                pixel_scale,
                out_dir / f"{stem}.png",
                ncols=min(6 if saliency else 8, len(stamps)),
                title=title,
                scale_bar_arcsec=scale_bar,
                saliency=saliency,
            )
