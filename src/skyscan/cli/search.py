"""``skyscan search``: score a HATS catalogue on survey tiles, one task per partition."""

from __future__ import annotations

import argparse
import sys

from skyscan.core.command import CommandParser, show_progress

PROG = "skyscan search"


def parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = CommandParser(
        prog=PROG,
        description=(
            "Cut stamps around the objects of a HATS catalogue (`skyscan catalog import` "
            "makes one) from FITS tiles (one file per band, any celestial frame, scaled "
            "integers, .fits.gz and multi-extension files accepted), score them with an "
            "exported model, one Dask task per catalogue partition, and write OUT/scores (a "
            "HATS catalogue: lsdb.open_catalog reads it), OUT/candidates.parquet (the objects "
            "at or above the model's threshold), OUT/failures.json and OUT/summary.json. A "
            "re-run redoes only missing partitions and those whose tiles failed. Without "
            "--index or --tiles, the samples are read from the catalogue's own rows (e.g. "
            "nested light curves), as the model's case describes them."
        ),
    )
    p.add_argument("--model", required=True, help="model card (model_card.json)")
    p.add_argument("--catalog", required=True, help="HATS catalogue folder")
    p.add_argument("--out", required=True, help="output folder")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--index", help="tile index folder (`skyscan tiles index`)")
    where.add_argument("--tiles", help="folder of tile files: indexed first into OUT/tile_index")
    p.add_argument("--config", help="YAML/JSON config (the 'search' keys)")
    p.add_argument("--workers", type=int, help="override search.workers (0: no Dask)")
    p.add_argument("--top-n", type=int, help="override search.top_n")
    p.add_argument("--pattern", help="with --tiles: override search.pattern")
    p.add_argument(
        "--parameters", help="a parameter network's card: its estimates beside the candidates"
    )
    p.add_argument(
        "--prevalence",
        type=float,
        help="override search.prevalence: share of positives among the objects searched, for "
        "the candidates' probability_at_prevalence",
    )
    return p


def main(argv=None) -> int:
    """Run the command."""
    from skyscan.core.command import run_command

    return run_command(PROG, parser, _run, argv)


def _run(args) -> int:
    import json
    from pathlib import Path

    from skyscan.config import load_config
    from skyscan.models.card import read_card
    from skyscan.search.gallery import write_gallery
    from skyscan.search.run import plan_search, run_search
    from skyscan.search.tile_index import build_tile_index

    overrides = {
        "search": {
            k: v
            for k, v in (
                ("workers", args.workers),
                ("top_n", args.top_n),
                ("pattern", args.pattern),
                ("prevalence", args.prevalence),
            )
            if v is not None
        }
    }
    sc = load_config(args.config, overrides, stage="search")["search"]
    index = args.index
    if index is None and args.tiles is not None:
        index = Path(args.out) / "tile_index"
        build_tile_index(
            args.tiles,
            read_card(args.model).bands,
            index,
            sc["pattern"],
            sc["hdu"],
            progress=show_progress(args),
        )
    plan = plan_search(
        args.model,
        index,
        args.catalog,
        args.out,
        batch_size=sc["batch_size"],
        top_n=sc["top_n"],
        parameters=args.parameters or sc["parameters"],
        prevalence=sc["prevalence"],
    )
    summary = run_search(plan, sc["workers"], progress=show_progress(args), cluster=sc["cluster"])
    write_gallery(plan, sc["gallery"])
    # stdout holds the JSON summary alone (`| jq` reads it); what went wrong goes to stderr
    print(json.dumps({k: v for k, v in summary.items() if k != "failures"}, indent=1, default=str))
    failures = summary["failures"]
    if failures:
        print(
            f"{PROG}: {len(failures)} failure(s): see {plan.out_dir / 'failures.json'}",
            file=sys.stderr,
        )
    if summary["rows"] == 0:
        print(f"{PROG}: error: {nothing_scored(plan, failures)}", file=sys.stderr)
        return 1
    return 0


def nothing_scored(plan, failures: dict) -> str:
    """Why a search scored no object: every tile refused or failed, or no object on a tile.

    Parameters
    ----------
    plan : skyscan.search.run.SearchPlan
    failures : dict
        Tile (or partition) name -> reason, as in ``failures.json``.

    Returns
    -------
    str
        One line naming the first refusal and where the rest are.
    """
    where = plan.out_dir / "failures.json"
    if failures:
        name, reason = next(iter(sorted(failures.items())))
        return (
            f"nothing scored: none of the {len(failures)} tile(s) is usable ({name}: {reason}; "
            f"all in {where})"
        )
    if plan.context.loader == "tiles":
        return (
            f"nothing scored: no object of {plan.catalog_dir} lies on a tile of the index "
            f"{plan.index_dir} (check that the catalogue and the tiles cover the same sky)"
        )
    return f"nothing scored: the catalogue {plan.catalog_dir} has no rows to score"


if __name__ == "__main__":
    raise SystemExit(main())
