"""Benchmark: how the search scales with catalogue rows, tiles and workers.

Prints three tables, each measured in one run of this script:

1. Planning against the number of tiles (fixed catalogue rows): time to index the tiles
   (once per tile set) and to plan the search (read the index and the HATS catalogue, pair
   partitions with tiles).  Goal: planning grows at most 2x from 10 to 1,000 tiles.
2. Orchestration against catalogue rows, with the network replaced by a trivial scorer
   (``scorer="mean-pixel"``: the stamp's mean, so the row isolates everything but the
   network: reading partitions, positions, tile sections, cutouts, preprocessing, writing
   HATS) in one process: import, plan, rows/s, microseconds per row and the process's peak
   memory.  Goals: cost per row flat within 1.5x from 1e5 to 1e7 rows; peak memory <= 2 GB
   whatever the size.
3. The network (the registry's ``fast`` model, exported with random weights: the cost of a
   trained one): model-only throughput (forward passes on ready batches, one thread) against
   the whole search in process and with 1 and 2 Dask workers (one thread each).  Goals:
   end-to-end >= 0.9 of model-only; 1 -> 2 workers >= 1.8x.

Tiles are small noise images with TAN WCS in a grid, made once under ``--work``; catalogue
positions are uniform over the grid.  Each measurement of table 2 runs in a fresh process so
its peak memory is its own.

Usage::

    python scripts/bench_search_scale.py                      # all three, up to 1e7 rows
    python scripts/bench_search_scale.py --rows 1e4,1e5,1e6 --tiles 10,100 --model-rows 5000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

PIXEL_SCALE = 0.2  # arcsec
BANDS = ["g", "r", "i"]
STAMP = 45
CENTRE = (150.0, 2.0)


def make_tiles(folder: Path, n_tiles: int, size: int) -> tuple[float, float, float, float]:
    """A near-square grid of ``n_tiles`` noise tiles; returns the grid's RA/Dec box."""
    from astropy.io import fits
    from astropy.wcs import WCS

    folder.mkdir(parents=True, exist_ok=True)
    nx = int(np.ceil(np.sqrt(n_tiles)))
    ny = int(np.ceil(n_tiles / nx))
    side = size * PIXEL_SCALE / 3600
    ra0, dec0 = CENTRE
    cos = np.cos(np.radians(dec0))
    rng = np.random.default_rng(1)
    k = 0
    for j in range(ny):
        for i in range(nx):
            if k == n_tiles:
                break
            name = f"t{k:05d}"
            k += 1
            if (folder / f"{name}_{BANDS[-1]}.fits").exists():
                continue
            w = WCS(naxis=2)
            w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
            w.wcs.crval = [ra0 + (i - nx / 2 + 0.5) * side / cos, dec0 + (j - ny / 2 + 0.5) * side]
            w.wcs.crpix = [(size + 1) / 2, (size + 1) / 2]
            w.wcs.cdelt = [-PIXEL_SCALE / 3600, PIXEL_SCALE / 3600]
            header = w.to_header()
            for band in BANDS:
                data = rng.normal(0, 1, (size, size)).astype(np.float32)
                fits.PrimaryHDU(data, header=header).writeto(
                    folder / f"{name}_{band}.fits", overwrite=True
                )
    half_ra, half_dec = nx * side / cos / 2, ny * side / 2
    return ra0 - half_ra, ra0 + half_ra, dec0 - half_dec, dec0 + half_dec


def make_catalog(path: Path, rows: int, box, seed: int = 2) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    ra = rng.uniform(box[0], box[1], rows)
    dec = rng.uniform(box[2], box[3], rows)
    table = pa.table(
        {
            "id": np.arange(rows, dtype=np.int64),
            "ra": ra,
            "dec": dec,
            "mag": rng.uniform(18, 24, rows),
        }
    )
    pq.write_table(table, path)


