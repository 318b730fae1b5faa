"""``skyscan dataset``: train / val / test sets from simulation shards."""

from __future__ import annotations

import argparse

from skyscan.core.command import CommandParser, show_progress

PROG = "skyscan dataset"


def parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = CommandParser(
        prog=PROG,
        description=(
            "Split simulation shards into train, val and test sets (no example in two), "
            "balance classes, drop samples with NaN values (with a count) and store the "
            "preprocessed samples as memory-mappable arrays with their preprocessing."
        ),
    )
    p.add_argument("shards", nargs="+", help="simulation shards (.parquet)")
    p.add_argument("--out", required=True, help="dataset folder to write")
    p.add_argument("--config", help="YAML/JSON config (the 'seed' and 'dataset' keys)")
    return p


def main(argv=None) -> int:
    """Run the command."""
    from skyscan.core.command import run_command

    return run_command(PROG, parser, _run, argv)


def _run(args) -> int:
    import json

    from skyscan.config import load_config
    from skyscan.data.datasets import build_dataset

    manifest = build_dataset(
        args.shards,
        args.out,
        load_config(args.config, stage="dataset"),
        progress=show_progress(args),
    )
    print(json.dumps(manifest["splits"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
