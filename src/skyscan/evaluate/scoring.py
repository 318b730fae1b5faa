"""Scoring a dataset split with an exported model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from skyscan.core.case import get_case
from skyscan.core.errors import MismatchError
from skyscan.data.datasets import load_split
from skyscan.data.samples import describe

__all__ = ["score_split"]


def score_split(model, card: dict, dataset_dir: str | Path, split: str, batch_size: int = 256):
    """Logits of every cutout of a split.

    Parameters
    ----------
    model : callable
        Preprocessed ``(N, bands, H, W)`` tensor -> ``(N,)`` logits (an exported model), or
        ``(N, K)`` outputs (a parameter network).
    card : skyscan.models.card.ModelCard
        Its model card: the dataset must have its bands, cutout shape and preprocessing.
    dataset_dir : str or Path
    split : str

    Returns
    -------
    logits : ndarray, shape (N,) or (N, K)
    meta : pyarrow.Table
        The split's metadata, row for row.
    """
    images, meta, spec = load_split(dataset_dir, split)
    where = f"dataset {dataset_dir} ({split})"
    describe(get_case(card.case), spec).check(card.preprocessing, spec, where)
    if card.preprocessing != spec:
        raise MismatchError(
            f"{where}: preprocessing {spec} differs from the model's {card.preprocessing}"
        )
    out = None
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(np.array(images[start : start + batch_size]))
            result = model(batch).float().numpy()
            if out is None:  # (N,) logits, or (N, K) outputs of a parameter network
                out = np.empty((len(images), *result.shape[1:]), dtype=np.float32)
            out[start : start + len(batch)] = result
    return out, meta
