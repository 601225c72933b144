"""Feed runs to a backend, retry runs whose worker was lost, and show progress.

:func:`dispatch` keeps the backend full (``capacity()`` runs at a time), records each
outcome on its run (``run.result``) and prints one line per finished run with the sweep's
progress: runs done, running, failed, queued, and an ETA (the time so far per finished run
times the runs left). A run whose process was lost (killed, out of memory, its node gone)
is started again up to ``retries`` times; after that it is a failed run with the reason in
``_error.json``. A lost run that had already completed (its worker died after promoting
it, or between writing ``_done.json`` and promoting) is taken as completed, never redone.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Sequence
from typing import Any, Protocol

from mtlkit.batch.execute import NotebookRun, failure, is_done, promote
from mtlkit.batch.runs import status_of

POLL_S = 0.5


class Backend(Protocol):
    """What :func:`dispatch` needs of a backend (:mod:`mtlkit.batch.backends`)."""

    name: str

    def capacity(self) -> int: ...

    def submit(self, key: int, run: NotebookRun) -> None: ...

    def wait(self, timeout: float) -> list[Any]: ...

    def close(self) -> None: ...


def eta_seconds(elapsed: float, finished: int, total: int) -> float | None:
    """Seconds left if the runs left take as long as the finished ones did (None before the
    first run finishes): ``elapsed / finished * (total - finished)``."""
    if finished <= 0:
        return None
    return elapsed / finished * (total - finished)


def hms(seconds: float | None) -> str:
    """``1:02:03`` (``?`` for None)."""
    if seconds is None:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class Progress:
    """Counts of a sweep's runs and the line shown after each event."""

    def __init__(self, total: int, bar: Any = None):
        self.total, self.bar, self.t0 = total, bar, time.monotonic()
        self.ok = self.failed = self.running = 0

    @property
    def finished(self) -> int:
        return self.ok + self.failed

    def line(self) -> str:
        eta = eta_seconds(time.monotonic() - self.t0, self.finished, self.total)
        queued = self.total - self.finished - self.running
        return (f"[{self.finished}/{self.total} done: {self.ok} ok, {self.failed} failed; "
                f"{self.running} running, {queued} queued; ETA {hms(eta)}]")

    def say(self, text: str) -> None:
        from tqdm.auto import tqdm

        tqdm.write(f"{text}  {self.line()}")
        if self.bar is not None:
            self.bar.set_postfix_str(f"{self.running} running, {self.failed} failed")

    def finish(self, run: NotebookRun, record: dict[str, Any]) -> None:
        ok = record.get("status") in ("ok", "prepared")
        self.ok += ok
        self.failed += not ok
        mark = {"ok": "✓", "prepared": "·"}.get(record.get("status", ""), "✗")
        extra = f"  {record.get('error', '')}" if not ok else ""
        wall = record.get("wall_s") or 0
        self.say(f"{mark} {run.label}  {record.get('status')}  {wall:.1f}s{extra}")
        if self.bar is not None:
            self.bar.update(1)


def _salvage(run: NotebookRun) -> dict[str, Any] | None:
    """The record of a lost run that completed all the same (its worker died after writing
    ``_done.json``: the attempt is promoted now), else None."""
    if run.stage is not None and status_of(run.stage)[0] == "ok":
        promote(run.stage, run.run_dir)
    return status_of(run.run_dir)[1] if is_done(run) else None


def dispatch(runs: Sequence[NotebookRun], backend: Backend, retries: int = 2,
             progress: bool = True) -> list[dict[str, Any]]:
    """Execute ``runs`` on ``backend``; their records, in input order (also ``run.result``)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(runs), desc="runs", unit="run", disable=not progress)
    prog = Progress(len(runs), None if bar.disable else bar)
    pending, running, lost = deque(range(len(runs))), set(), Counter()
    try:
        while pending or running:
            while pending and len(running) < backend.capacity():
                key = pending.popleft()
                backend.submit(key, runs[key])
                running.add(key)
            prog.running = len(running)
            for outcome in backend.wait(POLL_S):
                running.discard(outcome.key)
                prog.running = len(running)
                run = runs[outcome.key]
                record = outcome.record
                if outcome.lost:
                    lost[outcome.key] += 1
                    record = _salvage(run)
                    if record is None and lost[outcome.key] <= retries:
                        prog.say(f"↻ {run.label}  worker lost ({outcome.lost}); retry "
                                 f"{lost[outcome.key]} of {retries}")
                        pending.appendleft(outcome.key)
                        continue
                    if record is None:
                        record = failure(run, f"worker lost {lost[outcome.key]} time(s), last: "
                                         f"{outcome.lost} (retries: {retries}; run the sweep "
                                         "again to retry)", lost=lost[outcome.key])
                run.result = record or {}
                prog.finish(run, run.result)
    finally:
        backend.close()
        bar.close()
    return [r.result for r in runs]
