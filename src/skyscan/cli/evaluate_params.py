"""``skyscan evaluate-params``: judge a parameter network on the test positives and measure
its vetting flag on a classification dataset."""

from __future__ import annotations

import argparse

from skyscan.core.command import CommandParser

PROG = "skyscan evaluate-params"


def parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = CommandParser(
        prog=PROG,
        description=(
            "Estimate the physical parameters of a dataset's test positives (those the "
            "science case names, e.g. theta_E for lenses) with an exported parameter "
            "network (train.target: parameters) and write param_metrics.json (median "
            "relative error, bias, fraction off by > 30%, 68% coverage per parameter with "
            "Wilson intervals) and a predicted-vs-true plot of the first parameter. With "
            "--vet-dataset, also measure on that classification dataset's test split how "
            "many negatives (and, with --classifier and --scores, the classifier's false "
            "positives) the card's vetting flag removes, and how many positives it loses."
        ),
    )
    p.add_argument("--model", required=True, help="the parameter network's model_card.json")
    p.add_argument("--dataset", required=True, help="dataset folder (its test positives)")
    p.add_argument("--out", required=True, help="folder for param_metrics.json and plots")
    p.add_argument("--vet-dataset", help="classification dataset folder for the vetting flag")
    p.add_argument("--classifier", help="the classifier's model_card.json (its threshold)")
    p.add_argument("--scores", help="the classifier's scores.parquet on --vet-dataset's test")
    return p


def main(argv=None) -> int:
    """Run the command."""
    from skyscan.core.command import run_command

    return run_command(PROG, parser, _run, argv)


def _run(args) -> int:
    import json
    from pathlib import Path

    from skyscan.core.atomic import write_json_atomic
    from skyscan.evaluate.params import evaluate_parameters

    metrics = evaluate_parameters(args.model, args.dataset, args.out)
    if args.vet_dataset:
        from skyscan.vet.params import measure_vetting

        metrics["vetting"] = measure_vetting(
            args.model, args.vet_dataset, args.classifier, args.scores
        )
        write_json_atomic(Path(args.out) / "param_metrics.json", metrics)
    brief = {"selection": metrics["selection"], "n_selected": metrics["n_selected"]}
    first = next(iter(metrics["parameters"]))
    head = metrics["parameters"][first]
    for key in ("median_abs_rel_error", "median_rel_bias", "fraction_off_30pct"):
        if key in head:
            brief[f"{first}.{key}"] = head[key]
    brief["coverage68"] = {p: m["coverage68"]["coverage"] for p, m in metrics["parameters"].items()}
    if "vetting" in metrics:
        v = metrics["vetting"]
        brief["vetting"] = {
            k: v[k]["fraction"]
            for k in ("non_lenses_flagged", "lenses_flagged", "false_positives_flagged")
            if k in v
        }
    print(json.dumps(brief, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
