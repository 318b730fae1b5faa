"""Replay LensPop's forecast lenses through skyscan's simulator at LensPop's own set-up.

Each row of LensPop's best-epoch table (Collett 2015) is rendered with the row's deflector
and source at the table's set-up (``lenspop_lsst_best_epoch``: 0.18", one 30 s g epoch, 0.50"
seeing) and the S/N measured as LensPop does (deflector light in the noise).  Printed side
by side for the smooth Sersic source and the clumpy one (``lenses.source_model``): the median
ratio (and interquartile range) of skyscan's S/N and magnification to the table's, the share of
lenses with S/N_g > 20 and the share in CMU DeepLens's cell (theta_E > 1.4", S/N_g > 20), with
95% intervals.

    .venv/bin/python scripts/lenspop_replay.py [--rows 3000] [--table lenspop_lsst_best_epoch]
"""

from __future__ import annotations

import argparse

import numpy as np

from skyscan.cases.lenses.sim.simulate import SimulationPlan, simulate_rows
from skyscan.config import validate_config
from skyscan.evaluate.metrics import wilson_interval

SURVEY = {
    "lenspop_lsst_best_epoch": "lenspop_lsst_best_epoch",
    "lenspop_des_best_epoch": "lenspop_des_best_epoch",
}


def replay(table: str, rows: int, source_model: str, seed: int) -> dict:
    config = validate_config(
        {
            "seed": seed,
            "case": "lenses",
            "simulate": {"n": rows, "shard_size": rows, "device": "cpu", "compile": False},
            "dataset": {"splits": {"train": 1.0, "val": 1.0, "test": 1.0}},
            "lenses": {
                "survey": SURVEY[table],
                "bands": ["g", "r", "i"],
                "stamp_size": 45,
                "exposures": "single",
                "reference_band": "g",
                "kinds": {"lens": 1.0},
                "neighbours": {"field": 0, "star": 0},
                "population": {"table": table},
                "source_model": source_model,
                "priors": {"lens_center": {"dist": "constant", "value": 0.0}},
                "snr_band": "g",
                "tiles": {"catalog": {"band": "g", "max_mag": 21.0, "color": None}},
            },
        }
    )
    return simulate_rows(SimulationPlan.from_config(config), 0, rows).to_pydict()


def _ratio(ours, ref) -> str:
    ours, ref = np.asarray(ours, float), np.asarray(ref, float)
    ok = np.isfinite(ours) & np.isfinite(ref) & (ref > 1)
    q25, q50, q75 = np.percentile(ours[ok] / ref[ok], [25, 50, 75])
    return f"{q50:.3f} ({q25:.2f}-{q75:.2f})"


def _share(mask) -> str:
    k, n = int(np.sum(mask)), len(mask)
    lo, hi = wilson_interval(k, n)
    return f"{k / n:.4f} [{lo:.4f}, {hi:.4f}]"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--table", default="lenspop_lsst_best_epoch", choices=sorted(SURVEY))
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    runs = {m: replay(args.table, args.rows, m, args.seed) for m in ("sersic", "clumpy")}
    first = runs["sersic"]
    theta = np.asarray(first["theta_E"], float)
    ref_snr = np.asarray(first["table_snr_g"], float)
    print(f"{args.rows} rows of {args.table} (LensPop, Collett 2015) at LensPop's set-up\n")
    print("| quantity | LensPop table | skyscan, smooth Sersic | skyscan, clumpy |")
    print("|---|---|---|---|")
    for band in ("g", "r", "i"):
        cells = [_ratio(runs[m][f"snr_{band}"], runs[m][f"table_snr_{band}"]) for m in runs]
        print(f"| S/N_{band} / table's, median (IQR) | 1 | {cells[0]} | {cells[1]} |")
    mus = [_ratio(runs[m]["magnification"], runs[m]["table_magnification"]) for m in runs]
    print(f"| magnification / table's | 1 | {mus[0]} | {mus[1]} |")
    shares = [_share(np.asarray(runs[m]["snr_g"], float) > 20) for m in runs]
    print(f"| share with S/N_g > 20 | {_share(ref_snr > 20)} | {shares[0]} | {shares[1]} |")
    cells = [_share((theta > 1.4) & (np.asarray(runs[m]["snr_g"], float) > 20)) for m in runs]
    table_cell = _share((theta > 1.4) & (ref_snr > 20))
    print(f'| share in the cell (θE > 1.4", S/N_g > 20) | {table_cell} | {cells[0]} | {cells[1]} |')
    clumpy = np.asarray(runs["clumpy"]["source_clumps"], float) > 0
    print(f"\nclumpy sources: {clumpy.mean():.2f} of {args.rows}; brackets: 95% Wilson intervals")


if __name__ == "__main__":
    main()
