"""``skyscan skymaps``: HEALPix maps of a search and injection-recovery on the tiles."""

from __future__ import annotations

import argparse

PROG = "skyscan skymaps"


def parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Write HEALPix maps (NESTED) of the searched footprint, cutouts scored, candidates "
            "above the evaluation's 1%% FPR threshold and mean score as skymaps.fits with "
            "Mollweide and zoomed PNGs; with --truth, the completeness of the injected lenses "
            "and the false positives per square degree beside the evaluation's numbers."
        ),
    )
    p.add_argument("--search", required=True, help="search output folder")
    p.add_argument("--tiles", required=True, help="tile folder (footprint from the WCS)")
    p.add_argument("--metrics", required=True, help="evaluation metrics.json (threshold)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--truth", help="truth catalog of the tiles (injection-recovery)")
    p.add_argument("--config", help="YAML/JSON config (skymaps, search keys)")
    return p


def main(argv=None) -> int:
    """Run the command."""
    from skyscan.cli import run_command

    return run_command(PROG, parser, _run, argv)


def _run(args) -> int:
    import json
    from pathlib import Path

    from skyscan.config import load_config
    from skyscan.search.tiles import TileError, find_tiles, read_tile_wcs
    from skyscan.skymap.maps import injection_recovery, make_maps

    config = load_config(args.config)
    metrics = json.loads(Path(args.metrics).read_text())
    card_bands = config["bands"]
    tiles, _ = find_tiles(
        args.tiles, card_bands, config["search"]["pattern"], config["search"]["hdu"]
    )
    usable = []
    for tile in tiles:
        try:
            usable.append(read_tile_wcs(tile))
        except TileError:
            continue
    candidates = Path(args.search) / "candidates.parquet"
    summary = make_maps(
        candidates,
        usable,
        config["skymaps"]["order"],
        metrics["operating_point"]["logit_threshold"],
        args.out,
    )
    if args.truth:
        summary["injection_recovery"] = injection_recovery(
            candidates, args.truth, metrics, summary["footprint_deg2"], args.out
        )
    out = Path(args.out) / "skymaps.json"
    out.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "injection_recovery"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
