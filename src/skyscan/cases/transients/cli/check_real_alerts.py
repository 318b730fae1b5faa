"""``skyscan check-real-alerts``: how a real/bogus model carries to real ZTF alerts, its scores
beside ZTF's own deep real/bogus score (drb) on alerts that carry one.

Exit codes: 0 when the check ran; 1 when the alerts or the model card cannot be read (the
public development set is fetched by ``make setup``).
"""

from __future__ import annotations

import argparse

from skyscan.core.command import CommandParser, show_progress

PROG = "skyscan check-real-alerts"


def parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = CommandParser(
        prog=PROG,
        description=(
            "Score real ZTF alerts that carry ZTF's drb with a real/bogus model card and "
            "print the agreement: the share of drb > 0.9 alerts passing the card's threshold, "
            "of drb < 0.1 failing it (Wilson 95% intervals), the Spearman correlation with "
            "drb (bootstrap 95%) and the AUROC against drb > 0.5, each with its n. With --out, "
            "writes real_alerts.json, .md, .parquet and .png there."
        ),
    )
    p.add_argument("--model", required=True, help="model card (model_card.json)")
    p.add_argument("--alerts", required=True, help="alerts with drb (Avro or broker Parquet)")
    p.add_argument("--out", help="folder for real_alerts.json / .md / .parquet / .png")
    return p


def main(argv=None) -> int:
    """Run the command."""
    from skyscan.core.command import run_command

    return run_command(PROG, parser, _run, argv)


def _run(args) -> int:
    from pathlib import Path

    from skyscan.cases.transients.realcheck import agreement_table, check_real_alerts

    figures = check_real_alerts(args.model, args.alerts, args.out, progress=show_progress(args))
    print(agreement_table(figures, Path(args.alerts).name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
