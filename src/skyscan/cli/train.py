"""``skyscan train``: fit a model on a dataset, export it (TorchScript, ONNX) with a model card."""

from __future__ import annotations

import argparse

from skyscan.core.command import CommandParser

PROG = "skyscan train"

#: what ``--model`` (the old spelling of ``--architecture``) says on stderr when used
MODEL_DEPRECATED = (
    f"{PROG}: --model is deprecated here, use --architecture NAME "
    "(--model names a model card in every other verb)"
)


def parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = CommandParser(
        prog=PROG,
        description=(
            "Train the configured architecture (train.model; a classifier, or a parameter "
            "network with train.target: parameters) on a dataset with PyTorch Lightning "
            "(GPU with bf16 when there is one), keep the best (validation AUROC) and last "
            "checkpoints, resume from the last one when re-run, and export the best with "
            "its model card."
        ),
    )
    p.add_argument("--dataset", required=True, help="dataset folder (skyscan dataset)")
    p.add_argument("--out", required=True, help="model folder to write")
    p.add_argument("--config", help="YAML/JSON config (the 'seed' and 'train' keys)")
    p.add_argument(
        "--architecture",
        metavar="NAME",
        help="override train.model: a registered architecture the config's case accepts "
        "(e.g. fast, deeplens, lensparams for lenses; vgg6, deephits for transients)",
    )
    # The old spelling: still accepted with a one-line notice, and not shown in --help.
    p.add_argument("--model", dest="model_deprecated", help=argparse.SUPPRESS)
    p.add_argument("--epochs", type=int, help="override train.epochs")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    return p


def main(argv=None) -> int:
    """Run the command."""
    from skyscan.core.command import run_command

    return run_command(PROG, parser, _run, argv)


def architecture(args) -> str | None:
    """The architecture asked for: ``--architecture``, or the deprecated ``--model``."""
    import sys

    from skyscan.core.errors import UsageError

    old = getattr(args, "model_deprecated", None)
    if old is None:
        return args.architecture
    print(MODEL_DEPRECATED, file=sys.stderr)
    if args.architecture is not None and args.architecture != old:
        raise UsageError(
            f"--architecture {args.architecture} and --model {old} disagree: "
            "give --architecture only"
        )
    return old


def _run(args) -> int:
    import json

    from skyscan.config import load_config
    from skyscan.train.run import train

    overrides = {"train": {}}
    name = architecture(args)
    if name:
        overrides["train"]["model"] = name
    if args.epochs:
        overrides["train"]["epochs"] = args.epochs
    config = load_config(args.config, overrides, stage="train")
    card = train(config, args.dataset, args.out, args.threads)
    print(json.dumps(card.test_metrics, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