def make_card(folder: Path) -> Path:
    """The ``fast`` network with random weights, exported with a card (45 px, gri)."""
    import torch

    from skyscan.data.preprocess import make_spec
    from skyscan.models import get_model
    from skyscan.models.card import ModelCard
    from skyscan.train.export import export_model

    card = folder / "model" / "model_card.json"
    if card.exists():
        return card
    torch.manual_seed(0)
    net = get_model("fast", in_channels=3)
    export_model(
        net,
        torch.randn(8, 3, STAMP, STAMP),
        folder / "model",
        ModelCard(
            name="bench",
            model="fast",
            case="lenses",
            bands=BANDS,
            input_shape=[3, STAMP, STAMP],
            pixel_scale=PIXEL_SCALE,
            preprocessing=make_spec("".join(BANDS), [1.0, 1.0, 1.0], 250, [3, STAMP, STAMP]),
            # about 1% of the trivial scorer's rows pass, so candidates.parquet stays small
            # as it would in a real search
            threshold={"logit": 0.01, "fpr": 0.01, "split": "none", "n_negatives": 0},
        ),
    )
    return card


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one_search(args) -> dict:
    """One measured search in this process (called in a fresh subprocess)."""
    import torch

    from skyscan.search.run import plan_search, run_search

    torch.set_num_threads(1)
    out = Path(args.out)
    plan_search(args.card, args.index, args.catalog, out, scorer=args.scorer)  # imports
    t0 = time.perf_counter()
    plan = plan_search(args.card, args.index, args.catalog, out, scorer=args.scorer)
    t1 = time.perf_counter()
    summary = run_search(plan, workers=args.workers, progress=False)
    t2 = time.perf_counter()
    return {
        "plan_s": t1 - t0,
        "search_s": t2 - t1,
        **summary["timings"],
        "rows": summary["rows"],
        "partitions": summary["partitions"],
        "peak_mb": _peak_mb(),
    }


