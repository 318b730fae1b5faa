"""The model card: one dataclass, written and read here and nowhere else.

A card sits beside an exported model (``model_card.json``) and holds everything a later stage
needs to use the model correctly: the science case, the bands in channel order, the stamp
shape and pixel scale, the preprocessing, the operating threshold and how it was chosen, and
a hash of the training config.  The search and the sky maps take the bands from the card, not
from the config, so a model is always fed what it was trained on.

Examples
--------
>>> card = ModelCard(name="skyscan-fast", model="fast", case="lenses", bands=["g"],
...                  input_shape=[1, 45, 45], pixel_scale=0.2,
...                  preprocessing={"method": "noise-scaled-clip", "bands": ["g"]})
>>> ModelCard.from_dict(card.to_dict()) == card
True
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skyscan.core.atomic import write_json_atomic
from skyscan.core.errors import InputFileError
from skyscan.data.samples import TTA_GROUPS, DihedralAverage  # noqa: F401  (re-exported)

__all__ = ["ModelCard", "read_card", "load_model", "CARD_NAME"]

CARD_NAME = "model_card.json"


@dataclass(frozen=True)
class ModelCard:
    """What an exported model is and how to feed it.

    Attributes
    ----------
    name : str
        Display name, e.g. ``skyscan-fast``.
    model : str
        Registry name of the architecture.
    case : str
        Science case (:func:`skyscan.core.case.get_case`).
    bands : list of str
        Input bands in channel order.
    input_shape : list of int
        Shape of one preprocessed sample (``[bands, H, W]`` for stamps, ``[T, F]`` for
        sequences: :mod:`skyscan.data.samples`).
    pixel_scale : float or None
        Arcsec per pixel of the training stamps.
    preprocessing : dict
        The transform of :mod:`skyscan.data.preprocess` (``scale`` is the background sigma per
        band in the training images' units).
    threshold : dict
        The operating threshold: ``logit``, the target ``fpr``, the ``split`` it was chosen
        on and the number of negatives there (``n_negatives``).
    calibration : dict
        Temperature scaling fitted on the validation split: ``temperature`` (probability =
        sigmoid(logit / temperature); for a multi-class classifier softmax(logits /
        temperature)), ``fitted_on`` and the expected calibration errors before and after
        (of the most probable class, for a multi-class classifier); empty for an
        uncalibrated model.
    training : dict
        ``config_hash`` (of seed + train section), dataset, epochs, best checkpoint, ...
    files : dict
        ``torchscript`` and ``onnx`` file names, relative to the card.
    parameters, macs_per_cutout : int
        Size and cost of the network.
    survey : str or None
        The survey set-up of the training stamps.
    targets : dict
        What the outputs are, when not a binary classifier's one logit (empty then); its
        ``kind`` names the task head (:mod:`skyscan.train.heads`).  A parameter network's
        (``kind: parameters``): ``names``, ``units`` and ``transforms`` of the physical
        parameters (``log``: learnt as the log), the ``mean`` and ``std`` that normalise the
        transformed values, the training ``range`` of each parameter, ``uncertainty_scale``
        (one factor per parameter fitted on the validation split so that 68% intervals hold
        68% there) with its record (``calibration``), and the ``vetting`` thresholds;
        :meth:`parameter_estimates` applies them.  A multi-class classifier's (``kind:
        classes``): the class ``names`` in output order, the metadata ``column`` and its
        ``values``, and the training split's count per class (``n_train``);
        :meth:`class_probabilities` applies the temperature.
    scoring : dict
        How the exported network is applied: ``{"tta": GROUP}`` averages its logits over a
        test-time averaging group of the samples (:data:`skyscan.data.samples.TTA_GROUPS`:
        ``dihedral8``, the 8 flips and quarter-turns of a stamp); empty for one pass.
        :func:`load_model` applies it, so thresholds, evaluation and search all score the
        same way.
    """

    name: str
    model: str
    case: str
    bands: list
    input_shape: list
    pixel_scale: float | None
    preprocessing: dict
    survey: str | None = None
    threshold: dict = field(default_factory=dict)
    calibration: dict = field(default_factory=dict)
    targets: dict = field(default_factory=dict)
    scoring: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    parameters: int = 0
    macs_per_cutout: int = 0
    output: str = "logit (score = sigmoid(logit))"
    export_check: dict = field(default_factory=dict)
    test_metrics: dict = field(default_factory=dict)
    skyscan_version: str = ""
    torch_version: str = ""

    def to_dict(self) -> dict:
        """The card as a JSON-able dict (field order as declared)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str = "model card") -> ModelCard:
        """Build a card from a dict; names the missing or unknown field on failure."""
        names = {f.name for f in dataclasses.fields(cls)}
        required = [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [k for k in required if k not in data]
        if missing:
            raise InputFileError(f"{source}: lacks {', '.join(missing)}", path=source)
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputFileError(
                f"{source}: unknown field(s) {', '.join(unknown)} (written by a newer skyscan?)",
                path=source,
            )
        return cls(**data)

    def probability(self, logits):
        """Calibrated probability of the positive class for ``logits`` (float64): sigmoid of
        ``logit / temperature``, or of the logit if the card has no calibration."""
        import numpy as np

        t = float(self.calibration.get("temperature", 1.0)) if self.calibration else 1.0
        return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64) / t))

    @property
    def training_prevalence(self) -> float | None:
        """Share of positives in the split the calibration was fitted on (the training mix,
        e.g. 0.5 for half lenses): ``calibration.positive_fraction``, or for cards written
        before it was recorded the test split's share (same mix); None if unknown."""
        if self.calibration and self.calibration.get("positive_fraction") is not None:
            return float(self.calibration["positive_fraction"])
        metrics = self.test_metrics or {}
        if metrics.get("n_test") and metrics.get("n_positive") is not None:
            return float(metrics["n_positive"]) / float(metrics["n_test"])
        return None

    def probability_at_prevalence(self, logits, prevalence: float):
        """Calibrated probability that an object is positive where positives are a share
        ``prevalence`` of the objects searched, not the training mix's share.

        Bayes' rule on the odds: the calibrated odds are multiplied by the ratio of the
        prior odds, ``(prevalence / (1 - prevalence)) / (m / (1 - m))`` with ``m`` the
        training mix (:attr:`training_prevalence`); computed on the logit for precision.

        Parameters
        ----------
        logits : array_like
            The network's logits.
        prevalence : float
            Share of positives among the objects searched, in (0, 1).

        Returns
        -------
        ndarray of float64

        Raises
        ------
        InputFileError
            The card records no training mix.
        """
        import numpy as np

        mix = self.training_prevalence
        if mix is None or not 0 < mix < 1:
            raise InputFileError(
                f"model card {self.name!r}: no share of positives in its calibration split, "
                "so no probability at another prevalence",
                path=self.name,
            )
        if not 0 < float(prevalence) < 1:
            raise ValueError(f"prevalence must be in (0, 1), got {prevalence!r}")
        t = float(self.calibration.get("temperature", 1.0)) if self.calibration else 1.0
        shift = np.log(prevalence / (1 - prevalence)) - np.log(mix / (1 - mix))
        z = np.asarray(logits, dtype=np.float64) / t + shift
        return 1.0 / (1.0 + np.exp(-z))

    @property
    def task(self) -> str:
        """The task head the network was trained with: ``binary``, ``multiclass`` or
        ``regression`` (:mod:`skyscan.train.heads`)."""
        kind = (self.targets or {}).get("kind")
        if kind == "classes":
            return "multiclass"
        if self.targets and "names" in self.targets:
            return "regression"
        return "binary"

    def class_probabilities(self, logits):
        """Calibrated class probabilities ``(N, K)`` (float64) of a multi-class classifier's
        ``(N, K)`` logits: softmax of ``logits / temperature``."""
        import numpy as np

        if self.task != "multiclass":
            raise InputFileError(
                f"model card {self.name!r}: not a multi-class classifier (no classes)",
                path=self.name,
            )
        z = np.asarray(logits, dtype=np.float64)
        k = len(self.targets["names"])
        if z.ndim != 2 or z.shape[1] != k:
            raise ValueError(f"logits of shape {z.shape}, expected (N, {k})")
        t = float(self.calibration.get("temperature", 1.0)) if self.calibration else 1.0
        z = z / t
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def parameter_estimates(self, outputs, calibrated: bool = True) -> dict:
        """Physical parameters and their 68% intervals from a parameter network's outputs.

        Parameters
        ----------
        outputs : array_like, shape (N, 2 * P)
            Means then log-variances of the normalised parameters (the exported network's
            output).
        calibrated : bool
            Widen the uncertainties by the card's ``uncertainty_scale`` (fitted on the
            validation split); False gives the network's own.

        Returns
        -------
        dict
            ``name -> {"value", "sigma", "low", "high"}`` arrays (float64, the parameter's
            units): the back-transformed mean (for a ``log`` parameter, the median), the 1-sigma
            uncertainty (for ``log``, value x sigma of the log), and the 68% interval (the
            back-transformed mean +- one sigma: asymmetric for ``log``).
        """
        import numpy as np

        t = self.targets
        if self.task != "regression":
            raise InputFileError(
                f"model card {self.name!r}: not a parameter network (no targets)",
                path=self.name,
            )
        names = list(t["names"])
        p = len(names)
        out = np.asarray(outputs, dtype=np.float64)
        if out.ndim != 2 or out.shape[1] != 2 * p:
            raise ValueError(f"outputs of shape {out.shape}, expected (N, {2 * p})")
        from skyscan.models.heads import LOG_VARIANCE_RANGE

        mean, std = np.asarray(t["mean"]), np.asarray(t["std"])
        scale = np.asarray(t.get("uncertainty_scale") or [1.0] * p) if calibrated else np.ones(p)
        mu = out[:, :p] * std + mean
        sigma = np.exp(0.5 * np.clip(out[:, p:], *LOG_VARIANCE_RANGE)) * std * scale
        result = {}
        for k, (name, transform) in enumerate(zip(names, t["transforms"], strict=True)):
            lo, hi = mu[:, k] - sigma[:, k], mu[:, k] + sigma[:, k]
            if transform == "log":
                value = np.exp(mu[:, k])
                result[name] = {
                    "value": value,
                    "sigma": value * sigma[:, k],
                    "low": np.exp(lo),
                    "high": np.exp(hi),
                }
            elif transform == "identity":
                result[name] = {"value": mu[:, k], "sigma": sigma[:, k], "low": lo, "high": hi}
            else:
                raise InputFileError(
                    f"model card {self.name!r}: unknown transform {transform!r} of {name}",
                    path=self.name,
                )
        return result

    def replace(self, **changes: Any) -> ModelCard:
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)

    def write(self, path: str | Path) -> Path:
        """Write the card as JSON, atomically."""
        return write_json_atomic(path, self.to_dict())


