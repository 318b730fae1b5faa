"""The lens-parameter vetting flag on candidates: a parameter network's estimated Einstein
radius or its uncertainty implausible for a lens (:mod:`skyscan.evaluate.vetting` holds the
flag and how its thresholds are chosen on the validation lenses at training time; this
module measures what it removes on a classification dataset).
"""

from __future__ import annotations

import numpy as np

from skyscan.evaluate.vetting import choose_thresholds, flag_implausible, flag_summary

__all__ = ["choose_thresholds", "flag_implausible", "flag_summary", "measure_vetting"]


def measure_vetting(card_path, dataset_dir, classifier_card=None, classifier_scores=None) -> dict:
    """What the parameter card's vetting flag removes on a classification dataset's test split.

    Parameters
    ----------
    card_path : str or Path
        The parameter network's card (its ``targets.vetting`` holds the thresholds).
    dataset_dir : str or Path
        A classification dataset of the same stamps (lenses and non-lenses).
    classifier_card, classifier_scores : str or Path, optional
        A classifier's card (its operating threshold) and its evaluation's
        ``scores.parquet`` on the same test split: then the flag is also measured on the
        classifier's false and true positives.

    Returns
    -------
    dict
        The thresholds and :func:`flag_summary` of the test split.
    """
    import pyarrow.parquet as pq

    from skyscan.core.errors import InputFileError
    from skyscan.evaluate.scoring import score_split
    from skyscan.models.card import load_model, read_card

    model, card = load_model(card_path)
    vetting = (card.targets or {}).get("vetting")
    if not vetting:
        raise InputFileError(f"{card_path}: records no vetting thresholds", path=card_path)
    outputs, meta = score_split(model, card, dataset_dir, "test")
    est = card.parameter_estimates(outputs)[vetting["parameter"]]
    flags = flag_implausible(est["value"], est["sigma"], vetting)
    labels = meta.column("label").to_numpy()
    passed = None
    record = {"dataset": str(dataset_dir), "thresholds": dict(vetting)}
    if (classifier_card is None) != (classifier_scores is None):
        raise InputFileError(
            "give both the classifier's card and its scores.parquet, or neither",
            path=classifier_scores or classifier_card,
        )
    if classifier_card is not None:
        threshold = read_card(classifier_card).threshold.get("logit")
        if threshold is None:
            raise InputFileError(
                f"{classifier_card}: records no operating threshold", path=classifier_card
            )
        try:
            scores = pq.read_table(classifier_scores, columns=["index", "logit"])
        except (OSError, ValueError, KeyError) as exc:
            raise InputFileError(
                f"{classifier_scores}: not a readable scores table ({exc})",
                path=classifier_scores,
            ) from None
        logit = dict(
            zip(
                scores.column("index").to_pylist(),
                scores.column("logit").to_pylist(),
                strict=True,
            )
        )
        index = meta.column("index").to_pylist()
        missing = sum(1 for i in index if i not in logit)
        if missing:
            raise InputFileError(
                f"{classifier_scores}: lacks {missing} of the test split's systems "
                f"(scores of another dataset?)",
                path=classifier_scores,
            )
        passed = np.array([logit[i] for i in index]) > threshold
        record["classifier"] = {"card": str(classifier_card), "threshold_logit": threshold}
    record.update(flag_summary(flags, labels, passed))
    kinds = np.asarray(meta.column("kind").to_pylist())
    record["non_lenses_flagged_by_kind"] = {
        k: float(flags[(kinds == k)].mean()) for k in sorted(set(kinds[labels == 0]))
    }
    return record
