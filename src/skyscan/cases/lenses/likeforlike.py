"""Is a run like for like with CMU DeepLens (Lanusse et al. 2018)?  The set-up *and* the data.

The paper trained and tested on 45 x 45 single-epoch LSST g-band stamps of LensPop's
best-epoch lens population (Collett 2015), against the same deflectors without a source.  A
run is like for like only when

* its observing set-up is LensPop's for that population: g band alone, one epoch, 0.18"
  pixels, a 30 s g exposure, the best epoch's seeing (the table's 0.47-0.54"), 45 x 45 stamps,
  and S/N measured as LensPop does (the deflector's light in the noise);
* its non-lenses are the deflectors without a source;
* its test lenses are distributed as LensPop's: two-sample Kolmogorov-Smirnov tests of the
  Einstein radius and of the g-band S/N, over all lenses and within the headline cell
  (theta_E > 1.4", S/N > 20), against the table (:func:`population_checks`), and the share of
  lenses with S/N_g > 20.

A KS test "agrees" when p >= :data:`KS_ALPHA` or the largest CDF difference D is at most
:data:`KS_MAX_D`: with thousands of lenses the test tells apart populations whose difference
is too small to change a completeness (e.g. the ~3% S/N offset between this simulator and
LensPop's on the same rows), so D bounds what is called a difference.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = [
    "PAPER_SETUP",
    "KS_ALPHA",
    "KS_MAX_D",
    "population_checks",
    "setup_differences",
    "cell_by_configuration",
]

#: CMU DeepLens's set-up (Lanusse et al. 2018; LensPop's Surveys.py for LSST's best epoch).
PAPER_SETUP = {
    "table": "lenspop_lsst_best_epoch",
    "bands": ["g"],
    "pixel_scale": 0.18,
    "exposure_time": 30.0,
    "seeing": (0.47, 0.55),
    "stamp_size": 45,
    "snr_definition": "lenspop",
}
KS_ALPHA = 0.01
KS_MAX_D = 0.05
#: The share of lenses with S/N_g > 20 agrees when within this of the table's (or when the
#: table's lies in the run's 95% interval).
SHARE_TOLERANCE = 0.01


def _ks(sample: np.ndarray, reference: np.ndarray, quantity: str) -> dict:
    from scipy import stats

    sample = sample[np.isfinite(sample)]
    reference = reference[np.isfinite(reference)]
    if len(sample) < 5:
        return {"quantity": quantity, "n": int(len(sample)), "agree": None,
                "reason": "fewer than 5 lenses"}  # fmt: skip
    res = stats.ks_2samp(sample, reference)
    d, p = float(res.statistic), float(res.pvalue)
    return {
        "quantity": quantity,
        "n": int(len(sample)),
        "n_reference": int(len(reference)),
        "median": float(np.median(sample)),
        "median_reference": float(np.median(reference)),
        "ks_d": d,
        "p_value": p,
        "agree": bool(p >= KS_ALPHA or d <= KS_MAX_D),
    }


def population_checks(columns: Mapping[str, np.ndarray], band: str = "g") -> dict:
    """Two-sample tests of the test split's lenses against LensPop's best-epoch LSST lenses.

    Parameters
    ----------
    columns : mapping
        The test split's metadata: ``label``, ``theta_E``, ``snr_<band>`` and, for a table
        population, ``cell_enriched`` (those lenses are left out of the all-lens tests: they
        were drawn from the cell's rows on purpose).
    band : str
        The S/N band of the paper's cell.

    Returns
    -------
    dict
        ``reference``, ``tests`` (a list of KS results), ``share_snr_gt_20`` and
        ``n_enriched``; or ``{"skipped": reason}`` without the band.
    """
    from skyscan.cases.lenses.sim.lenspop import CELL_SNR, CELL_THETA_E, in_cell, load_table
    from skyscan.evaluate.metrics import wilson_interval

    if f"snr_{band}" not in columns:
        return {"skipped": f"no {band}-band S/N in the test split (the paper's cell is in {band})"}
    ref = load_table(PAPER_SETUP["table"])
    lens = np.asarray(columns["label"]) == 1
    theta = np.asarray(columns["theta_E"], dtype=float)
    snr = np.asarray(columns[f"snr_{band}"], dtype=float)
    enriched = (
        np.asarray(columns["cell_enriched"], dtype=float) == 1
        if "cell_enriched" in columns
        else np.zeros(len(lens), dtype=bool)
    )
    plain = lens & ~enriched
    with np.errstate(invalid="ignore"):
        cell = lens & (theta > CELL_THETA_E) & (snr > CELL_SNR)
    ref_cell = in_cell(ref)
    tests = [
        _ks(theta[plain], ref["b"], "theta_E, all lenses"),
        _ks(snr[plain], ref[f"snr_{band}"], f"S/N_{band}, all lenses"),
        _ks(theta[cell], ref["b"][ref_cell], 'theta_E, cell (theta_E > 1.4", S/N > 20)'),
        _ks(snr[cell], ref[f"snr_{band}"][ref_cell], f"S/N_{band}, cell"),
    ]
    n = int(plain.sum())
    k = int(np.sum(snr[plain] > CELL_SNR))
    ci = wilson_interval(k, n) if n else None
    ref_share = float(np.mean(ref[f"snr_{band}"] > CELL_SNR))
    share = k / n if n else None
    agree = None
    if share is not None:
        agree = bool(abs(share - ref_share) <= SHARE_TOLERANCE or (ci[0] <= ref_share <= ci[1]))
    return {
        "reference": PAPER_SETUP["table"],
        "n_reference": int(len(ref["b"])),
        "tests": tests,
        "share_snr_gt_20": {
            "value": share,
            "ci95": ci,
            "n": n,
            "reference": ref_share,
            "agree": agree,
        },
        "n_enriched": int((lens & enriched).sum()),
        "n_cell": int(cell.sum()),
    }


def _band_value(simulation: Mapping, key: str, band: str):
    bands = list(simulation.get("bands") or [])
    values = simulation.get(key)
    if band not in bands or not isinstance(values, list) or len(values) != len(bands):
        return None
    return values[bands.index(band)]


def setup_differences(setup: Mapping, checks: Mapping | None) -> list[str]:
    """Every way a run differs from CMU DeepLens's set-up and population (empty: like for
    like).  ``setup`` is the metrics' ``setup`` record, ``checks`` :func:`population_checks`."""
    paper = PAPER_SETUP
    out = []
    if list(setup.get("bands") or []) != paper["bands"]:
        out.append(f"bands {setup.get('bands')} (paper: g only)")
    if setup.get("exposures") not in ("single", 1):
        out.append(f"exposures {setup.get('exposures')!r} (paper: one epoch)")
    harder = sorted(set(setup.get("negative_kinds") or []) - {"no_source"})
    if harder:
        out.append(
            f"non-lenses include {', '.join(harder)} besides galaxies without a source "
            "(paper: galaxies without a lensed source only)"
        )
    sim = setup.get("simulation") or {}
    if not sim:
        out.append("the simulation's set-up is not recorded (a dataset built before it was)")
        return out
    population = (sim.get("population") or {}).get("table")
    if population != paper["table"]:
        out.append(
            f"population {population or 'lenses.priors'} (paper: LensPop's LSST best-epoch "
            "lenses, Collett 2015)"
        )
    scale = sim.get("pixel_scale")
    if scale is None or abs(float(scale) - paper["pixel_scale"]) > 0.005:
        out.append(f'pixel {scale}" (paper: 0.18")')
    t = _band_value(sim, "exposure_time", "g")
    if t is None or abs(float(t) - paper["exposure_time"]) > 0.5:
        out.append(f"g exposure {t} s (paper: one 30 s epoch)")
    psf = _band_value(sim, "psf", "g")
    fwhm = psf.get("fwhm") if isinstance(psf, Mapping) else None
    low, high = paper["seeing"]
    if fwhm is None or not low <= float(fwhm) <= high:
        out.append(f'g seeing {fwhm}" (paper: the best epoch, {low}-{high}")')
    shape = sim.get("shape") or []
    if len(shape) != 3 or shape[1:] != [paper["stamp_size"]] * 2:
        out.append(f"stamps {shape[1:] if shape else '?'} (paper: 45 x 45)")
    definition = sim.get("snr_definition", "source_only")
    if definition != paper["snr_definition"]:
        out.append(
            f"S/N without the deflector's light in the noise ({definition}; paper: LensPop's)"
        )
    if checks and "tests" in checks:
        for test in checks["tests"]:
            if test.get("agree") is False:
                out.append(
                    f"{test['quantity']}: KS D = {test['ks_d']:.3f}, p = {test['p_value']:.2g} "
                    f"(median {test['median']:.2f} against LensPop's "
                    f"{test['median_reference']:.2f}; n = {test['n']})"
                )
        share = checks.get("share_snr_gt_20") or {}
        if share.get("agree") is False:
            out.append(
                f"share of lenses with S/N_g > 20 {share['value']:.3f} (n = {share['n']}) "
                f"against LensPop's {share['reference']:.3f}"
            )
    elif checks and "skipped" in checks:
        out.append(f"population not tested: {checks['skipped']}")
    return out


