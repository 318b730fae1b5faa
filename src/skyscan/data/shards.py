"""Parquet image shards: the on-disk form of every stage's cutouts.

A shard is one Parquet file: one row per cutout, scalar columns (parameters, labels, ...) and
an ``image`` column of fixed-size binary values, each the little-endian float32
``(bands, H, W)`` array in C order (``numpy.frombuffer(value, "<f4").reshape(shape)``).  Binary
rather than a list of floats: Parquet then writes no per-element nesting levels, which makes
shards 4x faster to write, and the noisy pixels are stored uncompressed (zstd saves under 10%
of them at 3x the cost).
The schema metadata (UTF-8 JSON values) says how to read it:

``skyscan_version``, ``shape`` (of one sample's payload), ``sample`` (the kind of sample,
:mod:`skyscan.data.samples`; absent for image stamps) and the keys that kind needs (stamps:
``survey``, ``bands`` (list), ``pixel_scale`` (arcsec), ``units`` of the pixels), plus
whatever the writing stage adds (``config_hash``, ...).

Writes are atomic: a temporary file in the same folder, renamed over the target when complete,
so a crash never leaves a half-written shard under the final name.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from skyscan.core.atomic import write_parquet_atomic
from skyscan.core.errors import ConfigError, InputFileError

__all__ = [
    "images_to_array",
    "array_to_images",
    "write_table_atomic",
    "read_metadata",
    "read_images",
    "shard_is_complete",
    "first_per_kind",
    "shard_count",
    "shard_rows",
    "ShardError",
]

#: Metadata every shard holds; a shard's sample description (``sample``, absent for image
#: stamps) adds its own (:attr:`skyscan.data.samples.SampleDescription.shard_keys`).
REQUIRED_METADATA = ("shape", "skyscan_version")


class ShardError(InputFileError):
    """A shard cannot be read or does not hold what it should; the message names the file."""


def images_to_array(images: np.ndarray) -> pa.FixedSizeBinaryArray:
    """Pack an ``(N, bands, H, W)`` array into a fixed-size binary column of float32 (LE)."""
    images = np.ascontiguousarray(images, dtype="<f4")
    size = images[0].nbytes if len(images) else int(np.prod(images.shape[1:])) * 4
    return pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(size), len(images), [None, pa.py_buffer(images)]
    )


def array_to_images(column, shape) -> np.ndarray:
    """Unpack a fixed-size binary image column into an ``(N, *shape)`` float32 array."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    size = int(np.prod(shape)) * 4
    if column.type != pa.binary(size):
        raise ShardError(f"image column is {column.type}, expected fixed_size_binary[{size}]")
    data = np.frombuffer(
        column.buffers()[1], dtype="<f4", offset=column.offset * size, count=len(column) * size // 4
    )
    return data.reshape((len(column), *shape))


def shard_count(n: int, shard_size: int) -> int:
    """Number of shards of ``shard_size`` rows holding ``n`` rows (the last may be short)."""
    return math.ceil(n / shard_size)


def shard_rows(n: int, shard_size: int, shard: int) -> tuple[int, int]:
    """Global row range ``[start, stop)`` of shard ``shard``; out of range is a ConfigError."""
    count = shard_count(n, shard_size)
    if not 0 <= shard < count:
        raise ConfigError(f"shard {shard} is out of range (0..{count - 1})")
    start = shard * shard_size
    return start, min(start + shard_size, n)


def write_table_atomic(
    table: pa.Table, path: str | Path, metadata: Mapping[str, object], row_group_size: int = 256
) -> Path:
    """Write ``table`` to ``path`` with JSON ``metadata``, atomically.

    Parameters
    ----------
    table : pyarrow.Table
    path : str or Path
        Final file name; its folder is created if needed.
    metadata : mapping
        Values are stored as JSON under their keys in the Parquet schema metadata.
    row_group_size : int
        Rows per row group (bounds the memory of a streaming reader).

    Returns
    -------
    Path
    """
    path = Path(path)
    meta = dict(table.schema.metadata or {})
    meta.update({k.encode(): json.dumps(v, sort_keys=True).encode() for k, v in metadata.items()})
    table = table.replace_schema_metadata(meta)
    columns = table.column_names
    return write_parquet_atomic(
        table,
        path,
        row_group_size=row_group_size,
        compression={c: ("none" if c == "image" else "zstd") for c in columns},
        use_dictionary=[c for c in columns if pa.types.is_dictionary(table[c].type)],
        write_statistics=False,
    )


