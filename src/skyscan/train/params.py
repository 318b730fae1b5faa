"""The train stage for a parameter network (``train.target: parameters``).

The network (e.g. ``lensparams``) learns the science case's physical parameters of its
positives (:attr:`skyscan.core.case.Case.parameters`: for lenses theta_E, e1, e2, gamma1,
gamma2, center_x, center_y) from the positives of the dataset alone, as a mean and a
log-variance per parameter, with the Gaussian negative log-likelihood (Hezaveh, Perreault
Levasseur & Marshall 2017; Perreault Levasseur et al. 2017).  Targets are transformed (the
Einstein radius in log) and standardised with the training split's mean and spread.

Augmentation flips and turns the stamps as the classifier's does, and the targets with them
(:func:`dihedral_augment_parameters`): positions rotate, ellipticities and shears turn by
twice the angle, the Einstein radius stays.

After training the exported network's uncertainties are recalibrated on the validation
split (one factor per parameter, so that 68% intervals hold 68% of the validation truths),
the vetting thresholds (:mod:`skyscan.evaluate.vetting`) are chosen there, and the test split's
figures are recorded in the card.  Checkpoints, resumption and the export are the
classifier's (:mod:`skyscan.train.run`, :mod:`skyscan.train.export`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import lightning as L
import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import DataLoader

from skyscan.config import config_hash
from skyscan.core.case import get_case
from skyscan.core.errors import ConfigError, InputFileError
from skyscan.data.datasets import load_split
from skyscan.models import count_macs, count_parameters, get_model
from skyscan.models.heads import LOG_VARIANCE_RANGE, gaussian_nll
from skyscan.train.datamodule import CutoutDataset

__all__ = [
    "ParameterDataset",
    "ParameterRegressor",
    "dihedral_augment_parameters",
    "transform_targets",
    "train_parameters",
]

log = logging.getLogger(__name__)

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
        self.dataset_dir = Path(dataset_dir)
        self.split = split
        images, meta, self.spec = load_split(dataset_dir, split)
        self.rows = np.flatnonzero(meta.column("label").to_numpy() == 1)
        if len(self.rows) == 0:
            raise InputFileError(
                f"{self.dataset_dir / split}: no positives to learn parameters from",
                path=self.dataset_dir / split,
            )
        missing = [n for n in names if n not in meta.column_names]
        if missing:
            raise InputFileError(
                f"{self.dataset_dir / split}/meta.parquet: lacks parameter column(s) "
                f"{', '.join(missing)}",
                path=self.dataset_dir / split / "meta.parquet",
            )
        positives = meta.take(self.rows)
        columns = {n: positives.column(n).to_numpy() for n in names}
        self.truth = {n: np.asarray(columns[n], dtype=np.float64) for n in names}
        self.targets = transform_targets(columns, names, transforms).astype(np.float32)
        self._images = None  # opened lazily in each worker process


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
    out_images = images.clone()
    out = targets.clone()
    sx = [k for k, s in enumerate(symmetry) if s == "x"]
    sy = [k for k, s in enumerate(symmetry) if s == "y"]
    spin2 = [k for k, s in enumerate(symmetry) if s in ("spin2_1", "spin2_2")]
    second = [k for k, s in enumerate(symmetry) if s == "spin2_2"]
    for k in range(8):
        mask = choice == k
        if not bool(mask.any()):
            continue
        x = images[mask]
        if k >= 4:
            x = torch.flip(x, dims=(-1,))
        out_images[mask] = torch.rot90(x, k % 4, dims=(-2, -1))
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


class ParameterRegressor(L.LightningModule):
    """Trains a registered parameter model on the Gaussian NLL of standardised targets.

    Parameters
    ----------
    model : str
        Registry name (``lensparams``).
    in_channels, stamp_size : int
    mean, std : list of float
        Standardisation of the transformed targets (the training split's).
    symmetry : list of str
        Each target's symmetry, for the augmentation.
    learning_rate, lr_step_epochs, lr_factor, weight_decay : float, int, float, float
    augment : bool
    """

    def __init__(
        self,
        model: str = "lensparams",
        in_channels: int = 3,
        stamp_size: int = 45,
        mean: list | None = None,
        std: list | None = None,
        symmetry: list | None = None,
        learning_rate: float = 1e-3,
        lr_step_epochs: int = 40,
        lr_factor: float = 0.1,
        weight_decay: float = 0.0,
        augment: bool = True,
    ):
        super().__init__()
        self.save_hyperparameters()
        n = len(mean)
        self.net = get_model(model, in_channels=in_channels, stamp_size=stamp_size, n_parameters=n)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def on_after_batch_transfer(self, batch, dataloader_idx):
        images, targets = batch
        trainer = self._trainer  # None outside a Trainer
        if trainer is not None and trainer.training and self.hparams.augment:
            images, targets = dihedral_augment_parameters(images, targets, self.hparams.symmetry)
        return images, (targets - self.mean) / self.std

    def training_step(self, batch, batch_idx):
        images, targets = batch
        loss = gaussian_nll(self(images).float(), targets)
        self.log("train_nll", loss, prog_bar=True, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        images, targets = batch
        out = self(images).float()
        self.log("val_nll", gaussian_nll(out, targets), prog_bar=True, on_epoch=True)
        # The first parameter's median-free summary: RMS error in standard deviations.
        n = targets.shape[1]
        self.log("val_rmse_norm", ((out[:, :n] - targets) ** 2).mean().sqrt(), on_epoch=True)

    def configure_optimizers(self):
        hp = self.hparams
        opt = torch.optim.Adam(self.parameters(), lr=hp.learning_rate, weight_decay=hp.weight_decay)
        sched = torch.optim.lr_scheduler.StepLR(
            opt, step_size=hp.lr_step_epochs, gamma=hp.lr_factor
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


def _loader(dataset, batch_size, shuffle, workers):
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        collate_fn=lambda batch: batch,  # __getitems__ already returns tensors
        persistent_workers=workers > 0,
        pin_memory=torch.cuda.is_available(),
    )


def _case_parameters(dataset_dir, tc: dict):
    manifest_path = Path(dataset_dir) / "manifest.json"
    if not manifest_path.is_file():
        raise InputFileError(f"{dataset_dir}: not a complete dataset (no manifest.json)")
    manifest = json.loads(manifest_path.read_text())
    if "case" not in manifest:
        raise InputFileError(
            f"{manifest_path}: names no science case (built by an older skyscan: rebuild it)",
            path=manifest_path,
        )
    case = get_case(manifest["case"])
    if not case.parameters:
        raise ConfigError(
            f"config key 'train.target': case {case.name!r} has no physical parameters",
            key="train.target",
        )
    if tc["model"] not in case.parameter_models:
        raise ConfigError(
            f"config key 'train.model': {tc['model']!r} is not a parameter model for case "
            f"{case.name!r} (allowed: {', '.join(case.parameter_models)})",
            key="train.model",
        )
    return case, manifest


def train_parameters(config: dict, dataset_dir, out_dir, threads: int = 1):
    """Train, export and recalibrate a parameter network (``train.target: parameters``).

    Parameters
    ----------
    config : dict
        The validated config (``seed``, ``train``).
    dataset_dir : str or Path
        A dataset of the case; its positives are the training examples.
    out_dir : str or Path
        Gets ``checkpoints/``, ``logs/`` and ``model.ts``, ``model.onnx``, ``model_card.json``.
    threads : int

    Returns
    -------
    ModelCard
        The card, with ``targets`` (names, units, normalisation, uncertainty scales, vetting
        thresholds) and the test split's figures in ``test_metrics``.
    """

    from skyscan.models.card import ModelCard
    from skyscan.train.export import export_model
    from skyscan.train.run import _resumable, _training_identity, make_trainer

    tc = config["train"]
    if tc["ensemble"] > 1:
        raise ConfigError(
            "config key 'train.ensemble': a parameter network is trained alone (set it to 1)",
            key="train.ensemble",
        )
    case, manifest = _case_parameters(dataset_dir, tc)
    names = [p.name for p in case.parameters]
    transforms = [p.transform for p in case.parameters]
    out_dir = Path(out_dir)
    torch.set_num_threads(max(1, threads))
    L.seed_everything(int(config["seed"]), workers=True, verbose=False)
    workers = tc["num_workers"] if tc["num_workers"] is not None else max(0, threads - 1)
    train_set = ParameterDataset(dataset_dir, "train", names, transforms)
    val_set = ParameterDataset(dataset_dir, "val", names, transforms)
    spec = train_set.spec
    mean = train_set.targets.astype(np.float64).mean(axis=0)
    std = train_set.targets.astype(np.float64).std(axis=0)
    if not (std > 0).all():
        flat = [n for n, s in zip(names, std, strict=True) if not s > 0]
        raise InputFileError(
            f"{dataset_dir}: parameter(s) {', '.join(flat)} do not vary over the training "
            "positives: nothing to learn",
            path=dataset_dir,
        )
    shape = tuple(spec["shape"])
    module = ParameterRegressor(
        model=tc["model"],
        in_channels=shape[0],
        stamp_size=shape[-1],
        mean=mean.tolist(),
        std=std.tolist(),
        symmetry=[p.symmetry for p in case.parameters],
        learning_rate=tc["learning_rate"],
        lr_step_epochs=tc["lr_step_epochs"],
        lr_factor=tc["lr_factor"],
        weight_decay=tc["weight_decay"],
        augment=tc["augment"],
    )
    trainer, best_cb, ckpt_dir = make_trainer(tc, out_dir, monitor="val_nll", mode="min")
    last = ckpt_dir / "last.ckpt"
    resume = str(last) if _resumable(ckpt_dir, _training_identity(config, dataset_dir)) else None
    if resume:
        log.info("resuming from %s", resume)
    trainer.fit(
        module,
        _loader(train_set, tc["batch_size"], True, workers),
        _loader(val_set, tc["batch_size"], False, workers),
        ckpt_path=resume,
    )
    best_path = best_cb.best_model_path
    if not best_path or not Path(best_path).is_file():
        best_path = str(ckpt_dir / "best.ckpt") if (ckpt_dir / "best.ckpt").is_file() else str(last)
    net = ParameterRegressor.load_from_checkpoint(best_path, map_location="cpu").net.eval()

    test_set = ParameterDataset(dataset_dir, "test", names, transforms)
    batch, _ = test_set.__getitems__(list(range(min(tc["export_batch"], len(test_set)))))
    train_truth = train_set.truth
    card = ModelCard(
        name=f"skyscan-{tc['model']}",
        model=tc["model"],
        case=case.name,
        bands=spec["bands"],
        input_shape=list(shape),
        pixel_scale=manifest.get("pixel_scale"),
        survey=manifest.get("survey"),
        preprocessing=spec,
        parameters=count_parameters(net),
        macs_per_cutout=count_macs(net, shape),
        targets={
            "kind": "parameters",
            "names": names,
            "units": [p.unit for p in case.parameters],
            "transforms": transforms,
            "descriptions": [p.description for p in case.parameters],
            "mean": mean.tolist(),
            "std": std.tolist(),
            "normalisation": "(transform(value) - mean) / std, on the training positives",
            "range": {n: [float(train_truth[n].min()), float(train_truth[n].max())] for n in names},
            "n_train": len(train_set),
        },
        training={
            "config_hash": config_hash({"seed": config["seed"], "train": tc}),
            "dataset": str(dataset_dir),
            "target": "parameters",
            "loss": "gaussian_nll",
            "epochs": tc["epochs"],
            "epochs_run": int(trainer.current_epoch),
            "stopped_early": bool(trainer.current_epoch < tc["epochs"]),
            "best_checkpoint": Path(best_path).name,
            "best_val_nll": float(best_cb.best_model_score)
            if best_cb.best_model_score is not None
            else None,
        },
    )
    card = export_model(
        net,
        batch,
        out_dir,
        card,
        output_name="parameters",
        output="parameters: (N, 2P) means then log-variances of the standardised targets "
        "(ModelCard.parameter_estimates gives values and 68% intervals)",
    )
    return _recalibrate(card, out_dir, dataset_dir, case)


def predict_positives(model, card, dataset_dir, split: str):
    """The exported network's outputs for the positives of a split, and their metadata."""
    from skyscan.evaluate.scoring import score_split

    outputs, meta = score_split(model, card, dataset_dir, split)
    rows = np.flatnonzero(meta.column("label").to_numpy() == 1)
    return outputs[rows], meta.take(rows)


def _recalibrate(card, out_dir: Path, dataset_dir, case):
    """Uncertainty scales and vetting thresholds on the validation positives, the test
    figures, and the card written beside the model."""
    from skyscan.evaluate.params import fit_uncertainty_scale, interval_coverage, parameter_metrics
    from skyscan.evaluate.vetting import choose_thresholds
    from skyscan.models.card import CARD_NAME, load_model

    t = card.targets
    names, transforms = t["names"], t["transforms"]
    model, _ = load_model(out_dir / CARD_NAME)
    outputs, meta = predict_positives(model, card, dataset_dir, "val")
    p = len(names)
    truth = transform_targets({n: meta.column(n).to_numpy() for n in names}, names, transforms)
    std = np.asarray(t["std"])
    log_var = np.clip(outputs[:, p:], *LOG_VARIANCE_RANGE)
    z = (truth - (outputs[:, :p] * std + t["mean"])) / (np.exp(0.5 * log_var) * std)
    scale = fit_uncertainty_scale(z)
    raw = card.parameter_estimates(outputs, calibrated=False)
    calibrated = card.replace(targets={**t, "uncertainty_scale": scale.tolist()})
    est = calibrated.parameter_estimates(outputs)
    columns = {n: meta.column(n).to_numpy() for n in names}
    calibration = {
        "method": "one factor per parameter: the 68.27% quantile of |truth - mean| / sigma",
        "fitted_on": "val",
        "n": len(outputs),
        "coverage68_before": {
            n: interval_coverage(columns[n], raw[n]["low"], raw[n]["high"])["coverage"]
            for n in names
        },
        "coverage68_after": {
            n: interval_coverage(columns[n], est[n]["low"], est[n]["high"])["coverage"]
            for n in names
        },
    }
    first = names[0]
    lo, hi = t["range"][first]
    vetting = choose_thresholds(est[first]["value"], est[first]["sigma"], (lo, hi))
    vetting["parameter"] = first
    card = calibrated.replace(
        targets={**calibrated.targets, "calibration": calibration, "vetting": vetting}
    )
    card.write(out_dir / CARD_NAME)
    # The test figures on the case's selection.
    outputs, meta = predict_positives(model, card, dataset_dir, "test")
    columns = {
        c: meta.column(c).to_numpy()
        for c in meta.column_names
        if pa.types.is_floating(meta.schema.field(c).type)
    }
    selection, text = case.parameter_selection(columns)
    metrics = parameter_metrics(card.parameter_estimates(outputs), columns, transforms, selection)
    card = card.replace(test_metrics={"selection": text, "parameters": metrics})
    card.write(out_dir / CARD_NAME)
    head = metrics[first]
    log.info(
        "test (%s, %d positives): %s median |rel. error| %.3f, bias %.3f, coverage68 %.3f",
        text,
        head["n"],
        first,
        head.get("median_abs_rel_error", float("nan")),
        head.get("median_rel_bias", float("nan")),
        head["coverage68"]["coverage"],
    )
    return card
