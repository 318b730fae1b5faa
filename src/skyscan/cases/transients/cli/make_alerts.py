"""``skyscan make-alerts``: demonstration ZTF-style alert packets from simulated detections."""

from __future__ import annotations

import argparse

from skyscan.core.command import CommandParser

PROG = "skyscan make-alerts"


def parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = CommandParser(
        prog=PROG,
        description=(
            "Simulate detections after the training rows and write them as alert packets "
            "with the public ZTF alert schema's field names (Avro or broker Parquet, by the "
            "suffix of --out), with a truth table (candid, kind, label, mag, snr) for scoring "
            "them with `skyscan score-alerts`."
        ),
    )
    p.add_argument(
        "--config", help="YAML/JSON config (case: transients; seed, simulate, transients)"
    )
    p.add_argument("--out", required=True, help="alert file: .avro or .parquet")
    p.add_argument("--truth", required=True, help="truth table (Parquet)")
    p.add_argument("--n", type=int, help="number of alerts (default transients.alerts.n)")
    return p


def main(argv=None) -> int:
    """Run the command."""
    from skyscan.core.command import run_command

    return run_command(PROG, parser, _run, argv)


def _run(args) -> int:
    import logging

    from skyscan.cases.transients import CASE
    from skyscan.config import load_config
    from skyscan.core.errors import ConfigError, UsageError

    config = load_config(args.config, stage="alerts")
    if config["case"] != CASE.name:
        raise ConfigError(
            f"config key 'case': make-alerts is a verb of the {CASE.name} case, "
            f"got case {config['case']!r} (give a transients config, e.g. "
            "--config config/transients-ztf.yaml)",
            key="case",
        )
    if not str(args.out).endswith((".avro", ".parquet")):
        raise UsageError(f"--out must end in .avro or .parquet, got {args.out}")
    if args.n is not None and args.n < 1:
        raise UsageError(f"--n must be >= 1, got {args.n}")
    from skyscan.cases.transients.demo import make_demo_alerts

    n = make_demo_alerts(config, args.out, args.truth, n=args.n)
    logging.getLogger(PROG).info("%d alert(s) in %s, truth in %s", n, args.out, args.truth)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