def read_card(path: str | Path) -> ModelCard:
    """Read a ``model_card.json``; fails naming the file if it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"model card {path} does not exist", path=path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputFileError(f"{path}: not a readable model card ({exc})", path=path) from None
    if not isinstance(data, dict):
        raise InputFileError(f"{path}: a model card must be a JSON object", path=path)
    return ModelCard.from_dict(data, source=str(path))


def load_model(card_path: str | Path):
    """Load the exported TorchScript model a card describes.

    Returns
    -------
    model : torch.jit.ScriptModule
        Preprocessed stamps ``(N, bands, H, W)`` in, ``(N,)`` logits out; in eval mode.
    card : ModelCard
    """
    import torch

    card_path = Path(card_path)
    card = read_card(card_path)
    if "torchscript" not in card.files:
        raise InputFileError(f"{card_path}: names no TorchScript file", path=card_path)
    path = card_path.parent / card.files["torchscript"]
    if not path.is_file():
        raise InputFileError(f"{path}: the model file the card names does not exist", path=path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError) as exc:
        raise InputFileError(
            f"{path}: cannot load the TorchScript model ({exc})", path=path
        ) from None
    model = model.eval()
    tta = card.scoring.get("tta") if card.scoring else None
    if tta is not None:
        if tta not in TTA_GROUPS:
            raise InputFileError(
                f"{card_path}: unknown scoring.tta {tta!r} (allowed: {', '.join(TTA_GROUPS)})",
                path=card_path,
            )
        model = TTA_GROUPS[tta](model)
    return model, card
