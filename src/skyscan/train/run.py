"""The train stage: one trainer for every task head (:mod:`skyscan.train.heads`): fit, keep
the best and last checkpoints, export, write the model card (:func:`model_card`), and let the
head finish it (thresholds, calibration, test metrics).  ``train.ensemble`` stacks binary
classifiers (:class:`StackedEnsemble`)."""

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
from skyscan.models.card import ModelCard
from skyscan.train.heads import TaskHead, select_head

__all__ = ["train", "model_card", "make_trainer", "fit_stacker", "StackedEnsemble"]

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
        # the arrays themselves: a simulator whose code changed under the same config makes
        # other pixels with the same hashes above, and must not resume the old training
        "content": _content_fingerprint(dataset_dir),
    }


def _content_fingerprint(dataset_dir, chunk: int = 1 << 20) -> str:
    """A cheap fingerprint of a dataset's files: each file's size and a hash of its first,
    middle and last ``chunk`` bytes (whole files below 3 chunks)."""
    import hashlib

    digest = hashlib.blake2b(digest_size=8)
    for path in sorted(p for p in Path(dataset_dir).rglob("*") if p.is_file()):
        size = path.stat().st_size
        digest.update(f"{path.relative_to(dataset_dir)}:{size}".encode())
        with path.open("rb") as f:
            if size <= 3 * chunk:
                digest.update(f.read())
                continue
            for offset in (0, size // 2, size - chunk):
                f.seek(offset)
                digest.update(f.read(chunk))
    return digest.hexdigest()


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


def train(
    config: dict,
    dataset_dir: str | Path,
    out_dir: str | Path,
    threads: int = 1,
    head: TaskHead | str | None = None,
) -> ModelCard:
    """Train the configured model on a dataset for a task head, export it and write its card.

    One path for every task: the head (:mod:`skyscan.train.heads`) is the binary classifier,
    the multi-class classifier when the dataset's labels hold more than two classes, or with
    ``train.target: parameters`` the regression of the case's physical parameters with
    calibrated uncertainties (:func:`skyscan.train.heads.select_head`).  Re-running after an
    interruption resumes from ``checkpoints/last.ckpt``.

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
    head : TaskHead or str, optional
        The task head, or its name in :data:`skyscan.train.heads.HEADS`, instead of the one
        the config and the dataset imply (e.g. ``"multiclass"`` with a class column of its
        own: ``MulticlassHead(column="kind")``).

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
    tc = config["train"]
    manifest = _dataset_manifest(dataset_dir)
    case = get_case(manifest["case"])
    task = select_head(config, case, dataset_dir, head)
    if tc["ensemble"] > 1:
        if not task.ensembles:
            raise ConfigError(
                f"config key 'train.ensemble': a {task.name} network is trained alone "
                "(set it to 1)",
                key="train.ensemble",
            )
        return _train_ensemble(config, dataset_dir, Path(out_dir), threads, task)
    card, _ = _train_one(config, dataset_dir, Path(out_dir), threads, task)
    return card


def _train_one(config: dict, dataset_dir, out_dir: Path, threads: int, task: TaskHead):
    """Fit, export and finish one network; returns its card and the trained network (the
    best checkpoint's weights, on the CPU, in eval mode)."""
    import lightning as L

    from skyscan.data.samples import describe
    from skyscan.train.datamodule import SampleDataModule
    from skyscan.train.export import export_model

    tc = config["train"]
    manifest = _dataset_manifest(dataset_dir)
    case = get_case(manifest["case"])
    torch.set_num_threads(max(1, threads))
    L.seed_everything(int(config["seed"]), workers=True, verbose=False)
    workers = tc["num_workers"] if tc["num_workers"] is not None else max(0, threads - 1)
    task = task.fit(dataset_dir)
    dm = SampleDataModule(dataset_dir, tc["batch_size"], workers, dataset=task.dataset)
    spec = dm.spec
    samples = describe(case, spec)  # the dataset is of the case's kind of sample
    if task.averages:
        samples.tta(tc["tta"])  # refused before training when the samples have no TTA group
    model_kwargs = {**samples.model_kwargs(spec), **task.model_kwargs(spec)}
    module = _module(tc, task, case, spec, model_kwargs)
    trainer, best_cb, ckpt_dir = make_trainer(tc, out_dir, monitor=task.monitor, mode=task.mode)
    last = ckpt_dir / "last.ckpt"
    identity = _training_identity(config, dataset_dir)
    if task.name != ("regression" if tc.get("target") == "parameters" else "binary"):
        identity["head"] = task.to_dict()  # what the config alone does not say
    resume = str(last) if _resumable(ckpt_dir, identity) else None
    if resume:
        log.info("resuming from %s", resume)
    trainer.fit(module, dm, ckpt_path=resume)

    best_path = best_cb.best_model_path
    if not best_path or not Path(best_path).is_file():  # e.g. the folder was moved
        best_path = str(ckpt_dir / "best.ckpt") if (ckpt_dir / "best.ckpt").is_file() else str(last)
    # The best weights into the module trained here (not a module rebuilt from the
    # checkpoint's hyperparameters, so a checkpoint of an older skyscan still loads).
    state = torch.load(best_path, map_location="cpu", weights_only=False)["state_dict"]
    module.load_state_dict(state)
    net = module.net.cpu().eval()
    card = model_card(
        config,
        dataset_dir,
        manifest,
        spec,
        net,
        task,
        train_set=dm.datasets["train"],
        run={
            "epochs_run": int(trainer.current_epoch),
            "best_checkpoint": Path(best_path).name,
            "best_score": best_cb.best_model_score,
        },
    )
    card = export_model(
        net,
        _export_batch(dm.datasets["test"], tc),
        out_dir,
        card,
        output_name=task.output[0],
        output=task.output[1],
    )
    return _finish(card, task, out_dir, dataset_dir, tc, case), net


def _module(tc: dict, task, case, spec: dict, model_kwargs: dict):
    """The Lightning module for a training, its network's outputs checked against the
    head's before any time is spent on it."""
    from skyscan.train.module import SkyscanModule

    try:
        module = SkyscanModule(
            model=tc["model"],
            in_channels=model_kwargs.get("in_channels", 0),
            learning_rate=tc["learning_rate"],
            lr_step_epochs=tc["lr_step_epochs"],
            lr_factor=tc["lr_factor"],
            weight_decay=tc["weight_decay"],
            augment=tc["augment"],
            zoom=tuple(tc["zoom"]) if tc["zoom"] else None,
            case=case.name,
            spec=spec,
            model_kwargs=model_kwargs,
            head=task.to_dict(),
            input_views=list(tc.get("input_views") or []),
        )
    except TypeError as exc:  # the architecture does not take what the head sizes it with
        raise ConfigError(
            f"config key 'train.model': {tc['model']!r} cannot be built for the {task.name} "
            f"head with {model_kwargs} ({exc})",
            key="train.model",
        ) from None
    net = module.net
    net.eval()  # no batch statistics are updated, no random numbers drawn
    with torch.no_grad():
        task.check_output(net(torch.zeros((2, *spec["shape"]))), tc["model"])
    net.train()
    return module


def model_card(config, dataset_dir, manifest, spec, net, task, train_set, run) -> ModelCard:
    """The card of a trained network before its export: what it is, what it eats (the
    sample description's fields), what it outputs (the head's ``targets``) and how it was
    trained.

    Parameters
    ----------
    config : dict
    dataset_dir : str or Path
    manifest, spec : dict
        The dataset's manifest and preprocessing.
    net : torch.nn.Module
        The trained network (best checkpoint).
    task : TaskHead
    train_set : CutoutDataset
        The training split as the head serves it.
    run : dict
        ``epochs_run``, ``best_checkpoint`` (file name) and ``best_score`` (of
        ``task.monitor``; a tensor, a float or None).
    """
    from skyscan.data.samples import describe

    tc = config["train"]
    shape = tuple(spec["shape"])
    samples = describe(get_case(manifest["case"]), spec)
    best = run["best_score"]
    return ModelCard(
        name=f"skyscan-{tc['model']}",
        model=tc["model"],
        case=manifest["case"],
        input_shape=list(shape),
        **samples.card_fields(spec, manifest),
        preprocessing=spec,
        parameters=count_parameters(net),
        macs_per_cutout=count_macs(net, shape),
        targets=task.card_targets(train_set),
        training={
            "config_hash": config_hash({"seed": config["seed"], "train": tc}),
            "dataset": str(dataset_dir),
            "simulation": manifest.get("simulation"),
            **task.training_fields,
            "input_views": list(tc.get("input_views") or []),
            "epochs": tc["epochs"],
            "epochs_run": run["epochs_run"],
            "stopped_early": bool(run["epochs_run"] < tc["epochs"]),
            "best_checkpoint": run["best_checkpoint"],
            f"best_{task.monitor}": float(best) if best is not None else None,
        },
    )


def _export_batch(dataset, tc: dict) -> torch.Tensor:
    """The first ``train.export_batch`` samples of a split: the export's trace and check."""
    batch, _ = dataset.__getitems__(list(range(min(tc["export_batch"], len(dataset)))))
    return batch


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


def _finish(card, task, out_dir: Path, dataset_dir, tc: dict, case):
    """How the exported network is scored (test-time averaging, when the head's outputs
    may be averaged), then the head's thresholds, calibration and test metrics, and the card
    written beside the model."""
    from skyscan.data.samples import describe
    from skyscan.models.card import CARD_NAME

    if task.averages:
        group = describe(case).tta(tc["tta"])
        if group:
            card = card.replace(scoring={"tta": group})
            card.write(out_dir / CARD_NAME)
    return task.finish(card, out_dir, dataset_dir, tc, case)


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


def _train_ensemble(config: dict, dataset_dir, out_dir: Path, threads: int, task):
    """Train ``train.ensemble`` members (seeds ``seed``, ``seed + 1``, ...; each a complete
    model in ``members/k``, resumable on its own), fit the stacker on their validation logits
    and export the stacked network as the model."""
    import copy

    from skyscan.evaluate.scoring import score_split
    from skyscan.models.card import load_model
    from skyscan.train.export import export_model

    tc = config["train"]
    cards, nets = [], []
    for k in range(tc["ensemble"]):
        member = copy.deepcopy(config)
        member["seed"] = int(config["seed"]) + k
        member["train"].update(ensemble=1, tta=False)
        folder = out_dir / "members" / str(k)
        log.info("ensemble member %d of %d (seed %d)", k + 1, tc["ensemble"], member["seed"])
        card, net = _train_one(member, dataset_dir, folder, threads, task)
        cards.append(card)
        nets.append(net)
    logits = []
    for k in range(len(cards)):
        model, card = load_model(out_dir / "members" / str(k) / "model_card.json")
        z, meta = score_split(model, card, dataset_dir, "val")
        logits.append(z)
    labels = meta.column("label").to_numpy()
    weights, bias = fit_stacker(np.stack(logits, axis=1), labels)
    log.info("stacker fitted on the validation split: weights %s, bias %.3f", weights, bias)
    net = StackedEnsemble(nets, weights, bias).eval()
    batch = _export_batch(task.dataset(dataset_dir, "test"), tc)
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
    return _finish(card, task, out_dir, dataset_dir, tc, get_case(card.case))
