"""The shard driver (skyscan.data.driver) with a plan of pure numpy rows, no science case:
rows whatever the shard size and workers, resume, atomic writes, progress."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skyscan.core.errors import ConfigError
from skyscan.core.seeding import BLOCK_SIZE, block_rng
from skyscan.data.driver import ShardPlan, gather_blocks, run_shards, shard_path, write_shard
from skyscan.data.shards import images_to_array, read_images, read_metadata


@dataclass(frozen=True)
class FakePlan(ShardPlan):
    """Rows of one random block: a normal draw, a kind and a (1, 2, 2) stamp per row."""

    n: int
    shard_size: int
    seed: int = 5
    fail_at: int = -1  # a row whose rendering raises
    config_hash: str = "fake"

    def metadata(self, shard: int) -> dict:
        start, stop = self.shard_rows(shard)
        return {
            "skyscan_version": "test",
            "survey": "fake",
            "bands": ["x"],
            "shape": [1, 2, 2],
            "pixel_scale": 1.0,
            "shard": shard,
            "rows": [start, stop],
            "config_hash": self.config_hash,
        }

    def rows(self, start: int, stop: int, progress=None) -> pa.Table:
        def block_rows(block, lo, hi):
            if lo <= self.fail_at < hi:
                raise RuntimeError(f"row {self.fail_at} cannot be rendered")
            rng, noise_seed = block_rng(self.seed, block)
            first = block * BLOCK_SIZE
            value = rng.normal(size=BLOCK_SIZE)  # the whole block, whatever is asked for
            kind = rng.choice(np.array(["a", "bbb"], dtype=object), size=BLOCK_SIZE)
            noise = np.random.default_rng(noise_seed).normal(size=(BLOCK_SIZE, 1, 2, 2))
            cut = slice(lo - first, hi - first)
            return {
                "index": np.arange(lo, hi, dtype=np.int64),
                "value": value[cut],
                "kind": kind[cut],
                "image": noise[cut].astype(np.float32),
            }

        cols = gather_blocks(start, stop, block_rows, progress)
        image = cols.pop("image")
        table = pa.table(cols)
        return table.append_column("image", images_to_array(image))


def _all_rows(paths) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in paths]).combine_chunks()


def test_same_rows_whatever_the_shard_size_and_workers(tmp_path):
    n = 2 * BLOCK_SIZE + 17  # three blocks, the last short
    runs = {
        (size, workers): run_shards(
            FakePlan(n, size), tmp_path / f"{size}-{workers}", workers=workers, show_progress=False
        )
        for size, workers in [(n, 1), (100, 1), (100, 2), (BLOCK_SIZE, 2)]
    }
    assert [p.name for p in runs[(n, 1)]] == ["shard-00000.parquet"]
    assert len(runs[(100, 2)]) == 6 and len(runs[(BLOCK_SIZE, 2)]) == 3
    whole = _all_rows(runs[(n, 1)])
    assert whole.num_rows == n and whole["index"].to_pylist() == list(range(n))
    for paths in runs.values():
        assert _all_rows(paths).equals(whole)
    # one worker or two: the same bytes
    for one, two in zip(runs[(100, 1)], runs[(100, 2)], strict=True):
        assert one.read_bytes() == two.read_bytes()
    # the shard's metadata, as the plan says
    assert read_metadata(runs[(100, 2)][5])["rows"] == [500, n]


def test_gather_blocks_joins_block_parts():
    seen = []

    def block_rows(block, lo, hi):
        seen.append((block, lo, hi))
        return {"i": np.arange(lo, hi), "img": np.full((hi - lo, 2), block, dtype=np.int16)}

    cols = gather_blocks(5, 25, block_rows, progress=None, block_size=10)
    assert seen == [(0, 5, 10), (1, 10, 20), (2, 20, 25)]
    assert cols["i"].tolist() == list(range(5, 25))
    assert cols["img"].dtype == np.int16
    assert cols["img"][:, 0].tolist() == [0] * 5 + [1] * 10 + [2] * 5
    with pytest.raises(ValueError, match="no rows"):
        gather_blocks(3, 3, block_rows)


def test_progress_counts_every_row(tmp_path):
    done = []
    plan = FakePlan(300, 300)
    write_shard(plan, 0, tmp_path, progress=done.append)
    assert done == [250, 50]  # block by block
    done.clear()
    write_shard(plan, 0, tmp_path, progress=done.append)
    assert done == [300]  # complete: all at once


def test_complete_shards_are_kept_missing_and_corrupt_ones_rewritten(tmp_path):
    plan = FakePlan(300, 100)
    paths = run_shards(plan, tmp_path, show_progress=False)
    stamps = [p.stat().st_mtime_ns for p in paths]
    paths[1].unlink()
    paths[2].write_bytes(paths[2].read_bytes()[:100])  # truncated
    again = run_shards(plan, tmp_path, show_progress=False)
    assert again == paths
    assert paths[0].stat().st_mtime_ns == stamps[0]  # complete: not rewritten
    assert read_images(paths[1])[0].shape == (100, 1, 2, 2)
    assert read_images(paths[2])[0].shape == (100, 1, 2, 2)
    # another identity (another seed's config) is not complete: rewritten
    other = FakePlan(300, 100, seed=6, config_hash="other")
    write_shard(other, 0, tmp_path)
    assert read_metadata(paths[0])["config_hash"] == "other"


def test_only_the_shards_asked_for(tmp_path):
    plan = FakePlan(300, 100)
    assert run_shards(plan, tmp_path, shards=[2, 0], show_progress=False) == [
        shard_path(tmp_path, 2),
        shard_path(tmp_path, 0),
    ]
    assert not shard_path(tmp_path, 1).exists()
    with pytest.raises(ConfigError, match=r"shard 3 is out of range \(0..2\)"):
        run_shards(plan, tmp_path, shards=[3], show_progress=False)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_plan_leaves_no_half_written_file(tmp_path, workers):
    old = run_shards(FakePlan(300, 100), tmp_path, show_progress=False)
    before = old[2].read_bytes()
    bad = FakePlan(300, 100, seed=9, config_hash="bad", fail_at=250)  # in shard 2
    with pytest.raises(RuntimeError, match="row 250 cannot be rendered"):
        run_shards(bad, tmp_path, workers=workers, show_progress=False)
    assert old[2].read_bytes() == before  # the previous shard 2 is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in old]  # no temp file
    for path in old[:2]:  # each either the old shard or the new one, whole
        assert read_metadata(path)["config_hash"] in ("fake", "bad")
        assert read_images(path)[0].shape == (100, 1, 2, 2)


def test_a_failing_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    import skyscan.data.shards as shards

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(shards.pq, "write_table", explode)
    with pytest.raises(OSError, match="disk full"):
        write_shard(FakePlan(10, 10), 0, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_plan_with_the_wrong_row_count_is_refused(tmp_path):
    @dataclass(frozen=True)
    class Short(FakePlan):
        def rows(self, start, stop, progress=None):
            return super().rows(start, stop - 1, progress)

    with pytest.raises(ValueError, match="rendered 9 rows, not 10"):
        write_shard(Short(10, 10), 0, tmp_path)
    assert list(tmp_path.iterdir()) == []
