"""Training: augmentation, a tiny train -> export -> evaluate run, resumption, mismatches."""

import json

import numpy as np
import pytest
import torch

from skyscan.config import load_config
from skyscan.data.datasets import build_dataset
from skyscan.sim.simulate import SimulationPlan, run_simulation
from skyscan.train.datamodule import StampDataModule, dihedral_augment

pytest.importorskip("lightning")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    config = load_config(
        None,
        {
            "seed": 5,
            "simulate": {"n": 500, "shard_size": 250},
            "train": {"epochs": 2, "batch_size": 64},
        },
    )
    shards = run_simulation(SimulationPlan.from_config(config), root / "sims", show_progress=False)
    build_dataset(shards, root / "ds", config)
    return root / "ds", config


def test_augmentation_keeps_labels_and_content(dataset):
    dm = StampDataModule(dataset[0], batch_size=32)
    images, labels = next(iter(dm.train_dataloader()))
    out = dihedral_augment(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape
    for i in range(len(images)):
        variants = [torch.rot90(images[i], k, (-2, -1)) for k in range(4)]
        variants += [torch.rot90(torch.flip(images[i], (-1,)), k, (-2, -1)) for k in range(4)]
        assert any(torch.equal(out[i], v) for v in variants)
    # labels pass through the module's hook untouched
    from skyscan.train.module import Classifier

    module = Classifier(model="fast", in_channels=3)
    _, same_labels = module.on_after_batch_transfer((images, labels), 0)
    assert torch.equal(same_labels, labels)


def test_train_export_evaluate(dataset, tmp_path):
    from skyscan.evaluate.report import evaluate
    from skyscan.models.card import load_model
    from skyscan.train.run import train

    ds, config = dataset
    card = train(config, ds, tmp_path / "model")
    for name in (
        "model.ts",
        "model.onnx",
        "model_card.json",
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
        "logs/version_0/metrics.csv",
    ):
        assert (tmp_path / "model" / name).is_file(), name
    check = card["export_check"]
    assert check["torchscript_max_abs_diff"] <= 1e-4 and check["onnx_max_abs_diff"] <= 1e-4
    assert card["bands"] == ["g", "r", "i"] and card["input_shape"] == [3, 45, 45]
    assert card["preprocessing"]["method"] == "noise-scaled-clip"
    assert 0 <= card["test_metrics"]["auroc"] <= 1 and card["training"]["config_hash"]

    metrics = evaluate(tmp_path / "model" / "model_card.json", ds, tmp_path / "eval", config)
    for key in ("auroc", "tpr_at_fpr_1pct", "tpr0", "tpr10", "completeness_grid", "n_test"):
        assert key in metrics
    assert metrics["auroc"] == pytest.approx(card["test_metrics"]["auroc"], abs=1e-6)
    for name in (
        "metrics.json",
        "scores.parquet",
        "roc.png",
        "completeness.png",
        "scores_by_kind.png",
        "false_positives.png",
        "missed_lenses.png",
        "comparison.md",
    ):
        assert (tmp_path / "eval" / name).stat().st_size > 0, name
    assert "| TPR0 |" in (tmp_path / "eval" / "comparison.md").read_text()

    # the exported model scores like the checkpoint
    model, _ = load_model(tmp_path / "model" / "model_card.json")
    assert isinstance(model(torch.zeros(2, 3, 45, 45)), torch.Tensor)


def test_resume_from_last_checkpoint(dataset, tmp_path):
    import csv

    from skyscan.train.run import train

    ds, config = dataset
    train(config, ds, tmp_path)
    more = json.loads(json.dumps(config))
    more["train"]["epochs"] = 3
    train(more, ds, tmp_path)

    def rows(version):
        with open(tmp_path / "logs" / f"version_{version}" / "metrics.csv") as fh:
            return [(int(r["epoch"]), int(r["step"])) for r in csv.DictReader(fh)]

    first, second = rows(0), rows(1)
    assert {e for e, _ in first} == {0, 1}
    # the resumed run continues from the last step instead of retraining epochs 0 and 1
    assert min(step for _, step in second) >= max(step for _, step in first)
    assert max(e for e, _ in second) == 2


def test_model_that_does_not_match_the_data(dataset, tmp_path):
    from skyscan.evaluate.report import evaluate
    from skyscan.evaluate.scoring import score_split

    ds, config = dataset
    card = {
        "preprocessing": {
            "method": "noise-scaled-clip",
            "bands": ["g", "r"],
            "shape": [2, 45, 45],
            "scale": [1, 1],
            "clip": 250,
        }
    }
    with pytest.raises(ValueError, match=r"bands \['g', 'r', 'i'\] do not match the model's"):
        score_split(lambda x: x, card, ds, "test")
    card["preprocessing"].update(bands=["g", "r", "i"], shape=[3, 33, 33])
    with pytest.raises(ValueError, match="cutout shape"):
        score_split(lambda x: x, card, ds, "test")
    with pytest.raises(FileNotFoundError, match="model card"):
        evaluate(tmp_path / "missing.json", ds, tmp_path, config)
    assert np.isfinite(1.0)
