"""Task heads: what a network learns, and all the one trainer needs to know about it.

The trainer (:func:`skyscan.train.run.train`), its Lightning module
(:class:`skyscan.train.module.SkyscanModule`) and the model-card builder are the same for every
task; a :class:`TaskHead` says what differs:

- the **targets**: how a dataset split's metadata becomes each sample's target
  (:meth:`~TaskHead.dataset`) and what is fitted on the training split first
  (:meth:`~TaskHead.fit`: a regression's standardisation, the classes of a multi-class head);
- the **network's outputs** (:meth:`~TaskHead.model_kwargs` sizes it, :meth:`~TaskHead.check_output`
  checks it), the **loss**, the per-batch and per-epoch **validation metrics** and the one
  that picks the best checkpoint (:attr:`~TaskHead.monitor`, :attr:`~TaskHead.mode`);
- how a training batch is **augmented** (the sample description's augmentation, or one that
  moves the targets with the sample);
- how the **model card is finished** after the export (:meth:`~TaskHead.finish`): operating
  threshold and temperature (binary), class names, temperature and confusion matrix
  (multi-class), recalibrated uncertainties and vetting thresholds (regression).

Three heads ship (:data:`HEADS`):

========== ======================= =========== ==================== =====================
head       outputs                 loss        monitor              card
========== ======================= =========== ==================== =====================
binary     ``(N,)`` logits         BCE         ``val_auroc`` (max)  threshold, temperature
multiclass ``(N, K)`` logits       softmax CE  ``val_macro_f1``     classes, temperature,
                                               (max)                confusion matrix
regression ``(N, 2P)`` means and   Gaussian    ``val_nll`` (min)    targets, recalibrated
           log-variances           NLL                              uncertainties, vetting
========== ======================= =========== ==================== =====================

:func:`select_head` picks one: ``train.target: parameters`` gives the regression head; a
dataset whose training labels hold more than two classes the multi-class head; otherwise the
binary head.  A head's state (its options and what :meth:`~TaskHead.fit` learnt) is a small
JSON-able dict (:meth:`~TaskHead.to_dict`, :func:`head_from_dict`), kept in every checkpoint.

Examples
--------
>>> head = get_head("multiclass", classes=["rrlyr", "cep", "ecl"])
>>> head.monitor, head.mode, head.model_kwargs({"shape": [200, 4]})
('val_macro_f1', 'max', {'n_classes': 3})
>>> head_from_dict(head.to_dict()) == head
True
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from skyscan.core.case import case_parameters
from skyscan.core.errors import ConfigError, InputFileError
from skyscan.train.datamodule import CutoutDataset

__all__ = [
    "TaskHead",
    "BinaryHead",
    "MulticlassHead",
    "RegressionHead",
    "HEADS",
    "get_head",
    "head_from_dict",
    "select_head",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskHead:
    """Base class of the task heads (see the module's docstring).

    Subclasses are frozen dataclasses whose fields are the head's options and fitted state
    (JSON-able; lists are kept as tuples), and set the class attributes below.
    """

    #: registry name (:data:`HEADS`)
    name: ClassVar[str] = ""
    #: the validation metric that picks the best checkpoint and stops early, and its sense
    monitor: ClassVar[str] = ""
    mode: ClassVar[str] = "max"
    #: the loss is logged as ``train_<loss_name>`` and ``val_<loss_name>``
    loss_name: ClassVar[str] = "loss"
    #: the exported network's output: its ONNX name and the card's description
    output: ClassVar[tuple[str, str]] = ("logit", "logit (score = sigmoid(logit))")
    #: whether test-time averaging (``train.tta``) may average the outputs
    averages: ClassVar[bool] = True
    #: whether ``train.ensemble`` members may be stacked
    ensembles: ClassVar[bool] = False
    #: whether the validation outputs are gathered for :meth:`epoch_metrics`
    collects: ClassVar[bool] = False
    #: entries the card's ``training`` record gets after ``dataset``
    training_fields: ClassVar[dict] = {}

    @classmethod
    def for_case(cls, case, model: str, **options) -> TaskHead:
        """The head for a science case and a ``train.model``; refuses, naming the config
        key, what the case cannot learn."""
        return cls(**options)

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))

    def to_dict(self) -> dict:
        """``{"name": ..., **fields}``: what :func:`head_from_dict` rebuilds the head from."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {
            "name": self.name,
            **{k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()},
        }

    # -- targets -----------------------------------------------------------------------

    def fit(self, dataset_dir: str | Path) -> TaskHead:
        """The head with what it learns from the training split before training (the
        default: nothing)."""
        return self

    def dataset(self, dataset_dir: str | Path, split: str) -> CutoutDataset:
        """A split's samples and their targets (default: the 0/1 labels, float32)."""
        return CutoutDataset(dataset_dir, split)

    # -- the network -------------------------------------------------------------------

    def model_kwargs(self, spec: dict) -> dict:
        """Keyword arguments that size the network's outputs to the task (besides the
        sample description's, which size its input)."""
        return {}

    def output_shape(self) -> tuple[int, ...]:
        """The shape of the network's output for one sample."""
        return ()

    def check_output(self, output: torch.Tensor, model: str) -> None:
        """Refuse a network whose outputs do not fit the task (``output``: of two samples)."""
        want = self.output_shape()
        if tuple(output.shape[1:]) != want:
            shape = ", ".join(["N", *map(str, want)])
            raise ConfigError(
                f"config key 'train.model': {model!r} gives outputs of shape "
                f"{tuple(output.shape)} for 2 samples; the {self.name} head needs ({shape})",
                key="train.model",
            )

    def buffers(self) -> dict[str, list]:
        """Float tensors the Lightning module registers as buffers (kept in checkpoints)."""
        return {}

    # -- training ----------------------------------------------------------------------

    def prepare(self, module, x, y, training: bool):
        """A batch after it reaches the device: augmented when ``training`` (the sample
        description's augmentation, ``train.augment`` and ``train.zoom``)."""
        hp = module.hparams
        settings = {"augment": training and hp.augment, "zoom": hp.zoom}
        return module.samples.augment(x, hp.spec, settings), y

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def batch_metrics(self, output: torch.Tensor, target: torch.Tensor) -> dict:
        """Validation metrics averaged over batches (logged besides the loss)."""
        return {}

    def epoch_metrics(self, outputs: np.ndarray, targets: np.ndarray) -> dict:
        """Validation metrics of the whole split (when :attr:`collects`)."""
        return {}

    # -- the model card ----------------------------------------------------------------

    def card_targets(self, train_set: CutoutDataset) -> dict:
        """The card's ``targets``: what the outputs are (empty for a binary classifier)."""
        return {}

    def finish(self, card, out_dir: Path, dataset_dir, tc: dict, case):
        """Complete the exported model's card (thresholds, calibration, test metrics) and
        write it beside the model; returns the card."""
        raise NotImplementedError


