"""Atomic file writes: a temporary file with a unique name in the target's folder, flushed to
disk, then renamed over the target.

A crash, a ``kill -9`` or a full disk never leaves a half-written file under the final name,
and two runs writing into one folder never share a temporary name.  Every stage writes its
outputs through these helpers.

Examples
--------
>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = write_json_atomic(folder / "summary.json", {"n": 3})
>>> (folder / "summary.json").read_text()
'{\\n "n": 3\\n}\\n'
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "atomic_path",
    "write_bytes_atomic",
    "write_text_atomic",
    "write_json_atomic",
    "write_parquet_atomic",
    "write_fits_atomic",
    "save_figure_atomic",
]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path, fsync: bool = True) -> Iterator[Path]:
    """Yield a unique temporary path beside ``path``; rename it to ``path`` on success.

    Parameters
    ----------
    path : str or Path
        The final file name; its folder is created if needed.
    fsync : bool
        Flush the file to disk before the rename (so the rename cannot expose an empty file
        after a power cut).

    Yields
    ------
    Path
        Where to write.  It exists (empty, mode 0666 less the umask) when yielded; on any
        exception it is removed and the target is left as it was.
    """
    from skyscan.core.errors import ResourceError

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except PermissionError as exc:
        raise ResourceError(f"{path}: cannot write here ({exc.strerror})", path=path) from None
    os.close(fd)
    tmp = Path(tmp)
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        yield tmp
        if fsync:
            _fsync(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise ResourceError(f"{path}: no space left on the device", path=path) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; returns the path."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, data, indent: int = 1) -> Path:
    """Write ``data`` as JSON (one trailing newline; numpy scalars as floats) atomically."""
    text = json.dumps(data, indent=indent, default=_json_default) + "\n"
    return write_text_atomic(path, text)


def _json_default(value):
    import numpy as np

    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | np.bool_):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return float(value)


def write_parquet_atomic(table, path: str | Path, **kwargs) -> Path:
    """Write a pyarrow table to Parquet atomically (``kwargs`` go to ``pq.write_table``)."""
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **kwargs)
    return Path(path)


def write_fits_atomic(hdus, path: str | Path) -> Path:
    """Write an HDU or ``HDUList`` to a FITS file atomically."""
    from astropy.io import fits

    if not isinstance(hdus, fits.HDUList):
        hdus = fits.HDUList([hdus])
    with atomic_path(path) as tmp:
        if str(path).endswith(".gz"):
            # astropy compresses by the file name, and the temporary name has no ".gz";
            # no name or time in the gzip header, so the same HDUs give the same bytes
            import gzip

            with open(tmp, "wb") as raw, gzip.GzipFile("", "wb", fileobj=raw, mtime=0) as gz:
                hdus.writeto(gz)
        else:
            hdus.writeto(tmp, overwrite=True)
    return Path(path)


def save_figure_atomic(fig, path: str | Path, **kwargs) -> Path:
    """Save a matplotlib figure atomically; the format comes from ``path``'s suffix."""
    path = Path(path)
    kwargs.setdefault("format", path.suffix.lstrip(".") or "png")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, **kwargs)
    return path
