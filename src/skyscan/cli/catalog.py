"""``skyscan catalog import``: Parquet, CSV or FITS tables into a HATS catalogue."""

from __future__ import annotations

import argparse

from skyscan.cli._group import group_parser, run_group
from skyscan.core.command import CommandParser

PROG = "skyscan catalog"
IMPORT_PROG = "skyscan catalog import"


def parser() -> argparse.ArgumentParser:
    """The verb's options: its sub-commands."""
    return group_parser(PROG, "Catalogues for the search, as HATS (lsdb reads them).", SUBCOMMANDS)


def main(argv=None) -> int:
    """Run ``skyscan catalog import ...``."""
    return run_group(PROG, parser, SUBCOMMANDS, argv)


def import_parser() -> argparse.ArgumentParser:
    """Options of ``skyscan catalog import``."""
    p = CommandParser(
        prog=IMPORT_PROG,
        description=(
            "Turn Parquet, CSV or FITS tables (concatenated, same columns) into one HATS "
            "catalogue that lsdb.open_catalog reads and `skyscan search` takes, keeping every "
            "column. Positions in degrees or sexagesimal (RA in hours, '10:41:17.3'). The "
            "position and identifier are written as 'ra', 'dec' and 'id' (the names every "
            "later verb reads), the input's own columns kept beside them; an 'id' of row "
            "numbers is added when the identifier column is absent; NaN positions, "
            "|Dec| > 90 and duplicated identifiers are refused, naming the first rows."
        ),
    )
    p.add_argument("tables", nargs="+", help="input tables (.parquet, .csv, .fits)")
    p.add_argument("--out", required=True, help="the HATS catalogue folder to write")
    p.add_argument(
        "--ra-column",
        default="ra",
        help="the input's right ascension column (degrees, or hours as '10:41:17.3'); written "
        "as 'ra' (default: ra)",
    )
    p.add_argument(
        "--dec-column",
        default="dec",
        help="the input's declination column (degrees or '+12:30:00'); written as 'dec' "
        "(default: dec)",
    )
    p.add_argument(
        "--id-column",
        default="id",
        help="the input's unique identifier column, written as 'id'; row numbers when the "
        "table has none (default: id)",
    )
    p.add_argument(
        "--partition-rows",
        type=int,
        help="most rows per partition, one search task each (default: search.partition_rows, "
        "100,000 in the built-in config)",
    )
    p.add_argument("--name", help="catalogue name (default: the folder's name)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing catalogue")
    p.add_argument("--config", help="YAML/JSON config (search.partition_rows)")
    return p


def import_main(argv=None) -> int:
    """Run ``skyscan catalog import`` (``argv`` without the word ``import``)."""
    from skyscan.core.command import run_command

    # Errors read "skyscan catalog: error: ...", as before the verb had a help of its own.
    return run_command(PROG, import_parser, _run, argv)


def _run(args) -> int:
    import json

    from skyscan.catalog.hats_catalog import import_catalog
    from skyscan.config import load_config
    from skyscan.core.errors import ConfigError

    search = load_config(args.config, stage="search")["search"]
    rows = search["partition_rows"] if args.partition_rows is None else args.partition_rows
    if rows < 1:
        raise ConfigError(f"--partition-rows must be >= 1, got {rows}")
    summary = import_catalog(
        args.tables,
        args.out,
        ra_column=args.ra_column,
        dec_column=args.dec_column,
        id_column=args.id_column,
        partition_rows=rows,
        name=args.name,
        overwrite=args.overwrite,
    )
    print(json.dumps(summary, indent=1))
    return 0


SUBCOMMANDS = {
    "import": ("Parquet, CSV or FITS tables into one HATS catalogue", import_main),
}


if __name__ == "__main__":
    raise SystemExit(main())
