"""The toy sky-map case's simulator: one packed sample per row (skymap, detectors, S/N)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from skyscan.config import config_hash
from skyscan.core.seeding import BLOCK_SIZE, block_rng
from skyscan.data.driver import ShardPlan, gather_blocks
from skyscan.data.shards import images_to_array


@dataclass
class MapsPlan(ShardPlan):
    n: int
    shard_size: int
    seed: int
    config_hash: str
    unit = "map"

    @classmethod
    def from_config(cls, config):
        return cls(
            n=int(config["simulate"]["n"]),
            shard_size=int(config["simulate"]["shard_size"]),
            seed=int(config["seed"]),
            config_hash=config_hash({"seed": config["seed"], "toy": "maps"}),
        )

    def metadata(self, shard):
        import skyscan
        from toy_maps import CASE

        start, stop = self.shard_rows(shard)
        samples = CASE.samples()
        return {
            "shard": shard,
            "rows": [start, stop],
            "config_hash": self.config_hash,
            "skyscan_version": skyscan.__version__,
            "sample": samples.kind,
            "layout": samples.layout,
            "shape": list(samples.shape),
        }

    def _block(self, block, lo, hi):
        from toy_maps import CASE, PARTS

        rng, _ = block_rng(self.seed, block)
        m = BLOCK_SIZE
        kind = np.where(rng.random(m) < 0.5, "signal", "noise")
        h, w = PARTS["skymap"]
        y, x = np.mgrid[:h, :w]
        maps = np.empty((m, h, w))
        detectors = rng.uniform(0, 1, (m, 3))
        snr = rng.uniform(6, 20, m)
        area = np.empty(m)
        for i in range(m):
            if kind[i] == "signal":
                cx, cy = rng.uniform(0, w), rng.uniform(3, h - 3)
                sigma = 12.0 / snr[i] * rng.uniform(0.8, 1.2)
                dx = np.minimum(np.abs(x - cx), w - np.abs(x - cx))  # RA wraps around
                p = np.exp(-(dx**2 + (y - cy) ** 2) / (2 * sigma**2))
                detectors[i] = snr[i] / 20 * np.array([1.0, 0.8, 0.5]) + rng.normal(0, 0.05, 3)
            else:
                p = np.zeros((h, w))
                for _ in range(rng.integers(2, 5)):
                    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
                    s = rng.uniform(3, 8)
                    dx = np.minimum(np.abs(x - cx), w - np.abs(x - cx))
                    p += rng.uniform(0.3, 1) * np.exp(-(dx**2 + (y - cy) ** 2) / (2 * s**2))
                snr[i] = rng.uniform(6, 12)
            p = p / p.sum() + rng.normal(0, 2e-4, (h, w))
            maps[i] = p
            ranked = np.sort(p.ravel())[::-1]
            area[i] = np.searchsorted(np.cumsum(ranked), 0.9) + 1
        payload = CASE.samples().pack({"skymap": maps, "detectors": detectors, "network_snr": snr})
        cols = {
            "index": np.arange(block * m, (block + 1) * m),
            "kind": kind,
            "label": (kind == "signal").astype(np.int8),
            "network_snr": snr,
            "area": area,
            "payload": payload,
        }
        offset = lo - block * m
        return {k: v[offset : offset + hi - lo] for k, v in cols.items()}

    def rows(self, start, stop, progress=None):
        cols = gather_blocks(start, stop, self._block, progress)
        payload = cols.pop("payload")
        return pa.table(cols).append_column("image", images_to_array(payload))


def write_survey_catalog(config, path, n: int = 400, seed_offset: int = 1_000_000) -> str:
    """A catalogue of sky-map alerts to search: each row holds its map and detector vector
    as list columns and its S/N, at a sky position (the map's own maximum is elsewhere)."""
    import pyarrow.parquet as pq

    from toy_maps import CASE

    plan = MapsPlan.from_config(config)
    plan.seed += seed_offset
    table = plan.rows(0, n)
    samples = CASE.samples()
    packed = np.frombuffer(table.column("image").combine_chunks().buffers()[1], "<f4")
    parts = samples.unpack(packed.reshape(n, -1))
    rng = np.random.default_rng(plan.seed)
    out = pa.table(
        {
            "id": np.arange(n, dtype=np.int64),
            "ra": rng.uniform(0, 360, n),
            "dec": np.degrees(np.arcsin(rng.uniform(-1, 1, n))),
            "kind": table.column("kind"),
            "skymap": pa.array([r.ravel().tolist() for r in parts["skymap"]]),
            "detectors": pa.array([r.tolist() for r in parts["detectors"]]),
            "network_snr": parts["network_snr"].astype(np.float64),
        }
    )
    pq.write_table(out, path)
    return str(path)
