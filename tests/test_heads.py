"""Task heads of the one trainer: multi-class metrics against scikit-learn, the head registry
and its choice, and a multi-class network trained end to end on a tiny synthetic dataset."""

from __future__ import annotations

import json

import lightning  # noqa: F401  (a hard dependency: a broken install fails, not skips)
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from torch import nn

from skyscan.core.case import get_case
from skyscan.core.errors import ConfigError, InputFileError
from skyscan.evaluate.metrics import (
    confusion_matrix,
    fit_temperature_multiclass,
    macro_f1,
    multiclass_metrics,
)
from skyscan.models import register
from skyscan.train.heads import (
    HEADS,
    BinaryHead,
    MulticlassHead,
    RegressionHead,
    get_head,
    head_from_dict,
    select_head,
)

# --------------------------------------------------------------------------------------
# Multi-class metrics


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_confusion_matrix_and_macro_f1_match_sklearn(seed):
    from sklearn.metrics import confusion_matrix as sk_confusion
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, 300)
    predicted = np.where(rng.random(300) < 0.6, labels, rng.integers(0, 4, 300))
    np.testing.assert_array_equal(
        confusion_matrix(labels, predicted, 4), sk_confusion(labels, predicted, labels=range(4))
    )
    assert macro_f1(labels, predicted, 4) == pytest.approx(
        f1_score(labels, predicted, average="macro", zero_division=0)
    )
    # a class never predicted scores 0; one absent from labels and predictions is left out
    labels, predicted = np.array([0, 0, 1, 1, 2]), np.array([0, 0, 1, 1, 1])
    assert macro_f1(labels, predicted, 5) == pytest.approx(
        f1_score(labels, predicted, labels=[0, 1, 2], average="macro", zero_division=0)
    )
    with pytest.raises(ValueError, match="class 3, but there are 3 classes"):
        confusion_matrix([0, 3], [0, 1], 3)


def test_multiclass_metrics_give_every_rate_with_its_sample_size():
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    logits = np.full((10, 3), -1.0)
    predicted = np.array([0, 0, 0, 1, 1, 1, 2, 2, 0, 2])
    logits[np.arange(10), predicted] = 2.0
    m = multiclass_metrics(labels, logits, ["a", "b", "c"])
    assert m["n"] == 10 and m["accuracy"] == pytest.approx(0.8)
    assert m["accuracy_ci95"][0] < 0.8 < m["accuracy_ci95"][1]
    assert m["confusion_matrix"]["counts"] == [[3, 1, 0], [0, 2, 0], [1, 0, 3]]
    assert m["confusion_matrix"]["classes"] == ["a", "b", "c"]
    a = m["per_class"]["a"]
    assert (a["n"], a["n_predicted"]) == (4, 4)
    assert a["recall"] == pytest.approx(0.75) and a["precision"] == pytest.approx(0.75)
    assert a["recall_ci95"][0] < 0.75 < a["recall_ci95"][1]
    b = m["per_class"]["b"]
    assert b["precision"] == pytest.approx(2 / 3) and b["recall"] == 1.0
    f1 = [0.75, 0.8, 6 / 7]  # 2PR/(P+R) of a, b, c
    assert m["macro_f1"] == pytest.approx(np.mean(f1))
    assert sum(c["n"] for c in m["per_class"].values()) == m["n"]
    with pytest.raises(ValueError, match="2 class names for 3"):
        multiclass_metrics(labels, logits, ["a", "b"])


