"""``skyscan tiles index``: index survey tiles (HEALPix coverage, pixel scale, noise) once;
``skyscan tiles resample``: put tiles on the model's pixel scale (flux-conserving).

Simulated tiles are made by a science case's own verb (``skyscan --help`` lists them).
"""

from __future__ import annotations

import argparse

from skyscan.cli._group import group_parser, run_group
from skyscan.core.command import CommandParser

PROG = "skyscan tiles"
INDEX_PROG = "skyscan tiles index"
RESAMPLE_PROG = "skyscan tiles resample"


def parser() -> argparse.ArgumentParser:
    """The verb's options: its sub-commands."""
    return group_parser(
        PROG,
        "Work with a folder of survey tiles (FITS, one file per band, any WCS).",
        SUBCOMMANDS,
    )


def main(argv=None) -> int:
    """Run ``skyscan tiles index|resample ...``."""
    return run_group(PROG, parser, SUBCOMMANDS, argv, hint=HINT)


#: after the error line of a missing sub-command: where the old ``skyscan tiles --out`` went
HINT = "; simulated tiles are made by a science case's own verb ('skyscan --help' lists them)"


def index_parser() -> argparse.ArgumentParser:
    """Options of ``skyscan tiles index``."""
    p = CommandParser(
        prog=INDEX_PROG,
        description=(
            "Index survey tiles once for the search: each tile's footprint (through its own "
            "WCS and celestial frame) as NESTED HEALPix pixels, its pixel scale and background "
            "noise per band. Writes OUT/coverage.parquet (pixel -> tile), OUT/tiles.parquet "
            "and OUT/index.json (with the tiles that cannot be used and why)."
        ),
    )
    p.add_argument("tiles", help="folder holding the tile files")
    p.add_argument("--out", required=True, help="index folder")
    p.add_argument("--bands", help="comma-separated bands (default: the model card's)")
    p.add_argument(
        "--model",
        help="model card whose bands and pixel scale the tiles must have (tiles of another "
        "pixel scale are left out, with the command that resamples them)",
    )
    p.add_argument("--config", help="YAML/JSON config (search.pattern, search.hdu)")
    p.add_argument("--pattern", help="override search.pattern, e.g. '{tile}.{band}.fits.gz'")
    p.add_argument("--order", type=int, help="HEALPix order (default: ~4x4 pixels per tile)")
    return p


def index_main(argv=None) -> int:
    """Run ``skyscan tiles index`` (``argv`` without the word ``index``)."""
    from skyscan.core.command import run_command

    return run_command(INDEX_PROG, index_parser, _run_index, argv)


def _run_index(args) -> int:
    import json

    from skyscan.config import load_config
    from skyscan.core.command import show_progress
    from skyscan.core.errors import ConfigError
    from skyscan.search.tile_index import build_tile_index

    search = load_config(args.config, stage="search")["search"]
    card = None
    if args.model:
        from skyscan.models.card import read_card

        card = read_card(args.model)
    if args.bands:
        bands = [b.strip() for b in args.bands.split(",") if b.strip()]
    elif card is not None:
        bands = card.bands
    else:
        raise ConfigError("give --bands or --model (whose card names the bands)")
    if args.order is not None and not 0 <= args.order <= 16:
        raise ConfigError(f"--order must be in 0..16, got {args.order}")
    summary = build_tile_index(
        args.tiles,
        bands,
        args.out,
        pattern=args.pattern or search["pattern"],
        hdu=search["hdu"],
        order=args.order,
        progress=show_progress(args),
        # the search would refuse tiles of another pixel scale: leave them out here, saying how
        pixel_scale=card.pixel_scale if card is not None else None,
    )
    print(json.dumps({k: v for k, v in summary.items() if k != "problems"}, indent=1))
    if summary["problems"]:
        print(f"{len(summary['problems'])} tile(s) left out: see {args.out}/index.json")
    return 0


