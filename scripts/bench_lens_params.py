#!/usr/bin/env python
"""Lens parameters: the parameter network against lenstronomy maximum-likelihood fits.

On the same test lenses (the first ``--n`` of the dataset's test split with theta_E >= 1"
and best-band S/N >= 20), prints one table: accuracy (median |d theta_E| / theta_E, median
bias, fraction off by > 30%, median |d e|, |d gamma|, |d centre|) and seconds per lens for

* the exported parameter network (one CPU thread, all stamps in one batch, and one stamp at
  a time), and
* a lenstronomy fit (``FittingSequence``, one fixed PSO: ``--particles`` x ``--iterations``)
  of the raw image in each lens's best band (highest lensed-source S/N): SIE + external
  shear, Sersic deflector light sharing the lens centre, a Sersic source, the simulated
  Gaussian PSF and noise (background sigma, exposure time), started from a generic guess
  spread over the prior (no truth).  The stamp's line-of-sight neighbours are not modelled
  but masked (discs about their true positions, as a modeller masks them by eye; unmasked,
  a bright neighbour outweighs the arcs and drags the fit: ``--no-mask``).

lenstronomy is a benchmark/test dependency (``pip install skyscan[test]``)::

    python scripts/bench_lens_params.py --model results/lensparams/model/model_card.json \\
        --dataset results/lensparams/dataset --sims results/lensparams/sims --n 100

``--fits FILE`` keeps the fits (estimates and seconds) and reuses them when the settings are
the same, so the network can be compared again without refitting.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from skyscan.cases.lenses.sim import best_band_snr  # noqa: E402
from skyscan.core.case import get_case  # noqa: E402
from skyscan.data.datasets import load_split  # noqa: E402
from skyscan.data.shards import read_images  # noqa: E402
from skyscan.models.card import load_model  # noqa: E402

NAMES = ("theta_E", "e1", "e2", "gamma1", "gamma2", "center_x", "center_y")
#: The fits' starting point, recorded with cached fits (a changed start refits).
START = "theta_E 1.75 +- 1.25, e 0 +- 0.2, gamma 0 +- 0.05, centre 0 +- 0.1"


def select_lenses(dataset: Path, n: int):
    """The first ``n`` test lenses of the case's parameter selection: rows and columns."""
    _, meta, _ = load_split(dataset, "test")
    columns = {
        c: meta.column(c).to_numpy()
        for c in meta.column_names
        if c in NAMES or c in ("index", "label") or c.startswith("snr_")
    }
    case = get_case("lenses")
    mask, text = case.parameter_selection(columns)
    rows = np.flatnonzero(mask & (columns["label"] == 1))[:n]
    return rows, {k: v[rows] for k, v in columns.items()}, text


def network(card_path: Path, dataset: Path, rows):
    """Estimates of the network and seconds per lens (batched; one at a time)."""
    torch.set_num_threads(1)
    model, card = load_model(card_path)
    images, _, _ = load_split(dataset, "test")
    batch = torch.from_numpy(np.array(images[rows]))
    with torch.inference_mode():
        model(batch[:2])  # warm up
        start = time.perf_counter()
        out = model(batch).numpy()
        batched = (time.perf_counter() - start) / len(rows)
        start = time.perf_counter()
        for i in range(len(rows)):
            model(batch[i : i + 1])
        single = (time.perf_counter() - start) / len(rows)
    est = card.parameter_estimates(out)
    return {k: est[k]["value"] for k in NAMES}, batched, single


def neighbour_mask(row: dict, n: int, pix: float, fwhm: float) -> np.ndarray:
    """1 where the fit looks, 0 over the stamp's line-of-sight neighbours: a disc of radius
    3 R_sersic + FWHM about each galaxy and 3 FWHM about a star (what a modeller masks)."""
    j, i = np.mgrid[0:n, 0:n]
    x, y = (i - (n - 1) / 2) * pix, (j - (n - 1) / 2) * pix
    mask = np.ones((n, n))
    k = 1
    while f"neighbour{k}_center_x" in row:
        cx, cy = row[f"neighbour{k}_center_x"], row[f"neighbour{k}_center_y"]
        if cx is not None and np.isfinite(cx):
            radius = 3 * row[f"neighbour{k}_R_sersic"] + fwhm
            mask[np.hypot(x - cx, y - cy) < radius] = 0
        k += 1
    cx, cy = row.get("neighbour_star_center_x"), row.get("neighbour_star_center_y")
    if cx is not None and np.isfinite(cx):
        mask[np.hypot(x - cx, y - cy) < 3 * fwhm] = 0
    return mask


