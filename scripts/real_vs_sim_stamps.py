"""What the transient simulator must match: unit-free properties of real ZTF alert cutouts
beside those of simulated triplets, with the two-sample Kolmogorov-Smirnov statistic of each.

Real: the development set of public ZTF alerts (scripts/fetch_real_alerts.py), alerts ZTF's
drb calls real (drb > 0.9).  Simulated: the real kinds of the transient shards given.  Only
quantities that do not depend on the data's units are compared (ratios, S/N, sizes in
pixels, ratios of the science and difference cutouts, which share their units), since real
cutouts are in their own data units and the simulation in e-/s.

    .venv/bin/python scripts/real_vs_sim_stamps.py results/transients-ztf/sims/shard-*.parquet

Prints a Markdown table (median and 16-84% range of each quantity in each set, KS D and its
p-value, sample sizes).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ALERTS = ROOT / "data" / "real" / "ztf" / "CTAO_blazar_datatest_v20-12-24.parquet"
MAD = 1.4826

#: quantity -> one line saying what it is
QUANTITIES = {
    "fwhm_px": "FWHM of the difference image's central source (second moments, pixels)",
    "diff_snr": "peak of the difference image's centre over its robust sigma",
    "ref_over_sci_noise": "robust sigma of the reference over that of the science (its depth; "
    "in real alerts also its own zero point)",
    "diff_over_sci_noise": "robust sigma of the difference over that of the science",
    "diff_over_sci_peak": "central peak of the difference over that of the science (minus sky)",
    "nan_fraction": "fraction of NaN pixels in the three cutouts",
}


def _sigma(image: np.ndarray) -> float:
    v = image[np.isfinite(image)]
    return float(MAD * np.median(np.abs(v - np.median(v)))) if v.size else np.nan


def properties(stamps: np.ndarray) -> dict:
    """The unit-free quantities of one ``(3, H, W)`` science/reference/difference triplet."""
    sci, ref, diff = (np.asarray(s, dtype=float) for s in stamps)
    h, w = diff.shape
    cy, cx = h // 2, w // 2
    box = (slice(cy - 7, cy + 8), slice(cx - 7, cx + 8))
    nan = float(np.mean(~np.isfinite(stamps)))
    s_sci, s_ref, s_diff = _sigma(sci), _sigma(ref), _sigma(diff)
    d = np.nan_to_num(diff[box] - np.nanmedian(diff), nan=0.0)
    peak_d = float(np.max(d[4:11, 4:11]))
    s = np.nan_to_num(sci[box] - np.nanmedian(sci), nan=0.0)
    peak_s = float(np.max(s[4:11, 4:11]))
    wts = np.clip(d, 0, None)
    wts[wts < 2 * s_diff] = 0  # the source, not the noise
    fwhm = np.nan
    if wts.sum() > 0:
        yy, xx = np.mgrid[:15, :15]
        my, mx = (wts * yy).sum() / wts.sum(), (wts * xx).sum() / wts.sum()
        var = ((wts * ((yy - my) ** 2 + (xx - mx) ** 2)).sum() / wts.sum()) / 2
        fwhm = 2.3548 * np.sqrt(var) if var > 0 else np.nan
    return {
        "fwhm_px": fwhm,
        "diff_snr": peak_d / s_diff if s_diff > 0 else np.nan,
        "ref_over_sci_noise": s_ref / s_sci if s_sci > 0 else np.nan,
        "diff_over_sci_noise": s_diff / s_sci if s_sci > 0 else np.nan,
        "diff_over_sci_peak": peak_d / peak_s if peak_s > 0 else np.nan,
        "nan_fraction": nan,
    }


def real_properties(alerts: Path, drb_min: float = 0.9) -> dict[str, np.ndarray]:
    from skyscan.cases.transients.alerts import read_alerts

    rows = []
    for det in read_alerts(alerts, "parquet", failures=[]):
        if (det.extra.get("drb") or 0) > drb_min:
            rows.append(properties(det.stamps))
    return {k: np.array([r[k] for r in rows]) for k in QUANTITIES}


def simulated_properties(shards, positives) -> dict[str, np.ndarray]:
    from skyscan.data.shards import read_images

    rows = []
    for shard in shards:
        images, table, _ = read_images(shard)
        kinds = table.column("kind").to_pylist()
        rows += [properties(im[:3]) for im, k in zip(images, kinds, strict=True) if k in positives]
    return {k: np.array([r[k] for r in rows]) for k in QUANTITIES}


def compare(real: dict, sim: dict) -> list[dict]:
    from scipy.stats import ks_2samp

    out = []
    for name, what in QUANTITIES.items():
        a, b = real[name][np.isfinite(real[name])], sim[name][np.isfinite(sim[name])]
        test = ks_2samp(a, b) if len(a) and len(b) else None
        out.append(
            {
                "quantity": name,
                "what": what,
                "real": np.percentile(a, [50, 16, 84]).tolist() if len(a) else None,
                "sim": np.percentile(b, [50, 16, 84]).tolist() if len(b) else None,
                "n_real": int(len(a)),
                "n_sim": int(len(b)),
                "ks_d": float(test.statistic) if test else None,
                "ks_p": float(test.pvalue) if test else None,
            }
        )
    return out


def table(rows: list[dict]) -> str:
    def q(v):
        return "-" if v is None else f"{v[0]:.3g} ({v[1]:.3g}-{v[2]:.3g})"

    lines = [
        "| quantity | real ZTF, drb > 0.9: median (16-84%) | simulated real kinds | KS D | p "
        "| n real / sim |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['quantity']} | {q(r['real'])} | {q(r['sim'])} | {r['ks_d']:.2f} | "
            f"{r['ks_p']:.1e} | {r['n_real']} / {r['n_sim']} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("shards", nargs="+", help="simulated transient shards (Parquet)")
    parser.add_argument("--alerts", type=Path, default=DEFAULT_ALERTS)
    args = parser.parse_args(argv)
    from skyscan.core.case import get_case

    positives = set(get_case("transients").positive_kinds)
    rows = compare(real_properties(args.alerts), simulated_properties(args.shards, positives))
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
