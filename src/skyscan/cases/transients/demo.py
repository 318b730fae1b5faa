"""Demonstration alert packets: fresh simulated detections written as ZTF-style alerts.

The workflow's ``alerts`` stage scores them with ``skyscan score-alerts`` as a broker would
score a night's alerts.  The detections are the rows after the training simulation
(indices ``simulate.n`` onwards), so none was seen in training, and a truth table beside the
packets says which are real.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa

from skyscan.core.atomic import write_parquet_atomic
from skyscan.core.seeding import BLOCK_SIZE

__all__ = ["make_demo_alerts"]

#: candid of demonstration alert ``index`` (ZTF candids are large positive integers)
CANDID_BASE = 2_000_000_000_000_000


def make_demo_alerts(
    config: Mapping, out: str | Path, truth: str | Path, n: int | None = None, fmt=None
) -> int:
    """Write ``n`` alert packets (Avro or Parquet by ``fmt`` or ``out``'s suffix) and a truth
    table (``candid``, ``index``, ``kind``, ``label``, ``mag``, ``snr``).

    Parameters
    ----------
    config : mapping
        The validated config (``seed``, ``simulate.n``, ``simulate.noise``, ``transients``).
    out, truth : str or Path
    n : int, optional
        Number of alerts (default ``transients.alerts.n``).
    fmt : {"avro", "parquet"}, optional

    Returns
    -------
    int
        The number of alerts written.
    """
    from skyscan.cases.transients.alerts import write_avro_alerts, write_parquet_alerts
    from skyscan.cases.transients.simulate import simulate_block, simulation_settings

    section = simulation_settings(config.get("transients"))
    settings = config.get("transients") or {}
    n = int(n or settings.get("alerts", {}).get("n", 200))
    fmt = fmt or Path(out).suffix.lstrip(".")
    seed, first = int(config["seed"]), int(config["simulate"]["n"])
    images, columns = [], []
    start = first
    while start < first + n:
        block = start // BLOCK_SIZE
        stop = min(first + n, (block + 1) * BLOCK_SIZE)
        block_images, cols = simulate_block(
            section["setup"], section, seed, block, start, stop, config["simulate"]["noise"]
        )
        images.append(block_images)
        columns.append(cols)
        start = stop
    images = np.concatenate(images)
    cols = {k: np.concatenate([c[k] for c in columns]) for k in columns[0]}
    rng = np.random.default_rng([seed, 7])  # positions only: not part of the stamps
    alerts = []
    for i, index in enumerate(cols["index"]):
        mag = cols["mag"][i]
        alerts.append(
            {
                "candid": CANDID_BASE + int(index),
                "objectId": f"ZTFsim{int(index):08d}",
                "ra": float(rng.uniform(0, 360)),
                "dec": float(np.degrees(np.arcsin(rng.uniform(-0.5, 1.0)))),
                "magpsf": float(mag) if np.isfinite(mag) else 99.0,
                "jd": 2461000.5 + i / 1440.0,
                "rb": None,
                "drb": None,
                # ZTF's sign convention: 'f' where the difference was negated
                "isdiffpos": "f" if cols["difference_negated"][i] else "t",
                "science": images[i, 0],
                "reference": images[i, 1],
                "difference": images[i, 2],
            }
        )
    if fmt == "avro":
        write_avro_alerts(out, alerts)
    elif fmt == "parquet":
        write_parquet_alerts(out, alerts)
    else:
        raise ValueError(f"{out}: alert format must be avro or parquet, not {fmt!r}")
    table = pa.table(
        {
            "candid": pa.array([a["candid"] for a in alerts], pa.int64()),
            "index": cols["index"],
            "kind": pa.array([str(k) for k in cols["kind"]]),
            "label": cols["label"],
            "mag": cols["mag"],
            "snr": cols["snr"],
        }
    )
    write_parquet_atomic(table, truth, compression="zstd")
    return len(alerts)
