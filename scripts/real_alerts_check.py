"""The transient case on real ZTF alerts: score the development set (real public alerts
from fink-science, fetched at set-up by scripts/fetch_real_alerts.py) with a model card and
print its agreement with ZTF's own drb, every rate with its sample size and 95% interval
(the same check as ``skyscan check-real-alerts`` and the transient workflow's rule
``check_real_alerts``, with the development set as the default).

    .venv/bin/python scripts/real_alerts_check.py \
        --model results/transients-ztf/model/model_card.json

The alerts check transfer: they are never trained on (the simulator's calibration was
measured on them, so these are development figures, not an independent test).  ``--json`` writes the
figures as well.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ALERTS = ROOT / "data" / "real" / "ztf" / "CTAO_blazar_datatest_v20-12-24.parquet"


def check(card_path, alerts=DEFAULT_ALERTS) -> dict:
    """Score ``alerts`` with the card and compare with their drb (see realcheck)."""
    from skyscan.cases.transients.realcheck import check_real_alerts
    from skyscan.core.errors import InputFileError

    try:
        return check_real_alerts(card_path, alerts)
    except InputFileError as err:
        raise SystemExit(str(err)) from None


def table(f: dict) -> str:
    from skyscan.cases.transients.realcheck import agreement_table

    return agreement_table(f, Path(f["alerts"]).name)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="the transient model card")
    parser.add_argument("--alerts", default=DEFAULT_ALERTS, help="alert Parquet (default: dev set)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    figures = check(args.model, args.alerts)
    print(table(figures))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
