"""``skyscan tiles``: simulated survey tiles (FITS + WCS) with injected lenses and catalogs."""

from __future__ import annotations

import argparse

from skyscan.core.command import CommandParser

PROG = "skyscan tiles"


def parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = CommandParser(
        prog=PROG,
        description=(
            "Render a grid of survey tiles (one FITS file per band with a TAN WCS) holding "
            "field galaxies, stars, deflectors and injected lenses, with the truth catalog "
            "and the input catalog of deflector candidates to score."
        ),
    )
    p.add_argument("--config", help="YAML/JSON config (seed, survey, bands, simulate, tiles)")
    p.add_argument("--out", required=True, help="folder for the tiles and catalogs")
    return p


def main(argv=None) -> int:
    """Run the command; ``skyscan tiles index ...`` builds a tile index instead."""
    import sys

    from skyscan.core.command import run_command

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "index":
        return run_command(INDEX_PROG, index_parser, _run_index, argv[1:])
    return run_command(PROG, parser, _run, argv)


INDEX_PROG = "skyscan tiles index"


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


def _run_index(args) -> int:
    import json

    from skyscan.config import load_config
    from skyscan.core.command import show_progress
    from skyscan.core.errors import ConfigError
    from skyscan.search.tile_index import build_tile_index

    search = load_config(args.config)["search"]
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


def _run(args) -> int:
    import json

    import torch

    from skyscan.cases.lenses.tiles import make_tiles
    from skyscan.config import load_config

    torch.set_num_threads(1)
    summary = make_tiles(load_config(args.config), args.out)
    print(json.dumps({k: summary[k] for k in ("objects", "catalog_rows")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
