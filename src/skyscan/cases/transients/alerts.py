"""ZTF alerts in, detections out: readers of Avro packets, broker Parquet and FITS triplets.

Every reader yields *detections*, :class:`Detection` ``(candid, stamps, extra)``:

``candid`` : int
    ZTF's candidate id (for FITS triplets, see :func:`triplet_candid`).
``stamps`` : ndarray, shape (3, H, W), float32
    The science, reference (ZTF's *template*) and difference cutouts, in that order, each
    fitted to ``shape`` (63 x 63 by default, ZTF's cutout size) with :func:`fit_stamp`.
``extra`` : dict
    ``objectId``, ``ra``, ``dec``, ``magpsf``, ``jd``, ``rb`` and ``drb`` (ZTF's own real/bogus
    scores), each None when the alert lacks it; ``source`` (the file); ``cutout_flags`` (bits
    :data:`FLAG_EDGE`, :data:`FLAG_NAN`, :data:`FLAG_CROPPED`), ``edge`` (bool), ``nan_pixels``
    (how many non-finite pixels were set to 0, over the three cutouts) and ``diff_sigma`` (the
    robust noise, 1.4826 x MAD, of the difference cutout's own pixels, before any padding).

Input forms
-----------
Avro (:func:`read_avro_alerts`)
    ZTF alert packets, one or many records per file, with the public ZTF alert schema's field
    names: ``objectId``, ``candid``, ``candidate`` (``jd``, ``ra``, ``dec``, ``magpsf``, ``rb``,
    ``drb``, ...) and ``cutoutScience`` / ``cutoutTemplate`` / ``cutoutDifference``, each
    ``{fileName, stampData}`` with ``stampData`` a gzipped FITS file.
Parquet (:func:`read_parquet_alerts`)
    One row per alert, as alert brokers store them: ``candidate`` and the cutouts either as
    struct columns or flattened to dotted names (``candidate.rb``, ``cutoutScience.stampData``);
    a cutout may also be a plain binary column (``cutoutScience``).
FITS triplets (:func:`read_fits_triplets`)
    A folder of ``{name}_sci.fits``, ``{name}_ref.fits`` and ``{name}_diff.fits`` (each
    optionally ``.gz``).

Stamps are decoded with astropy (``gzip.decompress`` when gzipped, then ``fits.open``).  A
cutout smaller than ``shape`` (ZTF cuts short at the CCD edge) is zero-padded *centred* and
flagged :data:`FLAG_EDGE`: where the source sits in a truncated cutout is not recorded, so it may
be off-centre by up to the missing width.  A larger one is cropped centred (:data:`FLAG_CROPPED`).
Non-finite pixels become 0 (:data:`FLAG_NAN`).

An alert whose cutouts cannot be decoded (corrupt or missing stampData, not an image) raises
:class:`~skyscan.core.errors.InputFileError` naming the file and candid; given a ``failures``
list, the readers append ``{"source", "candid", "reason"}`` to it instead and go on with the
next alert.  A file that cannot be read at all (not Avro / Parquet, no ``candid`` or cutout
column) always raises.

The writers (:func:`write_avro_alerts`, :func:`write_parquet_alerts`,
:func:`write_fits_triplet`) make test and demo alerts from arrays.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import warnings
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from skyscan.core.atomic import atomic_path, write_bytes_atomic
from skyscan.core.errors import InputFileError

__all__ = [
    "Detection",
    "STAMP_SHAPE",
    "CHANNELS",
    "CUTOUTS",
    "FORMATS",
    "FLAG_EDGE",
    "FLAG_NAN",
    "FLAG_CROPPED",
    "ALERT_SCHEMA",
    "decode_stamp",
    "fit_stamp",
    "robust_sigma",
    "triplet_candid",
    "read_avro_alerts",
    "read_parquet_alerts",
    "read_fits_triplets",
    "read_alerts",
    "alert_inputs",
    "stamp_bytes",
    "write_avro_alerts",
    "write_parquet_alerts",
    "write_fits_triplet",
]

#: ZTF's cutout size (pixels)
STAMP_SHAPE = (63, 63)
#: stamp channels, in order
CHANNELS = ("science", "reference", "difference")
#: the ZTF alert fields holding the cutouts of :data:`CHANNELS`
CUTOUTS = ("cutoutScience", "cutoutTemplate", "cutoutDifference")
#: file-name suffixes of a FITS triplet's cutouts
TRIPLET_SUFFIXES = ("_sci", "_ref", "_diff")
#: the ``candidate`` fields copied into ``extra``
CANDIDATE_FIELDS = ("jd", "ra", "dec", "magpsf", "rb", "drb")
#: input formats
FORMATS = ("avro", "parquet", "fits")

FLAG_EDGE = 1  #: a cutout smaller than the model's stamp (CCD edge): zero-padded, centred
FLAG_NAN = 2  #: non-finite pixels: set to 0 (as in skyscan.search)
FLAG_CROPPED = 4  #: a cutout larger than the model's stamp: cropped, centred

_TRIPLET = re.compile(r"(.+)_sci\.fits(\.gz)?")
_PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")


class Detection(NamedTuple):
    """One alert's cutouts: ``(candid, stamps (3, H, W) float32, extra dict)``."""

    candid: int
    stamps: np.ndarray
    extra: dict


