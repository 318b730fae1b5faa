"""The science-case layer: the registry, the lens case, and a second case that runs through
the shared dataset and evaluation stages without any edit of them."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import skyscan
from skyscan.core import case as case_module
from skyscan.core.case import Case, CaseRegistry, Headline, Strata, get_case
from skyscan.core.errors import ConfigError


def test_registry_finds_the_lens_case_and_lists_names_on_a_miss():
    lenses = get_case("lenses")
    assert lenses.name == "lenses" and lenses.positive_kinds == ("lens",)
    assert "lenses" in case_module.default_registry.names()
    with pytest.raises(ConfigError, match=r"unknown case 'nope' \(allowed: .*lenses"):
        get_case("nope")


def test_registry_refuses_duplicates_unless_forced():
    registry = CaseRegistry(package=None)

    class One(Case):
        name = "one"

    registry.register(One())
    with pytest.raises(ConfigError, match="'one' is already registered"):
        registry.register(One())
    replacement = One()
    registry.register(replacement, force=True)
    assert registry.get("one") is replacement
    assert registry.names() == ["one"]


def test_lens_labels_strata_and_headline():
    lenses = get_case("lenses")
    assert lenses.label(["lens", "ring", "no_source"]).tolist() == [1, 0, 0]
    with pytest.raises(ConfigError, match="unknown kind"):
        lenses.label(["lens", "deflector"])
    assert lenses.label(["lens", "deflector"], strict=False).tolist() == [1, 0]
    meta = {"theta_E": np.array([1.0, 2.0, 2.5]), "snr_g": np.array([30.0, 10.0, 50.0])}
    spec = {"theta_E_bins": [0.5, 1.4, 3.0], "snr_bins": [0, 20, 1e6], "snr_band": "g"}
    strata = lenses.strata(meta, spec)
    head = lenses.headline(strata, np.array([True, True, False]))
    assert head.n == 1 and head.completeness == 0.0  # only (2.5", S/N 50)
    assert head.extra["n_lenses"] == 1
    with pytest.raises(ConfigError, match="'lenses.snr_band': 'z' is not a band"):
        lenses.strata(meta, {**spec, "snr_band": "z"})
    assert lenses.evaluation_plots[-2:] == ("false_positives", "missed_lenses")


class BlobCase(Case):
    """A toy second case: a Gaussian blob (positive) or blank noise, stratified by flux and
    size.  It exists only to show that a case is an addition to the shared stages."""

    name = "blobs"
    title = "Gaussian blobs in noise (a test case)"
    positive, positives, negatives = "blob", "blobs", "blanks"
    positive_kinds = ("blob",)
    negative_kinds = ("blank",)

    def strata(self, meta, spec):
        return Strata(
            row_values=np.asarray(meta["flux"], float),
            col_values=np.asarray(meta["sigma"], float),
            row_bins=[0, 50, 1e9],
            col_bins=[0, 2, 100],
            row_label="flux",
            col_label="sigma (px)",
            record={"strata": "flux x sigma"},
        )

    def headline(self, strata, passed):
        bright = strata.row_values > 50
        return Headline(
            "flux > 50",
            int(bright.sum()),
            float(passed[bright].mean()) if bright.any() else None,
        )

    def comparison_table(self, metrics):
        return f"| AUROC | {metrics['auroc']:.3f} |\n"


def _blob_shard(path, n=400, seed=0):
    from skyscan.data.shards import images_to_array, write_table_atomic

    rng = np.random.default_rng(seed)
    kind = np.where(rng.random(n) < 0.5, "blob", "blank")
    flux = rng.uniform(5, 150, n)
    sigma = rng.uniform(1, 4, n)
    y, x = np.mgrid[:21, :21] - 10.0
    images = rng.normal(0, 1, (n, 1, 21, 21)).astype(np.float32)
    for i in np.flatnonzero(kind == "blob"):
        g = np.exp(-(x**2 + y**2) / (2 * sigma[i] ** 2))
        images[i, 0] += (flux[i] * g / g.sum()).astype(np.float32)
    table = pa.table(
        {
            "index": np.arange(n, dtype=np.int64),
            "kind": kind,
            "label": (kind == "blob").astype(np.int8),
            "flux": flux,
            "sigma": sigma,
            "image": images_to_array(images),
        }
    )
    meta = {
        "bands": ["x"],
        "shape": [1, 21, 21],
        "pixel_scale": 1.0,
        "survey": "toy",
        "skyscan_version": skyscan.__version__,
        "background_sigma": [1.0],
    }
    write_table_atomic(table, path, meta)
    return path


@pytest.fixture()
def blobs_registered():
    case_module.default_registry.register(BlobCase(), force=True)
    yield get_case("blobs")
    case_module.default_registry._loaders.pop("blobs")
    case_module.default_registry._loaded.pop("blobs", None)


def test_a_second_case_runs_through_the_shared_stages(blobs_registered, tmp_path):
    from skyscan.config import load_config
    from skyscan.data.datasets import build_dataset
    from skyscan.evaluate.report import evaluate
    from skyscan.models import get_model
    from skyscan.models.card import ModelCard
    from skyscan.train.export import export_model

    config = load_config(None, {"case": "blobs", "dataset": {"clip_sigma": 50}})
    manifest = build_dataset([_blob_shard(tmp_path / "s.parquet")], tmp_path / "ds", config)
    assert manifest["case"] == "blobs" and manifest["splits"]["test"]["positives"] > 0
    torch.manual_seed(0)
    net = get_model("fast", in_channels=1)
    card = ModelCard(
        name="toy",
        model="fast",
        case="blobs",
        bands=["x"],
        input_shape=[1, 21, 21],
        pixel_scale=1.0,
        preprocessing=manifest["preprocessing"],
    )
    export_model(net, torch.randn(4, 1, 21, 21), tmp_path / "model", card)
    metrics = evaluate(
        tmp_path / "model" / "model_card.json", tmp_path / "ds", tmp_path / "ev", config
    )
    assert metrics["case"] == "blobs"
    assert metrics["completeness_grid"]["strata"] == "flux x sigma"
    assert sum(map(sum, metrics["completeness_grid"]["counts"])) == metrics["n_positive"]
    assert metrics["headline"]["selection"] == "flux > 50"
    assert set(metrics["false_positive_rate_by_kind"]) == {"blank"}
    for stem in blobs_registered.evaluation_plots:
        assert (tmp_path / "ev" / f"{stem}.png").stat().st_size > 1000, stem
    assert (tmp_path / "ev" / "comparison.md").read_text().startswith("| AUROC |")
    scores = pq.read_table(tmp_path / "ev" / "scores.parquet")
    assert scores.column_names == ["index", "kind", "label", "logit", "score"]


def test_a_dataset_refuses_shards_of_another_case(tmp_path):
    from skyscan.config import load_config
    from skyscan.data.datasets import DatasetError, build_dataset

    shard = _blob_shard(tmp_path / "s.parquet")
    with pytest.raises(DatasetError, match=r"s\.parquet: kind\(s\) blank, blob are not kinds"):
        build_dataset([shard], tmp_path / "ds", load_config(None, {"case": "lenses"}))
