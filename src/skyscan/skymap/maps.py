"""HEALPix sky maps of a search and the injection-recovery of its tiles.

Maps (NESTED, ``skymaps.order``): the searched footprint (pixels whose centres fall inside a
tile, from the tiles' WCS), cutouts scored, candidates above the threshold and mean score;
written as one HEALPix FITS file (healpy) and drawn as Mollweide and zoomed gnomonic PNGs
(east to the left, the whole footprint in view).
The threshold is the evaluation stage's operating point (chosen on the validation split at
``evaluate.fpr``), so the search is judged at the threshold the test split was.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from skyscan.core.atomic import (
    save_figure_atomic,
    write_fits_atomic,
    write_json_atomic,
    write_text_atomic,
)
from skyscan.evaluate.metrics import completeness_grid, wilson_interval
from skyscan.skymap.healpix import nside, pixel_area_deg2

__all__ = [
    "footprint_pixels",
    "make_maps",
    "zoom_frame",
    "draw_zoom",
    "injection_recovery",
]

MAP_NAMES = ("footprint", "scored", "candidates", "mean_score")


def _table(source, columns):
    """Columns of a pyarrow table, or of a Parquet file."""
    if hasattr(source, "select"):
        return source.select(columns)
    return pq.read_table(source, columns=columns)


def footprint_pixels(tiles, order: int) -> np.ndarray:
    """NESTED pixels whose centres lie inside any tile (tiles need ``corners()``)."""
    import healpy as hp

    pixels = set()
    for tile in tiles:
        corners = tile.corners()
        vec = hp.ang2vec(corners[:, 0], corners[:, 1], lonlat=True)
        pixels.update(hp.query_polygon(nside(order), vec, inclusive=False, nest=True).tolist())
    return np.array(sorted(pixels), dtype=np.int64)


def _write_partial_map(path: Path, order: int, pixels: np.ndarray, maps: dict) -> None:
    """A HEALPix FITS map with explicit indices (``INDXSCHM = EXPLICIT``), as healpy writes
    partial maps: only the pixels of the searched region, so a fine order stays small."""
    from astropy.io import fits

    cols = [fits.Column(name="PIXEL", format="K", array=pixels)]
    cols += [fits.Column(name=name.upper(), format="D", array=maps[name]) for name in MAP_NAMES]
    hdu = fits.BinTableHDU.from_columns(cols)
    hdu.header.update(
        PIXTYPE="HEALPIX",
        ORDERING="NESTED",
        INDXSCHM="EXPLICIT",
        NSIDE=nside(order),
        OBJECT="PARTIAL",
        COORDSYS="C",
        FIRSTPIX=0,
        LASTPIX=12 * nside(order) ** 2 - 1,
    )
    write_fits_atomic(fits.HDUList([fits.PrimaryHDU(), hdu]), path)


def make_maps(scores, tiles, order: int, logit_threshold: float, out_dir) -> dict:
    """Write ``skymaps.fits`` (partial HEALPix map, NESTED) and the PNGs; return a summary.

    Each PNG shows the whole footprint zoomed (gnomonic, east to the left, see
    :func:`draw_zoom`) beside an all-sky Mollweide locator.

    Parameters
    ----------
    scores : str, Path or pyarrow.Table
        Every scored object (``ra``, ``dec``, ``score``, ``logit``), a table or Parquet file.
    tiles : list of Tile
        The searched tiles (``corners()``, ICRS).
    order : int
        HEALPix order of the maps.
    logit_threshold : float
        Candidates are the objects with a logit above it.
    out_dir : str or Path
        Gets ``skymaps.fits`` and one PNG per map.

    Returns
    -------
    dict
        Order, footprint (pixels, deg²), objects scored and candidates above threshold.
    """
    import healpy as hp
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cand = _table(scores, ["ra", "dec", "score", "logit"])
    pix = hp.ang2pix(
        nside(order),
        cand.column("ra").to_numpy(),
        cand.column("dec").to_numpy(),
        nest=True,
        lonlat=True,
    ).astype(np.int64)
    foot = footprint_pixels(tiles, order)
    pixels = np.union1d(foot, pix)
    where = np.searchsorted(pixels, pix)
    above = cand.column("logit").to_numpy() > logit_threshold
    maps = {name: np.zeros(len(pixels)) for name in MAP_NAMES}
    maps["footprint"][np.searchsorted(pixels, foot)] = 1.0
    np.add.at(maps["scored"], where, 1.0)
    np.add.at(maps["candidates"], where[above], 1.0)
    score_sum = np.zeros(len(pixels))
    np.add.at(score_sum, where, cand.column("score").to_numpy())
    with np.errstate(invalid="ignore", divide="ignore"):
        maps["mean_score"] = np.where(maps["scored"] > 0, score_sum / maps["scored"], hp.UNSEEN)
    _write_partial_map(out_dir / "skymaps.fits", order, pixels, maps)

    ra0, dec0, half = zoom_frame(np.concatenate([t.corners() for t in tiles]))
    coarse_order = min(order, 6)
    coarse = np.zeros(hp.nside2npix(nside(coarse_order)))
    for name in MAP_NAMES:
        values = np.where(maps["footprint"] > 0, maps[name], np.nan)
        if name == "mean_score":
            values = np.where(maps["scored"] > 0, values, np.nan)
        coarse[:] = hp.UNSEEN
        shifted = pixels >> np.int64(2 * (order - coarse_order))
        ok = np.isfinite(values)
        coarse[shifted[ok]] = values[ok]  # the region is a few coarse pixels: last one wins
        # The zoomed gnomonic view leads (left); the all-sky Mollweide, nearly empty for a
        # small search, is only a locator (right).
        fig = plt.figure(figsize=(11, 4.5))
        ax = fig.add_subplot(1, 2, 1)
        im = draw_zoom(ax, pixels, values, order, ra0, dec0, half)
        fig.colorbar(im, ax=ax, shrink=0.8)
        ax.set_title(f"{name}, order {order} (gnomonic)", fontsize=10)
        with _quiet_healpy():
            hp.mollview(
                coarse,
                nest=True,
                fig=fig.number,
                sub=(1, 2, 2),
                cbar=False,
                notext=True,
                title=f"where: {name} (HEALPix order {coarse_order})",
            )
            hp.projscatter(ra0, dec0, lonlat=True, s=120, facecolors="none", edgecolors="red")
            hp.graticule(dpar=30, dmer=30, alpha=0.3)
        save_figure_atomic(fig, out_dir / f"{name}.png", dpi=90)
        plt.close(fig)
    return {
        "order": order,
        "footprint_pixels": int(len(foot)),
        "footprint_deg2": float(len(foot) * pixel_area_deg2(order)),
        "scored": int(len(cand)),
        "candidates_above_threshold": int(above.sum()),
        "logit_threshold": float(logit_threshold),
    }


@contextlib.contextmanager
def _quiet_healpy():
    """Silence healpy's graticule chatter ("0.0 180.0 -180.0 180.0", "The interval between
    parallels is ..."): older healpy prints it to stdout, newer logs it at INFO; neither is
    the command's output, whose stdout is its JSON summary."""
    logger = logging.getLogger("healpy")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def zoom_frame(corners, margin_arcmin: float = 0.5) -> tuple[float, float, float]:
    """Centre and half-width of the zoomed gnomonic panel that holds a whole footprint.

    Parameters
    ----------
    corners : array_like, shape (n, 2)
        RA/Dec (deg, ICRS) of the footprint's corners (every tile's ``corners()``).
    margin_arcmin : float, optional
        Added to the half-width, so candidates on the footprint's edge are not on the
        panel's border.

    Returns
    -------
    ra0, dec0 : float
        The panel's centre (deg): the middle of the corners' gnomonic bounding box.
    half : float
        Half-width (deg) of the square panel, in both gnomonic coordinates
        (ΔRA·cos(Dec) and ΔDec): the larger of the footprint's two half-extents plus the
        margin, so a footprint wide in RA is not cut to its Dec extent.
    """
    corners = np.asarray(corners, dtype=float).reshape(-1, 2)
    rad = np.radians(corners[:, 0])
    ra0 = float(np.degrees(np.arctan2(np.sin(rad).mean(), np.cos(rad).mean())) % 360)
    dec0 = float(corners[:, 1].mean())
    # Re-centre on the projected bounding box: overlapping or unequal tiles make the mean
    # corner lie off the middle, and a panel centred there would cut one side.
    x, y = _tan_forward(corners[:, 0], corners[:, 1], ra0, dec0)
    ra_c, dec_c = _tan_inverse((x.max() + x.min()) / 2, (y.max() + y.min()) / 2, ra0, dec0)
    ra0, dec0 = float(ra_c), float(dec_c)
    x, y = _tan_forward(corners[:, 0], corners[:, 1], ra0, dec0)
    half = max(float(np.abs(x).max()), float(np.abs(y).max())) + margin_arcmin / 60
    return ra0, dec0, half