def test_fit_temperature_multiclass_recovers_the_temperature():
    """Labels drawn from softmax(z / 2): the fitted temperature is 2."""
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, (20000, 3))
    p = np.exp(z / 2) / np.exp(z / 2).sum(axis=1, keepdims=True)
    labels = (rng.random(20000)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    assert fit_temperature_multiclass(labels, z) == pytest.approx(2.0, rel=0.05)


# --------------------------------------------------------------------------------------
# The registry and the choice of a head


def test_heads_say_what_they_monitor_and_round_trip():
    assert set(HEADS) == {"binary", "multiclass", "regression"}
    assert (BinaryHead.monitor, BinaryHead.mode) == ("val_auroc", "max")
    assert (MulticlassHead.monitor, MulticlassHead.mode) == ("val_macro_f1", "max")
    assert (RegressionHead.monitor, RegressionHead.mode) == ("val_nll", "min")
    head = get_head("regression", get_case("lenses"), "lensparams")
    assert head == RegressionHead.for_case(get_case("lenses"), "lensparams")
    assert head.names[0] == "theta_E" and head.transforms[0] == "log" and head.moves
    assert head.model_kwargs({"shape": [3, 33, 33]}) == {"n_parameters": 7, "stamp_size": 33}
    for h in (BinaryHead(), MulticlassHead(classes=["x", "y", "z"]), head):
        assert head_from_dict(json.loads(json.dumps(h.to_dict()))) == h
    assert head_from_dict(None) == BinaryHead()
    with pytest.raises(ConfigError, match="unknown task head 'ordinal'"):
        get_head("ordinal")


def test_regression_head_refuses_what_the_case_cannot_learn():
    with pytest.raises(ConfigError, match="'fast' is not a parameter model"):
        RegressionHead.for_case(get_case("lenses"), "fast")
    with pytest.raises(ConfigError, match="has no physical parameters"):
        RegressionHead.for_case(get_case("transients"), "vgg6")


# --------------------------------------------------------------------------------------
# A multi-class network trained end to end

SIDE = 9
CLASSES = 3


class TinyClasses(nn.Module):
    """A small CNN with one logit per class (the multi-class head's ``n_classes``)."""

    def __init__(self, in_channels: int = 1, n_classes: int = 2):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 8, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(3),
            nn.Flatten(),
            nn.Linear(72, n_classes),
        )

    def forward(self, x):
        return self.body(x)


@pytest.fixture(scope="module", autouse=True)
def _tiny_classes_registered():
    """The test network under the name ``tinyclasses`` while this module's tests run."""
    from skyscan.models import MODELS, get_model

    get_model("fast", in_channels=1)  # the built-in models first
    register("tinyclasses")(TinyClasses)
    yield
    MODELS.pop("tinyclasses", None)


def _write_split(root, split, n_per_class, rng):
    """Class 0: a bright centre; class 1: a faint ring; class 2: noise alone (hard enough
    that a few epochs leave some confusion)."""
    n = n_per_class * CLASSES
    label = np.repeat(np.arange(CLASSES), n_per_class)
    images = rng.normal(0, 1.0, (n, 1, SIDE, SIDE)).astype(np.float32)
    c = SIDE // 2
    images[label == 0, 0, c - 1 : c + 2, c - 1 : c + 2] += 1.0
    ring = np.zeros((SIDE, SIDE), bool)
    ring[1, 1:-1] = ring[-2, 1:-1] = ring[1:-1, 1] = ring[1:-1, -2] = True
    images[np.flatnonzero(label == 1)[:, None], 0, ring.nonzero()[0], ring.nonzero()[1]] += 0.6
    (root / split).mkdir(parents=True)
    np.save(root / split / "images.npy", images)
    kinds = np.array(["bright", "ring", "blank"])[label]
    table = pa.table({"index": np.arange(n), "label": label, "kind": kinds})
    pq.write_table(table, root / split / "meta.parquet")
    return {"n": int(n), "kinds": {k: int((kinds == k).sum()) for k in set(kinds)}}


