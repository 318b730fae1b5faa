#!/usr/bin/env python
"""Training-input throughput: memory-mapped .npy (the dataset format) vs the Parquet shards.

Reads random training batches (batch 128, shuffled like an epoch) both ways, one thread, and
prints cutouts/s: from the dataset's ``images.npy`` memory map (already preprocessed) and
from the simulation shards (decode the binary image column, then preprocess).

    python scripts/bench_dataset.py results/datasets results/sims/shard-*.parquet
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pyarrow.parquet as pq

from skyscan.data.datasets import load_split
from skyscan.data.preprocess import preprocess
from skyscan.data.shards import array_to_images, read_metadata


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("shards", nargs="+")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--batches", type=int, default=60)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)

    images, _, spec = load_split(args.dataset, "train")
    order = rng.permutation(len(images))
    start = time.perf_counter()
    n = 0
    for b in range(args.batches):
        idx = np.sort(order[b * args.batch : (b + 1) * args.batch])
        if len(idx) == 0:
            break
        batch = np.asarray(images[idx])
        n += len(batch)
    memmap_rate = n / (time.perf_counter() - start)

    files = [pq.ParquetFile(p) for p in args.shards]
    shape = tuple(read_metadata(args.shards[0])["shape"])
    sizes = [f.metadata.num_rows for f in files]
    offsets = np.cumsum([0] + sizes)
    start = time.perf_counter()
    n = 0
    for _ in range(args.batches):
        rows = np.sort(rng.choice(offsets[-1], args.batch, replace=False))
        parts = []
        for k, f in enumerate(files):
            local = rows[(rows >= offsets[k]) & (rows < offsets[k + 1])] - offsets[k]
            if len(local):
                table = f.read(columns=["image"]).take(local)
                parts.append(array_to_images(table.column("image"), shape))
        batch = preprocess(np.concatenate(parts), spec)
        n += len(batch)
    parquet_rate = n / (time.perf_counter() - start)

    print(f"| source | cutouts/s (batch {args.batch}, random order, 1 thread) |")
    print("|---|---|")
    print(f"| memory-mapped images.npy (dataset) | {memmap_rate:,.0f} |")
    print(f"| Parquet shards, decode + preprocess | {parquet_rate:,.0f} |")
    print(f"\nratio {memmap_rate / parquet_rate:.1f}x")


if __name__ == "__main__":
    main()
