"""Worker processes die with their parent: pool workers of ``skyscan simulate`` and the
Dask workers of :func:`skyscan.search.cluster.start_cluster`, after a ``kill -9``."""

from __future__ import annotations

import ctypes
import multiprocessing
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from skyscan.core.process import die_with_parent

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="prctl(PR_SET_PDEATHSIG) is Linux only"
)

_PR_GET_PDEATHSIG = 2


def _death_signal() -> int:
    value = ctypes.c_int()
    ctypes.CDLL(None).prctl(_PR_GET_PDEATHSIG, ctypes.byref(value), 0, 0, 0)
    return value.value


def _set_and_report(sig, queue) -> None:
    queue.put((die_with_parent(sig), _death_signal()))


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_die_with_parent_sets_the_death_signal(sig):
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_set_and_report, args=(sig, queue))
    child.start()
    assert queue.get(timeout=60) == (True, sig)
    child.join(60)
    assert _death_signal() == 0  # the parent (this test) was left alone


def test_a_worker_whose_parent_is_already_gone_stops():
    # parent_pid that is not our parent: as if the parent died before the call
    code = "from skyscan.core.process import die_with_parent; die_with_parent(parent_pid=1)"
    result = subprocess.run([sys.executable, "-c", code], timeout=60)
    assert result.returncode == -signal.SIGKILL


def _wait_for(condition, what: str, limit: float = 120.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)


def _files(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in folder.iterdir()} if folder.exists() else {}


def _running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _kill_and_check_descendants(parent: subprocess.Popen, out: Path) -> None:
    """``kill -9`` the parent; then no descendant may remain and nothing may be written."""
    descendants = psutil.Process(parent.pid).children(recursive=True)
    assert descendants, "the run started no worker process"
    parent.kill()
    parent.wait(30)
    _, alive = psutil.wait_procs(descendants, timeout=10)
    survivors = [p for p in alive if _running(p)]
    for process in survivors:  # not left running after the test
        process.kill()
    assert not survivors, f"worker processes outlived their parent: {survivors}"
    before = _files(out)
    time.sleep(2)
    assert _files(out) == before


def test_simulate_workers_die_with_a_killed_parent(tmp_path):
    out = tmp_path / "sims"
    args = ["simulate", "--n", "2400", "--shard-size", "200", "--workers", "2", "--seed", "3"]
    run = subprocess.Popen(
        [sys.executable, "-m", "skyscan.cli", *args, "--out", str(out), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # the first shard is written: both workers run, ten shards are still to come
        _wait_for(lambda: list(out.glob("shard-*.parquet")) or run.poll() is not None, "a shard")
        assert run.poll() is None, "simulate ended before it could be killed"
        _kill_and_check_descendants(run, out)
        assert len(list(out.glob("shard-*.parquet"))) < 12
    finally:
        run.kill()


# Each worker writes a file, then sits 20 s in a C call that holds the GIL (as some
# extension code does), then writes the next. Dask's own guard, a thread that exits the
# worker when the pipe from its parent closes, cannot run while the GIL is held; the
# kernel's death signal (die_with_parent, through the worker preload) needs no thread.
_DASK_RUN = textwrap.dedent(
    """
    import ctypes, sys, time
    from pathlib import Path
    from skyscan.search.cluster import start_cluster

    def write_files(folder, worker):
        for k in range(1000):
            Path(folder, f"{worker}-{k}.txt").write_text("x")
            ctypes.PyDLL(None).sleep(20)  # libc sleep(3), GIL held

    with start_cluster({"kind": "local"}, 2) as client:
        futures = [client.submit(write_files, sys.argv[1], w, pure=False) for w in range(2)]
        time.sleep(3600)
    """
)


def test_local_dask_workers_die_with_a_killed_parent(tmp_path):
    out = tmp_path / "written"
    out.mkdir()
    run = subprocess.Popen([sys.executable, "-c", _DASK_RUN, str(out)])
    try:
        _wait_for(lambda: len(_files(out)) >= 2 or run.poll() is not None, "the workers' files")
        assert run.poll() is None, "the Dask run ended before it could be killed"
        _kill_and_check_descendants(run, out)
    finally:
        run.kill()