# --------------------------------------------------------------------------------------
# Binary classification


@dataclass(frozen=True)
class BinaryHead(TaskHead):
    """One logit per sample for "a positive" (a lens, a real transient, ...): binary
    cross-entropy, the best checkpoint by validation AUROC, and on the card the operating
    threshold at ``train.threshold_fpr`` and a temperature, both chosen on the validation
    split, and the test AUROC."""

    name, monitor, ensembles, collects = "binary", "val_auroc", True, True

    def loss(self, output, target):
        return F.binary_cross_entropy_with_logits(output, target)

    def epoch_metrics(self, outputs, targets):
        from skyscan.evaluate.metrics import auroc

        both = 0 < targets.sum() < len(targets)
        return {"val_auroc": float(auroc(targets, outputs) if both else np.nan)}

    def finish(self, card, out_dir, dataset_dir, tc, case):
        from skyscan.evaluate.metrics import (
            auroc,
            expected_calibration_error,
            fit_temperature,
            tpr_at_fpr,
        )
        from skyscan.evaluate.scoring import score_split
        from skyscan.models.card import CARD_NAME, load_model

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
            # the mix the calibrated probability assumes (Bayes' rule moves it to another)
            "positive_fraction": float(np.mean(val_labels)),
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


# --------------------------------------------------------------------------------------
# Multi-class classification


class ClassDataset(CutoutDataset):
    """A split's samples and their class indices (int64): the position of each row's
    ``column`` value in ``classes``."""

    def __init__(self, dataset_dir, split: str, column: str, classes):
        self.column, self.classes = column, tuple(classes)
        super().__init__(dataset_dir, split)

    def select(self, meta):
        path = self.dataset_dir / self.split / "meta.parquet"
        if self.column not in meta.column_names:
            raise InputFileError(f"{path}: no class column {self.column!r}", path=path)
        values = meta.column(self.column).to_pylist()
        return np.arange(self.n), class_indices(values, self.classes, path)


