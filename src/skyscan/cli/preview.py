"""``skyscan preview``: a PNG grid of simulated samples, one row per kind."""

from __future__ import annotations

import argparse

from skyscan.core.command import CommandParser

PROG = "skyscan preview"


def parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = CommandParser(
        prog=PROG,
        description=(
            "Draw the first few stamps of each kind found in simulation shards, as the "
            "science case draws them (e.g. colour composites labelled with kind, Einstein "
            "radius and S/N for lenses)."
        ),
    )
    p.add_argument("shards", nargs="+", help="simulation shard(s) (.parquet)")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--per-kind", type=int, default=4, help="examples per kind (default 4)")
    p.add_argument("--config", help="YAML/JSON config (its `case` says how to draw the stamps)")
    return p


def main(argv=None) -> int:
    """Run the command."""
    from skyscan.core.command import run_command

    return run_command(PROG, parser, _run, argv)


def _run(args) -> int:
    from skyscan.config import load_config
    from skyscan.core.case import get_case
    from skyscan.core.errors import UsageError

    if args.per_kind < 1:
        raise UsageError(f"--per-kind must be >= 1, got {args.per_kind}")
    from skyscan.core.errors import MismatchError
    from skyscan.data.shards import read_metadata

    case = get_case(load_config(args.config, stage="simulate")["case"])
    shard_case = read_metadata(args.shards[0]).get("case")
    if shard_case is not None and shard_case != case.name:
        raise MismatchError(
            f"{args.shards[0]}: a shard of case {shard_case!r}; pass --config with "
            f"case: {shard_case}",
            path=args.shards[0],
        )
    path = case.preview(args.shards, args.out, per_kind=args.per_kind)
    if path is None:  # the case leaves it to the shared preview
        from skyscan.data.preview import write_preview

        path = write_preview(case, args.shards, args.out, per_kind=args.per_kind)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