def read_metadata(path: str | Path) -> dict:
    """The JSON schema metadata of a shard, decoded; fails naming the file if unreadable."""
    path = Path(path)
    try:
        raw = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowException) as exc:
        raise ShardError(f"{path}: not a readable Parquet shard ({exc})") from None
    out = {}
    for k, v in raw.items():
        key = k.decode()
        try:
            out[key] = json.loads(v)
        except ValueError:
            out[key] = v.decode(errors="replace")
    from skyscan.data.samples import _KINDS, Stamps

    kind = _KINDS.get(out.get("sample", Stamps.kind))
    if kind is None:
        raise ShardError(f"{path}: unknown sample kind {out.get('sample')!r}")
    missing = [k for k in REQUIRED_METADATA + kind.shard_keys if k not in out]
    if missing:
        raise ShardError(f"{path}: shard metadata lacks {', '.join(missing)}")
    return out


def read_images(path: str | Path, columns=None) -> tuple[np.ndarray, pa.Table, dict]:
    """Read a shard.

    Parameters
    ----------
    path : str or Path
    columns : list of str, optional
        Scalar columns to read besides ``image`` (default: all).

    Returns
    -------
    images : ndarray, shape (N, bands, H, W), float32
    table : pyarrow.Table
        The scalar columns.
    metadata : dict
    """
    path = Path(path)
    meta = read_metadata(path)
    cols = None if columns is None else list(dict.fromkeys(list(columns) + ["image"]))
    try:
        table = pq.read_table(path, columns=cols)
    except (OSError, pa.ArrowException) as exc:
        raise ShardError(f"{path}: cannot read ({exc})") from None
    if "image" not in table.column_names:
        raise ShardError(f"{path}: no 'image' column")
    try:
        images = array_to_images(table.column("image"), tuple(meta["shape"]))
    except ShardError as exc:
        raise ShardError(f"{path}: {exc}") from None
    return images, table.drop(["image"]), meta


def first_per_kind(shards, kinds, per_kind: int) -> tuple[dict[str, list], dict]:
    """Up to ``per_kind`` ``(image, row)`` pairs of each of ``kinds``, read from ``shards`` in
    order until every kind has enough (for previews).

    Returns
    -------
    picked : dict
        kind -> list of ``(image (bands, H, W), row dict)``.
    metadata : dict
        The last shard's metadata.
    """
    picked: dict[str, list] = {k: [] for k in kinds}
    meta = None
    for shard in shards:
        images, table, meta = read_images(shard)
        for image, row in zip(images, table.to_pylist(), strict=True):
            if row["kind"] not in picked:
                raise ShardError(f"{shard}: kind {row['kind']!r} is not one of {', '.join(picked)}")
            if len(picked[row["kind"]]) < per_kind:
                picked[row["kind"]].append((image, row))
        if all(len(v) >= per_kind for v in picked.values()):
            break
    if meta is None:
        raise ShardError("no shard given to preview")
    return picked, meta


def shard_is_complete(path: str | Path, expected: Mapping[str, object]) -> bool:
    """True if ``path`` is a readable shard whose metadata matches every ``expected`` item."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        meta = read_metadata(path)
        rows = pq.ParquetFile(path).metadata.num_rows
    except (ShardError, OSError, pa.ArrowException):
        return False
    if "rows" in expected and rows != expected["rows"]:
        return False
    return all(meta.get(k) == v for k, v in expected.items() if k != "rows")
