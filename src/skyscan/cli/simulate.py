"""``skyscan simulate``: the configured science case's examples into Parquet shards."""

from __future__ import annotations

import argparse
import logging

from skyscan.core.command import CommandParser, show_progress

PROG = "skyscan simulate"


def parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = CommandParser(
        prog=PROG,
        description=(
            "Simulate examples of the configured science case (config key 'case'): its "
            "positives and negatives of every kind, written as Parquet shards "
            "shard-NNNNN.parquet with the case's simulator. Options override the config "
            "file's values."
        ),
    )
    p.add_argument("--config", help="YAML config (default: built-in defaults)")
    p.add_argument("--out", help="output folder (default: RESULTS/sims from the config)")
    p.add_argument("--n", type=int, help="number of examples (simulate.n)")
    p.add_argument("--seed", type=int, help="root random seed (seed)")
    p.add_argument("--shard-size", type=int, help="examples per shard (simulate.shard_size)")
    p.add_argument(
        "--shard",
        type=int,
        action="append",
        help="write only this shard index (repeatable); default: all",
    )
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--device", help="torch device: cpu, cuda, cuda:N, auto (simulate.device)")
    p.add_argument("--no-noise", action="store_true", help="noise-free examples (simulate.noise)")
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="fuse kernels with torch.compile (simulate.compile)",
    )
    return p


def main(argv=None) -> int:
    """Run the command."""
    from skyscan.core.command import run_command

    return run_command(PROG, parser, _run, argv)


def _run(args) -> int:
    from pathlib import Path

    from skyscan.config import load_config
    from skyscan.core.case import get_case
    from skyscan.core.errors import UsageError

    overrides: dict = {"simulate": {}}
    if args.seed is not None:
        overrides["seed"] = args.seed
    for key, value in (
        ("n", args.n),
        ("shard_size", args.shard_size),
        ("device", args.device),
        ("compile", args.compile),
    ):
        if value is not None:
            overrides["simulate"][key] = value
    if args.no_noise:
        overrides["simulate"]["noise"] = False
    config = load_config(args.config, overrides, stage="simulate")
    if args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    out = Path(args.out) if args.out else Path(config["results"]) / "sims"
    if args.workers == 1:
        import torch

        torch.set_num_threads(1)
    paths = get_case(config["case"]).simulate(
        config, out, shards=args.shard, workers=args.workers, show_progress=show_progress(args)
    )
    logging.getLogger(PROG).info("%d shard(s) in %s", len(paths), out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
