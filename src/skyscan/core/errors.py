"""The error hierarchy: every error a user can cause derives from :class:`SkyscanError`.

Each class carries the exit code the command line returns for it, and the file, config key or
row it is about, so that one guard (:func:`skyscan.core.command.run_guarded`) turns any of
them into one line on stderr.

=====================  =========  ==========================================================
class                  exit code  raised for
=====================  =========  ==========================================================
``ConfigError``        2          a config key missing, mistyped, unknown or out of range
``UsageError``         2          command-line arguments that do not fit together
``InputFileError``     1          an input file missing, unreadable, truncated or malformed
``MismatchError``      1          a model and data that do not fit (bands, shape, case)
``ResourceError``      3          the machine cannot do it (no GPU, disk full, read-only)
=====================  =========  ==========================================================
"""

from __future__ import annotations

__all__ = [
    "SkyscanError",
    "ConfigError",
    "UsageError",
    "InputFileError",
    "MismatchError",
    "ResourceError",
    "EXIT_OK",
    "EXIT_INPUT",
    "EXIT_USAGE",
    "EXIT_RESOURCE",
    "EXIT_INTERNAL",
]

EXIT_OK = 0
EXIT_INPUT = 1  #: bad input data: a file, a model/data mismatch
EXIT_USAGE = 2  #: bad command line or config (argparse also exits 2)
EXIT_RESOURCE = 3  #: the machine cannot do it: no GPU, disk full, permission denied
EXIT_INTERNAL = 4  #: a bug in skyscan: the traceback is shown with --debug


class SkyscanError(Exception):
    """Base of every error a user's input or machine can cause.

    Parameters
    ----------
    message : str
        One line that names the file, key or row and says what was expected.
    path, key, row : optional
        What the error is about, for programs that catch it.
    """

    exit_code = EXIT_INPUT

    def __init__(self, message: str, *, path=None, key=None, row=None):
        super().__init__(message)
        self.path = None if path is None else str(path)
        self.key = key
        self.row = row


class ConfigError(SkyscanError, ValueError):
    """A configuration value is missing, mistyped or out of range; the message names the key."""

    exit_code = EXIT_USAGE


class UsageError(SkyscanError, ValueError):
    """Command-line arguments that cannot be used together or as given."""

    exit_code = EXIT_USAGE


class InputFileError(SkyscanError, ValueError):
    """An input file is missing, unreadable or does not hold what it should; names the file."""

    exit_code = EXIT_INPUT


class MismatchError(SkyscanError, ValueError):
    """A model and the data given to it do not fit (bands, stamp shape, preprocessing, case)."""

    exit_code = EXIT_INPUT


class ResourceError(SkyscanError, RuntimeError):
    """The machine cannot do what was asked: no GPU, a full disk, a read-only folder."""

    exit_code = EXIT_RESOURCE
