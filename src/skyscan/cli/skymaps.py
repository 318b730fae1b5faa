"""``skyscan skymaps``: HEALPix maps of a search and injection-recovery on the tiles."""

from __future__ import annotations

import argparse

from skyscan.core.command import CommandParser

PROG = "skyscan skymaps"


def parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = CommandParser(
        prog=PROG,
        description=(
            "Write HEALPix maps (NESTED) of the searched footprint, cutouts scored, candidates "
            "above the evaluation's 1% FPR threshold and mean score as skymaps.fits with "
            "Mollweide and zoomed PNGs; with --truth, the completeness of the injected "
            "positives (e.g. lenses) and the false positives per square degree beside the "
            "evaluation's numbers."
        ),
    )
    p.add_argument("--search", required=True, help="search output folder")
    p.add_argument("--tiles", required=True, help="tile folder (footprint from the WCS)")
    p.add_argument("--model", required=True, help="model card (bands and science case)")
    p.add_argument("--metrics", required=True, help="evaluation metrics.json (threshold)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--pattern", help="tile file names, with {tile} and {band} (default: search.pattern)"
    )
    p.add_argument("--truth", help="truth catalog of the tiles (injection-recovery)")
    p.add_argument("--config", help="YAML/JSON config (skymaps, search keys)")
    return p


def main(argv=None) -> int:
    """Run the command."""
    from skyscan.core.command import run_command

    return run_command(PROG, parser, _run, argv)


def _run(args) -> int:
    import json
    from pathlib import Path

    from skyscan.config import load_config
    from skyscan.core.atomic import write_json_atomic
    from skyscan.core.case import get_case
    from skyscan.core.errors import InputFileError, MismatchError
    from skyscan.models.card import read_card
    from skyscan.skymap.maps import injection_recovery, make_maps
    from skyscan.tiles.io import TileError, find_tiles, read_tile_wcs

    config = load_config(args.config, stage="skymaps")
    card = read_card(args.model)
    metrics_path = Path(args.metrics)
    try:
        metrics = json.loads(metrics_path.read_text())
        threshold = metrics["operating_point"]["logit_threshold"]
    except FileNotFoundError:
        raise InputFileError(f"{metrics_path}: no such file", path=metrics_path) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise InputFileError(
            f"{metrics_path}: not an evaluation metrics.json ({type(exc).__name__}: {exc})",
            path=metrics_path,
        ) from None
    if metrics.get("case", card.case) != card.case:
        raise MismatchError(
            f"{metrics_path}: evaluates a model of case {metrics['case']!r}, but "
            f"{args.model} is of case {card.case!r}",
            path=metrics_path,
        )
    pattern = args.pattern or config["search"]["pattern"]
    tiles, _ = find_tiles(args.tiles, card.bands, pattern, config["search"]["hdu"])
    usable = []
    for tile in tiles:
        try:
            usable.append(read_tile_wcs(tile))
        except TileError:
            continue
    from skyscan.catalog.hats_catalog import read_hats_columns

    scores = read_hats_columns(Path(args.search) / "scores", ["id", "ra", "dec", "score", "logit"])
    if not usable:
        raise InputFileError(f"{args.tiles}: no readable tile for the footprint", path=args.tiles)
    summary = make_maps(scores, usable, config["skymaps"]["order"], threshold, args.out)
    if args.truth:
        summary["injection_recovery"] = injection_recovery(
            get_case(card.case),
            scores,
            args.truth,
            metrics,
            summary["footprint_deg2"],
            args.out,
            cutout_radius_arcsec=_cutout_half_diagonal(card),
        )
    write_json_atomic(Path(args.out) / "skymaps.json", summary)
    print(json.dumps({k: v for k, v in summary.items() if k != "injection_recovery"}, indent=1))
    return 0


def _cutout_half_diagonal(card) -> float | None:
    """Half the diagonal of the model's cutout, in arcsec (None without a pixel scale)."""
    if not card.pixel_scale:
        return None
    return float(card.input_shape[-1]) * float(card.pixel_scale) / 2 * 2**0.5


if __name__ == "__main__":
    raise SystemExit(main())