def class_indices(values, classes, where) -> np.ndarray:
    """Indices into ``classes`` of ``values`` (int64); an unknown value fails naming
    ``where``."""
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({v for v in values if v not in index}, key=str)
    if unknown:
        raise InputFileError(
            f"{where}: class(es) {', '.join(map(str, unknown[:5]))} are not among the "
            f"training split's {list(classes)}",
            path=where,
        )
    return np.fromiter((index[v] for v in values), dtype=np.int64, count=len(values))


@dataclass(frozen=True)
class MulticlassHead(TaskHead):
    """One logit per class ``(N, K)``: softmax cross-entropy, the best checkpoint by
    validation macro-F1, and on the card the class names, a temperature fitted on the
    validation split and the test split's accuracy, macro-F1, per-class rates and confusion
    matrix (:func:`skyscan.evaluate.metrics.multiclass_metrics`).

    Parameters
    ----------
    column : str
        The metadata column that holds each sample's class: integer labels, or names (e.g.
        ``kind``).
    classes : sequence
        The column's values in output order; empty: the sorted distinct values of the
        training split (:meth:`fit`).

    The network must take ``n_classes`` (:meth:`model_kwargs`).
    """

    column: str = "label"
    classes: tuple = ()

    name, monitor, collects = "multiclass", "val_macro_f1", True
    training_fields = {"target": "classes", "loss": "cross_entropy"}
    output = (
        "logits",
        "logits: (N, K), one per class in targets.names order "
        "(probabilities = softmax(logits / temperature))",
    )

    @property
    def names(self) -> list[str]:
        """The class names (the values as text)."""
        return [str(c) for c in self.classes]

    def fit(self, dataset_dir):
        if self.classes:
            return self
        from skyscan.data.datasets import load_split

        _, meta, _ = load_split(dataset_dir, "train")
        path = Path(dataset_dir) / "train" / "meta.parquet"
        if self.column not in meta.column_names:
            raise InputFileError(f"{path}: no class column {self.column!r}", path=path)
        values = set(meta.column(self.column).to_pylist())
        if None in values or len(values) < 2:
            what = "a null" if None in values else "a single value"
            raise InputFileError(
                f"{path}: class column {self.column!r} holds {what}: not classes to learn",
                path=path,
            )
        values = sorted(values)
        return dataclasses.replace(self, classes=tuple(_plain(v) for v in values))

    def dataset(self, dataset_dir, split):
        return ClassDataset(dataset_dir, split, self.column, self.classes)

    def model_kwargs(self, spec):
        return {"n_classes": len(self.classes)}

    def output_shape(self):
        return (len(self.classes),)

    def loss(self, output, target):
        return F.cross_entropy(output, target)

    def epoch_metrics(self, outputs, targets):
        from skyscan.evaluate.metrics import macro_f1

        predicted = outputs.argmax(axis=1)
        return {
            "val_macro_f1": macro_f1(targets, predicted, len(self.classes)),
            "val_accuracy": float(np.mean(predicted == targets)),
        }

    def card_targets(self, train_set):
        counts = np.bincount(train_set.targets, minlength=len(self.classes))
        return {
            "kind": "classes",
            "column": self.column,
            "names": self.names,
            "values": list(self.classes),
            "n_train": {n: int(k) for n, k in zip(self.names, counts, strict=True)},
        }

    def _indices(self, meta, dataset_dir, split):
        where = Path(dataset_dir) / split / "meta.parquet"
        return class_indices(meta.column(self.column).to_pylist(), self.classes, where)

    def finish(self, card, out_dir, dataset_dir, tc, case):
        from skyscan.evaluate.metrics import (
            expected_calibration_error,
            fit_temperature_multiclass,
            multiclass_metrics,
        )
        from skyscan.evaluate.scoring import score_split
        from skyscan.models.card import CARD_NAME, load_model

        model, _ = load_model(out_dir / CARD_NAME)
        val_logits, val_meta = score_split(model, card, dataset_dir, "val")
        val_y = self._indices(val_meta, dataset_dir, "val")
        temperature = fit_temperature_multiclass(val_y, val_logits)

        def top_ece(t):  # of the most probable class's probability
            p = card.replace(calibration={"temperature": t}).class_probabilities(val_logits)
            return expected_calibration_error(p.argmax(axis=1) == val_y, p.max(axis=1))

        calibration = {
            "method": "temperature",
            "temperature": temperature,
            "fitted_on": "val",
            "ece_val_before": top_ece(1.0),
            "ece_val_after": top_ece(temperature),
        }
        logits, meta = score_split(model, card, dataset_dir, "test")
        metrics = multiclass_metrics(self._indices(meta, dataset_dir, "test"), logits, self.names)
        card = card.replace(calibration=calibration, test_metrics=metrics)
        card.write(out_dir / CARD_NAME)
        log.info(
            "test accuracy %.3f, macro-F1 %.3f (%d samples, %d classes)",
            metrics["accuracy"],
            metrics["macro_f1"],
            metrics["n"],
            len(self.classes),
        )
        return card


