"""Pool workers and notebook kernels that die with the batch runner.

Killing only the runner's process (``kill -9 PID``) must not leave orphans that go on
executing queued notebooks. Two mechanisms, so that either suffices:

* on Linux, ``prctl(PR_SET_PDEATHSIG, SIGKILL)``: the kernel delivers SIGKILL to a child
  when the thread that started it exits; set in every pool worker (by
  :func:`worker_init`) and in every kernel (by :class:`GuardedKernelManager`, in the
  forked child before ``exec``), only when the starting thread is the main thread, which
  lives as long as its process;
* everywhere (macOS included): a daemon thread in each worker polls ``os.getppid()``; once
  the runner is gone it kills the kernels this worker started and exits; and a worker
  checks that the runner is alive before it starts each queued run.

ipykernel's own poller (``JPY_PARENT_PID``) only notices a parent that was re-parented
to PID 1, which is not the case under a sub-reaper (containers, systemd user sessions).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time
from typing import Any

PR_SET_PDEATHSIG = 1
POLL_S = 0.1
KILL = getattr(signal, "SIGKILL", signal.SIGTERM)  # Windows has no SIGKILL

#: pids of the kernels started by this process (each leads its own process group)
KERNELS: set[int] = set()
#: the runner's pid, in a pool worker (set by worker_init)
_PARENT: list[int] = []


def _load_prctl() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        return libc.prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()  # resolved before any fork: the child only calls it


def die_with_parent(sig: int = KILL) -> bool:
    """Ask the OS to send ``sig`` to this process when its parent (thread) exits.

    Returns False where this is unsupported (not Linux); :func:`watch_parent` covers that.
    """
    return _PRCTL is not None and _PRCTL(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0


def _preexec_die_with_parent() -> None:  # runs in the forked child, before exec
    _PRCTL(PR_SET_PDEATHSIG, int(KILL), 0, 0, 0)


def kill_kernels() -> None:
    """SIGKILL every kernel (and its process group) started by this process."""
    for pid in list(KERNELS):
        for kill in (getattr(os, "killpg", None), os.kill):
            try:
                if kill is not None:
                    kill(pid, KILL)
            except OSError:
                pass
        KERNELS.discard(pid)


def exit_if_orphaned() -> None:
    """In a pool worker whose runner is gone: kill its kernels and exit (at once)."""
    if _PARENT and os.getppid() != _PARENT[0]:
        kill_kernels()
        os._exit(1)


def watch_parent(parent_pid: int, interval: float = POLL_S) -> threading.Thread:
    """A daemon thread that kills this process's kernels and exits once ``parent_pid`` is gone."""

    def poll() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval)
        kill_kernels()
        os._exit(1)

    t = threading.Thread(target=poll, name="mtlkit-parent-watch", daemon=True)
    t.start()
    return t


def worker_init(parent_pid: int) -> None:
    """Initializer of the runner's pool workers: die when the runner dies."""
    _PARENT[:] = [parent_pid]
    die_with_parent()
    exit_if_orphaned()  # the runner died before prctl took effect
    watch_parent(parent_pid)


def kernel_manager_class() -> type:
    """An ``AsyncKernelManager`` whose kernels die with the process that started them."""
    from jupyter_client.manager import AsyncKernelManager

    class GuardedKernelManager(AsyncKernelManager):
        """Starts the kernel with PDEATHSIG (Linux) and records its pid for the watchdog."""

        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            if _PRCTL is not None and threading.current_thread() is threading.main_thread():
                kw.setdefault("preexec_fn", _preexec_die_with_parent)
            await super()._async_launch_kernel(kernel_cmd, **kw)
            pid = getattr(self.provisioner, "pid", None)
            if pid:
                KERNELS.add(pid)

        async def _async_cleanup_resources(self, restart: bool = False) -> None:
            pid = getattr(self.provisioner, "pid", None)
            await super()._async_cleanup_resources(restart=restart)
            KERNELS.discard(pid)

    return GuardedKernelManager