@pytest.fixture(scope="module")
def three_classes(tmp_path_factory):
    """A dataset folder written by hand: 1-band 9x9 stamps of three classes (``label`` 0, 1,
    2 and ``kind`` bright, ring, blank), the lens case's stamps."""
    root = tmp_path_factory.mktemp("three") / "dataset"
    rng = np.random.default_rng(0)
    splits = {
        s: _write_split(root, s, n, rng) for s, n in (("train", 64), ("val", 24), ("test", 24))
    }
    spec = {
        "method": "noise-scaled-clip",
        "bands": ["g"],
        "scale": [1.0],
        "clip_sigma": 100.0,
        "shape": [1, SIDE, SIDE],
        "input_units": "e-/s per pixel",
    }
    (root / "preprocessing.json").write_text(json.dumps(spec))
    manifest = {"case": "lenses", "splits": splits, "preprocessing": spec, "survey": "lsst"}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def _config(**train):
    from skyscan.config import load_config

    config = load_config(None, {"seed": 4})
    config["train"].update(
        {
            "model": "tinyclasses",  # a test network, not one of the lens case's classifiers
            "epochs": 4,
            "batch_size": 16,
            "learning_rate": 0.01,
            "lr_step_epochs": 100,
            "num_workers": 0,
            "export_batch": 8,
            "tta": True,
            "ensemble": 1,
            "patience": None,
            **train,
        }
    )
    return config


@pytest.fixture(scope="module")
def multiclass_model(three_classes, tmp_path_factory):
    from skyscan.train.run import train

    out = tmp_path_factory.mktemp("multiclass") / "model"
    card = train(_config(), three_classes, out, threads=1)
    return out, card


def test_the_head_follows_the_config_and_the_dataset(three_classes, tmp_path):
    lenses = get_case("lenses")
    config = _config()
    head = select_head(config, lenses, three_classes)
    assert isinstance(head, MulticlassHead) and head.column == "label"
    assert head.fit(three_classes).classes == (0, 1, 2)
    by_kind = MulticlassHead(column="kind").fit(three_classes)
    assert by_kind.classes == ("blank", "bright", "ring")  # sorted names
    assert by_kind.dataset(three_classes, "val").targets.tolist()[:2] == [1, 1]
    params = {**config, "train": {**config["train"], "target": "parameters", "model": "lensparams"}}
    assert isinstance(select_head(params, lenses, three_classes), RegressionHead)
    assert select_head(config, lenses, three_classes, "binary") == BinaryHead()
    with pytest.raises(InputFileError, match="class\\(es\\) 2 are not among"):
        MulticlassHead(classes=[0, 1]).dataset(three_classes, "test")


def test_multiclass_training_exports_a_card_with_classes(multiclass_model, three_classes):
    from skyscan.models.card import load_model, read_card

    out, card = multiclass_model
    assert read_card(out / "model_card.json") == card
    assert card.task == "multiclass" and card.scoring == {"tta": "dihedral8"}
    t = card.targets
    assert t["kind"] == "classes" and t["names"] == ["0", "1", "2"] and t["column"] == "label"
    assert t["n_train"] == {"0": 64, "1": 64, "2": 64}
    assert card.training["target"] == "classes" and card.training["loss"] == "cross_entropy"
    assert card.training["best_val_macro_f1"] > 0.6  # chance: 1/3
    assert card.threshold == {} and card.output.startswith("logits: (N, K)")
    cal = card.calibration
    assert cal["fitted_on"] == "val" and 0.05 < cal["temperature"] < 50
    assert 0 <= cal["ece_val_after"] <= 1 and 0 <= cal["ece_val_before"] <= 1
    m = card.test_metrics
    assert m["n"] == 72 and m["macro_f1"] > 0.6 and m["accuracy"] > 0.6
    counts = np.array(m["confusion_matrix"]["counts"])
    assert counts.shape == (3, 3) and counts.sum() == 72 and (counts.sum(axis=1) == 24).all()
    assert {c["n"] for c in m["per_class"].values()} == {24}
    # the exported networks give (N, 3) logits, TorchScript and ONNX alike
    model, _ = load_model(out / "model_card.json")
    images = torch.from_numpy(np.load(three_classes / "test" / "images.npy")[:5])
    with torch.inference_mode():
        logits = model(images).numpy()
    assert logits.shape == (5, 3)
    import onnxruntime as ort

    session = ort.InferenceSession(str(out / "model.onnx"))
    raw = session.run(None, {"images": images.numpy()})[0]
    assert raw.shape == (5, 3)
    p = card.class_probabilities(logits)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    with pytest.raises(InputFileError, match="not a parameter network"):
        card.parameter_estimates(logits)
    # the validation macro-F1 is logged every epoch and picked the best checkpoint
    header = (out / "logs" / "version_0" / "metrics.csv").read_text().splitlines()[0]
    assert {"val_macro_f1", "val_accuracy", "val_loss", "train_loss"} <= set(header.split(","))


