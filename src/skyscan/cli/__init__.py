"""The ``skyscan`` command: one sub-command per module, each with ``parser()`` and ``main()``.

The shared verbs (:data:`SHARED_COMMANDS`) work for every science case; a case adds verbs of
its own in :attr:`skyscan.core.case.Case.verbs` (modules under ``skyscan.cases.<case>.cli``),
gathered here from every registered case (:data:`skyscan.core.case.default_registry`), so
adding a case edits no module of this package.  ``skyscan --help`` lists the shared verbs,
then each case's verbs under its name.

Every verb's parser is a :class:`skyscan.core.command.CommandParser` (``--version``, ``-v``,
``-q``, ``--debug``) and its ``main`` is :func:`skyscan.core.command.run_command`, so every
verb reports errors and exits the same way.  Heavy imports live inside each verb's work so
that ``skyscan --help`` stays instant.
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["SHARED_COMMANDS", "COMMANDS", "case_commands", "all_commands", "main"]

#: The verbs every science case shares: verb -> (module, one-line summary).
SHARED_COMMANDS = {
    "simulate": (
        "skyscan.cli.simulate",
        "simulate the configured case's examples into Parquet shards",
    ),
    "preview": ("skyscan.cli.preview", "draw a PNG grid of simulated samples per kind"),
    "dataset": ("skyscan.cli.dataset", "build train/val/test sets from simulation shards"),
    "train": ("skyscan.cli.train", "train a model and export it with a model card"),
    "evaluate": ("skyscan.cli.evaluate", "score the test set: ROC, completeness, plots, report"),
    "evaluate-params": (
        "skyscan.cli.evaluate_params",
        "judge a parameter network; measure its vetting flag",
    ),
    "tiles": (
        "skyscan.cli.tiles",
        "'tiles index': index survey tiles (HEALPix); 'tiles resample': to a pixel scale",
    ),
    "catalog": ("skyscan.cli.catalog", "'catalog import': tables into a HATS catalogue"),
    "search": ("skyscan.cli.search", "score a HATS catalogue on FITS tiles, per partition"),
    "skymaps": ("skyscan.cli.skymaps", "HEALPix maps of a search and injection-recovery"),
    "grade": ("skyscan.cli.grade", "a local web page to grade search candidates 0-3 by eye"),
}


def case_commands(registry=None) -> dict[str, dict[str, tuple[str, str]]]:
    """Every registered case's own verbs: case name -> {verb: (module, summary)}.

    Parameters
    ----------
    registry : skyscan.core.case.CaseRegistry, optional
        Default: :data:`skyscan.core.case.default_registry` (read when called, so tests may
        swap it).

    Raises
    ------
    skyscan.core.errors.ConfigError
        A case's verb repeats a shared verb or another case's.
    """
    from skyscan.core import case as cases
    from skyscan.core.errors import ConfigError

    registry = cases.default_registry if registry is None else registry
    owner = dict.fromkeys(SHARED_COMMANDS, "a shared verb")
    sections = {}
    for name in registry.names():
        verbs = dict(registry.get(name).verbs)
        for verb in verbs:
            if verb in owner:
                raise ConfigError(
                    f"case {name!r}: its verb {verb!r} is already {owner[verb]} "
                    "(a case's verbs need names of their own)"
                )
            owner[verb] = f"a verb of case {name!r}"
        sections[name] = verbs
    return sections


def all_commands(registry=None) -> dict[str, tuple[str, str]]:
    """Every verb, shared and the cases': verb -> (module, one-line summary)."""
    commands = dict(SHARED_COMMANDS)
    for verbs in case_commands(registry).values():
        commands.update(verbs)
    return commands


def __getattr__(name):
    # COMMANDS (every verb) is gathered from the cases when first asked for, so that
    # importing skyscan.cli loads no case.
    if name == "COMMANDS":
        return all_commands()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _help() -> str:
    """The text of ``skyscan --help``: shared verbs, then each case's verbs under its name."""
    from skyscan.core import case as cases

    sections = case_commands()
    width = max(len(v) for v in all_commands())

    def lines(commands):
        return [f"  {v:<{width}}  {summary}" for v, (_, summary) in commands.items()]

    text = ["usage: skyscan VERB [options]", "", "shared verbs:", *lines(SHARED_COMMANDS)]
    for name, verbs in sections.items():
        if verbs:
            title = cases.default_registry.get(name).title
            text += ["", f"{name}: {title}" if title else f"{name}:", *lines(verbs)]
    text += ["", "'skyscan VERB --help' describes each verb."]
    return "\n".join(text)


def main(argv=None) -> int:
    """Dispatch ``skyscan VERB ...`` to the verb module's ``main``."""
    from skyscan.core.command import run_guarded

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-V", "--version"):
        import skyscan

        print(f"skyscan {skyscan.__version__}")
        return 0
    if not argv or argv[0] in ("-h", "--help"):
        return run_guarded("skyscan", lambda: print(_help()))
    verb, rest = argv[0], argv[1:]
    if verb in SHARED_COMMANDS:  # a shared verb loads no case
        module = SHARED_COMMANDS[verb][0]
    else:
        found = {}
        code = run_guarded("skyscan", lambda: found.update(all_commands()))
        if code:
            return code
        if verb not in found:
            print(
                f"skyscan: unknown verb {verb!r} (allowed: {', '.join(found)}; "
                "'skyscan --help' describes them)",
                file=sys.stderr,
            )
            return 2
        module = found[verb][0]
    return importlib.import_module(module).main(rest) or 0


if __name__ == "__main__":
    sys.exit(main())