def draw_zoom(
    ax, pixels, values, order: int, ra0: float, dec0: float, half: float, size: int = 300
):
    """Draw a partial NESTED HEALPix map as a gnomonic panel, east to the left.

    The panel's x axis is the gnomonic ΔRA·cos(Dec) and its y axis ΔDec, both in arcmin
    from (``ra0``, ``dec0``); x grows to the left (east left, north up, as on the sky), so a
    pixel east of the centre has a positive x and is drawn left of it.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Gets the image, its axis labels and limits.
    pixels : array_like of int
        NESTED pixel indices of the partial map.
    values : array_like of float
        The map's values at ``pixels`` (NaN: not drawn).
    order : int
        HEALPix order of ``pixels``.
    ra0, dec0 : float
        The panel's centre (deg), e.g. from :func:`zoom_frame`.
    half : float
        Half-width of the panel (deg).
    size : int, optional
        Cells per side of the sampled image.

    Returns
    -------
    matplotlib.image.AxesImage
        The image; its ``extent`` is ``[+half, -half, -half, +half]`` in arcmin and column 0
        is the east edge.
    """
    import healpy as hp

    # The map is sampled on our own TAN grid (astropy WCS, then healpy.ang2pix) instead of
    # healpy.gnomview: gnomview needs a full-sky array, 12·4^order values (3e9 at order 14),
    # while this map holds only the searched pixels.
    pixels = np.asarray(pixels, dtype=np.int64)
    values = np.asarray(values, dtype=float)
    sort = np.argsort(pixels)
    pixels, values = pixels[sort], values[sort]
    centres = (np.arange(size) + 0.5) / size * 2 - 1  # -1 .. 1, cell centres
    # Column 0 is the east edge (x = +half), row 0 the south edge, to match the extent.
    gx, gy = np.meshgrid(-centres * half, centres * half)
    ra, dec = _tan_inverse(gx, gy, ra0, dec0)
    image = np.full(gx.shape, np.nan)
    if len(pixels):
        zoom_pix = hp.ang2pix(nside(order), ra, dec, nest=True, lonlat=True)
        idx = np.clip(np.searchsorted(pixels, zoom_pix), 0, len(pixels) - 1)
        found = pixels[idx] == zoom_pix
        image[found] = values[idx[found]]
    arcmin = half * 60
    im = ax.imshow(
        image,
        origin="lower",
        extent=[arcmin, -arcmin, -arcmin, arcmin],
        cmap="viridis",
        interpolation="nearest",
    )
    ax.set_xlim(arcmin, -arcmin)  # east (larger RA) to the left
    ax.set_ylim(-arcmin, arcmin)
    ax.set_xlabel(f"ΔRA·cos(Dec) (arcmin, east ←) from {ra0:.4f}°")
    ax.set_ylabel(f"ΔDec (arcmin, north ↑) from {dec0:.4f}°")
    return im