def numerics(n: int, pix: float, supersampling: int, radius: float = 1.0) -> dict:
    """lenstronomy numerics: pixels within ``radius`` arcsec of the centre (the deflector's
    cusp) super-sampled ``supersampling`` times, the rest once (adaptive mode)."""
    if supersampling <= 1:
        return {"supersampling_factor": 1}
    j, i = np.mgrid[0:n, 0:n]
    r = np.hypot(i - (n - 1) / 2, j - (n - 1) / 2) * pix
    return {
        "supersampling_factor": supersampling,
        "compute_mode": "adaptive",
        "supersampled_indexes": r < radius,
    }


def lenstronomy_fit(
    image, band: dict, particles: int, iterations: int, seed: int, mask=None, supersampling=1
):
    """Maximum-likelihood SIE + shear, Sersic source and lens light by one fixed PSO (pixels
    where ``mask`` is 0 are left out of the likelihood)."""
    from lenstronomy.Workflow.fitting_sequence import FittingSequence

    n = image.shape[-1]
    pix = band["pixel_scale"]
    corner = -(n - 1) / 2 * pix
    kwargs_data = {
        "image_data": np.asarray(image, dtype=np.float64),
        "background_rms": band["background_sigma"],
        "exposure_time": band["exposure_time"],
        "ra_at_xy_0": corner,
        "dec_at_xy_0": corner,
        "transform_pix2angle": np.diag([pix, pix]),
    }
    if supersampling <= 1:
        kwargs_psf = {"psf_type": "GAUSSIAN", "fwhm": band["fwhm"], "pixel_size": pix}
        kwargs_psf["truncation"] = 5
    else:  # lenstronomy's adaptive super-sampling takes a pixelated PSF
        from lenstronomy.Util import kernel_util

        half = int(np.ceil(2.5 * band["fwhm"] / pix))
        kernel = kernel_util.kernel_gaussian(2 * half + 1, pix, band["fwhm"])
        kwargs_psf = {"psf_type": "PIXEL", "kernel_point_source": kernel}
    kwargs_model = {
        "lens_model_list": ["SIE", "SHEAR"],
        "source_light_model_list": ["SERSIC_ELLIPSE"],
        "lens_light_model_list": ["SERSIC_ELLIPSE"],
    }
    # The PSO's particles start spread over init +- sigma: theta_E over the whole prior.
    lens = [
        {"theta_E": 1.75, "e1": 0.0, "e2": 0.0, "center_x": 0.0, "center_y": 0.0},
        {"gamma1": 0.0, "gamma2": 0.0, "ra_0": 0.0, "dec_0": 0.0},
    ]
    lens_sigma = [
        {"theta_E": 1.25, "e1": 0.2, "e2": 0.2, "center_x": 0.1, "center_y": 0.1},
        {"gamma1": 0.05, "gamma2": 0.05},
    ]
    lens_lower = [
        {"theta_E": 0.3, "e1": -0.5, "e2": -0.5, "center_x": -0.5, "center_y": -0.5},
        {"gamma1": -0.3, "gamma2": -0.3},
    ]
    lens_upper = [
        {"theta_E": 4.0, "e1": 0.5, "e2": 0.5, "center_x": 0.5, "center_y": 0.5},
        {"gamma1": 0.3, "gamma2": 0.3},
    ]
    sersic = {"R_sersic": 0.3, "n_sersic": 1.5, "e1": 0.0, "e2": 0.0}
    sersic_sigma = {"R_sersic": 0.2, "n_sersic": 1.0, "e1": 0.2, "e2": 0.2}
    sersic_lower = {"R_sersic": 0.03, "n_sersic": 0.5, "e1": -0.5, "e2": -0.5}
    sersic_upper = {"R_sersic": 5.0, "n_sersic": 8.0, "e1": 0.5, "e2": 0.5}
    xy = {"center_x": 0.0, "center_y": 0.0}
    xy_sigma = {"center_x": 0.5, "center_y": 0.5}
    xy_lower = {"center_x": -3.0, "center_y": -3.0}
    xy_upper = {"center_x": 3.0, "center_y": 3.0}
    kwargs_params = {
        "lens_model": (lens, lens_sigma, [{}, {"ra_0": 0.0, "dec_0": 0.0}], lens_lower, lens_upper),
        "source_model": (
            [{**sersic, **xy}],
            [{**sersic_sigma, **xy_sigma}],
            [{}],
            [{**sersic_lower, **xy_lower}],
            [{**sersic_upper, **xy_upper}],
        ),
        "lens_light_model": (
            [{**sersic, "R_sersic": 1.0, "n_sersic": 4.0, **xy}],
            [{**sersic_sigma, "R_sersic": 0.5, **xy_sigma}],
            [{}],
            [{**sersic_lower, **xy_lower}],
            [{**sersic_upper, **xy_upper}],
        ),
    }
    kwargs_constraints = {"joint_lens_with_light": [[0, 0, ["center_x", "center_y"]]]}
    kwargs_likelihood = {"check_bounds": True}
    if mask is not None:
        kwargs_likelihood["image_likelihood_mask_list"] = [mask]
    multi_band = [[kwargs_data, kwargs_psf, numerics(n, pix, supersampling)]]
    kwargs_data_joint = {"multi_band_list": multi_band, "multi_band_type": "single-band"}
    np.random.seed(seed)  # noqa: NPY002 (lenstronomy's PSO draws from the global generator)
    fit = FittingSequence(
        kwargs_data_joint, kwargs_model, kwargs_constraints, kwargs_likelihood, kwargs_params
    )
    fit.fit_sequence(
        [["PSO", {"sigma_scale": 1.0, "n_particles": particles, "n_iterations": iterations}]]
    )
    best = fit.best_fit()["kwargs_lens"]
    out = {k: best[0][k] for k in ("theta_E", "e1", "e2", "center_x", "center_y")}
    return {**out, "gamma1": best[1]["gamma1"], "gamma2": best[1]["gamma2"]}


