"""Where runs execute: this process, local child processes (one per GPU), or Ray tasks.

Every backend executes :func:`mtlkit.batch.execute.execute` and reports, per run, either its
record or that the process executing it was lost (killed, out of memory, its node gone);
:mod:`mtlkit.batch.schedule` decides what to do about a loss.

* :class:`InlineBackend`: one run at a time in this process (``--jobs 1``, no GPU list).
* :class:`LocalBackend`: a child process per run, at most one per slot; on a machine with
  GPUs a slot is a GPU (or a group of them, or a share of one) and the run's kernel sees only
  its own through ``CUDA_VISIBLE_DEVICES``. A child that dies is a lost run, noticed at once.
* :class:`RayBackend` (``--backend ray``): each run is a Ray task asking for the sweep's
  resources (``num_cpus``, ``num_gpus``, ``memory``; Ray sets ``CUDA_VISIBLE_DEVICES``).
  Outputs reach ``--out`` in one of two ways:

  - *shared storage* (default): the worker executes in ``<out>/_attempts/<name>/`` and
    promotes the run itself, exactly as a local run; every node must see ``--out`` (and the
    notebooks) at the same path, e.g. on NFS;
  - *copy back* (``--copy-back``): the worker executes into a temporary folder of its own
    and returns the folder's files (a tar.gz as bytes) with the record; the runner unpacks
    them into ``<out>/_attempts/<name>/`` and promotes a completed run. Nodes need mtlkit
    and its packages, nothing else: the notebook travels with the task.
"""

from __future__ import annotations

import io
import multiprocessing as mp
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from multiprocessing.connection import wait as wait_for
from pathlib import Path
from typing import Any

from mtlkit.batch import procguard
from mtlkit.batch.execute import NotebookRun, execute, failure, is_done, promote, remove
from mtlkit.batch.params import UsageError

RAY_VERSION = "2.60.0"
RAY_INSTALL = f"pip install 'mtlkit[ray]' (ray=={RAY_VERSION})"
CAPACITY_TTL_S = 5.0  # how long the Ray cluster's size is taken as known


@dataclass
class Outcome:
    """What became of one submitted run: its record, or why its process was lost."""

    key: int
    record: dict[str, Any] | None = None
    lost: str = ""  # non-empty: the process executing the run died (the reason)


# ------------------------------------------------------------------------ GPUs
def visible_gpus(env: Mapping[str, str] | None = None) -> list[str]:
    """The GPUs this machine offers runs: the ids in ``CUDA_VISIBLE_DEVICES`` when it is
    set (empty or ``-1``: none), else the indices ``nvidia-smi`` lists; [] without GPUs."""
    env = os.environ if env is None else env
    if "CUDA_VISIBLE_DEVICES" in env:
        ids = [g.strip() for g in env["CUDA_VISIBLE_DEVICES"].split(",") if g.strip()]
        return [] if ids[:1] == ["-1"] else ids
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def gpu_slots(gpus: Sequence[str], per_run: float) -> list[str]:
    """The ``CUDA_VISIBLE_DEVICES`` value of each run slot: ``per_run`` whole GPUs per slot
    (``["0,1", "2,3"]`` for 4 GPUs and 2 per run), or, for a fraction, ``int(1 / per_run)``
    slots on each GPU (``["0", "0", "1", "1"]`` for 0.5). [] when ``per_run`` is 0."""
    if per_run <= 0 or not gpus:
        return []
    if per_run < 1:
        share = int(1 / per_run + 1e-9)
        return [g for g in gpus for _ in range(share)]
    k = int(per_run)
    if k > len(gpus):
        raise UsageError(f"each run asks for {k} GPUs but this machine offers {len(gpus)} "
                         f"({', '.join(gpus)}); lower resources.gpus or --gpus")
    return [",".join(gpus[i:i + k]) for i in range(0, len(gpus) - k + 1, k)]


# ----------------------------------------------------------------- in process
class InlineBackend:
    """One run at a time, in this process (its kernel dies with it)."""

    name = "inline"

    def __init__(self, cell_timeout: float | None = None, env: Mapping[str, str] | None = None,
                 prepare_only: bool = False):
        self.cell_timeout, self.env = cell_timeout, dict(env or {})
        self.prepare_only = prepare_only
        self.queue: deque[tuple[int, NotebookRun]] = deque()

    def capacity(self) -> int:
        return 1

    def submit(self, key: int, run: NotebookRun) -> None:
        run.env = {**run.env, **self.env}
        self.queue.append((key, run))

    def wait(self, timeout: float) -> list[Outcome]:
        if not self.queue:
            return []
        key, run = self.queue.popleft()
        return [Outcome(key, execute(run, self.cell_timeout, self.prepare_only))]

    def close(self) -> None:
        self.queue.clear()