def run_one(card, index, catalog, out, scorer, workers) -> dict:
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    cmd = [
        sys.executable,
        __file__,
        "--one",
        "--card",
        str(card),
        "--index",
        str(index),
        "--catalog",
        str(catalog),
        "--out",
        str(out),
        "--scorer",
        scorer,
        "--workers",
        str(workers),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode:
        raise SystemExit(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def table_tiles(work: Path, tiles_list, rows: int, card: Path) -> None:
    from skyscan.catalog.hats_catalog import import_catalog
    from skyscan.search.run import plan_search
    from skyscan.search.tile_index import build_tile_index

    print(f"\n## 1. Planning against tiles ({rows:,} catalogue rows, 128x128-pixel tiles)\n")
    print("| tiles | index build (s, once) | plan (s) | partitions with tiles | plan / plan(10) |")
    print("|---|---|---|---|---|")
    first = None
    for n in tiles_list:
        folder = work / f"tiles_{n}"
        box = make_tiles(folder, n, 128)
        t0 = time.perf_counter()
        build_tile_index(folder, BANDS, work / f"index_{n}", order=None)
        t1 = time.perf_counter()
        catalog = work / f"cat_t{n}.parquet"
        make_catalog(catalog, rows, box)
        import_catalog(catalog, work / f"hats_t{n}", partition_rows=2_000, overwrite=True)
        best = np.inf
        for _ in range(3):
            t2 = time.perf_counter()
            plan = plan_search(
                card, work / f"index_{n}", work / f"hats_t{n}", work / "o_t", scorer="mean-pixel"
            )
            best = min(best, time.perf_counter() - t2)
        first = first or best
        print(f"| {n:,} | {t1 - t0:.2f} | {best:.3f} | {len(plan.tasks)} | {best / first:.2f} |")


def table_rows(work: Path, rows_list, n_tiles: int, card: Path) -> None:
    from skyscan.catalog.hats_catalog import import_catalog
    from skyscan.search.tile_index import build_tile_index

    folder = work / f"rows_tiles_{n_tiles}"
    box = make_tiles(folder, n_tiles, 512)
    index = work / f"rows_index_{n_tiles}"
    build_tile_index(folder, BANDS, index)
    print(
        f"\n## 2. Orchestration against rows ({n_tiles} tiles of 512x512 pixels; trivial "
        "scorer, no network; one process)\n"
    )
    print(
        "| rows | import (s) | plan (s) | search (s) | rows/s | us/row | us/row vs 1e5 | "
        "partitions | peak memory (MB) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    ref = None
    for rows in rows_list:
        catalog = work / f"cat_r{rows}.parquet"
        make_catalog(catalog, rows, box)
        t0 = time.perf_counter()
        import_catalog(catalog, work / f"hats_r{rows}", partition_rows=100_000, overwrite=True)
        imp = time.perf_counter() - t0
        r = run_one(card, index, work / f"hats_r{rows}", work / "o_r", "mean-pixel", 0)
        us = 1e6 * r["search_s"] / max(r["rows"], 1)
        if rows >= 100_000 and ref is None:
            ref = us
        rel = f"{us / ref:.2f}" if ref else "-"
        print(
            f"| {rows:,} | {imp:.1f} | {r['plan_s']:.2f} | {r['search_s']:.1f} | "
            f"{r['rows'] / r['search_s']:,.0f} | {us:.1f} | {rel} | {r['partitions']} | "
            f"{r['peak_mb']:.0f} |"
        )


def table_model(work: Path, rows: int, card: Path) -> None:
    import torch

    from skyscan.catalog.hats_catalog import import_catalog
    from skyscan.models.card import load_model, read_card
    from skyscan.search.tile_index import build_tile_index

    folder = work / "model_tiles"
    box = make_tiles(folder, 16, 512)
    index = work / "model_index"
    build_tile_index(folder, BANDS, index)
    catalog = work / f"cat_m{rows}.parquet"
    make_catalog(catalog, rows, box)
    import_catalog(catalog, work / "hats_m", partition_rows=max(rows // 16, 100), overwrite=True)
    torch.set_num_threads(1)
    model = load_model(card)[0]
    batch = 512
    x = torch.randn(batch, 3, STAMP, STAMP)
    with torch.inference_mode():
        model(x)
        t0 = time.perf_counter()
        done = 0
        while done < rows:
            model(x[: min(batch, rows - done)])
            done += batch
        model_only = rows / (time.perf_counter() - t0)
    read_card(card)
    print(
        f"\n## 3. With the network ('fast', random weights; {rows:,} rows, 16 tiles, "
        "one thread per process)\n"
    )
    print(
        "| run | rows/s (wall) | vs model-only | rows/s (scoring) | vs model-only | "
        "scoring vs 1 worker | cluster start (s) |"
    )
    print("|---|---|---|---|---|---|---|")
    print(
        f"| model only (forward passes on ready batches of {batch}) | {model_only:,.0f} | "
        f"1.00 | {model_only:,.0f} | 1.00 | - | - |"
    )
    results = {}
    for label, workers in (
        ("search in process", 0),
        ("search, 1 Dask worker", 1),
        ("search, 2 Dask workers", 2),
    ):
        r = run_one(card, index, work / "hats_m", work / f"o_m{workers}", "model", workers)
        wall = r["rows"] / r["search_s"]
        scoring = r["rows"] / r["scoring_s"]
        results[workers] = scoring
        vs1 = f"{scoring / results[1]:.2f}" if workers >= 1 else "-"
        print(
            f"| {label} | {wall:,.0f} | {wall / model_only:.2f} | {scoring:,.0f} | "
            f"{scoring / model_only:.2f} | {vs1} | {r['cluster_start_s']:.1f} |"
        )
    print(
        "\n(wall: plan excluded, cluster start, scoring and HATS metadata included; scoring: "
        "from the first task submitted to the last result)"
    )
    same = all(
        (work / "o_m0" / "candidates.parquet").read_bytes()
        == (work / f"o_m{w}" / "candidates.parquet").read_bytes()
        for w in (1, 2)
    )
    print(f"\nSame candidates bytes with 0, 1 and 2 workers: {same}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", default="/tmp/skyscan-bench-scale")
    p.add_argument("--rows", default="1e4,1e5,1e6,1e7")
    p.add_argument("--tiles", default="10,100,1000")
    p.add_argument("--plan-rows", type=float, default=1e5)
    p.add_argument("--row-tiles", type=int, default=100)
    p.add_argument("--model-rows", type=int, default=20_000)
    p.add_argument("--only", choices=["tiles", "rows", "model"])
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    for name in ("card", "index", "catalog", "out", "scorer"):
        p.add_argument(f"--{name}", help=argparse.SUPPRESS)
    p.add_argument("--workers", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(one_search(args)))
        return 0
    import logging

    logging.disable(logging.WARNING)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    card = make_card(work)
    print(f"# skyscan search scaling ({os.cpu_count()} CPU cores here)")
    if args.only in (None, "tiles"):
        table_tiles(work, [int(float(t)) for t in args.tiles.split(",")], int(args.plan_rows), card)
    if args.only in (None, "rows"):
        table_rows(work, [int(float(r)) for r in args.rows.split(",")], args.row_tiles, card)
    if args.only in (None, "model"):
        table_model(work, args.model_rows, card)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