# ------------------------------------------------------------------------------ decoding


def _decode_fits(raw) -> tuple[np.ndarray, Mapping]:
    """(2-D float32 image, header) of gzipped or plain FITS bytes; ValueError saying why not."""
    from astropy.io import fits

    if not isinstance(raw, bytes | bytearray | memoryview):
        raise ValueError(f"stampData is {type(raw).__name__}, not bytes")
    raw = bytes(raw)
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"not valid gzip data ({exc})") from None
    image = header = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(io.BytesIO(raw), lazy_load_hdus=False) as hdus:
                for hdu in hdus:
                    if hdu.data is not None:
                        image, header = np.array(hdu.data, dtype=np.float32), hdu.header.copy()
                        break
    except Exception as exc:  # noqa: BLE001  (astropy raises many kinds for bad bytes)
        raise ValueError(f"not a readable FITS file ({type(exc).__name__}: {exc})") from None
    if image is None:
        raise ValueError("the FITS file holds no image")
    while image.ndim > 2 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 2 or image.size == 0:
        raise ValueError(f"the FITS image has shape {list(image.shape)}, not a 2-D image")
    return image, header


def decode_stamp(data: bytes) -> np.ndarray:
    """A cutout's image from its ``stampData`` (gzipped or plain FITS), as 2-D float32.

    Raises
    ------
    ValueError
        Saying why the bytes are not a FITS image.
    """
    return _decode_fits(data)[0]


