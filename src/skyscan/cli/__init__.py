"""The ``skyscan`` command: one sub-command per module, each with ``parser()`` and ``main()``.

Every verb's parser is a :class:`skyscan.core.command.CommandParser` (``--version``, ``-v``,
``-q``, ``--debug``) and its ``main`` is :func:`skyscan.core.command.run_command`, so every
verb reports errors and exits the same way.  Heavy imports live inside each verb's work so
that ``skyscan --help`` stays instant.
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
    "evaluate-params": (
        "skyscan.cli.evaluate_params",
        "judge a lens-parameter network; measure its vetting flag",
    ),
    "tiles": (
        "skyscan.cli.tiles",
        "render survey tiles (FITS + WCS) with injected lenses; 'tiles index' indexes tiles",
    ),
    "catalog": ("skyscan.cli.catalog", "'catalog import': tables into a HATS catalogue"),
    "search": ("skyscan.cli.search", "score a HATS catalogue on FITS tiles, per partition"),
    "skymaps": ("skyscan.cli.skymaps", "HEALPix maps of a search and injection-recovery"),
    "grade": ("skyscan.cli.grade", "a local web page to grade search candidates 0-3 by eye"),
    "inject": (
        "skyscan.cli.inject",
        "paint simulated lensed arcs around catalogue galaxies in your FITS tiles",
    ),
    "make-alerts": (
        "skyscan.cli.make_alerts",
        "write demonstration alert packets of simulated detections (transients)",
    ),
    "score-alerts": (
        "skyscan.cli.score_alerts",
        "score ZTF alerts (Avro, Parquet, FITS triplets) with a real/bogus model",
    ),
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


if __name__ == "__main__":
    sys.exit(main())
