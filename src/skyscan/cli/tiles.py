"""``skyscan tiles index``: index survey tiles (HEALPix coverage, pixel scale, noise) once.

Simulated tiles are made by a science case's own verb (``skyscan --help`` lists them).
"""

from __future__ import annotations

import argparse

from skyscan.cli._group import group_parser, run_group
from skyscan.core.command import CommandParser

PROG = "skyscan tiles"
INDEX_PROG = "skyscan tiles index"


def parser() -> argparse.ArgumentParser:
    """The verb's options: its sub-commands."""
    return group_parser(
        PROG,
        "Work with a folder of survey tiles (FITS, one file per band, any WCS).",
        SUBCOMMANDS,
    )


def main(argv=None) -> int:
    """Run ``skyscan tiles index ...``."""
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
    p.add_argument("--model", help="model card whose bands the tiles must have")
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
    if args.bands:
        bands = [b.strip() for b in args.bands.split(",") if b.strip()]
    elif args.model:
        from skyscan.models.card import read_card

        bands = read_card(args.model).bands
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
    )
    print(json.dumps({k: v for k, v in summary.items() if k != "problems"}, indent=1))
    if summary["problems"]:
        print(f"{len(summary['problems'])} tile(s) left out: see {args.out}/index.json")
    return 0


SUBCOMMANDS = {
    "index": ("tiles' HEALPix coverage, pixel scale and noise, for the search", index_main),
}


if __name__ == "__main__":
    raise SystemExit(main())
