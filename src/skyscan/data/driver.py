"""The shard driver: every case's simulator, resumable, sharded and in parallel.

A case's simulator is a :class:`ShardPlan`: it says how many rows there are, how many go in
a shard, what a shard's schema metadata holds, and how to render the rows ``[start, stop)``
into an Arrow table.  The driver does the rest, once for every case:

* **sharding**: shard ``k`` holds rows ``[k * shard_size, min((k+1) * shard_size, n))``, in
  files ``shard-{k:05d}.parquet`` (:func:`shard_path`);
* **block seeding**: rows are drawn in fixed blocks of :data:`~skyscan.core.seeding.BLOCK_SIZE`
  rows, each from its own streams (:func:`~skyscan.core.seeding.block_rng`), and a block is
  always drawn whole; :func:`gather_blocks` walks a row range block by block, so a row depends
  on ``(seed, index)`` only, never on the shard size or the number of workers;
* **atomic writes**: a shard appears under its name complete or not at all
  (:func:`~skyscan.data.shards.write_table_atomic`);
* **resume**: a shard already on disk with the plan's identity (:meth:`ShardPlan.expected`:
  ``config_hash``, ``shard`` and its row count) is skipped;
* **process pool**: ``workers`` spawned processes (one shard each at a time) that die with
  their parent (:func:`~skyscan.core.process.die_with_parent`), plus the case's own set-up
  (``worker_init``, e.g. single-threaded torch);
* **progress**: one tqdm bar over the rows of the run.

Examples
--------
A plan of one float column, ``x = index / 2``:

>>> import numpy as np, pyarrow as pa, tempfile
>>> from dataclasses import dataclass
>>> @dataclass
... class Halves(ShardPlan):
...     n: int = 5
...     shard_size: int = 2
...     config_hash: str = "demo"
...     def metadata(self, shard):
...         start, stop = self.shard_rows(shard)
...         return {"shard": shard, "rows": [start, stop], "config_hash": self.config_hash}
...     def rows(self, start, stop, progress=None):
...         return pa.table({"x": np.arange(start, stop) / 2})
>>> out = tempfile.mkdtemp()
>>> [p.name for p in run_shards(Halves(), out, show_progress=False)]
['shard-00000.parquet', 'shard-00001.parquet', 'shard-00002.parquet']
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa

from skyscan.core.process import die_with_parent
from skyscan.core.seeding import BLOCK_SIZE, blocks_of
from skyscan.data.shards import shard_count, shard_is_complete, shard_rows, write_table_atomic

__all__ = ["ShardPlan", "gather_blocks", "shard_path", "write_shard", "run_shards"]

log = logging.getLogger(__name__)

#: ``progress(rows)``: told how many more rows are done.
Progress = Callable[[int], object]


class ShardPlan:
    """Base class of a case's simulation plan: everything needed to render any row.

    A subclass (typically a dataclass, picklable: workers receive it) provides the attributes
    ``n`` (rows in the run), ``shard_size`` (rows per shard) and ``config_hash`` (the identity
    of everything the bytes of a shard depend on), and implements :meth:`metadata` and
    :meth:`rows`.  ``unit`` names a row on the progress bar.
    """

    n: int
    shard_size: int
    config_hash: str
    unit: ClassVar[str] = "row"

    @property
    def n_shards(self) -> int:
        """Number of shards of the run (the last may be short)."""
        return shard_count(self.n, self.shard_size)

    def shard_rows(self, shard: int) -> tuple[int, int]:
        """Global row range ``[start, stop)`` of a shard; out of range is a ConfigError."""
        return shard_rows(self.n, self.shard_size, shard)

    def expected(self, shard: int) -> dict:
        """What a complete shard on disk must hold to be kept (see
        :func:`~skyscan.data.shards.shard_is_complete`): its ``config_hash`` and ``shard``
        metadata and its number of ``rows``."""
        start, stop = self.shard_rows(shard)
        return {"config_hash": self.config_hash, "rows": stop - start, "shard": shard}

    def metadata(self, shard: int) -> dict:
        """The schema metadata of a shard (JSON values; must hold the keys of
        :meth:`expected` but ``rows``, and what :func:`~skyscan.data.shards.read_metadata`
        requires)."""
        raise NotImplementedError

    def rows(self, start: int, stop: int, progress: Progress | None = None) -> pa.Table:
        """Render the global rows ``[start, stop)`` into a table of ``stop - start`` rows.

        A row must depend on ``(seed, index)`` only (see :func:`gather_blocks`).  ``progress``,
        if given, is told the number of rows finished as they are (e.g. after each block).
        """
        raise NotImplementedError


def gather_blocks(
    start: int,
    stop: int,
    block_rows: Callable[[int, int, int], Mapping[str, np.ndarray]],
    progress: Progress | None = None,
    block_size: int = BLOCK_SIZE,
) -> dict[str, np.ndarray]:
    """Columns of the global rows ``[start, stop)``, rendered block by block.

    Parameters
    ----------
    start, stop : int
        Global row range (not empty).
    block_rows : callable
        ``block_rows(block, lo, hi)``: the columns of the global rows ``[lo, hi)``, all inside
        random block ``block`` (drawn whole from its own streams, then cut).
    progress : callable, optional
        Called with the number of rows finished after each block.
    block_size : int
        Rows per random block.

    Returns
    -------
    dict of str -> ndarray
        Every column over ``stop - start`` rows.  Columns of more than one dimension (per-row
        arrays such as images; the same dtype and row shape in every block) are copied into
        one buffer, the others concatenated.
    """
    if stop <= start:
        raise ValueError(f"no rows in [{start}, {stop})")
    buffers: dict[str, np.ndarray] = {}
    parts: dict[str, list[np.ndarray]] = {}
    for block in blocks_of(start, stop, block_size):
        lo = max(start, block * block_size)
        hi = min(stop, (block + 1) * block_size)
        cols = block_rows(block, lo, hi)
        for name, values in cols.items():
            values = np.asarray(values)
            if len(values) != hi - lo:
                raise ValueError(
                    f"block {block}: column {name!r} has {len(values)} rows, expected {hi - lo}"
                )
            if values.ndim > 1:  # one buffer for the range: no concatenation copies
                if name not in buffers:
                    buffers[name] = np.empty((stop - start, *values.shape[1:]), values.dtype)
                buffers[name][lo - start : hi - start] = values
            else:
                parts.setdefault(name, []).append(values)
        if progress is not None:
            progress(hi - lo)
    out = {name: np.concatenate(p) for name, p in parts.items()}
    out.update(buffers)
    return out


def shard_path(out_dir: str | Path, shard: int) -> Path:
    """File name of shard ``shard`` in ``out_dir``."""
    return Path(out_dir) / f"shard-{shard:05d}.parquet"


def write_shard(
    plan: ShardPlan, shard: int, out_dir: str | Path, progress: Progress | None = None
) -> Path:
    """Render and atomically write one shard, unless a complete identical one exists.

    Parameters
    ----------
    plan : ShardPlan
    shard : int
    out_dir : str or Path
        The shards' folder (created if needed).
    progress : callable, optional
        Told the rows finished (all of them at once for a skipped shard).

    Returns
    -------
    Path
        The shard's path.
    """
    path = shard_path(out_dir, shard)
    start, stop = plan.shard_rows(shard)
    if shard_is_complete(path, plan.expected(shard)):
        log.info("%s is complete; skipped", path)
        if progress is not None:
            progress(stop - start)
        return path
    table = plan.rows(start, stop, progress=progress)
    if table.num_rows != stop - start:
        raise ValueError(f"{path}: the plan rendered {table.num_rows} rows, not {stop - start}")
    write_table_atomic(table, path, plan.metadata(shard))
    log.info("wrote %s (rows %d..%d)", path, start, stop - 1)
    return path


def _init_worker(worker_init: Callable[[], object] | None) -> None:
    die_with_parent()  # a killed parent takes its workers along: none goes on writing shards
    if worker_init is not None:
        worker_init()


def _write_in_worker(plan: ShardPlan, shard: int, out_dir: str) -> str:
    return str(write_shard(plan, shard, out_dir))


def run_shards(
    plan: ShardPlan,
    out_dir: str | Path,
    shards: Iterable[int] | None = None,
    workers: int = 1,
    show_progress: bool = True,
    worker_init: Callable[[], object] | None = None,
    desc: str = "simulate",
) -> list[Path]:
    """Write shards of ``plan`` (all by default) into ``out_dir``, skipping complete ones.

    Parameters
    ----------
    plan : ShardPlan
    out_dir : str or Path
    shards : iterable of int, optional
        Which shards to write (default all); an index out of range is a ConfigError.
    workers : int
        Processes (spawned: torch and fork do not mix), each writing one shard at a time;
        1 writes in this process.  The bytes do not depend on it.
    show_progress : bool
        Show a progress bar over the rows.
    worker_init : callable, optional
        Called without arguments first thing in every worker process (after it is set to die
        with its parent); must be picklable (a module-level function).
    desc : str
        The progress bar's label.

    Returns
    -------
    list of Path
        The shards, in the order asked for.
    """
    from tqdm import tqdm

    shards = list(range(plan.n_shards)) if shards is None else list(shards)
    ranges = {s: plan.shard_rows(s) for s in shards}  # validates the indices
    total = sum(stop - start for start, stop in ranges.values())
    bar = tqdm(
        total=total, unit=plan.unit, desc=desc, disable=not show_progress, dynamic_ncols=True
    )
    paths: dict[int, Path] = {}
    try:
        if workers <= 1 or len(shards) <= 1:
            for s in shards:
                paths[s] = write_shard(plan, s, out_dir, progress=bar.update)
        else:
            import multiprocessing as mp

            pool = ProcessPoolExecutor(
                min(workers, len(shards)),
                mp_context=mp.get_context("spawn"),
                initializer=_init_worker,
                initargs=(worker_init,),
            )
            try:
                futures = {pool.submit(_write_in_worker, plan, s, str(out_dir)): s for s in shards}
                for fut in as_completed(futures):
                    s = futures[fut]
                    paths[s] = Path(fut.result())
                    bar.update(ranges[s][1] - ranges[s][0])
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)  # fail now: start no more shards
                raise
            pool.shutdown(wait=True)
    finally:
        bar.close()
    return [paths[s] for s in shards]