def test_a_network_without_class_outputs_is_refused(three_classes, tmp_path):
    from skyscan.train.run import train

    with pytest.raises(ConfigError, match="'fast' cannot be built for the multiclass head"):
        train(_config(model="fast"), three_classes, tmp_path / "m")
    with pytest.raises(
        ConfigError, match="gives outputs of shape \\(2, 2\\).*binary head needs \\(N\\)"
    ):
        train(_config(), three_classes, tmp_path / "m", head="binary")
    with pytest.raises(ConfigError, match="a multiclass network is trained alone"):
        train(_config(ensemble=2), three_classes, tmp_path / "m")


def test_a_head_given_by_the_caller_trains_and_is_part_of_the_identity(three_classes, tmp_path):
    """Classes named by a text column (``kind``), chosen by the caller: the card names them,
    and the checkpoint folder records the head (a different head trains afresh)."""
    from skyscan.train.run import train

    card = train(_config(epochs=1), three_classes, tmp_path / "m", head=MulticlassHead("kind"))
    assert card.targets["names"] == ["blank", "bright", "ring"]
    assert card.targets["column"] == "kind"
    assert set(card.test_metrics["per_class"]) == {"blank", "bright", "ring"}
    identity = json.loads((tmp_path / "m" / "checkpoints" / "identity.json").read_text())
    assert identity["head"] == {
        "name": "multiclass",
        "column": "kind",
        "classes": ["blank", "bright", "ring"],
    }


def test_regression_head_standardises_targets_and_moves_them_with_the_stamp():
    from skyscan.train.module import SkyscanModule

    head = RegressionHead(
        names=["size", "x", "y"],
        transforms=["identity"] * 3,
        symmetry=["scalar", "x", "y"],
        units=["arcsec"] * 3,
        descriptions=["", "", ""],
        mean=[1.0, 0.0, 0.0],
        std=[2.0, 1.0, 1.0],
    )
    module = SkyscanModule(
        model="lensparams",
        model_kwargs={"in_channels": 1, **head.model_kwargs({"shape": [1, 9, 9]})},
        head=head.to_dict(),
    )
    assert module.head == head and module.mean.tolist() == [1.0, 0.0, 0.0]
    x, y = torch.randn(4, 1, 9, 9), torch.tensor([[3.0, 0.5, -0.5]] * 4)
    same, z = module.on_after_batch_transfer((x, y), 0)  # outside training: no augmentation
    assert torch.equal(same, x)
    torch.testing.assert_close(z, torch.tensor([[1.0, 0.5, -0.5]] * 4))
    torch.manual_seed(0)
    turned, moved = head.prepare(module, x, y, training=True)
    assert torch.equal(moved[:, 0], z[:, 0])  # a scalar stays
    radius = moved[:, 1] ** 2 + moved[:, 2] ** 2
    torch.testing.assert_close(radius, torch.full((4,), 0.5))  # a position turns about 0
    assert module(x).shape == (4, 6)
    loss = head.loss(module(x), z)
    assert loss.ndim == 0 and torch.isfinite(loss)