def resample_parser() -> argparse.ArgumentParser:
    """Options of ``skyscan tiles resample``."""
    p = CommandParser(
        prog=RESAMPLE_PROG,
        description=(
            "Resample tile files onto another pixel scale (the model card's pixel_scale) with "
            "reproject, conserving flux: same centre, orientation and projection, the same "
            "footprint, NaN outside it. Pixels are taken as flux per pixel (rescaled with the "
            "pixel area) unless BUNIT is per solid angle. The header keeps the input's "
            "keywords (BUNIT, MAGZP, GAIN, EXPTIME, FILTER, ...) and gains RSMPSCAL, RSMPMETH, "
            "RSMPAREA, RSMPFLUX, RSMPNOIS (per-pixel noise sigma out/in) and RSMPCORR (the "
            "noise correlation that 'skyscan tiles index' corrects its noise for). One output "
            "per input, with its file name, in OUT (a single-HDU file: index it without "
            "search.hdu)."
        ),
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="tile files (FITS, one per band)")
    p.add_argument(
        "--pixel-scale", type=float, required=True, metavar="ARCSEC", help="new pixel scale"
    )
    p.add_argument("--out", required=True, help="folder for the resampled files")
    p.add_argument("--hdu", type=int, help="image HDU (default: the first with a celestial WCS)")
    p.add_argument(
        "--method",
        choices=("exact", "adaptive"),
        default="exact",
        help="reproject_exact (default: spherical-polygon overlap, the least smoothing) or "
        "reproject_adaptive with conserve_flux (about 2x faster, smooths by about a pixel)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    return p


def resample_main(argv=None) -> int:
    """Run ``skyscan tiles resample`` (``argv`` without the word ``resample``)."""
    from skyscan.core.command import run_command

    return run_command(RESAMPLE_PROG, resample_parser, _run_resample, argv)


def _run_resample(args) -> int:
    import json
    import logging
    import math
    import sys
    from pathlib import Path

    from tqdm import tqdm

    from skyscan.core.command import show_progress
    from skyscan.core.errors import ResourceError, SkyscanError, UsageError
    from skyscan.tiles.resample import resample_tile

    log = logging.getLogger("skyscan.tiles.resample")
    if not (math.isfinite(args.pixel_scale) and args.pixel_scale > 0):
        raise UsageError(
            f"--pixel-scale must be a positive number of arcsec, got {args.pixel_scale}"
        )
    out = Path(args.out)
    files = list(dict.fromkeys(Path(f) for f in args.files))  # a file given twice: once
    names: dict[str, Path] = {}
    for f in files:
        if f.name in names and names[f.name] != f:
            raise UsageError(f"{f} and {names[f.name]} would both be written as {out / f.name}")
        names[f.name] = f
    if not args.overwrite:  # refuse before any work rather than stop half-way
        existing = [out / f.name for f in files if (out / f.name).exists()]
        if existing:
            raise UsageError(
                f"{existing[0]} exists ({len(existing)} output(s) in all; give --overwrite to "
                "replace them)"
            )
    failed = 0
    for f in tqdm(files, desc="resample", unit="file", disable=not show_progress(args)):
        try:
            done = resample_tile(
                f,
                out / f.name,
                args.pixel_scale,
                hdu=args.hdu,
                method=args.method,
                overwrite=args.overwrite,
            )
        except ResourceError:
            raise  # a full disk or a read-only folder fails every file alike
        except SkyscanError as exc:  # one bad file: say which, go on with the others
            failed += 1
            tqdm.write(f"{RESAMPLE_PROG}: error: {exc}", file=sys.stderr)
            continue
        log.debug(
            "%s -> %s: %s -> %s pixels, noise sigma x%.3f (correlation %.3f), %.1f s",
            f,
            done["output"],
            done["shape_in"],
            done["shape_out"],
            done["noise_ratio"],
            done["noise_correlation"],
            done["seconds"],
        )
    summary = {
        "files": len(files),
        "resampled": len(files) - failed,
        "failed": failed,
        "pixel_scale": args.pixel_scale,
        "method": args.method,
        "out": str(out),
    }
    print(json.dumps(summary, indent=1))
    if failed:
        print(
            f"{RESAMPLE_PROG}: error: {failed} of {len(files)} file(s) failed (each named above)",
            file=sys.stderr,
        )
        return 1
    log.info("resampled %d file(s) into %s", len(files), out)
    return 0


SUBCOMMANDS = {
    "index": ("tiles' HEALPix coverage, pixel scale and noise, for the search", index_main),
    "resample": ("tiles onto the model's pixel scale, conserving flux (reproject)", resample_main),
}


if __name__ == "__main__":
    raise SystemExit(main())
