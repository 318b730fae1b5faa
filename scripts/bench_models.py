#!/usr/bin/env python
"""Model-only inference cost of the registered classifiers, one CPU core, in one run.

Prints multiply-accumulates per cutout, parameters, inference throughput (torch eager,
float32, ``torch.inference_mode``, batch size stated) and training throughput (forward,
backward and an Adam step on batches of 64) for each model, and the ratios against CMU
DeepLens.

    python scripts/bench_models.py [--batch 256] [--bands 3] [--size 45] [--repeats 5]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from skyscan.models import MODELS, count_macs, count_parameters, get_model  # noqa: E402


def throughput(model, batch, repeats):
    with torch.inference_mode():
        model(batch)  # warm up
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            model(batch)
            best = min(best, time.perf_counter() - start)
    return len(batch) / best


def train_throughput(model, batch, repeats):
    model.train()
    opt = torch.optim.Adam(model.parameters())
    loss_fn = torch.nn.BCEWithLogitsLoss()
    labels = (torch.arange(len(batch)) % 2).float()

    def step():
        opt.zero_grad()
        loss_fn(model(batch), labels).backward()
        opt.step()

    step()  # warm up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - start)
    return len(batch) / best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--bands", type=int, default=3)
    ap.add_argument("--size", type=int, default=45)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    get_model("fast")  # loads the registry
    shape = (args.bands, args.size, args.size)
    batch = torch.randn(args.batch, *shape)
    rows = {}
    for name in sorted(MODELS):
        model = get_model(name, in_channels=args.bands).eval()
        rows[name] = (
            count_macs(model, shape),
            count_parameters(model),
            throughput(model, batch, args.repeats),
            train_throughput(model, batch[:64], max(2, args.repeats // 2)),
        )
    ref_macs, _, ref_rate, ref_train = rows["deeplens"]
    print(
        f"# torch {torch.__version__}, 1 thread, float32, inference batch {args.batch}, "
        f"training batch 64, {args.bands}x{args.size}x{args.size} cutouts"
    )
    print()
    print(
        "| model | MMAC / cutout | parameters | inference cutouts/s/core | FLOP ratio vs "
        "deeplens | inference speed ratio | training cutouts/s/core | training speed ratio |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, (macs, params, rate, train_rate) in rows.items():
        print(
            f"| {name} | {macs / 1e6:.1f} | {params:,} | {rate:,.0f} | "
            f"{ref_macs / macs:.1f}x | {rate / ref_rate:.1f}x | {train_rate:,.0f} | "
            f"{train_rate / ref_train:.1f}x |"
        )


if __name__ == "__main__":
    main()