def cell_by_configuration(
    columns: Mapping[str, np.ndarray],
    logits: np.ndarray,
    thresholds: Mapping[str, float | None],
    n_resamples: int = 2000,
    seed: int = 0,
) -> dict | None:
    """The headline cell's completeness with an interval that resamples lens configurations.

    A table population draws many test lenses from each of its rows (the cell's most of all,
    when enriched): they share a configuration and differ in orientation and noise only, so a
    Wilson interval over the lenses is too narrow.  This bootstraps the table's rows (each
    with all its lenses), at each named threshold.

    Parameters
    ----------
    columns : mapping
        The test split's metadata (``label``, ``theta_E``, ``snr_g``, ``lenspop_row``).
    logits : ndarray
    thresholds : mapping
        Name -> logit threshold (None skipped).
    n_resamples, seed : int
        Bootstrap size and its fixed seed (the same figures on every run).

    Returns
    -------
    dict or None
        Per threshold name ``completeness``, ``ci95``; and ``n_lenses``,
        ``n_configurations``; None without ``lenspop_row`` or cell lenses.
    """
    from skyscan.cases.lenses.sim.lenspop import CELL_SNR, CELL_THETA_E

    if "lenspop_row" not in columns or "snr_g" not in columns:
        return None
    with np.errstate(invalid="ignore"):
        cell = (
            (np.asarray(columns["label"]) == 1)
            & (np.asarray(columns["theta_E"], dtype=float) > CELL_THETA_E)
            & (np.asarray(columns["snr_g"], dtype=float) > CELL_SNR)
        )
    if not cell.any():
        return None
    rows = np.asarray(columns["lenspop_row"])[cell]
    _, group = np.unique(rows, return_inverse=True)
    k = group.max() + 1
    counts = np.bincount(group, minlength=k)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, k, size=(n_resamples, k))
    out = {"n_lenses": int(cell.sum()), "n_configurations": int(k), "method": "bootstrap of rows"}
    for name, threshold in thresholds.items():
        if threshold is None:
            continue
        hits = np.bincount(group, weights=logits[cell] > threshold, minlength=k)
        boot = hits[picks].sum(axis=1) / counts[picks].sum(axis=1)
        lo, hi = np.percentile(boot, [2.5, 97.5])
        out[name] = {
            "completeness": float(hits.sum() / counts.sum()),
            "ci95": [float(lo), float(hi)],
        }
    return out
