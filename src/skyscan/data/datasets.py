"""Training, validation and test sets built from simulation shards.

Layout of a dataset folder::

    manifest.json          counts per split and kind, rejected rows, sources, config hash
    preprocessing.json     the transform applied to the stored images (see preprocess.py)
    {split}/images.npy     float32 (N, *shape): each sample's payload as the case's sample
                           description says ((bands, H, W) stamps, (T, F) sequences, ...),
                           already preprocessed, memory-mappable
    {split}/meta.parquet   one row per image: every simulation column (label, kind, theta_E,
                           snr_*, ...) in the same order as images.npy

A plain ``.npy`` memory map is the fastest format to train from here (see
``scripts/bench_dataset.py``): batches are slices of the page cache with no decoding.

Split membership is a hash of (dataset seed, system index), so it does not depend on how the
systems were sharded and no system can land in two splits.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from skyscan.config import config_hash, no_detectability_selection
from skyscan.core.atomic import write_json_atomic
from skyscan.core.case import DetectabilitySelection, get_case
from skyscan.core.errors import ConfigError, InputFileError
from skyscan.data.samples import describe
from skyscan.data.shards import read_images, read_metadata

__all__ = ["SPLITS", "build_dataset", "load_split", "assign_splits", "DatasetError"]

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


class DatasetError(InputFileError):
    """A dataset cannot be built or read; the message names the file."""


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A stateless 64-bit mix (splitmix64 finaliser), vectorised."""
    x = x.astype(np.uint64)
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _uniform(seed: int, stream: int, index: np.ndarray) -> np.ndarray:
    """Uniforms in [0, 1) that depend only on (seed, stream, index)."""
    key = _splitmix64(np.asarray([seed * 1_000_003 + stream], dtype=np.uint64))[0]
    with np.errstate(over="ignore"):
        mixed = _splitmix64(np.asarray(index, dtype=np.uint64) ^ key)
    return (mixed >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def assign_splits(index: np.ndarray, fractions: Mapping[str, float], seed: int) -> np.ndarray:
    """Split number (0 train, 1 val, 2 test) of each system index.

    Parameters
    ----------
    index : ndarray of int
        Global system indices.
    fractions : mapping
        ``{"train": f, "val": f, "test": f}``, normalised to sum to one.
    seed : int
    """
    f = np.array([fractions[s] for s in SPLITS], dtype=np.float64)
    edges = np.cumsum(f / f.sum())
    return np.minimum(np.searchsorted(edges, _uniform(seed, 1, index), side="right"), 2)


def _balance(index, label, positive_fraction, seed) -> np.ndarray:
    """Mask keeping every system of the minority class and enough of the other one."""
    keep = np.ones(len(index), dtype=bool)
    if positive_fraction is None:
        return keep
    n_pos, n_other = int(label.sum()), int((label == 0).sum())
    want_other = round(n_pos * (1 - positive_fraction) / positive_fraction)
    want_pos = round(n_other * positive_fraction / (1 - positive_fraction))
    priority = _uniform(seed, 2, index)
    if want_other < n_other:
        drop_class, n_keep = 0, want_other
    elif want_pos < n_pos:
        drop_class, n_keep = 1, want_pos
    else:
        return keep
    members = np.flatnonzero(label == drop_class)
    ranked = members[np.argsort(priority[members], kind="stable")]
    keep[ranked[n_keep:]] = False
    return keep


def _check_same(metas: list[tuple[Path, dict]], key: str) -> None:
    first_path, first = metas[0]
    for path, meta in metas[1:]:
        if meta.get(key) != first.get(key):
            raise DatasetError(
                f"{path}: {key} {meta.get(key)!r} differs from {first.get(key)!r} in {first_path}"
            )


#: Median S/N of the positives below which the dataset stage warns that most of them are
#: below detection at the simulated depth.
DETECTION_SNR = 5.0


def _select_detectable(case, tables, metas, label, good, criteria) -> tuple[np.ndarray, dict]:
    """Apply the case's detectability selection to the positives and warn when most
    positives that enter the dataset are below detection.

    Returns
    -------
    keep : ndarray of bool
        Rows kept by the selection (every negative).
    record : dict
        The manifest's ``detectable`` entry (empty without a selection).
    """
    keep = np.ones(len(label), dtype=bool)
    record: dict = {}
    positive = label == 1
    columns = None
    meta0 = metas[0][1]
    if criteria is not None:
        for path, meta in metas[1:]:
            if meta.get("psf") != meta0.get("psf"):
                raise DatasetError(
                    f"{path}: psf {meta.get('psf')!r} differs from {meta0.get('psf')!r} "
                    f"in {metas[0][0]} (dataset.detectable needs one seeing per band)",
                    path=path,
                )
        table = pa.concat_tables(tables)
        columns = {
            n: table.column(n).to_numpy(zero_copy_only=False)
            for n in table.column_names
            if not pa.types.is_dictionary(table.schema.field(n).type)
        }
        if not isinstance(case, DetectabilitySelection):
            raise no_detectability_selection(case)
        passed = np.asarray(case.detectable(columns, meta0, criteria), dtype=bool)
        keep = ~positive | passed
        n_sim, n_kept = int((positive & good).sum()), int((positive & good & passed).sum())
        record = {
            "criteria": dict(criteria),
            "survey": meta0.get("survey"),
            "seeing": {
                b: p.get("fwhm")
                for b, p in zip(meta0.get("bands", []), meta0.get("psf") or [], strict=False)
            },
            f"{case.positives}_simulated": n_sim,
            f"{case.positives}_kept": n_kept,
            f"{case.positives}_dropped": n_sim - n_kept,
            "kept_fraction": n_kept / n_sim if n_sim else None,
        }
        if n_kept == 0:
            raise DatasetError(
                f"none of the {n_sim} simulated {case.positives} passes dataset.detectable "
                f"({criteria}): loosen it, brighten the priors or raise simulate.n"
            )
    # The warning: are the positives that enter the dataset mostly below detection?
    if columns is None:
        # Every numeric column: which ones measure detection is the case's business.
        names = [
            n
            for n in tables[0].column_names
            if pa.types.is_floating(tables[0].schema.field(n).type)
        ]
        columns = {
            n: np.concatenate([t.column(n).to_numpy(zero_copy_only=False) for t in tables])
            for n in names
        }
    snr = case.detection_snr(columns) if isinstance(case, DetectabilitySelection) else None
    if snr is not None:
        entering = positive & good & keep & np.isfinite(snr)
        if entering.any():
            median = float(np.median(snr[entering]))
            if criteria is not None:
                simulated = positive & good & np.isfinite(snr)
                record["detection_snr_median_simulated"] = float(np.median(snr[simulated]))
                record["detection_snr_median_kept"] = median
            if median < DETECTION_SNR:
                log.warning(
                    "most %s %s are below detection at this survey's depth (%s): median "
                    "S/N %.1f in their best band; consider dataset.detectable or brighter priors",
                    "selected" if criteria is not None else "simulated",
                    case.positives,
                    meta0.get("survey"),
                    median,
                )
    return keep, record


def build_dataset(
    shards: Sequence[str | Path], out_dir: str | Path, config: Mapping, progress: bool = False
) -> dict:
    """Build train/val/test sets from simulation shards.

    Parameters
    ----------
    shards : sequence of path
        Simulation shards (all must share bands, shape, pixel scale and noise).
    out_dir : str or Path
        Dataset folder; replaced atomically file by file.
    config : mapping
        The validated config (``seed`` and the ``dataset`` section are used).
    progress : bool
        Show a progress bar over the shards (each is read twice: a finite-pixel check that
        sizes the splits, then the preprocessed write).

    Returns
    -------
    dict
        The manifest (also written as ``manifest.json``).
    """
    ds = config["dataset"]
    seed = int(config["seed"])
    shards = [Path(s) for s in shards]
    if not shards:
        raise DatasetError("no simulation shard given")
    metas = [(p, read_metadata(p)) for p in shards]
    case = get_case(config["case"])
    samples = describe(case)
    kinds = {m.get("sample", "stamps") for _, m in metas}
    if kinds != {samples.kind}:
        raise DatasetError(
            f"{metas[0][0]}: shards hold {', '.join(sorted(kinds))} samples, case "
            f"{case.name!r} expects {samples.kind}"
        )
    for key in samples.same_keys:
        _check_same(metas, key)
    meta0 = metas[0][1]

    # Pass 1: scalar columns and a finite check of every image, shard by shard.
    tables, good_masks, rejected = [], [], {}
    for path in tqdm(shards, desc="dataset: check", unit="shard", disable=not progress):
        images, table, _ = read_images(path)
        good = np.isfinite(images.reshape(len(images), -1)).all(axis=1)
        n_bad = int((~good).sum())
        if n_bad:
            rejected[str(path)] = n_bad
            fraction = n_bad / len(good)
            if fraction > ds["max_bad_fraction"]:
                raise DatasetError(
                    f"{path}: {n_bad} of {len(good)} images hold NaN or infinite pixels "
                    f"({fraction:.1%} > dataset.max_bad_fraction = {ds['max_bad_fraction']:.1%})"
                )
            log.warning(
                "%s: %d of %d images hold NaN or infinite pixels; dropped", path, n_bad, len(good)
            )
        tables.append(table)
        good_masks.append(good)
    index = np.concatenate([t.column("index").to_numpy() for t in tables])
    if len(np.unique(index)) != len(index):
        raise DatasetError("the shards repeat system indices: were two simulations mixed?")
    label = np.concatenate([t.column("label").to_numpy() for t in tables]).astype(np.int8)
    for path, table in zip(shards, tables, strict=True):
        kinds = table.column("kind").to_pylist()
        unknown = sorted(set(kinds) - set(case.kinds))
        if unknown:
            raise DatasetError(
                f"{path}: kind(s) {', '.join(unknown)} are not kinds of case {case.name!r} "
                f"(allowed: {', '.join(case.kinds)}): set `case:` to the case it was "
                "simulated for",
                path=path,
            )
        if not np.array_equal(case.label(kinds), table.column("label").to_numpy()):
            raise DatasetError(
                f"{path}: its labels do not follow case {case.name!r} (positives are "
                f"{', '.join(case.positive_kinds)}): was it simulated for another case?",
                path=path,
            )
    good = np.concatenate(good_masks)
    detectable, detection = _select_detectable(
        case, tables, metas, label, good, ds.get("detectable")
    )
    good &= detectable
    split_of = assign_splits(index, ds["splits"], seed)

    members = {}
    for k, split in enumerate(SPLITS):
        in_split = np.flatnonzero((split_of == k) & good)
        keep = _balance(index[in_split], label[in_split], ds["positive_fraction"], seed)
        members[split] = in_split[keep]
        if len(members[split]) == 0:
            raise DatasetError(
                f"split {split!r} is empty: raise simulate.n or dataset.splits.{split}"
            )
        if label[members[split]].min() == label[members[split]].max():
            hint = " (or loosen dataset.detectable)" if detection else ""
            raise DatasetError(f"split {split!r} holds a single class: raise simulate.n{hint}")

    spec = samples.fit(meta0, ds, _train_payloads(shards, tables, members["train"], samples))
    graded = _read_graded(ds.get("graded_examples"), spec) if ds.get("graded_examples") else None

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-build-", dir=out_dir))
    try:
        counts = _write_splits(shards, tables, members, spec, samples, tmp, progress, graded)
        manifest = {
            "splits": counts,
            "rejected_nonfinite": rejected,
            "detectable": detection or None,
            "graded_examples": None
            if graded is None
            else {
                "path": str(ds["graded_examples"]),
                "split": "train",
                "n": len(graded[1]),
                "positives": int(np.asarray(graded[1].column("label")).sum()),
                "negatives": int((np.asarray(graded[1].column("label")) == 0).sum()),
            },
            "preprocessing": spec,
            "sources": [
                {"path": str(p), "config_hash": m.get("config_hash"), "rows": m.get("rows")}
                for p, m in metas
            ],
            "case": case.name,
            "survey": meta0.get("survey"),
            "pixel_scale": meta0.get("pixel_scale"),
            "exposures": meta0.get("exposures"),
            # The simulation's own record of its set-up (PSF, exposure, S/N definition,
            # population, ...): what a comparison with a paper checks.
            "simulation": {
                k: v
                for k, v in meta0.items()
                if k not in ("shard", "rows", "config_hash")
                and not k.startswith(("ARROW:", "pandas"))
            },
            "dataset_config_hash": config_hash({"seed": seed, "dataset": ds}),
        }
        write_json_atomic(tmp / "preprocessing.json", spec)
        write_json_atomic(tmp / "manifest.json", manifest)
        out_dir.mkdir(parents=True, exist_ok=True)
        for split in SPLITS:
            (out_dir / split).mkdir(exist_ok=True)
            for name in ("images.npy", "meta.parquet"):
                os.replace(tmp / split / name, out_dir / split / name)
        # The manifest goes last: its presence means the folder is complete.
        os.replace(tmp / "preprocessing.json", out_dir / "preprocessing.json")
        os.replace(tmp / "manifest.json", out_dir / "manifest.json")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _read_graded(path, spec: Mapping) -> tuple[np.ndarray, pa.Table]:
    """Graded search cutouts (``skyscan grade --export``'s ``graded_stamps.parquet``):
    their raw images, already in the training images' units, and their rows (``label``,
    ``kind``, ``mean_grade``, ...), checked against the dataset's bands and shape."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(
            f"dataset.graded_examples: {path} does not exist (write it with "
            "`skyscan grade RESULTS --export`)",
            path=path,
        )
    images, table, meta = read_images(path)
    if list(meta["bands"]) != list(spec["bands"]) or list(meta["shape"]) != list(spec["shape"]):
        raise DatasetError(
            f"{path}: graded stamps have bands {meta['bands']} and shape {meta['shape']}, the "
            f"simulations {spec['bands']} and {spec['shape']}",
            path=path,
        )
    missing = [c for c in ("label", "kind") if c not in table.column_names]
    if missing:
        raise DatasetError(f"{path}: lacks column(s) {', '.join(missing)}", path=path)
    finite = np.isfinite(images.reshape(len(images), -1)).all(axis=1)
    if not finite.all():
        raise DatasetError(
            f"{path}: {int((~finite).sum())} graded stamp(s) hold NaN or infinite pixels",
            path=path,
        )
    return images, table


def _train_payloads(shards, tables, train_rows, samples):
    """The raw payloads of the training rows, shard by shard (read only when the sample
    description's fit needs them: ``SampleDescription.fit_reads_rows``)."""
    if not samples.fit_reads_rows:
        return
    offsets = np.cumsum([0] + [len(t) for t in tables])
    rows = np.sort(train_rows)
    for k, path in enumerate(shards):
        local = rows[(rows >= offsets[k]) & (rows < offsets[k + 1])] - offsets[k]
        if len(local):
            images, _, _ = read_images(path)
            yield images[local]


def _write_splits(
    shards, tables, members, spec, samples, tmp: Path, progress: bool, graded=None
) -> dict:
    offsets = np.cumsum([0] + [len(t) for t in tables])
    shape = tuple(spec["shape"])
    # Graded search cutouts are training examples only: validation and test stay simulated,
    # so thresholds and metrics keep measuring the simulated population.
    extra = {"train": 0 if graded is None else len(graded[0])}
    outputs, cursors = {}, {}
    for split, rows in members.items():
        (tmp / split).mkdir(parents=True, exist_ok=True)
        outputs[split] = np.lib.format.open_memmap(
            tmp / split / "images.npy",
            mode="w+",
            dtype=np.float32,
            shape=(len(rows) + extra.get(split, 0), *shape),
        )
        cursors[split] = 0
    # Pass 2: shard by shard, preprocess each split's rows into its memory map (in index order).
    split_rows = {s: np.sort(r) for s, r in members.items()}
    for k, path in enumerate(
        tqdm(shards, desc="dataset: write", unit="shard", disable=not progress)
    ):
        images, _, _ = read_images(path)
        lo, hi = offsets[k], offsets[k + 1]
        for split, rows in split_rows.items():
            local = rows[(rows >= lo) & (rows < hi)] - lo
            if len(local):
                c = cursors[split]
                outputs[split][c : c + len(local)] = samples.apply(images[local], spec)
                cursors[split] = c + len(local)
    if extra["train"]:
        c = cursors["train"]
        outputs["train"][c:] = samples.apply(graded[0], spec)
    counts = {}
    table = pa.concat_tables(tables)
    for split, rows in split_rows.items():
        outputs[split].flush()
        del outputs[split]
        meta = table.take(pa.array(rows))
        if extra.get(split):
            meta = _append_graded(meta, graded[1])
        pq.write_table(meta, tmp / split / "meta.parquet", compression="zstd")
        kinds = meta.column("kind").to_pylist()
        counts[split] = {
            "n": len(meta),
            "positives": int(np.asarray(meta.column("label")).sum()),
            "kinds": {k: kinds.count(k) for k in sorted(set(kinds))},
        }
    return counts


def _append_graded(meta: pa.Table, graded: pa.Table) -> pa.Table:
    """The simulated rows followed by the graded ones: shared columns in the simulations'
    types, the others null where a row lacks them; ``index`` of a graded row is -1."""
    rows = graded.num_rows
    columns = {}
    for name in meta.column_names:
        field = meta.schema.field(name)
        if name == "index":
            values = pa.array(np.full(rows, -1), field.type)
        elif name in graded.column_names:
            values = graded.column(name).cast(
                field.type.value_type if pa.types.is_dictionary(field.type) else field.type
            )
        else:
            values = pa.nulls(rows, field.type)
        column = meta.column(name)
        if pa.types.is_dictionary(field.type):
            column = column.cast(field.type.value_type)
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        columns[name] = pa.concat_arrays([column.combine_chunks(), values])
    for name in ("mean_grade", "n_graders", "id"):
        if name in graded.column_names and name not in columns:
            values = graded.column(name).combine_chunks()
            columns[f"graded_{name}" if name == "id" else name] = pa.concat_arrays(
                [pa.nulls(meta.num_rows, values.type), values]
            )
    return pa.table(columns).replace_schema_metadata(meta.schema.metadata)


def load_split(dataset_dir: str | Path, split: str):
    """Open one split: memory-mapped preprocessed images, their metadata, and the spec.

    Returns
    -------
    images : numpy.memmap, shape (N, bands, H, W)
    meta : pyarrow.Table
    spec : dict
    """
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r} (allowed: {', '.join(SPLITS)})")
    root = Path(dataset_dir)
    manifest = root / "manifest.json"
    if not manifest.is_file():
        raise DatasetError(f"{root}: not a complete dataset (no manifest.json)")
    spec = json.loads((root / "preprocessing.json").read_text())
    path = root / split / "images.npy"
    try:
        images = np.load(path, mmap_mode="r")
        meta = pq.read_table(root / split / "meta.parquet")
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise DatasetError(f"{path}: cannot read ({exc})") from None
    if len(images) != len(meta):
        raise DatasetError(f"{path}: {len(images)} images but {len(meta)} metadata rows")
    if len(images) == 0:
        raise DatasetError(f"{path}: split {split!r} is empty")
    return images, meta, spec