def lenstronomy_all(
    sims: Path, columns, particles, iterations, limit_s, masked=True, supersampling=1
):
    """Fit every selected lens in its best band (neighbours masked unless ``masked`` is
    False); stops starting new fits after ``limit_s``."""
    wanted = {int(i): k for k, i in enumerate(columns["index"])}
    images, rows = {}, {}
    meta = None
    for shard in sorted(sims.glob("*.parquet")):
        imgs, table, m = read_images(shard)
        meta = m
        names = [c for c in table.column_names if c.startswith("neighbour")]
        for r, i in enumerate(table.column("index").to_numpy()):
            if int(i) in wanted:
                images[wanted[int(i)]] = imgs[r]
                rows[wanted[int(i)]] = {c: table.column(c)[r].as_py() for c in names}
    if len(images) != len(wanted):
        raise SystemExit(f"{sims}: holds {len(images)} of the {len(wanted)} selected lenses")
    _, best, bands = best_band_snr(columns)
    out = {k: np.full(len(wanted), np.nan) for k in NAMES}
    seconds = []
    start_all = time.perf_counter()
    for k in range(len(wanted)):
        if time.perf_counter() - start_all > limit_s:
            print(f"time limit: fitted {k} of {len(wanted)} lenses")
            break
        b = meta["bands"].index(bands[best[k]])
        band = {
            "pixel_scale": meta["pixel_scale"],
            "background_sigma": meta["background_sigma"][b],
            "exposure_time": meta["exposure_time"][b],
            "fwhm": meta["psf"][b]["fwhm"],
        }
        start = time.perf_counter()
        mask = None
        if masked:
            n = images[k].shape[-1]
            mask = neighbour_mask(rows[k], n, band["pixel_scale"], band["fwhm"])
        result = lenstronomy_fit(
            images[k][b], band, particles, iterations, k, mask=mask, supersampling=supersampling
        )
        seconds.append(time.perf_counter() - start)
        for name in NAMES:
            out[name][k] = result[name]
        print(
            f"  lens {k + 1}: theta_E true {columns['theta_E'][k]:.3f} fit "
            f"{result['theta_E']:.3f} ({seconds[-1]:.1f} s)",
            flush=True,
        )
    return out, np.asarray(seconds)


