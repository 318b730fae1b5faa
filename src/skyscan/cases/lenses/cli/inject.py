"""``skyscan inject``: paint simulated lensed arcs around catalogue galaxies in real tiles."""

from __future__ import annotations

import argparse

from skyscan.core.command import CommandParser

PROG = "skyscan inject"


def parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = CommandParser(
        prog=PROG,
        description=(
            "Add the light of simulated lensed sources (the training simulator's priors, PSF "
            "and noise model) around a random subset of catalogue galaxies, which act as the "
            "deflectors, in your FITS tiles (one file per band). Writes OUT/{tile}_{band}.fits "
            "in the input's storage conventions (scaled integers stay scaled integers) and "
            "OUT/injections.parquet (positions and truth), so that completeness can be "
            "measured on real backgrounds. The same seed gives the same bytes."
        ),
    )
    p.add_argument("--catalog", required=True, help="Parquet or CSV with ra, dec [, id, mag_*]")
    p.add_argument("--tiles", required=True, help="folder holding the tile files")
    p.add_argument("--out", required=True, help="output folder (not the tiles' folder)")
    how_many = p.add_mutually_exclusive_group(required=True)
    how_many.add_argument(
        "--fraction", type=float, help="fraction of the galaxies on the tiles to inject into"
    )
    how_many.add_argument("--n", type=int, help="number of galaxies to inject into")
    p.add_argument("--seed", type=int, help="random seed (default: the config's seed)")
    p.add_argument(
        "--config", help="YAML/JSON config (lenses: survey, bands, priors, tiles.stamp_size)"
    )
    p.add_argument("--survey", help="override the config's survey (PSF, zero points, depth)")
    p.add_argument("--bands", help="override the config's bands, comma-separated, e.g. g,r,i")
    p.add_argument("--pattern", default="{tile}_{band}.fits", help="tile file-name pattern")
    p.add_argument("--hdu", type=int, help="image HDU (default: first 2-D image with a WCS)")
    p.add_argument(
        "--zp-key",
        default="MAGZP",
        help="header keyword of a tile's zero point (AB mag of one pixel unit); without it "
        "tiles are taken to be in the survey's e-/s",
    )
    return p


def main(argv=None) -> int:
    """Run the command."""
    from skyscan.core.command import run_command

    return run_command(PROG, parser, _run, argv)


def _run(args) -> int:
    import json

    import torch

    from skyscan.cases.lenses.inject import inject_arcs
    from skyscan.config import load_config

    torch.set_num_threads(1)
    lens: dict = {}
    if args.survey:
        lens["survey"] = args.survey
    if args.bands:
        lens["bands"] = [b.strip() for b in args.bands.split(",") if b.strip()]
    config = load_config(args.config, {"case": "lenses", "lenses": lens}, stage="tiles")
    summary = inject_arcs(
        args.catalog,
        args.tiles,
        args.out,
        config,
        fraction=args.fraction,
        n=args.n,
        seed=args.seed,
        pattern=args.pattern,
        hdu=args.hdu,
        zp_key=args.zp_key,
    )
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
