"""HATS catalogues: importing users' tables into one, and writing the search's output as one.

HATS (Hierarchical Adaptive Tiling Scheme) stores a catalogue as Parquet files, one per
HEALPix pixel of adaptive order (dense regions in small pixels, sparse ones in large), with a
``_healpix_29`` column, ``hats.properties``, ``partition_info.csv`` and ``dataset/_metadata``,
so ``lsdb.open_catalog`` reads it and crossmatches against other HATS catalogues.

:func:`import_catalog` turns Parquet, CSV or FITS tables into a HATS catalogue (adaptive
partitions computed sparsely, so dense fields can be cut finely), checking positions and
identifiers first; the search runs one task per partition of it.
:func:`write_hats_metadata` makes a folder of partition files written by the search into a
catalogue that ``lsdb.open_catalog`` reads.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from skyscan.core.errors import InputFileError

__all__ = [
    "HEALPIX_COLUMN",
    "import_catalog",
    "adaptive_partitions",
    "read_table",
    "clean_positions",
    "open_hats",
    "partition_file",
    "write_hats_metadata",
    "read_hats_columns",
]

log = logging.getLogger(__name__)

HEALPIX_COLUMN = "_healpix_29"


def read_table(path: str | Path):
    """Read a Parquet, CSV or FITS table into a pandas DataFrame (all its columns).

    Raises
    ------
    InputFileError
        Naming the file when it is missing, unreadable or of an unknown kind.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file", path=path)
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            return pq.read_table(path).to_pandas()
        if name.endswith((".csv", ".csv.gz", ".txt")):
            return pd.read_csv(path)
        if name.endswith((".fits", ".fit", ".fits.gz", ".fts")):
            from astropy.table import Table

            table = Table.read(path)
            multi = [c for c in table.colnames if table[c].ndim > 1]
            if multi:
                log.warning("%s: dropped multidimensional column(s) %s", path, ", ".join(multi))
                table.remove_columns(multi)
            return table.to_pandas()
    except Exception as exc:  # pyarrow, pandas and astropy raise many kinds on bad files
        raise InputFileError(
            f"{path}: cannot read the table ({type(exc).__name__}: {exc})", path=path
        ) from None
    raise InputFileError(
        f"{path}: unknown table format (expected .parquet, .csv or .fits)", path=path
    )


def _as_degrees(values, column: str, hours: bool, source) -> np.ndarray:
    """Numbers as they are; strings as numbers or sexagesimal ("10:41:17.3", "-12d30m")."""
    import pandas as pd

    series = pd.Series(values)
    if series.dtype.kind in "fiu":
        return series.to_numpy(dtype=np.float64)
    numeric = pd.to_numeric(series, errors="coerce")
    if numeric.notna().all() or series.isna().equals(numeric.isna()):
        return numeric.to_numpy(dtype=np.float64)
    from astropy import units as u
    from astropy.coordinates import Angle

    text = series.astype(str).str.strip()
    try:
        angles = Angle(text.to_numpy(), unit=u.hourangle if hours else u.deg)
    except (ValueError, TypeError) as exc:
        bad = next((v for v in text if not _parses(v, hours)), text.iloc[0])
        raise InputFileError(
            f"{source}: column {column!r} is neither degrees nor sexagesimal (e.g. {bad!r}: {exc})",
            path=source,
        ) from None
    return angles.deg.astype(np.float64)


def _parses(value: str, hours: bool) -> bool:
    from astropy import units as u
    from astropy.coordinates import Angle

    try:
        Angle(value, unit=u.hourangle if hours else u.deg)
    except (ValueError, TypeError):
        return False
    return True


def _require_positions(df, source, ra_column: str, dec_column: str) -> None:
    missing = [c for c in (ra_column, dec_column) if c not in df.columns]
    if missing:
        raise InputFileError(
            f"{source}: no column(s) {', '.join(map(repr, missing))} for the position "
            f"(columns: {', '.join(map(str, df.columns[:12]))}); name yours with --ra-column "
            "and --dec-column",
            path=source,
        )


