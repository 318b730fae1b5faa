"""The ``skyscan`` command: one sub-command per module, each with ``parser()`` and ``main()``.

Heavy imports live inside each ``main`` so that ``skyscan --help`` stays instant.
"""

from __future__ import annotations

import importlib
import sys

#: verb -> (module, one-line summary)
COMMANDS = {
    "simulate": ("skyscan.cli.simulate", "simulate lenses and non-lenses into Parquet shards"),
    "preview": ("skyscan.cli.preview", "draw a PNG grid of simulated systems per kind"),
    "dataset": ("skyscan.cli.dataset", "build train/val/test sets from simulation shards"),
    "train": ("skyscan.cli.train", "train a lens classifier and export it with a model card"),
    "evaluate": ("skyscan.cli.evaluate", "score the test set: ROC, completeness, plots, report"),
    "tiles": ("skyscan.cli.tiles", "render survey tiles (FITS + WCS) with injected lenses"),
    "search": ("skyscan.cli.search", "score catalog positions on FITS tiles, per HEALPix pixel"),
    "skymaps": ("skyscan.cli.skymaps", "HEALPix maps of a search and injection-recovery"),
}


def main(argv=None) -> int:
    """Dispatch ``skyscan VERB ...`` to ``skyscan.cli.VERB.main``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        width = max(len(v) for v in COMMANDS)
        lines = [f"  {v:<{width}}  {summary}" for v, (_, summary) in COMMANDS.items()]
        print("usage: skyscan VERB [options]\n\nverbs:\n" + "\n".join(lines))
        print("\n'skyscan VERB --help' describes each verb.")
        return 0
    if argv[0] in ("-V", "--version"):
        import skyscan

        print(f"skyscan {skyscan.__version__}")
        return 0
    verb, rest = argv[0], argv[1:]
    if verb not in COMMANDS:
        print(f"skyscan: unknown verb {verb!r} (allowed: {', '.join(COMMANDS)})", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[verb][0])
    return module.main(rest) or 0


def run_command(prog: str, parser, run, argv=None) -> int:
    """Parse ``argv`` with ``parser()``, set up logging, and call ``run(args)`` guarded.

    Every verb's ``main`` is this call: input errors become one line on stderr and exit 2.
    """
    import logging

    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if _inject_failure(prog):
        return 3
    return run_guarded(prog, lambda: run(args))


def _inject_failure(prog: str) -> bool:
    """Fault injection for the retry tests: ``SKYSCAN_INJECT_FAILURE=VERB:MARKER`` makes the
    first run of ``skyscan VERB`` fail (exit 3) and leave MARKER; later runs proceed."""
    import os
    from pathlib import Path

    spec = os.environ.get("SKYSCAN_INJECT_FAILURE", "")
    verb, _, marker = spec.partition(":")
    if not marker or prog.split()[-1] != verb or Path(marker).exists():
        return False
    Path(marker).write_text("injected failure\n")
    print(f"{prog}: injected failure (SKYSCAN_INJECT_FAILURE={spec})", file=sys.stderr)
    return True


def run_guarded(prog: str, fn) -> int:
    """Run ``fn()``; turn the project's input errors into one line on stderr and exit code 2."""
    from skyscan.data.datasets import DatasetError
    from skyscan.data.shards import ShardError
    from skyscan.search.tiles import TileError
    from skyscan.sim.survey import ConfigError

    try:
        return fn() or 0
    except (ConfigError, ShardError, DatasetError, TileError, FileNotFoundError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
