"""Benchmark grids: method x seed runs through :class:`mtlkit.trainer.Trainer`.

:class:`~mtlkit.trainer.Trainer` trains one model with one strategy and
:mod:`mtlkit.results` aggregates tidy records; this module only adds what a
benchmark table (``rlw.md`` Table 1, ``metaweighting.txt`` Tables 2-3) needs
on top of them:

* method *specs*: a row label that names a strategy, its hyper-parameters and
  its gradient mode, written without ``=`` so that it fits a notebook
  parameter line: ``"EW"``, ``"RLW-dirichlet"``, ``"MGDA-UB"`` (MGDA on the
  shared representation), or the general form ``"Name(key: value, ...)@mode"``;
* ``STL`` as a baseline row: T single-task runs merged by
  :func:`mtlkit.results.merge_single_task` (its Δt is the sum of the T runs);
* strategies with a ``seed`` hyper-parameter (RLW) get the run's seed unless
  the spec fixes one, so seeds vary the random weights too;
* a finiteness check of every run's training losses.

Used by ``notebooks/50_benchmark_text_classification.ipynb`` and
``notebooks/51_benchmark_dense_prediction.ipynb``.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from mtlkit import results
from mtlkit import weighting as W
from mtlkit.data.base import MTLData
from mtlkit.trainer import TrainConfig, Trainer
from mtlkit.utils import slug

#: shorthand labels of the papers' table rows -> (strategy, hyper-parameters, mode)
ALIASES: dict[str, tuple[str, dict[str, Any], str]] = {
    **{f"RLW-{d}": ("RLW", {"dist": d}, "auto")
       for d in ("uniform", "normal", "dirichlet", "bernoulli", "constrained_bernoulli",
                 "random_normal")},
    "MGDA-UB": ("MGDA", {}, "rep"),
}
_SPEC = re.compile(r"^\s*([A-Za-z][\w\-]*)\s*(?:\((.*)\))?\s*(?:@\s*(\w+))?\s*$")


@dataclass(frozen=True)
class Method:
    """One table row: ``label`` trains strategy ``name`` with ``hparams`` in ``mode``."""

    label: str
    name: str
    hparams: dict[str, Any] = field(default_factory=dict)
    mode: str = "auto"

    def build(self, seed: int = 0, **extra: Any) -> W.Weighting:
        """The strategy (built once), with ``seed`` passed to strategies that take one
        unless the spec or ``extra`` fixes it."""
        hp = {**self.hparams, **extra}
        if "seed" not in hp:
            try:  # the registry refuses an unknown hyper-parameter before building anything
                return W.get(self.name, **hp, seed=int(seed))
            except ValueError as e:
                if "'seed'" not in str(e):
                    raise
        return W.get(self.name, **hp)

    def strategies(self, seed: int, n_tasks: int) -> list[W.Weighting]:
        """The strategy to train, or for ``STL`` one single-task strategy per task."""
        if self.name == "STL":
            return [self.build(seed, task=i) for i in range(n_tasks)]
        return [self.build(seed)]


def _value(text: str) -> Any:
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return text.strip()


def parse_method(spec: str) -> Method:
    """A :class:`Method` from ``"Name"``, an alias in :data:`ALIASES`, or
    ``"Name(key: value, ...)@mode"`` (values are Python literals or bare
    strings; ``@mode`` is optional).  Raises ``ValueError`` for a bad spec or
    an unknown strategy name."""
    if spec in ALIASES:
        name, hp, mode = ALIASES[spec]
        return Method(spec, name, dict(hp), mode)
    m = _SPEC.match(spec)
    if not m:
        raise ValueError(f"bad method spec {spec!r}; write 'Name', 'Name(key: value)@mode' "
                         f"or one of {sorted(ALIASES)}")
    name, args, mode = m.group(1), m.group(2), m.group(3) or "auto"
    hp: dict[str, Any] = {}
    for part in filter(None, (a.strip() for a in (args or "").split(","))):
        if ":" not in part:
            raise ValueError(f"method spec {spec!r}: argument {part!r} is not 'key: value'")
        k, v = part.split(":", 1)
        hp[k.strip()] = _value(v)
    if name not in W.names():
        raise ValueError(f"method spec {spec!r}: unknown strategy {name!r}; registered: "
                         f"{', '.join(W.names())}")
    return Method(spec.strip(), name, hp, mode)


def available(specs: Sequence[str]) -> tuple[list[Method], list[str]]:
    """(parsed methods whose strategy is registered, specs skipped with the reason)."""
    ok, skipped = [], []
    for s in specs:
        try:
            ok.append(parse_method(s))
        except ValueError as e:
            skipped.append(f"{s}: {e}")
    return ok, skipped


@dataclass
class MethodRun:
    """The outcome of one method x seed: tidy records, per-step log (None for STL) and
    whether every logged loss and weight is finite."""

    method: str
    seed: int
    records: pd.DataFrame
    steps: pd.DataFrame | None
    epoch_time: float
    finite: bool  #: every logged training loss (and weight) is finite


def _finite(steps: pd.DataFrame) -> bool:
    cols = [c for c in steps.columns if c.startswith(("loss/", "weight/"))]
    return bool(cols) and all(math.isfinite(v) for v in steps[cols].to_numpy().ravel())


def run_one(method: Method | str, data: MTLData, make_model: Callable[[int], Any],
            config: TrainConfig, seed: int, run_dir: str | Path) -> MethodRun:
    """Train ``method`` (``STL`` = one run per task, merged) with ``seed``.

    ``make_model(seed)`` returns a fresh :class:`~mtlkit.arch.base.MTLModel`;
    ``config`` gives every training knob but the seed and the mode (taken from
    the method).  Records are labelled with the method's label.
    """
    m = parse_method(method) if isinstance(method, str) else method
    cfg = replace(config, seed=int(seed), mode=m.mode)
    run_dir = Path(run_dir)
    if m.name == "STL":
        per_task, finite, steps = {}, True, []
        for t, w in zip(data.task_names, m.strategies(seed, len(data.task_names))):
            r = Trainer(make_model(seed), w, data, cfg,
                        run_dir=run_dir / f"STL-{t}-s{seed}", labels={"method": m.label}).fit()
            per_task[t], finite = r.records, finite and _finite(r.steps)
            steps.append(r.steps)
        rec = results.merge_single_task(per_task, method=m.label)
        return MethodRun(m.label, seed, rec, None, float(rec["wall_time"].iloc[0]), finite)
    r = Trainer(make_model(seed), m.build(seed), data, cfg,
                run_dir=run_dir / f"{slug(m.label)}-s{seed}", labels={"method": m.label}).fit()
    return MethodRun(m.label, seed, r.records, r.steps, r.epoch_time, _finite(r.steps))


@dataclass
class Grid:
    """Every run of a benchmark grid, with all records concatenated."""

    runs: list[MethodRun]
    skipped: list[str]

    @property
    def records(self) -> pd.DataFrame:
        return pd.concat([r.records for r in self.runs], ignore_index=True)

    def steps(self, seed: int | None = None) -> dict[str, pd.DataFrame]:
        """{method: per-step log} of one seed (default: the first), STL excepted."""
        seed = self.runs[0].seed if seed is None else seed
        return {r.method: r.steps for r in self.runs if r.seed == seed and r.steps is not None}


def run_grid(methods: Sequence[str | Method], seeds: Sequence[int], data: MTLData,
             make_model: Callable[[int], Any], config: TrainConfig, out_dir: str | Path,
             records_file: str | Path | None = None,
             log: Callable[[str], None] | None = print, warmup_steps: int = 0) -> Grid:
    """Every method x seed via :func:`run_one`, in that order.  Specs that do
    not parse (e.g. a strategy that is not registered) are skipped with a
    note.  ``records_file`` (``.csv``/``.parquet``) receives every run's
    records through :func:`mtlkit.results.write_records`.

    ``warmup_steps > 0`` first trains EW for that many steps, untimed and not
    recorded, so that one-off costs (allocator, kernel selection, lazy
    imports) do not inflate the first method's time per epoch (Δt)."""
    ok, skipped = [], []
    for s in methods:
        if isinstance(s, Method):
            ok.append(s)
            continue
        parsed, bad = available([s])
        ok += parsed
        skipped += bad
    for note in skipped:
        if log:
            log(f"skipped {note}")
    if warmup_steps > 0:
        warm = replace(config, epochs=1, steps_per_epoch=int(warmup_steps), progress=False)
        run_one("EW", data, make_model, warm, seeds[0], Path(out_dir) / "warmup")
    runs = []
    for m in ok:
        for seed in seeds:
            run = run_one(m, data, make_model, config, seed, Path(out_dir) / "train")
            if log:
                log(f"{m.label:>24s} seed {seed}: {run.epoch_time:.2f} s/epoch"
                    + ("" if run.finite else "  NON-FINITE LOSS"))
            if records_file:
                results.write_records(run.records, records_file)
            runs.append(run)
    return Grid(runs, skipped)


