"""``skyscan train``: fit a lens classifier, export it (TorchScript, ONNX) with a model card."""

from __future__ import annotations

import argparse

from skyscan.core.command import CommandParser

PROG = "skyscan train"


def parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = CommandParser(
        prog=PROG,
        description=(
            "Train the configured model (train.model) on a dataset with PyTorch Lightning "
            "(GPU with bf16 when there is one), keep the best (validation AUROC) and last "
            "checkpoints, resume from the last one when re-run, and export the best."
        ),
    )
    p.add_argument("--dataset", required=True, help="dataset folder (skyscan dataset)")
    p.add_argument("--out", required=True, help="model folder to write")
    p.add_argument("--config", help="YAML/JSON config (the 'seed' and 'train' keys)")
    p.add_argument("--model", help="override train.model (deeplens, fast, vgg6, deephits)")
    p.add_argument("--epochs", type=int, help="override train.epochs")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    return p


def main(argv=None) -> int:
    """Run the command."""
    from skyscan.core.command import run_command

    return run_command(PROG, parser, _run, argv)


def _run(args) -> int:
    import json

    from skyscan.config import load_config
    from skyscan.train.run import train

    overrides = {"train": {}}
    if args.model:
        overrides["train"]["model"] = args.model
    if args.epochs:
        overrides["train"]["epochs"] = args.epochs
    card = train(load_config(args.config, overrides), args.dataset, args.out, args.threads)
    print(json.dumps(card.test_metrics, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