def accuracy(est, truth, rows) -> dict:
    t = truth["theta_E"][rows]
    rel = (est["theta_E"][rows] - t) / t

    de = np.hypot(est["e1"][rows] - truth["e1"][rows], est["e2"][rows] - truth["e2"][rows])
    dg = np.hypot(
        est["gamma1"][rows] - truth["gamma1"][rows], est["gamma2"][rows] - truth["gamma2"][rows]
    )
    dx = np.hypot(
        est["center_x"][rows] - truth["center_x"][rows],
        est["center_y"][rows] - truth["center_y"][rows],
    )
    return {
        "n": int(len(rows)),
        "mad_rel": float(np.median(np.abs(rel))),
        "bias": float(np.median(rel)),
        "off30": float(np.mean(np.abs(rel) > 0.3)),
        "de": float(np.median(de)),
        "dg": float(np.median(dg)),
        "dx": float(np.median(dx)),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, help="parameter network model_card.json (none: fit only)")
    p.add_argument("--dataset", type=Path, required=True, help="its dataset folder")
    p.add_argument("--sims", type=Path, required=True, help="the dataset's simulation shards")
    p.add_argument("--n", type=int, default=100, help="test lenses (default 100)")
    p.add_argument("--particles", type=int, default=50, help="PSO particles (default 50)")
    p.add_argument("--iterations", type=int, default=100, help="PSO iterations (default 100)")
    p.add_argument(
        "--limit-s", type=float, default=1800, help="start no fit after this (default 1800 s)"
    )
    p.add_argument(
        "--supersampling",
        type=int,
        default=1,
        help="super-sample the central 1 arcsec this many times (default 1: none)",
    )
    p.add_argument(
        "--no-mask", action="store_true", help="fit the neighbours' pixels too (blind fit)"
    )
    p.add_argument(
        "--fits", type=Path, help="JSON file keeping the lenstronomy fits (reused if the same)"
    )
    args = p.parse_args(argv)

    rows, truth, text = select_lenses(args.dataset, args.n)
    print(f"{len(rows)} test lenses ({text})")
    settings = {
        "particles": args.particles,
        "iterations": args.iterations,
        "n": len(rows),
        "start": START,
        "neighbours": "unmasked" if args.no_mask else "masked",
        "supersampling": args.supersampling,
    }
    cached = json.loads(args.fits.read_text()) if args.fits and args.fits.is_file() else None
    if cached is not None and cached["settings"] == settings:
        print(f"lenstronomy fits read from {args.fits}")
        fit = {k: np.asarray(v, dtype=float) for k, v in cached["estimates"].items()}
        seconds = np.asarray(cached["seconds"])
    else:
        print(f"lenstronomy PSO {args.particles} particles x {args.iterations} iterations")
        fit, seconds = lenstronomy_all(
            args.sims,
            truth,
            args.particles,
            args.iterations,
            args.limit_s,
            not args.no_mask,
            args.supersampling,
        )
        if args.fits:
            estimates = {k: [None if np.isnan(x) else float(x) for x in v] for k, v in fit.items()}
            record = {"settings": settings, "estimates": estimates, "seconds": seconds.tolist()}
            args.fits.write_text(json.dumps(record))
    if args.model is None:
        return 0
    net, batched, single = network(args.model, args.dataset, rows)
    done = np.arange(len(seconds))
    table = [
        ("network (batch)", accuracy(net, truth, np.arange(len(rows))), batched),
        ("network (batch), fitted lenses", accuracy(net, truth, done), batched),
        ("network (one stamp)", None, single),
        ("lenstronomy ML fit", accuracy(fit, truth, done), float(np.mean(seconds))),
    ]
    header = (
        "| method | n | median abs dthE/thE | median bias | off > 30% | median abs de "
        '| median abs dgamma | median abs dcentre (") | s per lens |'
    )
    print()
    print(header)
    print("|" + "---|" * 9)
    for name, acc, sec in table:
        if acc is None:
            print(f"| {name} | | | | | | | | {sec:.2e} |")
            continue
        print(
            f"| {name} | {acc['n']} | {acc['mad_rel']:.3f} | {acc['bias']:+.3f} | "
            f"{acc['off30']:.2f} | {acc['de']:.3f} | {acc['dg']:.3f} | {acc['dx']:.3f} | "
            f"{sec:.2e} |"
        )
    if len(seconds):
        print(f"\nlenstronomy / network (batch) time per lens: {np.mean(seconds) / batched:.0f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
