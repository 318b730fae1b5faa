"""The transient case on real ZTF alerts: score the development set (real public alerts
from fink-science, fetched at set-up by scripts/fetch_real_alerts.py) with a model card and
print its agreement with ZTF's own drb, every rate with its sample size and 95% interval.

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
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ALERTS = ROOT / "data" / "real" / "ztf" / "CTAO_blazar_datatest_v20-12-24.parquet"


def check(card_path, alerts=DEFAULT_ALERTS) -> dict:
    """Score ``alerts`` with the card and compare with their drb (see realcheck)."""
    import pyarrow.parquet as pq

    from skyscan.cases.transients.realcheck import agreement_with_drb
    from skyscan.cases.transients.scoring import score_alerts
    from skyscan.models.card import read_card

    alerts = Path(alerts)
    if not alerts.is_file():
        raise SystemExit(f"{alerts}: not found; run `make setup` (scripts/fetch_real_alerts.py)")
    card = read_card(card_path)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "scores.parquet"
        score_alerts(card_path, [alerts], out)
        table = pq.read_table(out).to_pydict()
    import numpy as np

    drb = np.array([np.nan if v is None else v for v in table["drb"]], dtype=float)
    # the card's operating threshold (chosen on validation); logit 0 when it has none
    threshold = (card.threshold or {}).get("logit", 0.0)
    figures = agreement_with_drb(table["logit"], table["score"], drb, threshold)
    return {"alerts": str(alerts), "model": str(card_path), **figures}


def table(f: dict) -> str:
    def pct(r):
        lo, hi = r["ci95"] or (float("nan"), float("nan"))
        return f"{100 * r['fraction']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"

    rho = f["spearman"]
    return "\n".join(
        [
            f"| real ZTF alerts ({Path(f['alerts']).name}) | value | n |",
            "|---|---|---|",
            f"| drb > 0.9 passing the card's threshold | {pct(f['real'])} | {f['real']['n']} |",
            f"| drb < 0.1 failing it | {pct(f['bogus'])} | {f['bogus']['n']} |",
            f"| Spearman with drb | {rho['rho']:.3f} [{rho['ci95'][0]:.3f}, {rho['ci95'][1]:.3f}] "
            f"| {f['n']} |",
            f"| AUROC against drb > 0.5 | {f['auroc_drb_0.5']:.3f} | {f['n']} |",
            f"| median score, drb > 0.9 | {f['median_score_real']:.3f} | {f['real']['n']} |",
        ]
    )


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
