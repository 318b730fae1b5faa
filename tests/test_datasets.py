"""The dataset stage: disjoint deterministic splits, balance, NaN handling, preprocessing."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from skyscan.cases.lenses.sim.simulate import SimulationPlan, run_simulation
from skyscan.config import load_config
from skyscan.data.datasets import DatasetError, assign_splits, build_dataset, load_split
from skyscan.data.shards import read_images, write_table_atomic


@pytest.fixture(scope="module")
def sims(tmp_path_factory):
    root = tmp_path_factory.mktemp("sims")
    config = load_config(None, {"seed": 3, "simulate": {"n": 600, "shard_size": 200}})
    return run_simulation(SimulationPlan.from_config(config), root, show_progress=False)


def _config(**dataset):
    return load_config(None, {"seed": 3, "dataset": dataset})


def test_splits_are_disjoint_complete_and_independent_of_sharding(sims, tmp_path):
    manifest = build_dataset(sims, tmp_path / "a", _config())
    seen = []
    for split in ("train", "val", "test"):
        images, meta, spec = load_split(tmp_path / "a", split)
        assert images.shape[1:] == (3, 45, 45) and len(images) == manifest["splits"][split]["n"]
        seen.append(set(meta.column("index").to_pylist()))
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    assert set().union(*seen) == set(range(600))
    # the same systems land in the same split whatever the sharding
    index = np.arange(600)
    np.testing.assert_array_equal(
        assign_splits(index, {"train": 8, "val": 1, "test": 1}, 3),
        assign_splits(index[::-1], {"train": 8, "val": 1, "test": 1}, 3)[::-1],
    )
    fractions = (
        np.bincount(assign_splits(np.arange(100000), {"train": 0.8, "val": 0.1, "test": 0.1}, 1))
        / 1e5
    )
    np.testing.assert_allclose(fractions, [0.8, 0.1, 0.1], atol=0.005)


def test_preprocessing_is_noise_scaling_and_clipping(sims, tmp_path):
    build_dataset(sims, tmp_path, _config(stretch="clip", clip_sigma=50))
    images, meta, spec = load_split(tmp_path, "val")
    raw_images, raw_table, raw_meta = read_images(sims[0])
    sigma = np.array(raw_meta["background_sigma"], dtype=np.float32)
    first = meta.column("index")[0].as_py()
    row = raw_table.column("index").to_pylist().index(first)
    expected = np.clip(raw_images[row] / sigma[:, None, None], -50, 50)
    np.testing.assert_allclose(images[0], expected, rtol=1e-6)
    assert spec["clip"] == 50 and spec["scale"] == raw_meta["background_sigma"]
    assert json.loads((tmp_path / "preprocessing.json").read_text()) == spec


def test_asinh_stretch_keeps_bright_pixels_distinct_and_inverts(sims, tmp_path):
    """The default stretch: asinh(x / (a sigma)), checked against numpy; the brightest
    pixels keep their order (a clip at 50 sigma would make them equal) and invert() gives
    back e-/s to float32 precision."""
    from skyscan.data.preprocess import invert

    build_dataset(sims, tmp_path, _config(asinh_softening=2.0))
    images, meta, spec = load_split(tmp_path, "val")
    assert spec["method"] == "noise-scaled-asinh" and spec["softening"] == 2.0
    raw_images, raw_table, raw_meta = read_images(sims[0])
    sigma = np.array(raw_meta["background_sigma"], dtype=np.float32)
    row = raw_table.column("index").to_pylist().index(meta.column("index")[0].as_py())
    raw = raw_images[row]
    np.testing.assert_allclose(images[0], np.arcsinh(raw / (2 * sigma[:, None, None])), rtol=1e-5)
    bright = raw / sigma[:, None, None] > 50
    if bright.sum() > 1:
        assert len(np.unique(images[0][bright])) == bright.sum()
    np.testing.assert_allclose(invert(images[0], spec), raw, rtol=1e-4, atol=1e-6)


def test_class_balance(sims, tmp_path):
    manifest = build_dataset(sims, tmp_path, _config(positive_fraction=0.25))
    for split in ("train", "val", "test"):
        counts = manifest["splits"][split]
        assert counts["positives"] / counts["n"] == pytest.approx(0.25, abs=0.02)


def _corrupt(shard, out, n_bad):
    images, table, meta = read_images(shard)
    images = images.copy()
    images[:n_bad, 1, 10, 10] = np.nan
    from skyscan.data.shards import images_to_array

    write_table_atomic(table.append_column("image", images_to_array(images)), out, meta)
    return out


def test_nan_images_are_dropped_and_counted(sims, tmp_path):
    bad = _corrupt(sims[0], tmp_path / "bad.parquet", 2)
    manifest = build_dataset([bad, *sims[1:]], tmp_path / "ds", _config())
    assert manifest["rejected_nonfinite"] == {str(bad): 2}
    assert sum(s["n"] for s in manifest["splits"].values()) == 598


def test_too_many_nan_images_fail_naming_the_file(sims, tmp_path):
    bad = _corrupt(sims[0], tmp_path / "bad.parquet", 20)
    with pytest.raises(DatasetError, match=r"bad.parquet: 20 of 200 images hold NaN"):
        build_dataset([bad, *sims[1:]], tmp_path / "ds", _config())
    assert not (tmp_path / "ds" / "manifest.json").exists()


def test_empty_split_and_mixed_shards_fail_clearly(sims, tmp_path):
    with pytest.raises(DatasetError, match="split 'val' is empty"):
        build_dataset(sims[:1], tmp_path, _config(splits={"train": 1.0, "val": 1e-9, "test": 0.5}))
    other = load_config(
        None, {"simulate": {"n": 50, "shard_size": 50}, "lenses": {"bands": ["g", "r"]}}
    )
    odd = run_simulation(SimulationPlan.from_config(other), tmp_path / "odd", show_progress=False)[
        0
    ]
    with pytest.raises(DatasetError, match="bands"):
        build_dataset([sims[0], odd], tmp_path / "x", _config())
    with pytest.raises(DatasetError, match="not a complete dataset"):
        load_split(tmp_path / "nowhere", "train")


def test_meta_rows_follow_images(sims, tmp_path):
    build_dataset(sims, tmp_path, _config())
    meta = pq.read_table(tmp_path / "train" / "meta.parquet")
    index = meta.column("index").to_numpy()
    assert (np.diff(index) > 0).all()


def test_per_stamp_normalisation_is_invariant_to_gain_and_background():
    """dataset.normalise: per_stamp puts each band of each stamp in units of its own median
    and MAD, so a stamp times any positive gain plus any background (per band) gives the same
    network input, and the same score (numpy and torch alike; float32 tolerance 1e-4)."""
    import torch

    from skyscan.data.preprocess import make_spec, preprocess

    rng = np.random.default_rng(3)
    stamps = rng.normal(0, 1, (6, 3, 21, 21)).astype(np.float32)
    stamps[:, :, 9:12, 9:12] += 25.0  # a source: it must not set the noise scale
    gain = rng.uniform(0.01, 300, (1, 3, 1, 1)).astype(np.float32)
    offset = rng.uniform(-1e3, 1e3, (1, 3, 1, 1)).astype(np.float32)
    other = stamps * gain + offset
    for stretch in ("asinh", "clip"):
        spec = make_spec("gri", [5.0, 6.0, 7.0], 10.0, (3, 21, 21), stretch, normalise="per_stamp")
        assert spec["normalise"] == "per-stamp" and spec["scale"] == [1.0, 1.0, 1.0]
        a, b = preprocess(stamps, spec), preprocess(other, spec)
        np.testing.assert_allclose(a, b, atol=1e-4)
        at = preprocess(torch.from_numpy(other), spec).numpy()
        np.testing.assert_allclose(at, a, atol=1e-4)
    # in units of the stamp's noise: the background's robust sigma is about 1
    centred = preprocess(stamps, {**spec, "method": "noise-scaled-clip", "clip": 1e9})
    assert abs(np.median(np.abs(centred[:, :, :5, :5])) * 1.4826 - 1) < 0.25
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(1))
    with torch.no_grad():
        scores = [net(torch.from_numpy(preprocess(x, spec))) for x in (stamps, other)]
    np.testing.assert_allclose(scores[0].numpy(), scores[1].numpy(), atol=1e-4)
    # NaN pixels are ignored; a flat band is centred, not divided by zero
    holed = stamps.copy()
    holed[0, 0, :3, :3] = np.nan
    holed[1, 2] = 4.0
    out = preprocess(holed, spec)
    assert np.isfinite(out).all() and np.all(out[1, 2] == 0)
    # a spec without the key (every card written before) is the survey's background
    assert "normalise" not in make_spec("gri", [5.0, 6.0, 7.0], 10.0, (3, 21, 21), "asinh")


def test_per_stamp_normalisation_is_recorded_by_the_dataset(sims, tmp_path):
    build_dataset(sims, tmp_path / "ds", _config(normalise="per_stamp"))
    spec = json.loads((tmp_path / "ds" / "preprocessing.json").read_text())
    assert spec["normalise"] == "per-stamp" and set(spec["scale"]) == {1.0}
