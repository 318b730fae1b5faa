"""Score ZTF alerts with an exported real/bogus model (the work of ``skyscan score-alerts``).

The model's card must name the alert channels as its bands, in order: ``science``,
``reference`` (or ``template``), ``difference``, and optionally a fourth ``snr``: the
difference cutout divided by its robust noise (1.4826 x MAD of its own pixels; 0 where that
noise is 0).  Stamps are fitted to the card's ``input_shape`` (:func:`~.alerts.fit_stamp`),
preprocessed with :func:`skyscan.data.preprocess.preprocess` and the card's ``preprocessing``,
and scored in batches.

``score`` is the card's calibrated probability, ``sigmoid(logit / T)`` with the temperature
``T`` fitted on the validation split at training (:meth:`ModelCard.probability`; plain
``sigmoid(logit)`` for a card without calibration).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from skyscan.cases.transients.alerts import CHANNELS, alert_inputs, read_alerts
from skyscan.core.atomic import write_json_atomic, write_parquet_atomic
from skyscan.core.errors import InputFileError, MismatchError, UsageError

__all__ = ["alert_channels", "model_inputs", "score_alerts", "failures_path", "OUTPUT_COLUMNS"]

log = logging.getLogger(__name__)

_ALIASES = {"sci": "science", "ref": "reference", "template": "reference", "diff": "difference"}

#: output columns, in order
OUTPUT_COLUMNS = (
    "candid",
    "objectId",
    "ra",
    "dec",
    "magpsf",
    "jd",
    "logit",
    "score",
    "above_threshold",
    "rb",
    "drb",
    "cutout_flags",
    "edge",
    "nan_pixels",
    "source",
)


def alert_channels(card, source: str = "model card") -> bool:
    """Check that ``card`` takes alert stamps; returns whether it wants the ``snr`` channel.

    Raises
    ------
    MismatchError
        Naming ``source``, when the bands are not science, reference, difference [, snr] in
        that order, or the input shape or preprocessing do not fit them.
    """
    bands = [str(b).lower() for b in card.bands]
    bands = [_ALIASES.get(b, b) for b in bands]
    if bands not in (list(CHANNELS), [*CHANNELS, "snr"]):
        raise MismatchError(
            f"{source}: bands {list(card.bands)} are not the alert channels "
            "science, reference, difference [, snr] in that order",
            path=source,
        )
    shape = list(card.input_shape)
    if len(shape) != 3 or shape[0] != len(bands) or min(shape[1:]) < 1:
        raise MismatchError(
            f"{source}: input_shape {shape} is not [{len(bands)}, H, W] for bands "
            f"{list(card.bands)}",
            path=source,
        )
    scale = card.preprocessing.get("scale", [])
    if len(scale) != len(bands):
        raise MismatchError(
            f"{source}: preprocessing has {len(scale)} scale(s) for {len(bands)} bands",
            path=source,
        )
    return len(bands) == 4


def model_inputs(stamps: np.ndarray, diff_sigma, snr: bool) -> np.ndarray:
    """Raw model inputs ``(N, 3 or 4, H, W)`` from alert stamps ``(N, 3, H, W)``.

    With ``snr``, a fourth channel: the difference stamp over its ``diff_sigma`` (per alert;
    0 where the sigma is not positive).
    """
    stamps = np.asarray(stamps, dtype=np.float32)
    if not snr:
        return stamps
    sigma = np.asarray(diff_sigma, dtype=np.float64).reshape(-1, 1, 1)
    good = np.isfinite(sigma) & (sigma > 0)
    ratio = np.where(good, stamps[:, 2] / np.where(good, sigma, 1.0), 0.0)
    return np.concatenate([stamps, ratio[:, None].astype(np.float32)], axis=1)


def failures_path(out: str | Path) -> Path:
    """The failures JSON beside ``out``: ``scores.parquet`` -> ``scores_failures.json``."""
    out = Path(out)
    return out.with_name(f"{out.stem}_failures.json")


def score_alerts(
    card_path: str | Path,
    inputs: Sequence[str | Path],
    out: str | Path,
    fmt: str | None = None,
    batch_size: int = 256,
    progress: bool = False,
    failures_out: str | Path | None = None,
) -> dict:
    """Score every alert of ``inputs`` and write ``out`` (Parquet) and the failures JSON.

    Parameters
    ----------
    card_path : str or Path
        The model card.
    inputs : sequence of str or Path
        Files and folders (:func:`~.alerts.alert_inputs`).
    out : str or Path
        The scores' Parquet file, columns :data:`OUTPUT_COLUMNS`, one row per scored alert in
        input order: ``candid`` (int64), ``objectId``, ``ra``, ``dec``, ``jd`` (float64),
        ``magpsf`` (float32), ``logit`` and ``score`` = the card's calibrated probability (float64),
        ZTF's ``rb`` and ``drb`` (float32, null when absent), ``flags`` (int32 bits
        FLAG_EDGE 1, FLAG_NAN 2, FLAG_CROPPED 4), ``edge`` (bool), ``nan_pixels`` (int32) and
        ``source`` (the file the alert came from).
    fmt : str, optional
        Input format for every input (``avro``, ``parquet``, ``fits``); default by suffix.
    batch_size : int
        Stamps per forward pass.
    progress : bool
        Draw a progress bar.
    failures_out : str or Path, optional
        The failures JSON (default :func:`failures_path` of ``out``): ``n_scored``,
        ``n_failed`` and ``failures``, a list of ``{source, candid, reason}``.  Always written.

    Returns
    -------
    dict
        ``n_scored``, ``n_failed``, ``out``, ``failures`` (the JSON's path).

    Raises
    ------
    MismatchError
        The card does not take alert stamps.
    InputFileError
        An input cannot be read at all; or there were alerts and none could be scored (the
        failures JSON is written, the scores are not).
    """
    import pyarrow as pa
    import torch
    from tqdm import tqdm

    from skyscan.data.preprocess import preprocess
    from skyscan.models.card import load_model, read_card

    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, not {batch_size}")
    card_path, out = Path(card_path), Path(out)
    failures_out = Path(failures_out) if failures_out else failures_path(out)
    card = read_card(card_path)
    snr = alert_channels(card, str(card_path))
    units = alert_inputs(inputs, fmt)
    model, _ = load_model(card_path)
    shape = tuple(int(v) for v in card.input_shape[1:])
    spec = card.preprocessing

    columns = {name: [] for name in OUTPUT_COLUMNS}
    failures: list[dict] = []
    pending = []
    bar = tqdm(unit="alert", desc="score-alerts", disable=not progress)

    def flush():
        if not pending:
            return
        x = model_inputs(
            np.stack([d.stamps for d in pending]), [d.extra["diff_sigma"] for d in pending], snr
        )
        with torch.inference_mode():
            logits = model(torch.from_numpy(preprocess(x, spec))).double().numpy().reshape(-1)
        if len(logits) != len(pending):
            raise MismatchError(
                f"{card_path}: the model returned {len(logits)} values for {len(pending)} stamps",
                path=card_path,
            )
        for det, logit in zip(pending, logits, strict=True):
            columns["candid"].append(det.candid)
            columns["logit"].append(float(logit))
            for key in OUTPUT_COLUMNS:
                if key not in ("candid", "logit", "score", "above_threshold"):
                    columns[key].append(det.extra[key])
        bar.update(len(pending))
        pending.clear()

    try:
        for fmt_, path in units:
            for det in read_alerts(path, fmt_, shape=shape, failures=failures):
                pending.append(det)
                if len(pending) >= batch_size:
                    flush()
        flush()
    finally:
        bar.close()

    n_scored, n_failed = len(columns["candid"]), len(failures)
    write_json_atomic(
        failures_out, {"n_scored": n_scored, "n_failed": n_failed, "failures": failures}
    )
    if n_failed and not n_scored:
        raise InputFileError(
            f"no alert could be scored ({n_failed} failed: see {failures_out}); first: "
            f"{failures[0]['reason']}"
        )
    if n_failed:
        log.warning("%d alert(s) could not be scored: see %s", n_failed, failures_out)
    logits = np.asarray(columns["logit"], dtype=np.float64)
    types = {
        "candid": pa.int64(),
        "objectId": pa.string(),
        "ra": pa.float64(),
        "dec": pa.float64(),
        "magpsf": pa.float32(),
        "jd": pa.float64(),
        "logit": pa.float64(),
        "score": pa.float64(),
        "above_threshold": pa.bool_(),
        "rb": pa.float32(),
        "drb": pa.float32(),
        "cutout_flags": pa.int32(),
        "edge": pa.bool_(),
        "nan_pixels": pa.int32(),
        "source": pa.string(),
    }
    columns["score"] = card.probability(logits)
    # the card's operating threshold (chosen on validation): what a user keeps as real
    threshold = (card.threshold or {}).get("logit")
    columns["above_threshold"] = (
        [None] * len(logits) if threshold is None else list(logits >= float(threshold))
    )
    columns["objectId"] = [None if v is None else str(v) for v in columns["objectId"]]
    table = pa.table({k: pa.array(columns[k], types[k]) for k in OUTPUT_COLUMNS})
    table = table.replace_schema_metadata(
        {
            "skyscan.model_card": str(card_path),
            "skyscan.model": card.name,
            "skyscan.score": (
                f"sigmoid(logit / {card.calibration['temperature']:.4g}), temperature fitted on "
                "the validation split"
                if card.calibration
                else "sigmoid(logit), not calibrated"
            ),
            "skyscan.threshold_logit": str((card.threshold or {}).get("logit")),
        }
    )
    write_parquet_atomic(table, out)
    return {
        "n_scored": n_scored,
        "n_failed": n_failed,
        "out": str(out),
        "failures": str(failures_out),
    }
