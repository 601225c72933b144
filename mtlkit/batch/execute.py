"""Execute one notebook run: stage it, run papermill, record, promote (atomic results).

A run executes in its attempt folder ``<out>/_attempts/<name>/`` and is moved to
``<out>/<name>/`` only once it completed (:func:`promote`); see :mod:`mtlkit.batch.runs`
for the layout. Every backend (:mod:`mtlkit.batch.backends`) calls :func:`execute`, in
this process, in a child process or on a Ray worker.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import socket
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from mtlkit.batch import procguard
from mtlkit.batch.params import Param, defaults, notebook_parameters
from mtlkit.batch.runs import ATTEMPTS, DONE, ERROR, REPLACED, status_of
from mtlkit.utils import temporary_env

KERNEL = "python3"
T = TypeVar("T")
#: starts of a kernel that dies before its first reply: no cell has run, so starting it
#: again is safe. Two kernels started at once on one host can be given the same port (the
#: client picks free ports, closes them, and the kernel binds them later: jupyter_client#487)
KERNEL_START_TRIES = 3
STARTUP_FAILURE = "Kernel died before replying to kernel_info"


@dataclass
class NotebookRun:
    """One execution: a notebook with a parameter set."""

    notebook: Path
    params: dict[str, Any]  # what papermill injects: the given values and OUT_DIR
    run_dir: Path  # <out>/<name>: the completed run (prepare-only: OUT_DIR)
    output: Path  # the executed notebook in run_dir (prepare-only: <out>/<name>.ipynb)
    label: str  # <name>, the folder's name
    source_hash: str = ""
    resolved: dict[str, Any] = field(default_factory=dict)  # all parameters but OUT_DIR
    stage: Path | None = None  # <out>/_attempts/<name>: where it executes
    result: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # set for its kernel (CUDA_VISIBLE_...)


def same(a: Any, b: Any) -> bool:
    """Equal as JSON (so 1 == 1.0 and tuples equal lists, as they are written)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def recorded_parameters(info: Mapping[str, Any], declared: Mapping[str, Param]) -> dict[str, Any]:
    """The parameters a run record says it ran with, over the notebook's current names."""
    rec = info.get("resolved") or {k: v for k, v in info.get("parameters", {}).items()
                                   if k != "OUT_DIR"}
    return {**defaults(declared), **{k: v for k, v in rec.items() if k in declared}}


def is_done(run: NotebookRun) -> bool:
    """A completed run in ``run.run_dir`` with the same parameters and notebook source."""
    status, info = status_of(run.run_dir)
    if status != "ok":
        return False
    declared = notebook_parameters(run.notebook)
    return (same(recorded_parameters(info, declared), run.resolved)
            and info.get("source_hash") == run.source_hash and run.output.exists())


# ------------------------------------------------------------ atomic results
def remove(path: Path) -> None:
    """Delete a file or folder tree (a missing one is fine)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _discard(old: Path, out: Path) -> None:
    """Delete a replaced run folder, unless it holds runs of an older nested layout."""
    if not old.exists():
        return
    if any(p.parent != old for p in old.rglob(DONE)):
        keep = out / f"{old.name}.before-{time.strftime('%Y%m%d-%H%M%S')}"
        old.rename(keep)
        print(f"note: {keep} keeps the runs that were nested in the replaced folder")
    else:
        remove(old)


def promote(stage: Path, final: Path) -> None:
    """Move a completed attempt into place; the run it replaces is deleted only afterwards.

    A kill between the two renames leaves both under ``_attempts``; :func:`recover` finishes.
    """
    old = stage.parent / REPLACED / final.name
    if final.exists():
        old.parent.mkdir(exist_ok=True)
        remove(old)
        final.rename(old)
    stage.rename(final)
    _discard(old, final.parent)


def recover(out: Path) -> None:
    """Finish what a kill interrupted in :func:`promote` (completed attempts not yet in place)."""
    attempts = out / ATTEMPTS
    for stage in sorted(attempts.glob("*")) if attempts.is_dir() else []:
        if stage.is_dir() and not stage.name.startswith(".") and status_of(stage)[0] == "ok":
            promote(stage, out / stage.name)
    for old in sorted((attempts / REPLACED).glob("*")) if attempts.is_dir() else []:
        if (out / old.name).exists():
            _discard(old, out)
        else:
            old.rename(out / old.name)


def tidy(out: Path) -> None:
    """Remove ``_attempts`` when nothing is left in it."""
    for folder in (out / ATTEMPTS / REPLACED, out / ATTEMPTS):
        with contextlib.suppress(OSError):
            folder.rmdir()


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON atomically (a kill leaves the old file or the new one, never half)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    tmp.replace(path)


def now() -> str:
    """The local time as ISO text with its UTC offset."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