def step_times(methods: Sequence[str | Method], data: MTLData,
               make_model: Callable[[int], Any], config: TrainConfig, rounds: int = 3,
               steps: int = 5, warmup: int = 2) -> pd.Series:
    """Median seconds per training step of each method, timed *interleaved*.

    Δt from the epoch times of a sequential grid is exposed to drift in the
    machine's load (one method runs while the machine is busy, the next while
    it is idle).  Here every method gets ``warmup`` untimed then ``steps``
    timed steps of :meth:`Trainer.step <mtlkit.trainer.Trainer.step>` (the
    trainer's own step, with ``config``'s optimizer, clipping and AMP), on one
    fixed batch (bi-level strategies use it as the query batch too), in each of
    ``rounds`` rounds, methods in turn (the order rotates by one each round),
    and the median over all timed steps is kept.
    ``STL`` is the sum over tasks of the single-task steps.
    """
    import statistics
    import time

    import torch

    if rounds < 1 or steps < 1 or warmup < 0:
        raise ValueError("rounds and steps must be >= 1 and warmup >= 0")
    setups: dict[str, list[Trainer]] = {}
    for m in (parse_method(m) if isinstance(m, str) else m for m in methods):
        setups[m.label] = [Trainer(make_model(0), w, data, replace(config, mode=m.mode))
                           for w in m.strategies(0, len(data.task_names))]
        for tr in setups[m.label]:
            tr.prepare()
    first = next(iter(setups.values()))[0]
    xs, ys = first.batches.draw()
    sync = torch.cuda.synchronize if first.device.type == "cuda" else (lambda: None)
    times: dict[str, list[float]] = {k: [] for k in setups}
    order = list(setups)
    for r in range(rounds):
        shift = r % len(order)  # rotate, so that no method is always first in a round
        for label in order[shift:] + order[:shift]:
            for k in range(warmup + steps):
                sync()
                t0 = time.perf_counter()
                for tr in setups[label]:
                    tr.step(xs, ys, query=(xs, ys) if tr.weighting.needs_query else None)
                sync()
                if k >= warmup:
                    times[label].append(time.perf_counter() - t0)
    return pd.Series({k: statistics.median(v) for k, v in times.items()}, name="step_seconds")