def _plain(value):
    """A JSON-able Python scalar."""
    return value.item() if isinstance(value, np.generic) else value


# --------------------------------------------------------------------------------------
# Regression with calibrated uncertainties


@dataclass(frozen=True)
class RegressionHead(TaskHead):
    """A mean and a log-variance per physical parameter of the case's positives, ``(N, 2P)``
    (Perreault Levasseur et al. 2017): the Gaussian NLL of the transformed, standardised
    targets, the best checkpoint by validation NLL, and on the card the targets'
    normalisation, uncertainty scales fitted on the validation split (68% intervals hold 68%
    there), vetting thresholds (:mod:`skyscan.evaluate.vetting`) and the test figures on the
    case's selection.

    Training batches of stamps are flipped and turned with their targets
    (:func:`skyscan.train.params.dihedral_augment_parameters`, by each parameter's
    ``symmetry``); parameters that are all scalars take the sample description's own
    augmentation.  Test-time averaging does not apply (positions and ellipticities turn with
    the sample): ``train.tta`` is ignored.

    Parameters
    ----------
    names, transforms, symmetry, units, descriptions : tuple of str
        The parameters (metadata columns), ``log``/``identity``, their
        :attr:`skyscan.core.case.PhysicalParameter.symmetry`, units and descriptions.
    mean, std : tuple of float
        The standardisation of the transformed targets (the training positives'; set by
        :meth:`fit`).
    """

    names: tuple = ()
    transforms: tuple = ()
    symmetry: tuple = ()
    units: tuple = ()
    descriptions: tuple = ()
    mean: tuple = ()
    std: tuple = ()

    name, monitor, mode, loss_name, averages = "regression", "val_nll", "min", "nll", False
    training_fields = {"target": "parameters", "loss": "gaussian_nll"}
    output = (
        "parameters",
        "parameters: (N, 2P) means then log-variances of the standardised targets "
        "(ModelCard.parameter_estimates gives values and 68% intervals)",
    )

    @classmethod
    def for_case(cls, case, model, **options):
        if not case_parameters(case):
            raise ConfigError(
                f"config key 'train.target': case {case.name!r} has no physical parameters",
                key="train.target",
            )
        if model not in case.parameter_models:
            raise ConfigError(
                f"config key 'train.model': {model!r} is not a parameter model for case "
                f"{case.name!r} (allowed: {', '.join(case.parameter_models)})",
                key="train.model",
            )
        p = case.parameters
        return cls(
            names=[x.name for x in p],
            transforms=[x.transform for x in p],
            symmetry=[x.symmetry for x in p],
            units=[x.unit for x in p],
            descriptions=[x.description for x in p],
            **options,
        )

    @property
    def moves(self) -> bool:
        """True when some target moves with the sample (a position, a spin-2 component)."""
        return any(s != "scalar" for s in self.symmetry)

    def fit(self, dataset_dir):
        train_set = self.dataset(dataset_dir, "train")
        mean = train_set.targets.astype(np.float64).mean(axis=0)
        std = train_set.targets.astype(np.float64).std(axis=0)
        if not (std > 0).all():
            flat = [n for n, s in zip(self.names, std, strict=True) if not s > 0]
            raise InputFileError(
                f"{dataset_dir}: parameter(s) {', '.join(flat)} do not vary over the training "
                "positives: nothing to learn",
                path=dataset_dir,
            )
        return dataclasses.replace(self, mean=mean.tolist(), std=std.tolist())

    def dataset(self, dataset_dir, split):
        from skyscan.train.params import ParameterDataset

        return ParameterDataset(dataset_dir, split, self.names, self.transforms)

    def model_kwargs(self, spec):
        kwargs = {"n_parameters": len(self.names)}
        if len(spec["shape"]) == 3:  # image stamps: the dense head is sized for the side
            kwargs["stamp_size"] = int(spec["shape"][-1])
        return kwargs

    def output_shape(self):
        return (2 * len(self.names),)

    def buffers(self):
        return {"mean": list(self.mean), "std": list(self.std)}

    def prepare(self, module, x, y, training):
        if training and module.hparams.augment:
            if self.moves:
                from skyscan.train.params import dihedral_augment_parameters

                x, y = dihedral_augment_parameters(x, y, self.symmetry)
            else:
                settings = {"augment": True, "zoom": module.hparams.zoom}
                x = module.samples.augment(x, module.hparams.spec, settings)
        return x, (y - module.mean) / module.std

    def loss(self, output, target):
        from skyscan.models.heads import gaussian_nll

        return gaussian_nll(output, target)

    def batch_metrics(self, output, target):
        # RMS error of the means, in standard deviations of the targets.
        n = target.shape[1]
        return {"val_rmse_norm": ((output[:, :n] - target) ** 2).mean().sqrt()}

    def card_targets(self, train_set):
        truth = train_set.truth
        names = list(self.names)
        return {
            "kind": "parameters",
            "names": names,
            "units": list(self.units),
            "transforms": list(self.transforms),
            "descriptions": list(self.descriptions),
            "mean": list(self.mean),
            "std": list(self.std),
            "normalisation": "(transform(value) - mean) / std, on the training positives",
            "range": {n: [float(truth[n].min()), float(truth[n].max())] for n in names},
            "n_train": len(train_set),
        }

    def finish(self, card, out_dir, dataset_dir, tc, case):
        """Uncertainty scales and vetting thresholds on the validation positives, the test
        figures on the case's selection, and the card written beside the model."""
        import pyarrow as pa

        from skyscan.evaluate.params import (
            fit_uncertainty_scale,
            interval_coverage,
            parameter_metrics,
        )
        from skyscan.evaluate.vetting import choose_thresholds
        from skyscan.models.card import CARD_NAME, load_model
        from skyscan.models.heads import LOG_VARIANCE_RANGE
        from skyscan.train.params import predict_positives, transform_targets

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
        metrics = parameter_metrics(
            card.parameter_estimates(outputs), columns, transforms, selection
        )
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


