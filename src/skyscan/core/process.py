"""Worker processes that do not outlive the process that started them.

A pool worker (``ProcessPoolExecutor``, a Dask worker) whose parent is killed with
``kill -9`` (by a user, the OOM killer or SLURM at the walltime) is re-parented to init and
goes on running: it keeps a core busy and keeps writing into an output folder that a re-run
may already be writing into.  :func:`die_with_parent`, called first thing in the worker,
asks the Linux kernel to send the worker a signal the moment its parent dies.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys

__all__ = ["die_with_parent"]

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def die_with_parent(sig: int = signal.SIGKILL, parent_pid: int | None = None) -> bool:
    """Have the kernel send ``sig`` to this process when its parent dies (Linux only).

    Call it at the start of a worker process, e.g. as a pool's ``initializer``.  Uses
    ``prctl(PR_SET_PDEATHSIG)``.  Two properties of that call to know:

    * "the parent" is the *thread* that created this process: if that thread exits while
      the parent process lives on, the signal is sent too.  Start pools from a thread
      that lives as long as the pool (the main thread, or the pool's own event loop).
    * the setting is cleared in children this process forks, and by ``execve`` of a
      set-user-ID program; it survives an ordinary ``execve``.

    If the parent has already died before this call (the worker was re-parented), the
    process exits at once with ``sig`` rather than run unsupervised.

    Parameters
    ----------
    sig : int
        The signal to receive, default ``SIGKILL`` (cannot be caught or ignored, so a worker
        stuck in a C call still stops; what it was writing is left as a temporary file that
        the atomic writers' next run replaces). ``SIGTERM`` lets a handler clean up first.
    parent_pid : int, optional
        The process that must still be the parent. Default: the
        :mod:`multiprocessing` parent of this process when it was started by
        ``multiprocessing``, else the current parent.

    Returns
    -------
    bool
        True if the kernel will send the signal; False where this is not available
        (not Linux, or no C library found), in which case nothing is changed.
    """
    if not sys.platform.startswith("linux"):
        return False
    if parent_pid is None:
        import multiprocessing

        parent = multiprocessing.parent_process()
        parent_pid = parent.pid if parent is not None else os.getppid()
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        log.warning("prctl(PR_SET_PDEATHSIG) failed: %s", os.strerror(err))
        return False
    # The parent may have died between this process's start and the prctl call, when no
    # signal could be sent any more: then the parent is no longer ours.
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), sig)
    return True
