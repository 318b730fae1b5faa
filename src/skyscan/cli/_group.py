"""Verbs made of sub-commands (``skyscan catalog import``, ``skyscan tiles index``).

``VERB --help`` lists the sub-commands with one line each; ``VERB SUB --help`` describes
one; ``VERB --version`` prints the version; a missing or unknown sub-command is a usage
error (exit 2) naming those that exist.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from skyscan.core.command import CommandParser

#: sub-command -> (one line for the verb's help, its ``main(argv)``)
Subcommands = dict[str, tuple[str, Callable[[list[str]], int]]]


def group_parser(prog: str, description: str, subcommands: Subcommands) -> CommandParser:
    """The verb's own parser: its description and the list of its sub-commands."""
    p = CommandParser(
        prog=prog,
        usage=f"{prog} {{{','.join(subcommands)}}} [options]",
        description=description,
        epilog=f"'{prog} SUBCOMMAND --help' describes a sub-command's options.",
    )
    listed = p.add_subparsers(title="sub-commands", metavar="SUBCOMMAND", dest="subcommand")
    for name, (summary, _) in subcommands.items():
        listed.add_parser(name, help=summary, add_help=False)
    return p


def run_group(
    prog: str,
    parser: Callable[[], argparse.ArgumentParser],
    subcommands: Subcommands,
    argv=None,
    hint: str = "",
) -> int:
    """Run ``prog SUB ...`` with ``subcommands[SUB]``; answer ``--help``/``--version``.

    ``hint`` follows the error line when the sub-command is missing or unknown.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in subcommands:
        return subcommands[argv[0]][1](argv[1:]) or 0
    if argv and argv[0] in ("-h", "--help", "--version"):
        parser().parse_args(argv[:1])  # prints and exits 0
    p = parser()
    p.print_usage(sys.stderr)
    allowed = ", ".join(subcommands)
    if argv and not argv[0].startswith("-"):
        what = f"unknown sub-command {argv[0]!r}"
    else:
        what = "give a sub-command first"
    print(f"{prog}: error: {what} (allowed: {allowed}){hint}", file=sys.stderr)
    return 2
