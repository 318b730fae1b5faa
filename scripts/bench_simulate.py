#!/usr/bin/env python
"""Simulator speed: skyscan's batched renderer against lenstronomy on the same draws, one core.

Renders the same lens systems (SIE + shear, Sersic deflector and source, Gaussian PSF, LSST
g, r, i, 45x45 pixels) with lenstronomy's ImageModel (one prebuilt model per band, amplitudes
precomputed: its fastest use) and with skyscan, at equal super-sampling, and prints
microseconds per system and the ratio.  Then times the whole simulate stage (default kind mix,
noise, S/N, Parquet writing) and extrapolates to 10^6 systems.

    python scripts/bench_simulate.py [--lenstronomy-n 100] [--n 1000] [--no-compile]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from conftest import NO_NEIGHBOURS, ONLY_LENSES, draw_params, lsst_bands  # noqa: E402

from skyscan.cases.lenses.sim.lenstronomy_interop import lenstronomy_image_model, lenstronomy_kwargs  # noqa: E402
from skyscan.cases.lenses.sim.render import Observation, render  # noqa: E402
from skyscan.cases.lenses.sim.simulate import SimulationPlan, write_shard  # noqa: E402
from skyscan.config import load_config  # noqa: E402


def time_lenstronomy(params, n, supersampling):
    bands = lsst_bands()
    models = [lenstronomy_image_model(b, 45, supersampling) for b in bands]
    rows = [{k: v[i] for k, v in params.items()} for i in range(n)]
    kwargs = [[lenstronomy_kwargs(row, b) for b in bands] for row in rows]
    models[0].image(*kwargs[0][0])  # warm caches
    start = time.perf_counter()
    for i in range(n):
        for model, kw in zip(models, kwargs[i], strict=True):
            model.image(*kw)
    return (time.perf_counter() - start) / n * 1e6


def time_skyscan(params, supersampling, compile, diagnostics, repeats=3):
    obs = Observation(lsst_bands(), 45, supersampling, "coadd")
    n = len(params["kind"])
    block = 250
    parts = [{k: v[i : i + block] for k, v in params.items()} for i in range(0, n, block)]
    render(parts[0], obs, None, compile=compile, diagnostics=diagnostics)  # warm / compile
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for part in parts:
            render(part, obs, None, compile=compile, diagnostics=diagnostics)
        best = min(best, time.perf_counter() - start)
    return best / n * 1e6


def time_stage(n, compile):
    config = load_config(None, {"simulate": {"n": n, "shard_size": n, "compile": compile}})
    plan = SimulationPlan.from_config(config)
    with tempfile.TemporaryDirectory() as tmp:
        warm = load_config(None, {"simulate": {"n": 250, "shard_size": 250, "compile": compile}})
        write_shard(SimulationPlan.from_config(warm), 0, tmp + "/warm")
        start = time.perf_counter()
        write_shard(plan, 0, tmp)
        return (time.perf_counter() - start) / n * 1e6


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lenstronomy-n", type=int, default=100, help="systems for lenstronomy")
    ap.add_argument("--n", type=int, default=1000, help="systems for skyscan")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    compiles = [False] if args.no_compile else [False, True]

    params = draw_params(args.n, seed=11, kinds=ONLY_LENSES, neighbours=NO_NEIGHBOURS)
    print(
        f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"1 thread; LSST g,r,i 45x45, lens systems (SIE+shear, Sersic lens light + source)"
    )
    print()
    print(
        "| super-sampling | lenstronomy (us/system) | skyscan mode | skyscan (us/system) "
        "| speed-up |"
    )
    print("|---|---|---|---|---|")
    for ss in (1, 3):
        ref = time_lenstronomy(params, args.lenstronomy_n, ss)
        for compile in compiles:
            for diagnostics in (False, True):
                ours = time_skyscan(params, ss, compile, diagnostics)
                mode = ("compiled" if compile else "eager") + (
                    ", + S/N and magnification" if diagnostics else ", images only"
                )
                print(f"| {ss} | {ref:,.0f} | {mode} | {ours:,.0f} | {ref / ours:.1f}x |")
    print()
    print("Whole simulate stage (default kind mix, 3x super-sampling, noise, S/N, Parquet):")
    print()
    print("| mode | us/system | core-minutes per 10^6 systems |")
    print("|---|---|---|")
    for compile in compiles:
        per = time_stage(args.n, compile)
        print(f"| {'compiled' if compile else 'eager'} | {per:,.0f} | {per * 1e6 / 60e6:.1f} |")


if __name__ == "__main__":
    main()