#: set for every batch kernel: widgets inert (``mtlkit.nb.widgets_enabled``; a live widget
#: cell sometimes never completes under papermill, jupyter/nbclient#312)
BATCH_ENV = {"MTLKIT_WIDGETS": "off"}


def execute(run: NotebookRun, cell_timeout: float | None = None, prepare_only: bool = False,
            kernel: str = KERNEL, promote_result: bool = True) -> dict[str, Any]:
    """Run (or, with ``prepare_only``, parameterise) one notebook; returns its record.

    Failures are recorded (``_error.json`` in the attempt folder), not raised. A completed
    attempt is moved into ``run.run_dir`` unless ``promote_result`` is False (a worker that
    sends its files back leaves that to the runner). ``run.env`` is set for the kernel.
    """
    import papermill as pm

    # our own parser has validated the parameters; papermill's is stricter about comments
    # ("Unable to parse line") and would warn about parameters it failed to parse
    logging.getLogger("papermill").setLevel(logging.ERROR)
    if prepare_only:
        workdir, output, extra = run.run_dir, run.output, {}
    else:
        assert run.stage is not None
        workdir, output = run.stage, run.stage / run.notebook.name
        remove(workdir)  # an earlier failed or interrupted attempt: superseded
        extra = {"kernel_manager_class": procguard.kernel_manager_class()}
    workdir.mkdir(parents=True, exist_ok=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    record = {"notebook": run.notebook.name, "label": run.label, "parameters": run.params,
              "resolved": run.resolved, "source_hash": run.source_hash,
              "executed_in": str(workdir), "host": socket.gethostname(), "env": run.env,
              "started": now()}
    t0 = time.perf_counter()

    def run_notebook() -> None:
        pm.execute_notebook(
            str(run.notebook), str(output), parameters=run.params, kernel_name=kernel,
            cwd=str(run.notebook.parent), prepare_only=prepare_only, progress_bar=False,
            request_save_on_cell_execute=True,
            execution_timeout=cell_timeout if cell_timeout else None, **extra)

    def note_restart(starts: int) -> None:
        record["kernel_starts"] = starts

    try:
        with temporary_env({**BATCH_ENV, **run.env}):
            with_kernel_restarts(run_notebook, note_restart)
    except Exception as e:  # record and go on with the other runs
        record.update(status="failed", finished=now(),
                      wall_s=round(time.perf_counter() - t0, 2), error=describe(e))
        if not prepare_only:
            write_json(workdir / ERROR, record)
        return record
    record.update(status="prepared" if prepare_only else "ok", finished=now(),
                  wall_s=round(time.perf_counter() - t0, 2))
    if not prepare_only:
        procguard.exit_if_orphaned()  # a pool worker whose runner died records nothing
        write_json(workdir / DONE, record)
        if promote_result:
            promote(workdir, run.run_dir)
    return record


def with_kernel_restarts(start: Callable[[], T], note: Callable[[int], None] | None = None
                         ) -> T:
    """``start()``, called again (at most :data:`KERNEL_START_TRIES` calls in all) while it
    fails because the kernel died before its first reply: no cell had run, so nothing is
    repeated.  ``note(n)`` is told before the n-th call; any other error propagates."""
    for n in range(1, KERNEL_START_TRIES + 1):
        try:
            return start()
        except RuntimeError as e:
            if STARTUP_FAILURE not in str(e) or n == KERNEL_START_TRIES:
                raise
            if note is not None:
                note(n + 1)
            time.sleep(0.2 * n)
    raise AssertionError("unreachable")


def failure(run: NotebookRun, error: str, **extra: Any) -> dict[str, Any]:
    """Record that ``run`` failed outside its notebook (its worker lost, a task error):
    ``_error.json`` in its attempt folder, next to whatever partial files are there."""
    record = {"notebook": run.notebook.name, "label": run.label, "parameters": run.params,
              "resolved": run.resolved, "source_hash": run.source_hash, "status": "failed",
              "finished": now(), "error": error, **extra}
    if run.stage is not None:
        run.stage.mkdir(parents=True, exist_ok=True)
        write_json(run.stage / ERROR, record)
    return record


def describe(e: BaseException) -> str:
    """One line about an exception (a notebook cell's error: its name, value and cell)."""
    ename, evalue = getattr(e, "ename", None), getattr(e, "evalue", None)
    if ename:
        cell = getattr(e, "exec_count", None)
        return f"{ename}: {evalue}" + (f" (cell [{cell}])" if cell is not None else "")
    return "".join(traceback.format_exception_only(type(e), e)).strip()