def _tan_wcs(ra0, dec0):
    """A TAN WCS about (ra0, dec0) whose "pixel" coordinates are the gnomonic standard
    coordinates in degrees: x positive east (FITS convention), y positive north."""
    from astropy.wcs import WCS

    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra0, dec0]
    w.wcs.crpix = [1.0, 1.0]  # pixel 0 (origin 0) is the tangent point
    w.wcs.cdelt = [1.0, 1.0]
    return w


def _tan_forward(ra, dec, ra0, dec0):
    """Gnomonic offsets x (east, deg) and y (north, deg) of RA/Dec (deg) about a centre."""
    x, y = _tan_wcs(ra0, dec0).wcs_world2pix(
        np.asarray(ra, float).ravel(), np.asarray(dec, float).ravel(), 0
    )
    return x.reshape(np.shape(ra)), y.reshape(np.shape(ra))


def _tan_inverse(x, y, ra0, dec0):
    """RA/Dec (deg) of gnomonic-plane offsets x (east, deg) and y (north, deg) about a centre."""
    ra, dec = _tan_wcs(ra0, dec0).wcs_pix2world(
        np.asarray(x, float).ravel(), np.asarray(y, float).ravel(), 0
    )
    return ra.reshape(np.shape(x)) % 360, dec.reshape(np.shape(x))


