#!/usr/bin/env python
"""Search throughput: end to end (read FITS, cut, preprocess, infer, write) vs model only.

Scores N random positions on the tiles of a folder with an exported model, in one run:
model-only forward cutouts/s (same batch size, one thread), end-to-end cutouts/s with one
and with two Dask workers (one thread each; cluster start-up excluded), their ratios, and an
extrapolation to 10^8 cutouts.

    python scripts/bench_search.py results/model/model_card.json results/tiles [--n 40000]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402

from skyscan.models.card import load_model  # noqa: E402
from skyscan.search.run import plan_search, score_partition  # noqa: E402
from skyscan.tiles.io import find_tiles, read_tile_wcs  # noqa: E402

GPU_TFLOPS = 100.0  # assumed effective bf16 rate of one modern GPU on these small convolutions


def _positions(card, tiles_dir, n, rng):
    tiles, _ = find_tiles(tiles_dir, card["bands"])
    tiles = [read_tile_wcs(t) for t in tiles]
    per = int(np.ceil(n / len(tiles)))
    ra, dec = [], []
    for t in tiles:
        h, w = t.shape
        x, y = rng.uniform(30, w - 30, per), rng.uniform(30, h - 30, per)
        r, d = t.wcs.all_pix2world(x, y, 0)
        ra.append(r % 360)
        dec.append(d)
    return np.concatenate(ra)[:n], np.concatenate(dec)[:n]


def _end_to_end(plan, workers):
    from dask.distributed import Client, LocalCluster, wait

    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        remote = client.scatter(plan, broadcast=True)
        # warm-up: load the model in every worker on a tiny partition
        smallest = min(plan.partitions, key=lambda p: len(plan.partitions[p]))
        wait(
            [
                client.submit(score_partition, remote, smallest, pure=False, workers=[w])
                for w in client.scheduler_info()["workers"]
            ]
        )
        start = time.perf_counter()
        wait([client.submit(score_partition, remote, p, pure=False) for p in plan.partitions])
        return time.perf_counter() - start


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("card")
    ap.add_argument("tiles")
    ap.add_argument("--n", type=int, default=40000)
    ap.add_argument("--order", type=int, default=11)
    ap.add_argument("--batch", type=int, default=512)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    card = json.loads(Path(args.card).read_text())
    rng = np.random.default_rng(0)
    tmp = Path(tempfile.mkdtemp())
    try:
        ra, dec = _positions(card, args.tiles, args.n, rng)
        pq.write_table(
            pa.table({"id": np.arange(len(ra)), "ra": ra, "dec": dec}), tmp / "catalog.parquet"
        )
        plan = plan_search(args.card, args.tiles, tmp / "catalog.parquet", tmp / "out", args.order)
        plan.batch_size = args.batch
        n = sum(len(t) for t in plan.partitions.values())

        model, _ = load_model(args.card)
        batch = torch.randn(args.batch, *card["input_shape"])
        with torch.inference_mode():
            model(batch)
            start = time.perf_counter()
            reps = max(1, n // args.batch // 4)
            for _ in range(reps):
                model(batch)
            model_rate = reps * args.batch / (time.perf_counter() - start)
        for p in plan.partitions:  # in this process, no Dask
            score_partition(plan, p)
        start = time.perf_counter()
        for p in plan.partitions:
            score_partition(plan, p)
        inproc = n / (time.perf_counter() - start)
        rates = {w: n / _end_to_end(plan, w) for w in (1, 2)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    macs = card.get("macs_per_cutout", 0)
    print(
        f"# {card.get('name')}, {n} cutouts on {len(plan.tiles)} tiles, "
        f"{len(plan.partitions)} partitions (order {args.order}), batch {args.batch}, "
        "1 thread per worker"
    )
    print()
    print("| measure | cutouts/s |")
    print("|---|---|")
    print(f"| model only, 1 thread | {model_rate:,.0f} |")
    print(f"| end to end, in this process (no Dask) | {inproc:,.0f} |")
    print(f"| end to end, 1 worker | {rates[1]:,.0f} |")
    print(f"| end to end, 2 workers | {rates[2]:,.0f} |")
    print()
    print(f"end-to-end / model-only (1 worker): {rates[1] / model_rate:.2f} (target >= 0.9)")
    print(f"speed-up from 1 to 2 workers: {rates[2] / rates[1]:.2f}x")
    print()
    print("| 10^8 cutouts | estimate |")
    print("|---|---|")
    print(f"| CPU, end to end | {1e8 / rates[1] / 3600:,.0f} core-hours |")
    if macs:
        gpu_s = 1e8 * 2 * macs / (GPU_TFLOPS * 1e12)
        print(
            f"| one GPU, model FLOPs at {GPU_TFLOPS:g} TFLOP/s | {gpu_s / 3600:.2f} hours "
            f"({2 * macs / 1e6:.0f} MFLOP per cutout) |"
        )


if __name__ == "__main__":
    main()
