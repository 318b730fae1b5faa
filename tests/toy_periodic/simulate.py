"""The toy case's simulator: one row per light curve, padded to ``(T, 4)``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from skyscan.config import config_hash
from skyscan.core.seeding import block_rng
from skyscan.data.driver import ShardPlan, gather_blocks
from skyscan.data.shards import images_to_array


@dataclass
class PeriodicPlan(ShardPlan):
    n: int
    shard_size: int
    seed: int
    length: int
    min_points: int
    baseline: float
    config_hash: str
    unit = "curve"

    @classmethod
    def from_config(cls, config):
        section = config.get("periodic", {})
        return cls(
            n=int(config["simulate"]["n"]),
            shard_size=int(config["simulate"]["shard_size"]),
            seed=int(config["seed"]),
            length=int(section.get("length", 64)),
            min_points=int(section.get("min_points", 24)),
            baseline=float(section.get("baseline_days", 100.0)),
            config_hash=config_hash({"seed": config["seed"], "periodic": section}),
        )

    def metadata(self, shard):
        start, stop = self.shard_rows(shard)
        import skyscan
        from toy_periodic import FEATURES

        return {
            "shard": shard,
            "rows": [start, stop],
            "config_hash": self.config_hash,
            "skyscan_version": skyscan.__version__,
            "sample": "sequences",
            "features": list(FEATURES),
            "shape": [self.length, len(FEATURES)],
        }

    def _block(self, block, lo, hi):
        from skyscan.core.seeding import BLOCK_SIZE
        from skyscan.data.samples import Sequences
        from toy_periodic import FEATURES

        rng, _ = block_rng(self.seed, block)
        m = BLOCK_SIZE
        kind = np.where(rng.random(m) < 0.5, "periodic", "red_noise")
        n_obs = rng.integers(self.min_points, self.length + 1, m)
        period = np.exp(rng.uniform(np.log(0.5), np.log(10.0), m))
        amplitude = rng.uniform(0.05, 1.0, m)
        error = rng.uniform(0.05, 0.3, m)
        tau = rng.uniform(5.0, 50.0, m)
        steps = []
        for i in range(m):
            t = np.sort(rng.uniform(0, self.baseline, n_obs[i]))
            if kind[i] == "periodic":
                phase = rng.uniform(0, 2 * np.pi)
                signal = amplitude[i] * np.sin(2 * np.pi * t / period[i] + phase)
            else:  # a damped random walk with the same rms
                signal = np.empty(len(t))
                signal[0] = rng.normal(0, amplitude[i] / np.sqrt(2))
                for k in range(1, len(t)):
                    a = np.exp(-(t[k] - t[k - 1]) / tau[i])
                    signal[k] = a * signal[k - 1] + rng.normal(
                        0, amplitude[i] / np.sqrt(2) * np.sqrt(1 - a * a)
                    )
            value = signal + rng.normal(0, error[i], len(t))
            steps.append(np.stack([t, value, np.full(len(t), error[i])], axis=1))
        payload = Sequences(FEATURES, self.length).pad(steps)
        index = np.arange(block * m, (block + 1) * m)
        cols = {
            "index": index,
            "kind": kind,
            "label": (kind == "periodic").astype(np.int8),
            "period": np.where(kind == "periodic", period, np.nan),
            "amplitude_snr": amplitude / error,
            "n_points": n_obs,
            "payload": payload,
        }
        offset = lo - block * m
        return {k: v[offset : offset + hi - lo] for k, v in cols.items()}

    def rows(self, start, stop, progress=None):
        cols = gather_blocks(start, stop, self._block, progress)
        payload = cols.pop("payload")
        table = pa.table(cols)
        return table.append_column("image", images_to_array(payload))


def write_survey_catalog(config, path, n: int = 600, seed_offset: int = 1_000_000) -> str:
    """A survey catalogue to search: ``n`` objects on a small patch of sky, each with its
    light curve as a nested column (``lightcurve``: a list of {time, value, error}, as
    nested-pandas and LSDB store them), drawn like the simulation's rows (their own seed)."""
    import pyarrow.parquet as pq

    plan = PeriodicPlan.from_config(config)
    plan.seed += seed_offset
    table = plan.rows(0, n)
    payload = np.frombuffer(table.column("image").combine_chunks().buffers()[1], "<f4")
    payload = payload.reshape(n, plan.length, 4)
    curves = []
    for seq in payload:
        real = seq[:, -1] > 0.5
        curves.append(
            [{"time": float(t), "value": float(v), "error": float(e)} for t, v, e in seq[real, :3]]
        )
    rng = np.random.default_rng(plan.seed)
    out = pa.table(
        {
            "id": np.arange(n, dtype=np.int64),
            "ra": rng.uniform(150.0, 150.5, n),
            "dec": rng.uniform(2.0, 2.5, n),
            "kind": table.column("kind"),
            "lightcurve": pa.array(
                curves,
                pa.list_(
                    pa.struct(
                        [("time", pa.float64()), ("value", pa.float64()), ("error", pa.float64())]
                    )
                ),
            ),
        }
    )
    pq.write_table(out, path)
    return str(path)