# ------------------------------------------------------------ child processes
def _child(run: NotebookRun, cell_timeout: float | None, parent: int, conn: Any) -> None:
    """A local worker: dies with the runner (procguard), executes one run, sends its record."""
    procguard.worker_init(parent)
    conn.send(execute(run, cell_timeout))
    conn.close()


class LocalBackend:
    """A child process per run, ``len(slots)`` (or ``jobs``) at a time.

    ``slots``: the ``CUDA_VISIBLE_DEVICES`` value of each slot (:func:`gpu_slots`); empty:
    ``jobs`` slots and the environment as it is (``env`` is added to every run's).
    """

    name = "local"

    def __init__(self, jobs: int, slots: Sequence[str] = (), cell_timeout: float | None = None,
                 env: Mapping[str, str] | None = None):
        self.free: list[str | None] = list(slots)[:jobs] if slots else [None] * jobs
        self.cell_timeout, self.env = cell_timeout, dict(env or {})
        self.busy: dict[int, tuple[Any, Any, str | None]] = {}  # key: (process, conn, slot)
        self.ctx = mp.get_context("spawn")

    def capacity(self) -> int:
        return len(self.free) + len(self.busy)

    def submit(self, key: int, run: NotebookRun) -> None:
        slot = self.free.pop(0)
        run.env = {**run.env, **self.env}
        if slot is not None:
            run.env["CUDA_VISIBLE_DEVICES"] = slot
        receive, send = self.ctx.Pipe(duplex=False)
        proc = self.ctx.Process(target=_child, args=(run, self.cell_timeout, os.getpid(), send),
                                daemon=True, name=f"nbrun-{run.label}"[:60])
        proc.start()
        send.close()
        self.busy[key] = (proc, receive, slot)

    def wait(self, timeout: float) -> list[Outcome]:
        conns = {conn: key for key, (_, conn, _) in self.busy.items()}
        done = []
        for conn in wait_for(list(conns), timeout=timeout) if conns else []:
            key = conns[conn]
            proc, _, slot = self.busy.pop(key)
            try:
                outcome = Outcome(key, conn.recv())
            except (EOFError, OSError):
                proc.join(10)
                outcome = Outcome(key, lost=f"its process (pid {proc.pid}) died, exit code "
                                  f"{proc.exitcode}")
            conn.close()
            proc.join(10)
            self.free.append(slot)
            done.append(outcome)
        return done

    def close(self) -> None:
        for proc, conn, _ in self.busy.values():
            if proc.is_alive():
                proc.kill()
            proc.join(10)
            conn.close()
        self.busy.clear()


# ------------------------------------------------------------------------ Ray
def require_ray() -> Any:
    """The ``ray`` module, or a :class:`UsageError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UsageError(f"--backend ray needs Ray, which is not installed: {RAY_INSTALL}"
                         ) from None
    return ray


def pack(folder: Path) -> bytes:
    """The files under ``folder`` as a tar.gz (paths relative to it)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(folder, arcname=".")
    return buf.getvalue()


def unpack(data: bytes, folder: Path) -> None:
    """Unpack :func:`pack`'s bytes into ``folder`` (replacing it); refuses links and paths
    that leave the folder."""
    remove(folder)
    folder.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            target = (folder / member.name).resolve()
            if not (member.isfile() or member.isdir()) or not target.is_relative_to(
                    folder.resolve()):
                raise ValueError(f"refusing {member.name!r} in a run's files")
        tar.extractall(folder, filter="data")


