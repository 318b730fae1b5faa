"""The train stage: fit, keep the best and last checkpoints, export, write the model card."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch

from skyscan.config import config_hash
from skyscan.core.atomic import write_json_atomic
from skyscan.core.case import get_case
from skyscan.core.errors import ConfigError, InputFileError, ResourceError
from skyscan.models import count_macs, count_parameters, model_names

__all__ = ["train"]

log = logging.getLogger(__name__)


def make_trainer(tc, out_dir: Path, monitor: str, mode: str):
    """The Lightning trainer every training stage uses: bf16 on a GPU when there is one,
    the best checkpoint by ``monitor`` and the last one for resuming, early stopping by
    ``train.patience``, one CSV log per run.

    Returns
    -------
    trainer, best_callback, checkpoint_dir
    """
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    gpu = tc["accelerator"] != "cpu" and torch.cuda.is_available()
    if tc["accelerator"] == "gpu" and not gpu:
        raise ResourceError(
            "config key 'train.accelerator' is 'gpu' but no CUDA device is visible",
            key="train.accelerator",
        )
    ckpt_dir = Path(out_dir) / "checkpoints"
    best_cb = ModelCheckpoint(
        dirpath=ckpt_dir, filename="best", monitor=monitor, mode=mode, enable_version_counter=False
    )
    # The state after every epoch, for resuming.  Not `save_last=True` on the callback above:
    # with a monitor, Lightning 2.6 rewrites last.ckpt only when the best one improves, so a
    # resumed run restarted from the best epoch, not the last.
    last_cb = ModelCheckpoint(
        dirpath=ckpt_dir, filename="last", monitor=None, save_top_k=1, enable_version_counter=False
    )
    callbacks = [best_cb, last_cb, _epoch_log_callback()]
    if tc["patience"] is not None:
        from lightning.pytorch.callbacks import EarlyStopping

        # Counted in epochs without improvement, so the stopping epoch is reproducible.
        callbacks.append(
            EarlyStopping(monitor=monitor, mode=mode, patience=tc["patience"], min_delta=0.0)
        )
    trainer = L.Trainer(
        max_epochs=tc["epochs"],
        enable_progress_bar=sys.stderr.isatty(),
        accelerator="gpu" if gpu else "cpu",
        devices=1,
        precision="bf16-mixed" if gpu else "32-true",
        deterministic="warn",
        callbacks=callbacks,
        # One CSV per run (logs/version_N): a resumed run adds its epochs beside the first.
        logger=CSVLogger(out_dir, name="logs"),
        log_every_n_steps=10,
        enable_model_summary=False,
    )
    return trainer, best_cb, ckpt_dir


def _epoch_log_callback():
    import lightning as L

    class EpochLog(L.Callback):
        """One log line per finished epoch (the progress bar is off in a rule's log).

        Written when the next epoch starts (and when training ends): only then has Lightning
        gathered both the epoch's training loss and its validation metrics.
        """

        def _report(self, trainer):
            done = trainer.current_epoch
            m = {k: float(v) for k, v in trainer.callback_metrics.items()}
            if done and m:
                text = ", ".join(f"{k} {v:.4f}" for k, v in sorted(m.items()))
                log.info("epoch %d/%d: %s", done, trainer.max_epochs, text)

        def on_train_epoch_start(self, trainer, pl_module):
            self._report(trainer)

        def on_train_end(self, trainer, pl_module):
            self._report(trainer)

    return EpochLog()


def _training_identity(config: dict, dataset_dir) -> dict:
    """What a checkpoint must have been trained on to be resumed: the training settings
    (all but ``epochs``, which a resumed run may raise) and the dataset's content."""
    manifest = json.loads((Path(dataset_dir) / "manifest.json").read_text())
    train_config = {k: v for k, v in config["train"].items() if k != "epochs"}
    return {
        "train": config_hash({"seed": config["seed"], "train": train_config}),
        "dataset": config_hash(
            {
                "dataset": manifest.get("dataset_config_hash"),
                "sources": [s.get("config_hash") for s in manifest.get("sources", [])],
                "splits": manifest.get("splits"),
            }
        ),
    }


def _resumable(ckpt_dir: Path, identity: dict) -> bool:
    """True if ``ckpt_dir`` holds a last checkpoint of the same training; otherwise clear the
    stale checkpoints (a changed config or dataset trains afresh) and record ``identity``."""
    stamp = ckpt_dir / "identity.json"
    last = ckpt_dir / "last.ckpt"
    try:
        same = json.loads(stamp.read_text()) == identity
    except (OSError, ValueError):
        same = False
    if same and last.is_file():
        return True
    stale = [p for p in (last, ckpt_dir / "best.ckpt") if p.is_file()]
    if stale:
        log.warning(
            "%s: checkpoints of another training (config or dataset changed): starting afresh",
            ckpt_dir,
        )
        for path in stale:
            path.unlink()
    write_json_atomic(stamp, identity)
    return False


def train(config: dict, dataset_dir: str | Path, out_dir: str | Path, threads: int = 1) -> dict:
    """Train the configured model on a dataset and export it: a classifier, or with
    ``train.target: parameters`` a parameter network
    (:func:`skyscan.train.params.train_parameters`).

    Re-running after an interruption resumes from ``checkpoints/last.ckpt``.

    Parameters
    ----------
    config : dict
        The validated config (``seed``, ``train``).
    dataset_dir : str or Path
        Output of the dataset stage.
    out_dir : str or Path
        Gets ``checkpoints/{best,last}.ckpt``, ``logs/version_N/metrics.csv`` and the exports
        (``model.ts``, ``model.onnx``, ``model_card.json``).
    threads : int
        CPU threads (torch intra-op, plus data-loader workers when ``train.num_workers`` is
        null).

    Returns
    -------
    ModelCard
        The model card.
    """
    name = config["train"]["model"]
    if name not in model_names():  # before the slow imports and the dataset
        raise ConfigError(
            f"config key 'train.model': unknown model {name!r} "
            f"(allowed: {', '.join(model_names())})",
            key="train.model",
        )
    if config["train"].get("target") == "parameters":
        from skyscan.train.params import train_parameters

        return train_parameters(config, dataset_dir, out_dir, threads)
    if config["train"]["ensemble"] > 1:
        return _train_ensemble(config, dataset_dir, Path(out_dir), threads)
    import lightning as L

    from skyscan.data.samples import describe
    from skyscan.models.card import ModelCard
    from skyscan.train.datamodule import SampleDataModule
    from skyscan.train.export import export_model
    from skyscan.train.module import Classifier

    tc = config["train"]
    out_dir = Path(out_dir)
    torch.set_num_threads(max(1, threads))
    L.seed_everything(int(config["seed"]), workers=True, verbose=False)
    workers = tc["num_workers"] if tc["num_workers"] is not None else max(0, threads - 1)
    manifest = _dataset_manifest(dataset_dir)
    samples = describe(get_case(manifest["case"]))
    dm = SampleDataModule(dataset_dir, batch_size=tc["batch_size"], num_workers=workers)
    spec = dm.spec
    describe(get_case(manifest["case"]), spec)  # the dataset is of the case's kind of sample
    samples.tta(tc["tta"])  # refused before training when the samples have no TTA group
    model_kwargs = samples.model_kwargs(spec)
    module = Classifier(
        model=tc["model"],
        in_channels=model_kwargs.get("in_channels", 0),
        learning_rate=tc["learning_rate"],
        lr_step_epochs=tc["lr_step_epochs"],
        lr_factor=tc["lr_factor"],
        weight_decay=tc["weight_decay"],
        augment=tc["augment"],
        zoom=tuple(tc["zoom"]) if tc["zoom"] else None,
        case=manifest["case"],
        spec=spec,
        model_kwargs=model_kwargs,
    )
    trainer, best_cb, ckpt_dir = make_trainer(tc, out_dir, monitor="val_auroc", mode="max")
    last = ckpt_dir / "last.ckpt"
    resume = str(last) if _resumable(ckpt_dir, _training_identity(config, dataset_dir)) else None
    if resume:
        log.info("resuming from %s", resume)
    trainer.fit(module, dm, ckpt_path=resume)

    best_path = best_cb.best_model_path
    if not best_path or not Path(best_path).is_file():  # e.g. the folder was moved
        best_path = str(ckpt_dir / "best.ckpt") if (ckpt_dir / "best.ckpt").is_file() else str(last)
    best = Classifier.load_from_checkpoint(best_path, map_location="cpu")
    net = best.net.eval()
    test_images = dm.datasets["test"]
    batch, _ = test_images.__getitems__(list(range(min(tc["export_batch"], len(test_images)))))
    shape = tuple(spec["shape"])
    card = ModelCard(
        name=f"skyscan-{tc['model']}",
        model=tc["model"],
        case=manifest["case"],
        input_shape=list(shape),
        **samples.card_fields(spec, manifest),
        preprocessing=spec,
        parameters=count_parameters(net),
        macs_per_cutout=count_macs(net, shape),
        training={
            "config_hash": config_hash({"seed": config["seed"], "train": tc}),
            "dataset": str(dataset_dir),
            "epochs": tc["epochs"],
            "epochs_run": int(trainer.current_epoch),
            "stopped_early": bool(trainer.current_epoch < tc["epochs"]),
            "best_checkpoint": Path(best_path).name,
            "best_val_auroc": float(best_cb.best_model_score)
            if best_cb.best_model_score is not None
            else None,
        },
    )
    card = export_model(net, batch, out_dir, card)
    return _finish(card, out_dir, dataset_dir, tc)


def _dataset_manifest(dataset_dir) -> dict:
    """A dataset's manifest; it must name its science case."""
    manifest_path = Path(dataset_dir) / "manifest.json"
    if not manifest_path.is_file():
        from skyscan.data.datasets import DatasetError

        raise DatasetError(f"{dataset_dir}: not a complete dataset (no manifest.json)")
    manifest = json.loads(manifest_path.read_text())
    if "case" not in manifest:
        raise InputFileError(
            f"{manifest_path}: names no science case (built by an older skyscan: rebuild it)",
            path=manifest_path,
        )
    return manifest


def _finish(card, out_dir: Path, dataset_dir, tc: dict):
    """Scoring mode, the operating threshold and the temperature (both on the validation
    split), test metrics, and the card written beside the exported model."""
    from skyscan.data.samples import describe
    from skyscan.evaluate.metrics import (
        auroc,
        expected_calibration_error,
        fit_temperature,
        tpr_at_fpr,
    )
    from skyscan.evaluate.scoring import score_split
    from skyscan.models.card import CARD_NAME, load_model

    group = describe(get_case(card.case)).tta(tc["tta"])
    if group:
        card = card.replace(scoring={"tta": group})
        card.write(out_dir / CARD_NAME)
    model, _ = load_model(out_dir / CARD_NAME)
    # The operating threshold is chosen on the validation split, never on the test split.
    val_logits, val_meta = score_split(model, card, dataset_dir, "val")
    val_labels = val_meta.column("label").to_numpy()
    _, threshold = tpr_at_fpr(val_labels, val_logits, tc["threshold_fpr"])
    temperature = fit_temperature(val_labels, val_logits)
    calibration = {
        "method": "temperature",
        "temperature": temperature,
        "fitted_on": "val",
        "ece_val_before": expected_calibration_error(val_labels, card.probability(val_logits)),
        "ece_val_after": expected_calibration_error(
            val_labels,
            card.replace(calibration={"temperature": temperature}).probability(val_logits),
        ),
    }
    logits, meta = score_split(model, card, dataset_dir, "test")
    labels = meta.column("label").to_numpy()
    tpr, _ = tpr_at_fpr(labels, logits, 0.01)
    card = card.replace(
        calibration=calibration,
        threshold={
            "logit": float(threshold),
            "fpr": tc["threshold_fpr"],
            "split": "val",
            "n_negatives": int(np.sum(val_labels == 0)),
        },
        test_metrics={
            "auroc": auroc(labels, logits),
            "tpr_at_fpr_1pct": tpr,
            "n_test": int(len(labels)),
            "n_positive": int(np.sum(labels)),
        },
    )
    card.write(out_dir / CARD_NAME)
    log.info("test AUROC %.4f, TPR at 1%% FPR %.3f", card.test_metrics["auroc"], tpr)
    return card


class StackedEnsemble(torch.nn.Module):
    """Members' logits combined by a linear stacker: ``sum_k w_k z_k + b`` (a logistic
    regression on the members' validation logits), exported as one network."""

    def __init__(self, members, weights, bias: float):
        super().__init__()
        self.members = torch.nn.ModuleList(members)
        self.register_buffer("weights", torch.as_tensor(weights, dtype=torch.float32))
        self.register_buffer("bias", torch.tensor(float(bias), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bias.expand(x.shape[0]).clone()
        for k, member in enumerate(self.members):
            out = out + self.weights[k] * member(x).float()
        return out


def fit_stacker(member_logits: np.ndarray, labels: np.ndarray, l2: float = 1e-3):
    """Logistic regression of the labels on the members' logits ``(N, members)``, with a
    small L2 penalty on the weights (scipy L-BFGS); returns ``(weights, bias)``."""
    from scipy.optimize import minimize

    z = np.asarray(member_logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)

    def loss(params):
        w, b = params[:-1], params[-1]
        t = z @ w + b
        # log(1 + e^-t) for positives, log(1 + e^t) for negatives, and its gradient
        value = np.mean(np.logaddexp(0.0, np.where(y == 1, -t, t))) + l2 * w @ w
        p = 1.0 / (1.0 + np.exp(-t))
        grad_t = (p - y) / len(y)
        return value, np.r_[z.T @ grad_t + 2 * l2 * w, grad_t.sum()]

    start = np.r_[np.full(z.shape[1], 1.0 / z.shape[1]), 0.0]
    result = minimize(loss, start, jac=True, method="L-BFGS-B")
    return result.x[:-1], float(result.x[-1])


def _train_ensemble(config: dict, dataset_dir, out_dir: Path, threads: int):
    """Train ``train.ensemble`` members (seeds ``seed``, ``seed + 1``, ...; each a complete
    model in ``members/k``, resumable on its own), fit the stacker on their validation logits
    and export the stacked network as the model."""
    import copy

    from skyscan.evaluate.scoring import score_split
    from skyscan.models.card import load_model
    from skyscan.train.export import export_model
    from skyscan.train.module import Classifier

    tc = config["train"]
    cards, nets = [], []
    for k in range(tc["ensemble"]):
        member = copy.deepcopy(config)
        member["seed"] = int(config["seed"]) + k
        member["train"].update(ensemble=1, tta=False)
        folder = out_dir / "members" / str(k)
        log.info("ensemble member %d of %d (seed %d)", k + 1, tc["ensemble"], member["seed"])
        cards.append(train(member, dataset_dir, folder, threads))
        best = folder / "checkpoints" / cards[-1].training["best_checkpoint"]
        nets.append(Classifier.load_from_checkpoint(best, map_location="cpu").net.eval())
    logits = []
    for k in range(len(cards)):
        model, card = load_model(out_dir / "members" / str(k) / "model_card.json")
        z, meta = score_split(model, card, dataset_dir, "val")
        logits.append(z)
    labels = meta.column("label").to_numpy()
    weights, bias = fit_stacker(np.stack(logits, axis=1), labels)
    log.info("stacker fitted on the validation split: weights %s, bias %.3f", weights, bias)
    net = StackedEnsemble(nets, weights, bias).eval()
    from skyscan.train.datamodule import CutoutDataset

    test = CutoutDataset(dataset_dir, "test")
    batch, _ = test.__getitems__(list(range(min(tc["export_batch"], len(test)))))
    first = cards[0]
    card = first.replace(
        name=f"skyscan-{tc['model']}-ensemble{len(cards)}",
        parameters=sum(c.parameters for c in cards),
        macs_per_cutout=sum(c.macs_per_cutout for c in cards),
        training={
            "config_hash": config_hash({"seed": config["seed"], "train": tc}),
            "dataset": str(dataset_dir),
            "members": [
                {"folder": f"members/{k}", "seed": int(config["seed"]) + k, **c.training}
                for k, c in enumerate(cards)
            ],
            "stacker": {
                "method": "logistic regression on member logits",
                "fitted_on": "val",
                "weights": [float(w) for w in weights],
                "bias": bias,
            },
        },
        threshold={},
        calibration={},
        scoring={},
        test_metrics={},
    )
    card = export_model(net, batch, out_dir, card)
    return _finish(card, out_dir, dataset_dir, tc)
