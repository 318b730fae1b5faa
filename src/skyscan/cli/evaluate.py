"""``skyscan evaluate``: test-split metrics, completeness grid, plots, comparison with papers."""

from __future__ import annotations

import argparse

from skyscan.core.command import CommandParser

PROG = "skyscan evaluate"


def parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = CommandParser(
        prog=PROG,
        description=(
            "Score a dataset's test split with an exported model and write metrics.json "
            "(AUROC, TPR at 1% FPR, TPR0, TPR10, completeness in the science case's strata, "
            "e.g. theta_E x S/N for lenses), scores.parquet, ROC / completeness / "
            "score-histogram plots, galleries of the worst mistakes, and comparison.md "
            "beside the case's published figures."
        ),
    )
    p.add_argument("--model", required=True, help="model card (model_card.json)")
    p.add_argument("--dataset", required=True, help="dataset folder")
    p.add_argument("--out", required=True, help="folder for the evaluation products")
    p.add_argument("--config", help="YAML/JSON config (the 'evaluate' keys)")
    return p


def main(argv=None) -> int:
    """Run the command."""
    from skyscan.core.command import run_command

    return run_command(PROG, parser, _run, argv)


def _run(args) -> int:
    import json

    from skyscan.config import load_config
    from skyscan.evaluate.report import evaluate

    config = load_config(args.config, stage="evaluate")
    metrics = evaluate(args.model, args.dataset, args.out, config)
    brief = {k: metrics[k] for k in ("auroc", "tpr_at_fpr_1pct", "tpr0", "tpr10", "n_test")}
    brief["headline_completeness"] = metrics["headline"]["completeness"]
    print(json.dumps(brief, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