def clean_positions(df, source, ra_column="ra", dec_column="dec", id_column="id"):
    """Check and normalise a catalogue's positions and identifiers, in place.

    RA/Dec in degrees or sexagesimal strings (RA in hours, ``"10:41:17.3"``; Dec in degrees)
    become float degrees with RA wrapped into [0, 360).  Without ``id_column`` an ``id`` of
    row numbers is added.

    Raises
    ------
    InputFileError
        One line naming ``source``: a missing column, NaN or |Dec| > 90 (with the first rows),
        duplicate identifiers (with the first few).
    """
    _require_positions(df, source, ra_column, dec_column)
    ra = _as_degrees(df[ra_column], ra_column, True, source)
    dec = _as_degrees(df[dec_column], dec_column, False, source)
    bad = ~(np.isfinite(ra) & np.isfinite(dec))
    if bad.any():
        rows = np.flatnonzero(bad)
        raise InputFileError(
            f"{source}: {bad.sum()} row(s) without a finite {ra_column}/{dec_column} "
            f"(rows {', '.join(map(str, rows[:5]))}{', ...' if len(rows) > 5 else ''})",
            path=source,
        )
    outside = np.abs(dec) > 90
    if outside.any():
        rows = np.flatnonzero(outside)
        raise InputFileError(
            f"{source}: {outside.sum()} row(s) with |{dec_column}| > 90 deg "
            f"(rows {', '.join(map(str, rows[:5]))}: {float(dec[rows[0]]):g})",
            path=source,
        )
    df[ra_column] = np.mod(ra, 360.0)
    df[dec_column] = dec
    if id_column not in df.columns:
        df[id_column] = np.arange(len(df), dtype=np.int64)
    ids = df[id_column]
    dup = ids[ids.duplicated(keep=False)]
    if len(dup):
        first = list(dict.fromkeys(dup.tolist()))[:5]
        raise InputFileError(
            f"{source}: {dup.nunique()} duplicated {id_column!r} value(s), e.g. "
            f"{', '.join(map(repr, first))}: identifiers must be unique",
            path=source,
        )
    return df


