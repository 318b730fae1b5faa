"""Shards: determinism across workers and shard sizes, atomic writes, resumption."""

import hashlib

import numpy as np
import pyarrow.parquet as pq
import pytest

from skyscan.cases.lenses.sim.population import BLOCK_SIZE, KINDS
from skyscan.cases.lenses.sim.simulate import (
    SimulationPlan,
    run_simulation,
    shard_path,
    write_shard,
)
from skyscan.config import load_config
from skyscan.data.shards import read_images, read_metadata


def plan_for(n=300, shard_size=100, seed=7, **sim):
    config = load_config(
        None, {"seed": seed, "simulate": {"n": n, "shard_size": shard_size, **sim}}
    )
    return SimulationPlan.from_config(config)


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_bytes_with_one_and_two_workers(tmp_path):
    plan = plan_for()
    one = run_simulation(plan, tmp_path / "w1", workers=1, show_progress=False)
    two = run_simulation(plan, tmp_path / "w2", workers=2, show_progress=False)
    assert (
        [p.name for p in one]
        == [p.name for p in two]
        == ["shard-00000.parquet", "shard-00001.parquet", "shard-00002.parquet"]
    )
    assert [digest(p) for p in one] == [digest(p) for p in two]


def test_same_rows_whatever_the_shard_size(tmp_path):
    """Rows depend on (seed, index) only: shards of 100 and of 300 hold the same systems."""
    small = run_simulation(plan_for(shard_size=100), tmp_path / "a", show_progress=False)
    big = run_simulation(plan_for(shard_size=300), tmp_path / "b", show_progress=False)
    tables = [pq.read_table(p).drop(["shard"]) for p in small]
    import pyarrow as pa

    joined = pa.concat_tables(tables).combine_chunks()
    whole = pq.read_table(big[0]).drop(["shard"]).combine_chunks()
    assert joined.column_names == whole.column_names
    for name in joined.column_names:
        a, b = joined.column(name).to_pylist(), whole.column(name).to_pylist()
        if name == "kind":
            assert a == b
        else:
            np.testing.assert_array_equal(np.array(a), np.array(b), err_msg=name)


def test_rows_do_not_depend_on_n(tmp_path):
    """A longer run starts with the rows of a shorter one (mid-block end included)."""
    short = read_images(
        run_simulation(
            plan_for(n=BLOCK_SIZE + 10, shard_size=BLOCK_SIZE + 10),
            tmp_path / "s",
            show_progress=False,
        )[0]
    )[0]
    long = read_images(
        run_simulation(
            plan_for(n=2 * BLOCK_SIZE, shard_size=2 * BLOCK_SIZE),
            tmp_path / "l",
            show_progress=False,
        )[0]
    )[0]
    np.testing.assert_array_equal(short, long[: len(short)])


def test_seed_changes_everything(tmp_path):
    a = read_images(write_shard(plan_for(n=50, shard_size=50, seed=1), 0, tmp_path / "a"))[0]
    b = read_images(write_shard(plan_for(n=50, shard_size=50, seed=2), 0, tmp_path / "b"))[0]
    assert not np.array_equal(a, b)


def test_shard_content_and_metadata(tmp_path):
    plan = plan_for(n=400, shard_size=400)
    path = write_shard(plan, 0, tmp_path)
    images, table, meta = read_images(path)
    assert images.shape == (400, 3, 45, 45) and images.dtype == np.float32
    assert np.isfinite(images).all()
    assert meta["bands"] == ["g", "r", "i"] and meta["shape"] == [3, 45, 45]
    assert meta["pixel_scale"] == 0.2 and meta["survey"] == "lsst"
    assert meta["skyscan_version"] and meta["config_hash"] == plan.config_hash
    rows = table.to_pydict()
    assert rows["index"] == list(range(400))
    kinds = np.array(rows["kind"])
    assert set(kinds) == set(KINDS)
    assert ((kinds == "lens") == np.array(rows["label"], dtype=bool)).all()
    # about half lenses (binomial 4 sigma)
    assert abs((kinds == "lens").mean() - 0.5) < 4 * np.sqrt(0.25 / 400)
    lens = kinds == "lens"
    for col in ("source_R_sersic", "magnification", "snr_g"):
        values = np.array(rows[col], dtype=float)
        assert np.isfinite(values[lens]).all() and np.isnan(values[~lens]).all()
    theta = np.array(rows["theta_E"])
    assert theta.min() >= 0.5 and theta.max() <= 3.0
    assert rows["seed"][0] == 7 and set(rows["shard"]) == {0}


def test_noise_free_mode(tmp_path):
    noisy = read_images(write_shard(plan_for(n=20, shard_size=20), 0, tmp_path / "n"))[0]
    clean = read_images(write_shard(plan_for(n=20, shard_size=20, noise=False), 0, tmp_path / "c"))[
        0
    ]
    assert read_metadata(shard_path(tmp_path / "c", 0))["noise"] is False
    assert not np.array_equal(noisy, clean)
    # same parameters either way: the noise is drawn from its own stream
    resid = (noisy - clean).std(axis=(0, 2, 3))
    sigma = np.array(read_metadata(shard_path(tmp_path / "n", 0))["background_sigma"])
    assert np.all(resid > sigma) and np.all(resid < 3 * sigma)


def test_complete_shard_is_skipped_and_stale_one_rewritten(tmp_path):
    plan = plan_for(n=20, shard_size=20)
    path = write_shard(plan, 0, tmp_path)
    stamp = path.stat().st_mtime_ns
    write_shard(plan, 0, tmp_path)
    assert path.stat().st_mtime_ns == stamp
    other = plan_for(n=20, shard_size=20, seed=8)
    write_shard(other, 0, tmp_path)
    assert read_metadata(path)["config_hash"] == other.config_hash


def test_failed_write_leaves_previous_shard_intact(tmp_path, monkeypatch):
    plan = plan_for(n=20, shard_size=20)
    path = write_shard(plan, 0, tmp_path)
    before = digest(path)

    def explode(*args, **kwargs):
        raise OSError("disk full")

    import skyscan.data.shards as shards

    monkeypatch.setattr(shards.pq, "write_table", explode)
    with pytest.raises(OSError, match="disk full"):
        write_shard(plan_for(n=20, shard_size=20, seed=99), 0, tmp_path)
    assert digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_truncated_shard_is_detected_and_rewritten(tmp_path):
    plan = plan_for(n=20, shard_size=20)
    path = write_shard(plan, 0, tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    from skyscan.data.shards import ShardError

    with pytest.raises(ShardError, match=str(path.name)):
        read_images(path)
    write_shard(plan, 0, tmp_path)
    assert read_images(path)[0].shape[0] == 20


def test_shard_index_out_of_range():
    from skyscan.cases.lenses.sim.survey import ConfigError

    with pytest.raises(ConfigError, match=r"shard 3 is out of range \(0..2\)"):
        plan_for().shard_rows(3)