def injection_recovery(
    case,
    candidates_path,
    truth_path,
    metrics: dict,
    area_deg2: float,
    out_dir,
    cutout_radius_arcsec: float | None = None,
) -> dict:
    """Completeness of the injected positives in the case's strata, and false positives per
    deg^2, at the evaluation's threshold, written beside the evaluation's own numbers.

    Parameters
    ----------
    case : skyscan.core.case.Case
        Says which kinds are positives and what the strata are.
    candidates_path : str, Path or pyarrow.Table
        Every scored object of the search (``id``, ``logit``).
    truth_path : str or Path
        The tiles' ``truth.parquet`` (``id``, ``kind`` and the strata's columns).
    metrics : dict
        The evaluation's metrics (threshold, strata record, headline).
    area_deg2 : float
        The searched footprint.
    out_dir : str or Path
        Gets ``injection_recovery.{md,json}`` and ``injection_completeness.png``.
    cutout_radius_arcsec : float, optional
        Half-diagonal of a cutout.  A non-lens within it of an injected positive has that
        positive's light in its cutout, so it is not a clean negative: such objects are left
        out of the false-positive rate and counted apart.  The simulated tiles inject lenses
        far more densely than the sky holds them (a few per arcmin², against about one per
        10 deg²), so without this the tiles' rate would count lenses as false positives.

    Returns
    -------
    dict
    """
    from skyscan.evaluate.plots import plot_completeness

    cand = _table(candidates_path, ["id", "logit"]).to_pydict()
    truth = pq.read_table(truth_path).to_pydict()
    by_id = {i: k for k, i in enumerate(truth["id"])}
    record = {
        k: v
        for k, v in metrics["completeness_grid"].items()
        if k not in ("completeness", "counts", "completeness_ci95")
    }
    threshold = metrics["operating_point"]["logit_threshold"]
    rows = np.array([by_id[i] for i in cand["id"]], dtype=np.int64)
    is_pos = case.label(np.asarray(truth["kind"], dtype=object)[rows], strict=False).astype(bool)
    passed = np.array(cand["logit"]) > threshold
    positives = {
        c: np.asarray(v, dtype=object)[rows][is_pos] for c, v in truth.items() if c != "kind"
    }
    strata = case.strata(positives, record)
    grid, counts = completeness_grid(
        strata.row_values, strata.col_values, passed[is_pos], strata.row_bins, strata.col_bins
    )
    injected = int(case.label(truth["kind"], strict=False).sum())
    head = case.headline(strata, passed[is_pos])
    n_head = head.n
    ci = None
    if head.completeness is not None and n_head:
        ci = wilson_interval(int(round(head.completeness * n_head)), n_head)
    headline = head.to_dict(ci)
    shares_cutout = np.zeros(len(rows), dtype=bool)
    if cutout_radius_arcsec and {"ra", "dec"} <= set(truth):
        shares_cutout = _near_positive(case, truth, rows, cutout_radius_arcsec) & ~is_pos
    clean = ~is_pos & ~shares_cutout
    fpr_check = false_positive_agreement(
        int((passed & clean).sum()), int(clean.sum()), metrics["operating_point"]
    )
    fpr_check["excluded_sharing_a_cutout_with_a_positive"] = {
        "n": int(shares_cutout.sum()),
        "above_threshold": int((passed & shares_cutout).sum()),
        "radius_arcsec": cutout_radius_arcsec,
    }
    result = {
        "threshold": {"logit": threshold, "fpr_on_test_split": metrics["operating_point"]["fpr"]},
        "positives_injected": injected,
        "positives_in_catalog": int(is_pos.sum()),
        "positives_recovered": int(passed[is_pos].sum()),
        "completeness_in_catalog": float(passed[is_pos].mean()) if is_pos.any() else None,
        "headline": {**headline, "evaluation": metrics["headline"].get("completeness")},
        "false_positives": int((passed & ~is_pos).sum()),
        "false_positives_per_deg2": (
            float((passed & ~is_pos).sum() / area_deg2) if area_deg2 > 0 else None
        ),
        "negatives_scored": int((~is_pos).sum()),
        "false_positive_rate": fpr_check,
        "completeness_grid": {
            "completeness": [
                [None if not np.isfinite(v) else float(v) for v in row] for row in grid
            ],
            "counts": counts.tolist(),
            **record,
        },
    }
    out_dir = Path(out_dir)
    plot_completeness(
        grid,
        counts,
        strata,
        out_dir / "injection_completeness.png",
        metrics["operating_point"]["fpr"],
        positives=case.positives,
        negatives=case.negatives,
    )
    lines = [
        "| quantity | injection-recovery on tiles | evaluation (test split) |",
        "|---|---|---|",
        f"| completeness, {headline.get('selection', 'headline')} "
        f"| {_fmt(headline.get('completeness'))} ({n_head} {case.positives}) "
        f"| {_fmt(metrics['headline'].get('completeness'))} |",
        f"| completeness, all {case.positives} in the catalog "
        f"| {_fmt(result['completeness_in_catalog'])} "
        f"({result['positives_in_catalog']} of {injected} injected) | "
        f"{_fmt(metrics['operating_point']['tpr'])} |",
        f"| false positives | {result['false_positives']} of {result['negatives_scored']} "
        f"{case.negatives}; {_per_area(result['false_positives_per_deg2'])} | - |",
        f"| false-positive rate (95% interval) | {_rate(fpr_check['tiles'])} | "
        f"{_rate(fpr_check['test'])} |",
        "",
        f"Threshold chosen on the validation split (target FPR "
        f"{metrics['operating_point'].get('target_fpr', 0.01):g}). " + fpr_check["verdict"],
    ]
    excluded = fpr_check["excluded_sharing_a_cutout_with_a_positive"]
    if excluded["n"]:
        lines.append(
            f"Left out of the tiles' rate: {excluded['n']} {case.negatives} with an injected "
            f'{case.positive} within {cutout_radius_arcsec:.1f}" (in their cutout), '
            f"{excluded['above_threshold']} of them above threshold."
        )
    write_text_atomic(out_dir / "injection_recovery.md", "\n".join(lines) + "\n")
    write_json_atomic(out_dir / "injection_recovery.json", result)
    return result


