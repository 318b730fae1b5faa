"""The command base every ``skyscan`` verb shares (after ligo.skymap's tools).

:class:`CommandParser` gives every verb ``--version``, ``-v/--verbose``, ``-q/--quiet`` and
``--debug``; :func:`run_command` parses, sets up logging and calls the verb's work inside one
guard that turns any :class:`~skyscan.core.errors.SkyscanError` (and the operating system's
own errors) into one line on stderr with the error's exit code.  A traceback is printed only
with ``--debug``.

Exit codes: 0 success, 1 bad input, 2 bad usage or config, 3 the machine cannot do it
(no GPU, disk full, permission denied), 4 a bug in skyscan, 130 interrupted.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from skyscan.core.errors import (
    EXIT_INPUT,
    EXIT_INTERNAL,
    EXIT_RESOURCE,
    EXIT_USAGE,
    SkyscanError,
)

__all__ = ["CommandParser", "run_command", "run_guarded", "log_level", "show_progress"]

LOG_FORMAT = "%(asctime)s %(name)s: %(message)s"


def _version() -> str:
    from skyscan import __version__

    return __version__


class CommandParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` with the options every ``skyscan`` verb shares.

    Parameters
    ----------
    *args, **kwargs
        As for :class:`argparse.ArgumentParser`; ``prog`` should be ``"skyscan VERB"``.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        common = self.add_argument_group("common options")
        common.add_argument(
            "--version", action="version", version=f"%(prog)s {_version()}", help="the version"
        )
        common.add_argument(
            "-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)"
        )
        common.add_argument(
            "-q", "--quiet", action="count", default=0, help="less log output (-qq: errors only)"
        )
        common.add_argument(
            "--debug", action="store_true", help="show the full traceback of an error"
        )


def show_progress(args) -> bool:
    """Whether to draw progress bars: on a terminal, unless ``-q`` (never into a rule's log)."""
    return not getattr(args, "quiet", 0) and sys.stderr.isatty()


def log_level(verbose: int = 0, quiet: int = 0) -> int:
    """The logging level for ``-v``/``-q`` counts: INFO by default, one step per flag."""
    return min(logging.CRITICAL, max(logging.DEBUG, logging.INFO + 10 * (quiet - verbose)))


def run_command(prog: str, parser: Callable[[], argparse.ArgumentParser], run, argv=None) -> int:
    """Parse ``argv`` with ``parser()``, set up logging and call ``run(args)`` guarded.

    Parameters
    ----------
    prog : str
        ``"skyscan VERB"``, the prefix of error lines.
    parser : callable
        Returns the verb's :class:`CommandParser`.
    run : callable
        ``run(args) -> int | None``, the verb's work.
    argv : list of str, optional
        Arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit code.
    """
    args = parser().parse_args(argv)
    level = log_level(getattr(args, "verbose", 0), getattr(args, "quiet", 0))
    logging.basicConfig(level=level, format=LOG_FORMAT, force=True)
    _quiet_dask(level if getattr(args, "verbose", 0) else max(level, logging.WARNING))
    if _inject_failure(prog):
        return 3
    return run_guarded(prog, lambda: run(args), debug=getattr(args, "debug", False))


def _quiet_dask(level: int) -> None:
    """Dask's own loggers at ``level``: its INFO lines (scheduler and worker addresses,
    "please install jupyter-server-proxy") only with -v.  Dask configures them itself, in
    this process and, from the environment, in each worker process it starts."""
    name = logging.getLevelName(level).lower()
    os.environ["DASK_LOGGING__DISTRIBUTED"] = name
    for logger in ("distributed", "dask"):
        logging.getLogger(logger).setLevel(level)
    if "dask" in sys.modules:  # already configured from the old setting
        import dask

        dask.config.set({"logging.distributed": name})


def _inject_failure(prog: str) -> bool:
    """Fault injection for the retry tests: ``SKYSCAN_INJECT_FAILURE=VERB:MARKER`` makes the
    first run of ``skyscan VERB`` fail (exit 3) and leave MARKER; later runs proceed."""
    spec = os.environ.get("SKYSCAN_INJECT_FAILURE", "")
    verb, _, marker = spec.partition(":")
    if not marker or prog.split()[-1] != verb or Path(marker).exists():
        return False
    Path(marker).write_text("injected failure\n")
    print(f"{prog}: injected failure (SKYSCAN_INJECT_FAILURE={spec})", file=sys.stderr)
    return True


def _classify(exc: BaseException) -> tuple[int, str]:
    """Exit code and one-line message of an exception."""
    if isinstance(exc, SkyscanError):
        return exc.exit_code, str(exc)
    if isinstance(exc, FileNotFoundError):
        name = exc.filename if exc.filename is not None else ""
        return EXIT_INPUT, f"{name}: no such file or folder" if name else str(exc)
    if isinstance(exc, PermissionError):
        return EXIT_RESOURCE, f"{exc.filename}: permission denied"
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return EXIT_RESOURCE, f"{exc.filename or 'output'}: no space left on the device"
    if isinstance(exc, OSError) and exc.errno == errno.EROFS:
        return EXIT_RESOURCE, f"{exc.filename}: read-only file system"
    if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
        return EXIT_RESOURCE, f"out of memory ({type(exc).__name__}): use smaller batches"
    if isinstance(exc, ValueError):
        # Library code below the stages raises ValueError for values it cannot use; by the
        # time it reaches a command it usually came from the user's input.
        return EXIT_INPUT, f"{exc} (rerun with --debug for the traceback)"
    return EXIT_INTERNAL, (
        f"internal error: {type(exc).__name__}: {exc} (a bug in skyscan; rerun with --debug "
        "for the traceback and report it)"
    )


def run_guarded(prog: str, fn: Callable[[], int | None], debug: bool = False) -> int:
    """Run ``fn()``; turn any error into one line on stderr and its exit code.

    Parameters
    ----------
    prog : str
        Prefix of the error line.
    fn : callable
        The work; its return value (``None`` meaning 0) is the exit code.
    debug : bool
        Also print the traceback.

    Returns
    -------
    int
    """
    try:
        return fn() or 0
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001  (the one guard: every error becomes one line)
        code, message = _classify(exc)
        # One line, whatever a library put in the message.
        message = "; ".join(part.strip() for part in message.splitlines() if part.strip())
        if debug:
            import traceback

            traceback.print_exc()
        print(f"{prog}: error: {message}", file=sys.stderr)
        return code


EXIT_CODES = {
    0: "success",
    EXIT_INPUT: "bad input (a file, a model/data mismatch)",
    EXIT_USAGE: "bad usage or config",
    EXIT_RESOURCE: "the machine cannot do it (no GPU, disk full, permission denied)",
    EXIT_INTERNAL: "a bug in skyscan (rerun with --debug)",
    130: "interrupted",
}