def import_catalog(
    sources,
    out_dir,
    *,
    ra_column: str = "ra",
    dec_column: str = "dec",
    id_column: str = "id",
    partition_rows: int = 100_000,
    highest_order: int = 15,
    name: str | None = None,
    overwrite: bool = False,
) -> dict:
    """Turn Parquet, CSV or FITS tables into one HATS catalogue, keeping every column.

    Partitions are chosen by :func:`adaptive_partitions` and written with pyarrow; the
    catalogue metadata by :func:`write_hats_metadata` (``lsdb.open_catalog`` reads it).

    Parameters
    ----------
    sources : path or sequence of paths
        The tables, concatenated in the order given (they must share their columns).
    out_dir : path
        The catalogue folder (written whole into a temporary name, then renamed).
    ra_column, dec_column, id_column : str
        Position (degrees or sexagesimal) and identifier columns; an ``id`` of row numbers
        is added when ``id_column`` is absent.
    partition_rows : int
        Most rows per partition (adaptive HEALPix orders up to ``highest_order``).
    name : str, optional
        Catalogue name (default: the folder's name).
    overwrite : bool
        Replace an existing catalogue at ``out_dir``.

    Returns
    -------
    dict
        ``rows``, ``partitions``, ``orders`` and the output ``path``.
    """
    import pandas as pd

    sources = [Path(s) for s in ([sources] if isinstance(sources, (str, Path)) else sources)]
    frames = [read_table(s) for s in sources]
    columns = list(frames[0].columns)
    for s, f in zip(sources[1:], frames[1:], strict=False):
        if list(f.columns) != columns:
            raise InputFileError(
                f"{s}: columns differ from {sources[0]} ({list(f.columns)} vs {columns})",
                path=s,
            )
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    label = sources[0] if len(sources) == 1 else f"{sources[0]} (+{len(sources) - 1})"
    if not len(df):
        raise InputFileError(f"{label}: the catalogue has no rows", path=sources[0])
    if HEALPIX_COLUMN in df.columns:
        df = df.drop(columns=[HEALPIX_COLUMN])  # recomputed from the positions
    renamed = _canonical_names(df, label, ra_column, dec_column, id_column)
    clean_positions(df, label, *CANONICAL_COLUMNS)
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise InputFileError(f"{out_dir} exists (pass --overwrite to replace it)", path=out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        pixels = _write_partitions(df, tmp, *CANONICAL_COLUMNS[:2], partition_rows, highest_order)
        schema = pq.read_schema(partition_file(tmp, *pixels[0])).remove_metadata()
        import os
        from datetime import datetime, timezone

        # SOURCE_DATE_EPOCH (the reproducible-builds convention) fixes the recorded date, so
        # that the same config and seed give the same bytes (the search copies this date).
        epoch = os.environ.get("SOURCE_DATE_EPOCH")
        made = datetime.fromtimestamp(int(epoch), timezone.utc) if epoch else None
        write_hats_metadata(
            tmp,
            pixels,
            schema,
            len(df),
            name=name or out_dir.name,
            ra_column=CANONICAL_COLUMNS[0],
            dec_column=CANONICAL_COLUMNS[1],
            creation_date=(made or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%MUTC"),
        )
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return {
        "path": str(out_dir),
        "rows": int(len(df)),
        "partitions": len(pixels),
        "orders": sorted({int(o) for o, _ in pixels}),
        "columns_from": renamed,
    }


#: The names every verb reads: ``skyscan catalog import`` writes them whatever the input's.
CANONICAL_COLUMNS = ("ra", "dec", "id")


def _canonical_names(df, source, ra_column: str, dec_column: str, id_column: str) -> dict:
    """Give the position and identifier the canonical names (:data:`CANONICAL_COLUMNS`), in
    place, keeping the input's own columns as they were (e.g. sexagesimal ``RA`` stays
    beside the degrees of ``ra``), so every later verb (search, skymaps, grade) finds them.

    Returns
    -------
    dict
        Canonical name -> the input column it was made from (only those renamed).
    """
    _require_positions(df, source, ra_column, dec_column)
    renamed = {}
    for canonical, given, option in zip(
        CANONICAL_COLUMNS,
        (ra_column, dec_column, id_column),
        ("--ra-column", "--dec-column", "--id-column"),
        strict=True,
    ):
        if given == canonical or (canonical == "id" and given not in df.columns):
            continue  # already canonical, or no identifier: clean_positions numbers the rows
        if canonical in df.columns:
            raise InputFileError(
                f"{source}: {option} {given} is given but the table also has a column "
                f"{canonical!r}, which the search reads as the {canonical}: rename one of them",
                path=source,
            )
        df[canonical] = df[given]
        renamed[canonical] = given
    return renamed


def adaptive_partitions(healpix_29: np.ndarray, max_rows: int, highest_order: int) -> np.ndarray:
    """The HATS partition of each row: the coarsest HEALPix pixel holding at most
    ``max_rows`` rows (or its pixel at ``highest_order``).

    Returns
    -------
    order, pixel : ndarray of int64
        Per row, the partition's order and NESTED pixel.

    Sparse (``numpy.unique`` per order on the rows' order-29 indices) where
    ``lsdb.from_dataframe`` builds a dense histogram at ``highest_order``: 12 x 4**k bins,
    6 GB at order 13, so fine partitions of dense fields are out of its reach.
    """
    n = len(healpix_29)
    order_of = np.full(n, -1, dtype=np.int64)
    pixel_of = np.zeros(n, dtype=np.int64)
    todo = np.arange(n)
    for k in range(0, highest_order + 1):
        if not len(todo):
            break
        pix = healpix_29[todo] >> np.int64(2 * (29 - k))
        unique, inverse, counts = np.unique(pix, return_inverse=True, return_counts=True)
        small = counts[inverse] <= max_rows if k < highest_order else np.ones(len(todo), bool)
        order_of[todo[small]], pixel_of[todo[small]] = k, pix[small]
        todo = todo[~small]
    return order_of, pixel_of


def _write_partitions(df, out_dir, ra_column, dec_column, partition_rows, highest_order):
    """Write ``df`` as HATS partition files, each sorted by ``_healpix_29`` (then input
    order); returns the ``(order, pixel)`` of every partition written."""
    from hats.pixel_math.spatial_index import compute_spatial_index

    index = compute_spatial_index(
        df[ra_column].to_numpy(np.float64), df[dec_column].to_numpy(np.float64)
    ).astype(np.int64)
    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.append_column(HEALPIX_COLUMN, pa.array(index, pa.int64()))
    order_of, pixel_of = adaptive_partitions(index, int(partition_rows), int(highest_order))
    rows = np.lexsort((np.arange(len(index)), index))
    pixels = []
    keys = order_of[rows] * (1 << 58) + pixel_of[rows]
    bounds = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1], True])
    # rows sorted by _healpix_29 lie partition after partition, nested pixels being contiguous
    for a, b in zip(bounds[:-1], bounds[1:], strict=False):
        order, pixel = int(order_of[rows[a]]), int(pixel_of[rows[a]])
        path = partition_file(out_dir, order, pixel)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.take(pa.array(rows[a:b])), path, compression="zstd")
        pixels.append((order, pixel))
    return pixels


