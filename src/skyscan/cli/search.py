"""``skyscan search``: score catalog positions on survey tiles, partitioned by HEALPix."""

from __future__ import annotations

import argparse

from skyscan.core.command import CommandParser, show_progress

PROG = "skyscan search"


def parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = CommandParser(
        prog=PROG,
        description=(
            "Cut stamps around catalog positions from FITS tiles (one file per band, any "
            "celestial WCS, .fits.gz and multi-extension files accepted), score them with an "
            "exported model, one Dask task per HEALPix pixel, and write "
            "OUT/partitions/Norder=K/Dir=D/Npix=P.parquet, OUT/candidates.parquet, "
            "OUT/failures.json and OUT/summary.json. A re-run redoes only missing partitions."
        ),
    )
    p.add_argument("--model", required=True, help="model card (model_card.json)")
    p.add_argument("--tiles", required=True, help="folder holding the tile files")
    p.add_argument("--catalog", required=True, help="Parquet or CSV with ra, dec [, id]")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--config", help="YAML/JSON config (the 'search' keys)")
    p.add_argument("--workers", type=int, help="override search.workers (0: no Dask)")
    p.add_argument("--order", type=int, help="override search.order")
    p.add_argument("--pattern", help="override search.pattern, e.g. '{tile}.{band}.fits.gz'")
    return p


def main(argv=None) -> int:
    """Run the command."""
    from skyscan.core.command import run_command

    return run_command(PROG, parser, _run, argv)


def _run(args) -> int:
    import json

    from skyscan.config import load_config
    from skyscan.search.gallery import write_gallery
    from skyscan.search.run import plan_search, run_search

    overrides = {
        "search": {
            k: v
            for k, v in (
                ("workers", args.workers),
                ("order", args.order),
                ("pattern", args.pattern),
            )
            if v is not None
        }
    }
    sc = load_config(args.config, overrides)["search"]
    plan = plan_search(
        args.model, args.tiles, args.catalog, args.out, sc["order"], sc["pattern"], sc["hdu"]
    )
    plan.batch_size = sc["batch_size"]
    summary = run_search(plan, sc["workers"], progress=show_progress(args), cluster=sc["cluster"])
    write_gallery(plan, sc["gallery"])
    print(json.dumps({k: v for k, v in summary.items() if k != "failures"}, indent=1))
    if summary["failures"]:
        print(f"{len(summary['failures'])} failure(s): see {plan.out_dir / 'failures.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