def ray_execute(run: NotebookRun, cell_timeout: float | None, copy_back: bool,
                notebook_text: str = "") -> dict[str, Any]:
    """The Ray task: execute one run on a worker; with ``copy_back``, in a temporary folder
    whose files return with the record (``record["files"]``, a tar.gz)."""
    if not copy_back:
        return execute(run, cell_timeout)
    tmp = Path(tempfile.mkdtemp(prefix="mtlkit-run-"))
    try:
        notebook = run.notebook
        if not notebook.is_file():  # no shared checkout: the notebook came with the task
            notebook = tmp / "src" / run.notebook.name
            notebook.parent.mkdir()
            notebook.write_text(notebook_text, encoding="utf-8")
        stage = tmp / "stage"
        params = {**run.params, "OUT_DIR": str(stage)} if "OUT_DIR" in run.params else run.params
        local = replace(run, notebook=notebook, params=params, stage=stage,
                        run_dir=tmp / "final", output=tmp / "final" / run.notebook.name)
        record = execute(local, cell_timeout, promote_result=False)
        record["files"] = pack(stage)
        return record
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class RayBackend:
    """Each run a Ray task with the sweep's resource request (see the module docstring)."""

    name = "ray"

    def __init__(self, address: str | None, resources: Any, copy_back: bool = False,
                 cell_timeout: float | None = None):
        ray = self.ray = require_ray()
        env = {"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else {}
        try:
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False,
                     configure_logging=False, runtime_env={"env_vars": env} if env else None)
        except (ConnectionError, RuntimeError, ValueError) as e:
            where = f"the Ray cluster at {address}" if address else "a local Ray"
            raise UsageError(f"cannot start or reach {where}: {str(e).splitlines()[0]}; "
                             "check 'ray status' (or start one with 'ray start --head')"
                             ) from None
        self.options = {**resources.ray_options(), "max_retries": 0}
        self.request = {"CPU": resources.cpus, "GPU": resources.gpus or 0}
        self.copy_back, self.cell_timeout = copy_back, cell_timeout
        self.task = ray.remote(ray_execute)
        self.refs: dict[Any, tuple[int, NotebookRun]] = {}
        self._capacity: tuple[float, int] = (0.0, 0)
        self._check_cluster()

    def _check_cluster(self) -> None:
        total = self.ray.cluster_resources()
        short = [k for k, v in self.request.items() if v and total.get(k, 0) < v]
        if short:
            have = ", ".join(f"{k} {total.get(k, 0):g}" for k in self.request)
            raise UsageError(f"each run asks for {self.request['CPU']:g} CPU and "
                             f"{self.request['GPU']:g} GPU, but the Ray cluster has {have} in "
                             "all; lower resources (or --gpus 0) or add nodes")

    def capacity(self) -> int:
        """How many runs fit on the cluster at once (recomputed every few seconds)."""
        at, n = self._capacity
        if time.monotonic() - at > CAPACITY_TTL_S:
            total = self.ray.cluster_resources()
            fits = [total.get(k, 0) / v for k, v in self.request.items() if v]
            n = max(1, int(min(fits) + 1e-9)) if fits else max(1, len(self.refs))
            self._capacity = (time.monotonic(), n)
        return n

    def submit(self, key: int, run: NotebookRun) -> None:
        text = run.notebook.read_text(encoding="utf-8") if self.copy_back else ""
        ref = self.task.options(**self.options).remote(run, self.cell_timeout, self.copy_back,
                                                       text)
        self.refs[ref] = (key, run)

    def wait(self, timeout: float) -> list[Outcome]:
        if not self.refs:
            return []
        ready, _ = self.ray.wait(list(self.refs), num_returns=len(self.refs), timeout=timeout)
        return [self._outcome(ref, *self.refs.pop(ref)) for ref in ready]

    def _outcome(self, ref: Any, key: int, run: NotebookRun) -> Outcome:
        exc = self.ray.exceptions
        try:
            record = self.ray.get(ref)
        except exc.RayTaskError as e:  # the task raised outside the notebook (an import...)
            return Outcome(key, failure(run, f"the Ray task raised {type(e.cause).__name__}: "
                                              f"{e.cause}"))
        except exc.RayError as e:  # worker or node died, object lost, ...
            return Outcome(key, lost=f"{type(e).__name__}: {str(e).splitlines()[0][:200]}")
        files = record.pop("files", None)
        if files is not None:
            assert run.stage is not None
            unpack(files, run.stage)
            if record.get("status") == "ok":
                promote(run.stage, run.run_dir)
        elif record.get("status") == "ok" and not is_done(run):
            record = failure(run, f"the worker completed the run but {run.run_dir} is not "
                             "there: --out is not on storage the workers share; use --copy-back")
        elif record.get("status") == "failed" and run.stage and not run.stage.is_dir():
            record = failure(run, record.get("error", ""))  # written on the worker's disk only
        return Outcome(key, record)

    def close(self) -> None:
        for ref in self.refs:
            self.ray.cancel(ref, force=True)
        self.refs.clear()
        self.ray.shutdown()