def open_hats(path: str | Path):
    """Open a HATS catalogue (or collection: its primary catalogue) with ``hats``.

    Raises
    ------
    InputFileError
        When ``path`` is not a HATS catalogue, with the command that makes one.
    """
    import hats
    from hats.catalog.catalog_collection import CatalogCollection

    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: no such catalogue", path=path)
    if path.is_file() or not (
        (path / "hats.properties").is_file() or (path / "collection.properties").is_file()
    ):
        raise InputFileError(
            f"{path}: not a HATS catalogue (make one with `skyscan catalog import {path} "
            f"--out CATALOG`)",
            path=path,
        )
    try:
        catalog = hats.read_hats(path)
    except Exception as exc:
        raise InputFileError(
            f"{path}: unreadable HATS catalogue ({type(exc).__name__}: {exc})", path=path
        ) from None
    if isinstance(catalog, CatalogCollection):
        catalog = catalog.main_catalog
    return catalog


def partition_file(catalog_dir: str | Path, order: int, pixel: int) -> Path:
    """Path of the Parquet file of one partition (``dataset/Norder=K/Dir=D/Npix=P.parquet``)."""
    from hats.io import paths
    from hats.pixel_math import HealpixPixel

    return Path(paths.pixel_catalog_file(str(catalog_dir), HealpixPixel(order, pixel)))


def write_hats_metadata(
    catalog_dir,
    pixels,
    schema: pa.Schema,
    total_rows: int,
    *,
    name: str,
    ra_column: str = "ra",
    dec_column: str = "dec",
    creation_date: str | None = None,
) -> None:
    """Make a folder of partition files into a HATS catalogue ``lsdb.open_catalog`` reads.

    Writes ``partition_info.csv``, ``hats.properties`` (and ``properties``),
    ``dataset/_common_metadata`` and, when there are rows, ``dataset/_metadata``.  An empty
    search gives a valid catalogue with no partitions and the output schema.

    Parameters
    ----------
    catalog_dir : path
    pixels : sequence of (order, pixel)
        The partitions with at least one row (their files must exist).
    schema : pyarrow.Schema
        The partitions' schema (kept for an empty catalogue).
    total_rows : int
    name : str
    creation_date : str, optional
        Recorded as ``hats_creation_date``; pass a fixed value (e.g. the input catalogue's)
        so that the same search writes the same bytes.
    """
    from hats.catalog import PartitionInfo, TableProperties
    from hats.io.parquet_metadata import write_parquet_metadata
    from hats.pixel_math import HealpixPixel

    catalog_dir = Path(catalog_dir)
    (catalog_dir / "dataset").mkdir(parents=True, exist_ok=True)
    healpix = [HealpixPixel(int(o), int(p)) for o, p in sorted(pixels)]
    extra = {"hats_creation_date": creation_date} if creation_date else {}
    properties = TableProperties(
        catalog_name=name,
        catalog_type="object",
        total_rows=int(total_rows),
        ra_column=ra_column,
        dec_column=dec_column,
        healpix_column=HEALPIX_COLUMN,
        healpix_order=29,
        **extra,
    )
    schema = schema.remove_metadata()
    if healpix:
        write_parquet_metadata(catalog_dir)
    else:
        for stale in ("_metadata",):
            (catalog_dir / "dataset" / stale).unlink(missing_ok=True)
        pq.write_metadata(schema, catalog_dir / "dataset" / "_common_metadata")
    PartitionInfo.from_healpix(healpix).write_to_file(catalog_dir / "partition_info.csv")
    properties.to_properties_file(catalog_dir)


def read_hats_columns(catalog_dir, columns) -> pa.Table:
    """Some columns of every partition of a HATS catalogue, concatenated in partition order
    (an empty table with the catalogue's schema when it has no partition).

    Raises
    ------
    InputFileError
        Naming the folder when it is not a HATS catalogue or lacks a column.
    """
    catalog = open_hats(catalog_dir)
    base = Path(catalog.catalog_base_dir)
    schema = None
    for name in ("_common_metadata", "_metadata"):
        if (base / "dataset" / name).is_file():
            schema = pq.read_schema(base / "dataset" / name).remove_metadata()
            break
    if schema is not None:
        missing = [c for c in columns if c not in schema.names]
        if missing:
            raise InputFileError(
                f"{catalog_dir}: no column(s) {', '.join(missing)}", path=catalog_dir
            )
    pixels = sorted((int(p.order), int(p.pixel)) for p in catalog.get_healpix_pixels())
    tables = [pq.read_table(partition_file(base, o, p), columns=list(columns)) for o, p in pixels]
    if tables:
        return pa.concat_tables(tables)
    if schema is None:
        raise InputFileError(f"{catalog_dir}: no partition and no schema", path=catalog_dir)
    return pa.schema([schema.field(c) for c in columns]).empty_table()
