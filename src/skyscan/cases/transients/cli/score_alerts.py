"""``skyscan score-alerts``: score ZTF alerts (Avro, Parquet, FITS triplets) with a real/bogus
model.

Exit codes: 0 when the run finished, even if some alerts could not be decoded (they are listed
in the failures JSON with their reasons); 1 when an input cannot be read at all, the model card
does not take alert stamps (MismatchError), or there were alerts and none could be scored.
"""

from __future__ import annotations

import argparse

from skyscan.core.command import CommandParser, show_progress

PROG = "skyscan score-alerts"


def parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = CommandParser(
        prog=PROG,
        description=(
            "Decode the science, reference and difference cutouts of ZTF alerts (Avro alert "
            "packets, broker Parquet with struct or flattened columns, or folders of "
            "NAME_sci/_ref/_diff.fits[.gz] triplets), score them with an exported real/bogus "
            "model and write OUT (Parquet: candid, objectId, ra, dec, magpsf, jd, logit, "
            "score (the card's calibrated probability), ZTF's rb and drb, flags, edge, "
            "nan_pixels, source) and OUT_failures.json (alerts that could not be decoded, "
            "with the reason). Cutouts smaller than the model's stamps (CCD edge) are "
            "zero-padded and flagged."
        ),
    )
    p.add_argument("--model", required=True, help="model card (model_card.json)")
    p.add_argument(
        "inputs",
        nargs="+",
        help="alert files (.avro, .parquet) or folders (of those, or of FITS triplets)",
    )
    p.add_argument("--out", required=True, help="scores Parquet file, e.g. scores.parquet")
    p.add_argument(
        "--format",
        choices=("avro", "parquet", "fits"),
        help="read every input as this format (default: by suffix; a folder: all it holds)",
    )
    p.add_argument("--batch-size", type=int, default=256, help="stamps per forward pass")
    p.add_argument("--failures", help="failures JSON (default: OUT's name with _failures.json)")
    return p


def main(argv=None) -> int:
    """Run the command."""
    from skyscan.core.command import run_command

    return run_command(PROG, parser, _run, argv)


def _run(args) -> int:
    import json

    from skyscan.cases.transients.scoring import score_alerts

    summary = score_alerts(
        args.model,
        args.inputs,
        args.out,
        fmt=args.format,
        batch_size=args.batch_size,
        progress=show_progress(args),
        failures_out=args.failures,
    )
    print(json.dumps(summary, indent=1))
    if summary["n_failed"]:
        print(f"{summary['n_failed']} alert(s) failed: see {summary['failures']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
