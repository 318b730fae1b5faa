"""``skyscan catalog import``: Parquet, CSV or FITS tables into a HATS catalogue."""

from __future__ import annotations

import argparse

from skyscan.core.command import CommandParser

PROG = "skyscan catalog"


def parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = CommandParser(
        prog=PROG,
        description=(
            "Turn Parquet, CSV or FITS tables (concatenated, same columns) into one HATS "
            "catalogue that lsdb.open_catalog reads and `skyscan search` takes, keeping every "
            "column. Positions in degrees or sexagesimal (RA in hours, '10:41:17.3'); an 'id' "
            "of row numbers is added when the identifier column is absent; NaN positions, "
            "|Dec| > 90 and duplicated identifiers are refused, naming the first rows."
        ),
    )
    p.add_argument("tables", nargs="+", help="input tables (.parquet, .csv, .fits)")
    p.add_argument("--out", required=True, help="the HATS catalogue folder to write")
    p.add_argument("--ra-column", default="ra")
    p.add_argument("--dec-column", default="dec")
    p.add_argument("--id-column", default="id")
    p.add_argument(
        "--partition-rows",
        type=int,
        default=100_000,
        help="most rows per partition (one search task each; default 100,000)",
    )
    p.add_argument("--name", help="catalogue name (default: the folder's name)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing catalogue")
    return p


def main(argv=None) -> int:
    """Run ``skyscan catalog import ...``."""
    import sys

    from skyscan.core.command import run_command

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "import":
        argv = argv[1:]
    elif argv and not argv[0].startswith("-"):
        print(
            f"skyscan catalog: unknown sub-command {argv[0]!r} (allowed: import)", file=sys.stderr
        )
        return 2
    return run_command(PROG, parser, _run, argv)


def _run(args) -> int:
    import json

    from skyscan.catalog.hats_catalog import import_catalog
    from skyscan.core.errors import ConfigError

    if args.partition_rows < 1:
        raise ConfigError(f"--partition-rows must be >= 1, got {args.partition_rows}")
    summary = import_catalog(
        args.tables,
        args.out,
        ra_column=args.ra_column,
        dec_column=args.dec_column,
        id_column=args.id_column,
        partition_rows=args.partition_rows,
        name=args.name,
        overwrite=args.overwrite,
    )
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