# --------------------------------------------------------------------------------------
# Registry

#: The task heads by name.
HEADS: dict[str, type[TaskHead]] = {
    "binary": BinaryHead,
    "multiclass": MulticlassHead,
    "regression": RegressionHead,
}


def get_head(name: str, case=None, model: str | None = None, **options: Any) -> TaskHead:
    """A head by name, for ``case`` and ``model`` when given (the regression head needs the
    case's parameters); ``options`` are the head's fields (e.g. ``column``, ``classes``)."""
    if name not in HEADS:
        raise ConfigError(f"unknown task head {name!r} (allowed: {', '.join(HEADS)})")
    cls = HEADS[name]
    if case is not None:
        return cls.for_case(case, model, **options)
    return cls(**options)


def head_from_dict(data: dict | None) -> TaskHead:
    """Rebuild a head from :meth:`TaskHead.to_dict` (None: the binary head)."""
    if not data:
        return BinaryHead()
    data = dict(data)
    name = data.pop("name")
    if name not in HEADS:
        raise ConfigError(f"unknown task head {name!r} (allowed: {', '.join(HEADS)})")
    return HEADS[name](**data)


def select_head(config: dict, case, dataset_dir, head: TaskHead | str | None = None) -> TaskHead:
    """The head a training uses: ``head`` when given (an instance, or a name of
    :data:`HEADS`); else the regression head for ``train.target: parameters``, the
    multi-class head when the training split's ``label`` holds more than two classes (or
    any beyond 0 and 1), and the binary head otherwise."""
    model = config["train"]["model"]
    if isinstance(head, TaskHead):
        return head
    if head is not None:
        return get_head(head, case, model)
    if config["train"].get("target") == "parameters":
        return RegressionHead.for_case(case, model)
    from skyscan.data.datasets import load_split

    _, meta, _ = load_split(dataset_dir, "train")
    values = set(meta.column("label").to_pylist())
    if values - {0, 1}:
        return MulticlassHead.for_case(case, model)
    return BinaryHead()