def fit_stamp(image: np.ndarray, shape=STAMP_SHAPE) -> tuple[np.ndarray, int]:
    """``image`` zero-padded or cropped, centred, to ``shape``; returns (stamp, flag bits).

    The flags are :data:`FLAG_EDGE` when a side was padded and :data:`FLAG_CROPPED` when one
    was cropped.  When the difference is odd, the extra row/column of padding goes after the
    image, and the extra cropped one before.
    """
    (h, w), (ht, wt) = image.shape, tuple(shape)
    flags = (FLAG_EDGE if h < ht or w < wt else 0) | (FLAG_CROPPED if h > ht or w > wt else 0)
    if not flags:
        return np.asarray(image, dtype=np.float32), 0
    out = np.zeros((ht, wt), dtype=np.float32)
    ny, nx = min(h, ht), min(w, wt)
    sy, sx = max((h - ht + 1) // 2, 0), max((w - wt + 1) // 2, 0)
    dy, dx = max((ht - h) // 2, 0), max((wt - w) // 2, 0)
    out[dy : dy + ny, dx : dx + nx] = image[sy : sy + ny, sx : sx + nx]
    return out, flags


def robust_sigma(values: np.ndarray) -> float:
    """1.4826 x the median absolute deviation of the finite ``values`` (0 when none)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def _detection(
    source, candid, raws: Sequence, names: Sequence[str], meta: dict, shape, header_meta=False
) -> Detection:
    """Decode one alert's three cutouts into a :class:`Detection` (InputFileError if not)."""
    if candid is None:
        raise InputFileError(f"{source}: an alert without a candid", path=source)
    stamps = np.zeros((3, *shape), dtype=np.float32)
    flags = nan_pixels = 0
    sigma = 0.0
    for k, (raw, name) in enumerate(zip(raws, names, strict=True)):
        if raw is None:
            raise InputFileError(f"{source}: alert candid {candid}: no {name}", path=source)
        try:
            image, header = _decode_fits(raw)
        except ValueError as exc:
            raise InputFileError(
                f"{source}: alert candid {candid}: {name} stamp: {exc}", path=source
            ) from None
        if header_meta and k == 0:
            for key in ("objectId", *CANDIDATE_FIELDS):
                if meta.get(key) is None and key.upper() in header:
                    meta[key] = header[key.upper()]
        if k == 2:
            sigma = robust_sigma(image)
        stamp, f = fit_stamp(image, shape)
        bad = ~np.isfinite(stamp)
        if bad.any():
            stamp = np.where(bad, np.float32(0), stamp)
            nan_pixels += int(bad.sum())
            f |= FLAG_NAN
        stamps[k] = stamp
        flags |= f
    extra = {"source": str(source), "objectId": None, **{f: None for f in CANDIDATE_FIELDS}}
    extra.update({k: v for k, v in meta.items() if k in extra})
    extra.update(
        cutout_flags=flags, edge=bool(flags & FLAG_EDGE), nan_pixels=nan_pixels, diff_sigma=sigma
    )
    return Detection(int(candid), stamps, extra)


def _guarded(failures: list | None, source, candid, make) -> Detection | None:
    """``make()``, or None after recording its InputFileError in ``failures`` (if given)."""
    try:
        return make()
    except InputFileError as exc:
        if failures is None:
            raise
        failures.append({"source": str(source), "candid": candid, "reason": str(exc)})
        return None


def _int_or_none(value):
    return None if value is None else int(value)


# ------------------------------------------------------------------------------- readers


def read_avro_alerts(
    path: str | Path, shape=STAMP_SHAPE, failures: list | None = None
) -> Iterator[Detection]:
    """The detections of a ZTF Avro alert file (one or many records).

    Parameters
    ----------
    path : str or Path
    shape : (int, int)
        Stamp size the cutouts are fitted to (:func:`fit_stamp`).
    failures : list, optional
        Where alerts that cannot be decoded are recorded (``{"source", "candid", "reason"}``);
        without it they raise.

    Raises
    ------
    InputFileError
        The file is not Avro or not ZTF alerts (always); an alert cannot be decoded (without
        ``failures``).
    """
    import fastavro

    path = Path(path)
    with path.open("rb") as fo:
        try:
            records = iter(fastavro.reader(fo))
        except Exception as exc:  # noqa: BLE001  (fastavro raises several kinds)
            raise InputFileError(f"{path}: not an Avro file ({exc})", path=path) from None
        n = 0
        while True:
            try:
                record = next(records)
            except StopIteration:
                return
            except Exception as exc:  # noqa: BLE001
                raise InputFileError(
                    f"{path}: Avro data unreadable after {n} record(s) ({exc})", path=path
                ) from None
            n += 1
            if not isinstance(record, dict) or not ("candid" in record or "candidate" in record):
                raise InputFileError(
                    f"{path}: record {n} is not a ZTF alert (no candid or candidate)", path=path
                )
            candidate = record.get("candidate") or {}
            candid = _int_or_none(record.get("candid", candidate.get("candid")))
            meta = {"objectId": record.get("objectId")}
            meta.update({f: candidate.get(f) for f in CANDIDATE_FIELDS})
            raws = [(record.get(c) or {}).get("stampData") for c in CUTOUTS]
            det = _guarded(
                failures,
                path,
                candid,
                lambda candid=candid, raws=raws, meta=meta: _detection(
                    path, candid, raws, CUTOUTS, meta, shape
                ),
            )
            if det is not None:
                yield det


def _field_paths(fields, prefix: str = "") -> dict:
    """Dotted name -> arrow type of every (nested) field; literal dotted names stay as they are."""
    import pyarrow as pa

    out = {}
    for f in fields:
        name = prefix + f.name
        out[name] = f.type
        if pa.types.is_struct(f.type):
            out.update(
                _field_paths([f.type.field(i) for i in range(f.type.num_fields)], name + ".")
            )
    return out


def read_parquet_alerts(
    path: str | Path, shape=STAMP_SHAPE, failures: list | None = None, batch_rows: int = 1024
) -> Iterator[Detection]:
    """The detections of a broker-style Parquet file of ZTF alerts (one row per alert).

    Columns are looked up by their ZTF names, nested (struct ``candidate`` with field ``rb``)
    or flattened (a column named ``candidate.rb``): ``candid`` (or ``candidate.candid``),
    ``objectId``, ``candidate.{jd,ra,dec,magpsf,rb,drb}`` (or top-level ``ra``, ...), and
    ``cutoutScience.stampData`` (or a binary ``cutoutScience``), likewise ``cutoutTemplate``
    and ``cutoutDifference``.  Only these columns are read, ``batch_rows`` rows at a time.

    Parameters and errors as for :func:`read_avro_alerts`; a file without ``candid`` or a
    cutout column raises.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        pf = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise InputFileError(f"{path}: not a Parquet file ({exc})", path=path) from None
    available = _field_paths(pf.schema_arrow)

    def pick(*names, binary=False):
        for name in names:
            kind = available.get(name)
            if kind is not None and (
                not binary or pa.types.is_binary(kind) or pa.types.is_large_binary(kind)
            ):
                return name
        return None

    candid_col = pick("candid", "candidate.candid")
    if candid_col is None:
        raise InputFileError(f"{path}: no candid column (candid or candidate.candid)", path=path)
    cut_cols = [pick(f"{c}.stampData", c, binary=True) for c in CUTOUTS]
    for col, cutout in zip(cut_cols, CUTOUTS, strict=True):
        if col is None:
            raise InputFileError(
                f"{path}: no {cutout}.stampData column (struct or flattened) or binary {cutout}",
                path=path,
            )
    meta_cols = {"objectId": pick("objectId")}
    meta_cols.update({f: pick(f"candidate.{f}", f) for f in CANDIDATE_FIELDS})
    columns = [candid_col, *cut_cols, *(c for c in meta_cols.values() if c)]
    try:
        for batch in pf.iter_batches(batch_size=batch_rows, columns=list(dict.fromkeys(columns))):
            table = pa.Table.from_batches([batch])
            while any(pa.types.is_struct(f.type) for f in table.schema):
                table = table.flatten()
            candids = table.column(candid_col).to_pylist()
            cuts = [table.column(c).to_pylist() for c in cut_cols]
            metas = {k: table.column(c).to_pylist() for k, c in meta_cols.items() if c}
            for i, candid in enumerate(candids):
                candid = _int_or_none(candid)
                meta = {k: v[i] for k, v in metas.items()}
                raws = [cut[i] for cut in cuts]
                det = _guarded(
                    failures,
                    path,
                    candid,
                    lambda candid=candid, raws=raws, meta=meta: _detection(
                        path, candid, raws, CUTOUTS, meta, shape
                    ),
                )
                if det is not None:
                    yield det
    except (OSError, pa.ArrowException) as exc:
        raise InputFileError(f"{path}: Parquet data unreadable ({exc})", path=path) from None


def triplet_candid(name: str) -> int:
    """The candid of FITS triplet ``name``: the name itself when it is a number below 2**63,
    else the first 63 bits of its BLAKE2b hash (stable across runs and machines)."""
    if name.isdigit() and int(name) < 2**63:
        return int(name)
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big") >> 1


def read_fits_triplets(
    folder: str | Path, shape=STAMP_SHAPE, failures: list | None = None
) -> Iterator[Detection]:
    """The detections of a folder of FITS triplets, in name order.

    Each ``{name}_sci.fits[.gz]`` with ``{name}_ref.fits[.gz]`` and ``{name}_diff.fits[.gz]``
    is one detection: its candid is :func:`triplet_candid` of ``name`` and its ``objectId`` is
    ``name``, unless the science header has ``OBJECTID``; ``ra``, ``dec``, ``magpsf``, ``jd``,
    ``rb`` and ``drb`` come from the science header's keys of those names, when present.  A
    triplet lacking a file is a failure (as a corrupt cutout is).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileError(f"{folder}: FITS triplets are read from a folder", path=folder)
    names = sorted({m[1] for p in folder.iterdir() if (m := _TRIPLET.fullmatch(p.name))})
    for name in names:
        candid = triplet_candid(name)

        def make(name=name, candid=candid):
            paths = []
            for suffix in TRIPLET_SUFFIXES:
                found = [
                    p
                    for p in (folder / f"{name}{suffix}.fits{gz}" for gz in ("", ".gz"))
                    if p.is_file()
                ]
                if not found:
                    raise InputFileError(
                        f"{folder}: triplet {name} (candid {candid}): no {name}{suffix}.fits[.gz]",
                        path=folder,
                    )
                paths.append(found[0])
            raws = [p.read_bytes() for p in paths]
            source = folder / name
            meta = {"objectId": None}
            det = _detection(
                source, candid, raws, [p.name for p in paths], meta, shape, header_meta=True
            )
            if det.extra["objectId"] is None:
                det.extra["objectId"] = name
            return det

        det = _guarded(failures, folder / name, candid, make)
        if det is not None:
            yield det


_READERS = {"avro": read_avro_alerts, "parquet": read_parquet_alerts, "fits": read_fits_triplets}


def alert_inputs(paths: Iterable[str | Path], fmt: str | None = None) -> list[tuple[str, Path]]:
    """The ``(format, path)`` units to read for files and folders given on a command line.

    A file's format is ``fmt`` or, without it, its suffix (``.avro``; ``.parquet``, ``.parq``,
    ``.pq``).  A folder stands for its ``*.avro`` files, its Parquet files and, when it holds
    any ``*_sci.fits[.gz]``, its FITS triplets (only those of ``fmt``, when given).

    Raises
    ------
    InputFileError
        A path that does not exist, a file of unknown format, a folder with no alerts.
    """
    if fmt is not None and fmt not in FORMATS:
        raise InputFileError(f"unknown alert format {fmt!r} (allowed: {', '.join(FORMATS)})")
    units = []
    for path in map(Path, paths):
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file())
            found = [("avro", p) for p in files if p.suffix == ".avro"]
            found += [("parquet", p) for p in files if p.suffix in _PARQUET_SUFFIXES]
            if any(_TRIPLET.fullmatch(p.name) for p in files):
                found.append(("fits", path))
            found = [u for u in found if fmt in (None, u[0])]
            if not found:
                what = f"{fmt} alerts" if fmt else "alerts (.avro, .parquet, *_sci.fits[.gz])"
                raise InputFileError(f"{path}: the folder holds no {what}", path=path)
            units += found
        elif path.is_file():
            kind = fmt or (
                "avro"
                if path.suffix == ".avro"
                else "parquet"
                if path.suffix in _PARQUET_SUFFIXES
                else None
            )
            if kind is None:
                raise InputFileError(
                    f"{path}: unknown alert format (suffix .avro or .parquet, or give --format)",
                    path=path,
                )
            if kind == "fits":
                raise InputFileError(
                    f"{path}: FITS triplets are read from a folder; give the folder", path=path
                )
            units.append((kind, path))
        else:
            raise InputFileError(f"{path}: no such file or folder", path=path)
    return units


def read_alerts(
    path: str | Path, fmt: str, shape=STAMP_SHAPE, failures: list | None = None
) -> Iterator[Detection]:
    """The detections of one input unit of :func:`alert_inputs` (``fmt`` in :data:`FORMATS`)."""
    return _READERS[fmt](path, shape=shape, failures=failures)


# ------------------------------------------------------------------------------- writers

#: The Avro schema of :func:`write_avro_alerts`: a *subset* of the public ZTF alert schema
#: (https://zwickytransientfacility.github.io/ztf-avro-alert/), same names, namespaces and
#: types, with only the fields skyscan reads (no ``prv_candidates``, most of ``candidate``
#: left out).  Readers of real alerts ignore what is missing here.
ALERT_SCHEMA = {
    "type": "record",
    "name": "alert",
    "namespace": "ztf",
    "doc": "A subset of the public ZTF alert schema, written by skyscan for tests and demos.",
    "fields": [
        {"name": "schemavsn", "type": "string"},
        {"name": "publisher", "type": "string"},
        {"name": "objectId", "type": "string"},
        {"name": "candid", "type": "long"},
        {
            "name": "candidate",
            "type": {
                "type": "record",
                "name": "candidate",
                "namespace": "ztf.alert",
                "fields": [
                    {"name": "jd", "type": "double"},
                    {"name": "candid", "type": "long"},
                    {"name": "ra", "type": "double"},
                    {"name": "dec", "type": "double"},
                    {"name": "magpsf", "type": "float"},
                    {"name": "rb", "type": ["null", "float"], "default": None},
                    {"name": "drb", "type": ["null", "float"], "default": None},
                    {"name": "isdiffpos", "type": ["null", "string"], "default": None},
                ],
            },
        },
        {
            "name": "cutoutScience",
            "type": [
                "null",
                {
                    "type": "record",
                    "name": "cutout",
                    "namespace": "ztf.alert",
                    "fields": [
                        {"name": "fileName", "type": "string"},
                        {"name": "stampData", "type": "bytes"},
                    ],
                },
            ],
            "default": None,
        },
        {"name": "cutoutTemplate", "type": ["null", "ztf.alert.cutout"], "default": None},
        {"name": "cutoutDifference", "type": ["null", "ztf.alert.cutout"], "default": None},
    ],
}

_FILE_TAGS = ("targ_sci", "ref", "scimref")  # ZTF's cutout file names end so


def stamp_bytes(image, compress: bool = True) -> bytes:
    """A 2-D image as FITS bytes (float32 primary HDU), gzipped like ZTF's ``stampData``."""
    from astropy.io import fits

    buffer = io.BytesIO()
    fits.PrimaryHDU(np.asarray(image, dtype=np.float32)).writeto(buffer)
    data = buffer.getvalue()
    return gzip.compress(data, mtime=0) if compress else data


def _cutouts(alert: Mapping) -> list[dict | None]:
    """The alert's three cutout records; an array is encoded, bytes are kept as they are."""
    out = []
    for channel, tag in zip(CHANNELS, _FILE_TAGS, strict=True):
        value = alert.get(channel)
        if value is not None and not isinstance(value, bytes | bytearray):
            value = stamp_bytes(value)
        name = f"candid{int(alert['candid'])}_{tag}.fits.gz"
        out.append(None if value is None else {"fileName": name, "stampData": bytes(value)})
    return out


def _record(alert: Mapping) -> dict:
    candid = int(alert["candid"])
    candidate = {"jd": float(alert["jd"]), "candid": candid}
    candidate.update(ra=float(alert["ra"]), dec=float(alert["dec"]))
    candidate["magpsf"] = float(alert["magpsf"])
    for key in ("rb", "drb"):
        candidate[key] = None if alert.get(key) is None else float(alert[key])
    # 't': the difference is science minus reference; 'f': negated (a negative detection)
    candidate["isdiffpos"] = alert.get("isdiffpos")
    record = {
        "schemavsn": "3.3",
        "publisher": "skyscan",
        "objectId": str(alert["objectId"]),
        "candid": candid,
        "candidate": candidate,
    }
    record.update(zip(CUTOUTS, _cutouts(alert), strict=True))
    return record


def write_avro_alerts(path: str | Path, alerts: Sequence[Mapping]) -> Path:
    """Write ``alerts`` as one Avro file of ZTF alert packets (:data:`ALERT_SCHEMA`), atomically.

    Parameters
    ----------
    path : str or Path
    alerts : sequence of dict
        ``candid``, ``objectId``, ``ra``, ``dec``, ``magpsf``, ``jd``, optional ``rb``,
        ``drb`` and ``isdiffpos`` (``'t'``/``'f'``; None: null), and ``science``,
        ``reference``, ``difference``: 2-D arrays (written as gzipped float32 FITS), bytes
        (written as ``stampData`` verbatim, e.g. to test corrupt data) or None (no cutout).
    """
    import fastavro

    schema = fastavro.parse_schema(ALERT_SCHEMA)
    records = [_record(a) for a in alerts]
    with atomic_path(path) as tmp, tmp.open("wb") as fo:
        # fastavro draws a random sync marker: derive it from the alerts so the same alerts
        # give the same bytes.
        marker = hashlib.blake2b(
            ",".join(str(r["candid"]) for r in records).encode(), digest_size=16
        ).digest()
        fastavro.writer(fo, schema, records, sync_marker=marker)
    return Path(path)


def write_parquet_alerts(
    path: str | Path, alerts: Sequence[Mapping], layout: str = "struct"
) -> Path:
    """Write ``alerts`` (as for :func:`write_avro_alerts`) as broker-style Parquet, atomically.

    ``layout="struct"``: columns ``candid``, ``objectId``, ``candidate`` (struct), and
    ``cutoutScience`` etc. (struct ``{fileName, stampData}``); ``layout="flat"``: the same
    fields flattened to dotted column names (``candidate.rb``, ``cutoutScience.stampData``).
    Types as in :data:`ALERT_SCHEMA` (``magpsf``, ``rb``, ``drb`` float32).
    """
    import pyarrow as pa

    from skyscan.core.atomic import write_parquet_atomic

    if layout not in ("struct", "flat"):
        raise ValueError(f"layout must be 'struct' or 'flat', not {layout!r}")
    candidate_type = pa.struct(
        [
            ("jd", pa.float64()),
            ("candid", pa.int64()),
            ("ra", pa.float64()),
            ("dec", pa.float64()),
            ("magpsf", pa.float32()),
            ("rb", pa.float32()),
            ("drb", pa.float32()),
            ("isdiffpos", pa.string()),
        ]
    )
    cutout_type = pa.struct([("fileName", pa.string()), ("stampData", pa.binary())])
    records = [_record(a) for a in alerts]
    columns = {
        "objectId": pa.array([r["objectId"] for r in records], pa.string()),
        "candid": pa.array([r["candid"] for r in records], pa.int64()),
        "candidate": pa.array([r["candidate"] for r in records], candidate_type),
    }
    for c in CUTOUTS:
        columns[c] = pa.array([r[c] for r in records], cutout_type)
    table = pa.table(columns)
    if layout == "flat":
        table = table.flatten()
    return write_parquet_atomic(table, path)


def write_fits_triplet(
    folder: str | Path,
    name: str,
    science,
    reference,
    difference,
    gz: bool = False,
    header: Mapping | None = None,
) -> list[Path]:
    """Write ``{name}_sci.fits``, ``{name}_ref.fits`` and ``{name}_diff.fits`` (float32;
    ``.fits.gz`` with ``gz``) into ``folder`` atomically; ``header`` keys (e.g. ``RA``, ``RB``)
    go into the science file's header.  Returns the three paths."""
    from astropy.io import fits

    paths = []
    for k, (image, suffix) in enumerate(
        zip((science, reference, difference), TRIPLET_SUFFIXES, strict=True)
    ):
        hdu = fits.PrimaryHDU(np.asarray(image, dtype=np.float32))
        if k == 0:
            for key, value in (header or {}).items():
                hdu.header[key] = value
        buffer = io.BytesIO()
        hdu.writeto(buffer)
        data = gzip.compress(buffer.getvalue(), mtime=0) if gz else buffer.getvalue()
        path = Path(folder) / f"{name}{suffix}.fits{'.gz' if gz else ''}"
        paths.append(write_bytes_atomic(path, data))
    return paths
