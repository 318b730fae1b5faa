"""``skyscan make-tiles``: simulated survey tiles (FITS + WCS) with injected lenses."""

from __future__ import annotations

import argparse

from skyscan.core.command import CommandParser

PROG = "skyscan make-tiles"


def parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = CommandParser(
        prog=PROG,
        description=(
            "Render a grid of survey tiles (one FITS file per band with a TAN WCS) holding "
            "field galaxies, stars, deflectors and injected lenses, with the truth catalogue "
            "and the input catalogue of deflector candidates to score. `skyscan tiles index` "
            "then indexes them for the search."
        ),
    )
    p.add_argument("--config", help="YAML/JSON config (seed; lenses: survey, bands, priors, tiles)")
    p.add_argument("--out", required=True, help="folder for the tiles and catalogues")
    return p


def main(argv=None) -> int:
    """Run the command."""
    from skyscan.core.command import run_command

    return run_command(PROG, parser, _run, argv)


def _run(args) -> int:
    import json

    import torch

    from skyscan.cases.lenses.tiles import make_tiles
    from skyscan.config import load_config

    torch.set_num_threads(1)
    config = load_config(args.config, {"case": "lenses"}, stage="tiles")
    summary = make_tiles(config, args.out)
    print(json.dumps({k: summary[k] for k in ("objects", "catalog_rows")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