def _near_positive(case, truth: dict, rows: np.ndarray, radius_arcsec: float) -> np.ndarray:
    """For the catalogue rows ``rows`` of ``truth``: whether another injected positive lies
    within ``radius_arcsec`` (astropy's nearest-neighbour match on the sky)."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    kinds = np.asarray(truth["kind"], dtype=object)
    positive = np.flatnonzero(case.label(kinds, strict=False).astype(bool))
    if len(positive) == 0 or len(rows) == 0:
        return np.zeros(len(rows), dtype=bool)
    ra, dec = np.asarray(truth["ra"], float), np.asarray(truth["dec"], float)
    objects = SkyCoord(ra[rows] * u.deg, dec[rows] * u.deg)
    injected = SkyCoord(ra[positive] * u.deg, dec[positive] * u.deg)
    if len(positive) == 1:
        sep = objects.separation(injected[0])
        nearest_index = np.zeros(len(rows), dtype=int)
    else:
        nearest_index, sep, _ = objects.match_to_catalog_sky(injected)
    near = sep.arcsec < radius_arcsec
    return near & (positive[nearest_index] != rows)


def false_positive_agreement(fp_tiles: int, n_tiles: int, operating_point: dict) -> dict:
    """Whether the false-positive rate on the tiles agrees with the test split's, at the same
    threshold: Fisher's exact test of equal rates (agreement: p > 0.05) and the tiles' 95%
    upper limit at most twice the test rate.

    Parameters
    ----------
    fp_tiles, n_tiles : int
        Non-lens objects above threshold on the tiles, and scored there.
    operating_point : dict
        The evaluation's ``operating_point`` (``fpr``, ``n_negative``).

    Returns
    -------
    dict
        ``tiles`` and ``test`` (each ``k``, ``n``, ``rate``, ``rate_ci95``),
        ``fisher_p``, ``upper_over_test``, ``agree`` and a one-line ``verdict``.
    """
    from scipy.stats import fisher_exact

    n_test = operating_point.get("n_negative")
    fp_test = None if n_test is None else int(round(operating_point["fpr"] * n_test))

    def block(k, n):
        if n is None or n == 0:
            return {"k": k, "n": n, "rate": None, "rate_ci95": None}
        return {"k": k, "n": n, "rate": k / n, "rate_ci95": wilson_interval(k, n)}

    tiles, test = block(fp_tiles, n_tiles), block(fp_test, n_test)
    out = {"tiles": tiles, "test": test, "fisher_p": None, "upper_over_test": None}
    if not n_tiles or not n_test:
        out.update(agree=None, verdict="Too few non-lenses to compare the rates.")
        return out
    p = float(fisher_exact([[fp_tiles, n_tiles - fp_tiles], [fp_test, n_test - fp_test]])[1])
    ratio = tiles["rate_ci95"][1] / test["rate"] if test["rate"] else None
    agree = p > 0.05 and ratio is not None and ratio <= 2.0
    out.update(fisher_p=p, upper_over_test=ratio, agree=agree)
    ratio_text = "n/a (no false positive on test)" if ratio is None else f"{ratio:.2f}"
    # Two criteria, said apart: a Fisher p above 0.05 only fails to show a difference; the
    # rates are said to agree when, besides, the tiles' interval is tight enough (<= 2x).
    if agree:
        conclusion = "the rates agree."
    elif p <= 0.05:
        conclusion = "the rates differ."
    else:
        conclusion = (
            "no difference is shown, but the tiles' interval is too wide to show that the "
            "rates agree (more non-lenses on the tiles would)."
        )
    out["verdict"] = (
        f"Tiles vs test split: Fisher exact p = {p:.3g} "
        f"({'no evidence of' if p > 0.05 else 'evidence of'} different rates), tiles' upper "
        f"95% limit / test rate = {ratio_text} (goal <= 2): {conclusion}"
        + (f" Only {n_tiles} non-lenses on the tiles." if n_tiles < 2000 else "")
    )
    return out


def _rate(block: dict) -> str:
    if block["rate"] is None:
        return "n/a"
    lo, hi = block["rate_ci95"]
    rate = f"{100 * block['rate']:.2f}% [{100 * lo:.2f}, {100 * hi:.2f}]"
    return f"{rate} ({block['k']} of {block['n']})"


def _per_area(v):
    return "n/a per deg² (no footprint pixel at this order)" if v is None else f"{v:.0f} per deg²"


def _fmt(v):
    return "n/a" if v is None else f"{v:.3f}"
