"""Paths recorded in a file (``summary.json``, ``index.json``) that resolve from that file.

A path stored as the user typed it (``tiles``) means "relative to the directory the command
ran in", so reading the record from anywhere else finds nothing.  Records store paths
relative to the folder that holds the record (absolute where no relative path exists, e.g.
another drive), and readers resolve them against that folder first.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["path_for_record", "resolve_recorded"]


def path_for_record(path, record_dir) -> str:
    """``path`` as a record in ``record_dir`` stores it: relative to ``record_dir``.

    Parameters
    ----------
    path : path
        The path as given (relative to the working directory, or absolute).
    record_dir : path
        The folder holding the file that records it.

    Returns
    -------
    str
        A POSIX-style path relative to ``record_dir``, or the absolute path when there is no
        relative one.
    """
    target = Path(path).resolve()
    try:
        return Path(os.path.relpath(target, Path(record_dir).resolve())).as_posix()
    except ValueError:  # another drive (Windows): no relative path
        return str(target)


def resolve_recorded(value, record_dir) -> Path:
    """A recorded path as one usable from the working directory.

    Parameters
    ----------
    value : str or path
        The recorded path: absolute, relative to ``record_dir`` (as :func:`path_for_record`
        writes), or, in records written before, relative to the directory the command ran
        in.
    record_dir : path
        The folder holding the record.

    Returns
    -------
    Path
        Absolute or ``value`` itself: relative to ``record_dir`` when that exists, else the
        old reading (the working directory) when that exists, else relative to
        ``record_dir`` (so an error names where it was looked for).
    """
    path = Path(value)
    if path.is_absolute():
        return path
    beside = Path(record_dir) / path
    if beside.exists() or not path.exists():
        return beside
    return path
