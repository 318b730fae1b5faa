"""Known strong lenses: cross-match positions with lenscat's catalogue.

lenscat (Vujeva et al. 2024, https://github.com/lenscat/lenscat) ships a community catalogue
of ~33,000 known and candidate strong lenses as ``lenscat/data/catalog.csv`` with columns
``name, RA [deg], DEC [deg], zlens, type, grading, ref``: RA and Dec in degrees (ICRS),
``type`` one of galaxy, cluster, group and ``grading`` one of confident, probable.  The file
is read directly (found with :func:`importlib.util.find_spec`) without importing lenscat,
whose ``__init__`` needs the heavy ``ligo.skymap``; install it with the ``known`` extra
(``pip install skyscan[known]``, or ``pip install --no-deps lenscat``).

Examples
--------
>>> table = match_known_lenses([2.83435, 10.0], [-8.7643, 10.0])  # doctest: +SKIP
>>> table.column("known_name").to_pylist()  # doctest: +SKIP
['J0011-0845', None]
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from skyscan.core.errors import InputFileError

__all__ = [
    "KnownLenses",
    "KNOWN_COLUMNS",
    "lenscat_catalog_path",
    "load_known_lenses",
    "match_known_lenses",
    "add_known_lens_columns",
]

log = logging.getLogger(__name__)

#: Columns :func:`add_known_lens_columns` adds (separation in arcsec).
KNOWN_COLUMNS = ("known_name", "known_grade", "known_type", "known_sep_arcsec")

_CSV_COLUMNS = ("name", "RA [deg]", "DEC [deg]", "type", "grading")


def lenscat_catalog_path() -> Path:
    """The path of lenscat's shipped ``data/catalog.csv``, found without importing lenscat.

    Raises
    ------
    InputFileError
        If lenscat is not installed or its catalogue file is missing (names the extra).
    """
    spec = importlib.util.find_spec("lenscat")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / "data" / "catalog.csv"
        if path.is_file():
            return path
    where = f" (looked in {folders[0]}/data)" if folders else ""
    raise InputFileError(
        "known-lens catalogue lenscat/data/catalog.csv not found"
        f"{where}: install the 'known' extra (pip install 'skyscan[known]')"
    )


@dataclass(frozen=True)
class KnownLenses:
    """The known-lens catalogue in memory.

    Attributes
    ----------
    path : Path
        The CSV it was read from.
    name, grade, type : ndarray of str
    ra, dec : ndarray of float64
        Degrees (ICRS).
    coords : astropy.coordinates.SkyCoord
        The positions; astropy keeps the k-d tree of the first match on this object, so
        later matches against the cached catalogue do not rebuild it.
    """

    path: Path
    name: np.ndarray
    grade: np.ndarray
    type: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    coords: object

    def __len__(self) -> int:
        return len(self.name)


@functools.lru_cache(maxsize=4)
def load_known_lenses(path: str | Path | None = None) -> KnownLenses:
    """Read lenscat's catalogue once per process (cached by path).

    Parameters
    ----------
    path : str or Path, optional
        A CSV in lenscat's format; default the installed lenscat's own
        (:func:`lenscat_catalog_path`).

    Returns
    -------
    KnownLenses

    Raises
    ------
    InputFileError
        Naming the file, if it is missing, lacks a column or holds RA/Dec out of range (RA
        must be degrees in [0, 360], not hours).
    """
    import pyarrow.csv as pacsv
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    path = Path(path) if path is not None else lenscat_catalog_path()
    try:
        table = pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                include_columns=list(_CSV_COLUMNS),
                column_types={"RA [deg]": pa.float64(), "DEC [deg]": pa.float64()},
            ),
        )
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such known-lens catalogue", path=path) from None
    except (pa.ArrowInvalid, KeyError) as exc:
        raise InputFileError(
            f"{path}: not a lenscat catalogue (need columns {', '.join(_CSV_COLUMNS)}): "
            f"{str(exc).splitlines()[0]}",
            path=path,
        ) from None
    ra = table.column("RA [deg]").to_numpy(zero_copy_only=False)
    dec = table.column("DEC [deg]").to_numpy(zero_copy_only=False)
    bad = ~((ra >= 0) & (ra <= 360) & (np.abs(dec) <= 90))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputFileError(
            f"{path}: row {row + 2} has RA {ra[row]!r}, Dec {dec[row]!r}; expected degrees "
            "(RA in [0, 360], Dec in [-90, 90])",
            path=path,
            row=row,
        )
    # RA hours would be at most 24: a catalogue whose RAs all sit below 24 deg is suspicious.
    if len(ra) > 100 and ra.max() <= 24.0:
        raise InputFileError(
            f"{path}: every RA is below 24: hours, not degrees? (expected 'RA [deg]')", path=path
        )

    def strings(column):
        return np.asarray(table.column(column).to_pylist(), dtype=object)

    return KnownLenses(
        path=path,
        name=strings("name"),
        grade=strings("grading"),
        type=strings("type"),
        ra=ra,
        dec=dec,
        coords=SkyCoord(ra * u.deg, dec * u.deg, frame="icrs"),
    )


def match_known_lenses(
    ra, dec, radius_arcsec: float = 2.0, catalog: KnownLenses | None = None
) -> pa.Table:
    """The nearest known lens within ``radius_arcsec`` of each position.

    Parameters
    ----------
    ra, dec : array_like of float
        Positions in degrees (ICRS).
    radius_arcsec : float
        Largest separation counted as a match.
    catalog : KnownLenses, optional
        Default lenscat's (:func:`load_known_lenses`, cached).

    Returns
    -------
    pyarrow.Table
        One row per position, in order: ``known_name``, ``known_grade`` (confident or
        probable), ``known_type`` (galaxy, cluster, group) and ``known_sep_arcsec``; all
        null where no known lens lies within the radius.
    """
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    ra = np.atleast_1d(np.asarray(ra, dtype=np.float64))
    dec = np.atleast_1d(np.asarray(dec, dtype=np.float64))
    if ra.shape != dec.shape or ra.ndim != 1:
        raise ValueError(f"ra and dec must be 1-D of one length, got {ra.shape} and {dec.shape}")
    if not radius_arcsec > 0:
        raise ValueError(f"radius_arcsec must be > 0, got {radius_arcsec!r}")
    catalog = load_known_lenses() if catalog is None else catalog
    n = len(ra)
    found = np.zeros(n, dtype=bool)
    index = np.zeros(n, dtype=np.int64)
    sep = np.full(n, np.nan)
    finite = np.isfinite(ra) & np.isfinite(dec)
    if finite.any() and len(catalog):
        coords = SkyCoord(ra[finite] * u.deg, dec[finite] * u.deg, frame="icrs")
        idx, d2d, _ = coords.match_to_catalog_sky(catalog.coords)
        arcsec = d2d.to_value(u.arcsec)
        within = arcsec <= radius_arcsec
        rows = np.flatnonzero(finite)
        found[rows] = within
        index[rows] = idx
        sep[rows] = arcsec

    def column(values):
        picked = [values[i] if ok else None for i, ok in zip(index, found, strict=True)]
        return pa.array(picked, pa.string())

    return pa.table(
        {
            "known_name": column(catalog.name),
            "known_grade": column(catalog.grade),
            "known_type": column(catalog.type),
            "known_sep_arcsec": pa.array(np.where(found, sep, np.nan), mask=~found),
        }
    )


def add_known_lens_columns(
    candidates: pa.Table, radius_arcsec: float = 2.0, catalog: KnownLenses | None = None
) -> pa.Table:
    """Add the nearest known lens (:data:`KNOWN_COLUMNS`) to a table of candidates.

    Parameters
    ----------
    candidates : pyarrow.Table
        With ``ra`` and ``dec`` columns (degrees).
    radius_arcsec : float
    catalog : KnownLenses, optional

    Returns
    -------
    pyarrow.Table
        ``candidates`` with the four columns appended (replaced if present) and schema
        metadata ``known_lenses_matched`` (the count, also logged), ``known_lenses_radius``
        (arcsec) and ``known_lenses_catalog`` (the CSV).
    """
    missing = [c for c in ("ra", "dec") if c not in candidates.column_names]
    if missing:
        raise InputFileError(
            f"candidates table has no column {missing[0]!r} (have: "
            f"{', '.join(candidates.column_names)})",
            key=missing[0],
        )
    catalog = load_known_lenses() if catalog is None else catalog
    matches = match_known_lenses(
        candidates.column("ra").to_numpy(zero_copy_only=False),
        candidates.column("dec").to_numpy(zero_copy_only=False),
        radius_arcsec,
        catalog,
    )
    out = candidates.drop_columns([c for c in KNOWN_COLUMNS if c in candidates.column_names])
    for name in KNOWN_COLUMNS:
        out = out.append_column(name, matches.column(name))
    matched = len(matches) - matches.column("known_name").null_count
    log.info(
        "%d of %d candidate(s) within %g arcsec of a known lens (%s)",
        matched,
        len(out),
        radius_arcsec,
        catalog.path,
    )
    metadata = dict(out.schema.metadata or {})
    metadata.update(
        {
            b"known_lenses_matched": str(matched).encode(),
            b"known_lenses_radius": repr(float(radius_arcsec)).encode(),
            b"known_lenses_catalog": str(catalog.path).encode(),
        }
    )
    return out.replace_schema_metadata(metadata)
