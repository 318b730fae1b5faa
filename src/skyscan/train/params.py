"""The data side of a parameter network (the regression head, ``train.target: parameters``).

The network (e.g. ``lensparams``) learns the science case's physical parameters of its
positives (:attr:`skyscan.core.case.Case.parameters`: for lenses theta_E, e1, e2, gamma1,
gamma2, center_x, center_y) from the positives of the dataset alone, as a mean and a
log-variance per parameter, with the Gaussian negative log-likelihood (Hezaveh, Perreault
Levasseur & Marshall 2017; Perreault Levasseur et al. 2017).  Targets are transformed (the
Einstein radius in log) and standardised with the training split's mean and spread.

This module holds what reads and moves those targets: :func:`transform_targets`,
:class:`ParameterDataset` (the positives of a split and their targets) and
:func:`dihedral_augment_parameters`, which flips and turns the stamps as the classifier's
augmentation does, and the targets with them (positions rotate, ellipticities and shears turn
by twice the angle, the Einstein radius stays).  Training, the export and the recalibration of
the uncertainties are the one trainer's (:mod:`skyscan.train.run`) with the regression head
(:class:`skyscan.train.heads.RegressionHead`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from skyscan.core.errors import InputFileError
from skyscan.data.samples import apply_dihedral
from skyscan.train.datamodule import CutoutDataset

__all__ = [
    "ParameterDataset",
    "dihedral_augment_parameters",
    "predict_positives",
    "transform_targets",
]

SYMMETRIES = ("scalar", "x", "y", "spin2_1", "spin2_2")


def transform_targets(columns, names, transforms) -> np.ndarray:
    """``(N, P)`` float64 targets: each named column, in log where its transform says so."""
    out = []
    for name, transform in zip(names, transforms, strict=True):
        values = np.asarray(columns[name], dtype=np.float64)
        if transform == "log":
            if not (values > 0).all():
                raise ValueError(f"column {name!r}: a log parameter needs positive values")
            values = np.log(values)
        elif transform != "identity":
            raise ValueError(f"parameter {name!r}: unknown transform {transform!r}")
        out.append(values)
    return np.stack(out, axis=1)


class ParameterDataset(CutoutDataset):
    """The positives of one split: preprocessed stamps and their transformed targets
    (batches are read as :class:`CutoutDataset` reads them, over ``rows``).

    Parameters
    ----------
    dataset_dir : str or Path
    split : str
    names, transforms : sequence of str
        The parameters (metadata columns) and their transforms.
    """

    def __init__(self, dataset_dir, split: str, names, transforms):
        self.names, self.transforms = list(names), list(transforms)
        super().__init__(dataset_dir, split)

    def select(self, meta):
        where = Path(self.dataset_dir) / self.split
        rows = np.flatnonzero(meta.column("label").to_numpy() == 1)
        if len(rows) == 0:
            raise InputFileError(f"{where}: no positives to learn parameters from", path=where)
        missing = [n for n in self.names if n not in meta.column_names]
        if missing:
            raise InputFileError(
                f"{where}/meta.parquet: lacks parameter column(s) {', '.join(missing)}",
                path=where / "meta.parquet",
            )
        positives = meta.take(rows)
        columns = {n: positives.column(n).to_numpy() for n in self.names}
        self.truth = {n: np.asarray(columns[n], dtype=np.float64) for n in self.names}
        targets = transform_targets(columns, self.names, self.transforms).astype(np.float32)
        return rows, targets


def dihedral_augment_parameters(
    images: torch.Tensor, targets: torch.Tensor, symmetry, generator=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip and turn each stamp by one of the 8 symmetries of the square, and its targets.

    Pixel ``[j, i]`` of a stamp lies at ``x = (i - c) p``, ``y = (j - c) p``.  A mirror of the
    columns maps ``(x, y) -> (-x, y)`` and negates the second ellipticity/shear component;
    each quarter-turn (``torch.rot90`` over the last two axes) then maps ``(x, y) -> (y, -x)``
    and negates both components (they turn by twice the angle).

    Parameters
    ----------
    images : torch.Tensor, shape (N, C, H, W)
    targets : torch.Tensor, shape (N, P)
        Transformed, *not* standardised targets (identity positions and ellipticities).
    symmetry : sequence of str
        Each target's :attr:`skyscan.core.case.PhysicalParameter.symmetry`.
    generator : torch.Generator, optional
    """
    symmetry = list(symmetry)
    unknown = sorted(set(symmetry) - set(SYMMETRIES))
    if unknown:
        raise ValueError(f"unknown symmetry {unknown} (allowed: {', '.join(SYMMETRIES)})")
    if symmetry.count("x") != symmetry.count("y") or symmetry.count("x") > 1:
        raise ValueError("parameters need at most one x and one y position column")
    n = images.shape[0]
    choice = torch.randint(0, 8, (n,), generator=generator, device="cpu").to(images.device)
    flip = choice >= 4
    turns = choice % 4
    out_images = apply_dihedral(images, choice)
    out = targets.clone()
    sx = [k for k, s in enumerate(symmetry) if s == "x"]
    sy = [k for k, s in enumerate(symmetry) if s == "y"]
    spin2 = [k for k, s in enumerate(symmetry) if s in ("spin2_1", "spin2_2")]
    second = [k for k, s in enumerate(symmetry) if s == "spin2_2"]
    sign = torch.where(flip, -1.0, 1.0).to(out.dtype)
    if sx:
        out[:, sx[0]] = out[:, sx[0]] * sign
    if second:
        out[:, second] = out[:, second] * sign[:, None]
    if sx:
        x0, y0 = out[:, sx[0]].clone(), out[:, sy[0]].clone()
        # (x, y) after t quarter-turns: t=1 (y, -x), t=2 (-x, -y), t=3 (-y, x)
        cos = torch.tensor([1.0, 0.0, -1.0, 0.0], dtype=out.dtype, device=out.device)[turns]
        sin = torch.tensor([0.0, 1.0, 0.0, -1.0], dtype=out.dtype, device=out.device)[turns]
        out[:, sx[0]] = cos * x0 + sin * y0
        out[:, sy[0]] = -sin * x0 + cos * y0
    if spin2:
        parity = (1.0 - 2.0 * (turns % 2)).to(out.dtype)
        out[:, spin2] = out[:, spin2] * parity[:, None]
    return out_images, out


def predict_positives(model, card, dataset_dir, split: str):
    """The exported network's outputs for the positives of a split, and their metadata."""
    from skyscan.evaluate.scoring import score_split

    outputs, meta = score_split(model, card, dataset_dir, split)
    rows = np.flatnonzero(meta.column("label").to_numpy() == 1)
    return outputs[rows], meta.take(rows)
