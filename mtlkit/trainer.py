"""One training loop for every weighting strategy and every architecture.

Each step (``rlw.md`` §2, Eq. 1; ``metaweighting.txt`` §3)::

    zero grads
    r = engine.step(batch, targets, criteria, query=query batch or None)
    clip grads (optional); optimizer.step()

where ``engine = mtlkit.grads.GradEngine(model, weighting, mode)`` computes
exactly what the strategy needs (losses, per-task gradients, a query batch)
and writes the update into ``.grad``: the trainer has no per-strategy branch.

Data (:class:`mtlkit.data.base.MTLData`):

* homogeneous: one stream of batches per task, each step takes one batch of
  every task.  An *epoch* is ``steps_per_epoch`` steps, by default the number
  of batches of the largest task's training set (one pass over it); smaller
  tasks cycle, reshuffled at each of their passes.
* heterogeneous: one stream of ``(x, {task: y})``; an epoch is one pass.

Support/query split (bi-level strategies, ``metaweighting.txt`` §3): when
``query_ratio > 0`` each task's training set (the one training set, when
heterogeneous) is split once, by the seed, into support (trained on) and
query (passed to the engine as ``query=(inputs, targets)``, and its loss is
logged every epoch).  ``query_ratio=None`` means 0.1 for strategies with
``needs_query`` and 0 otherwise.

Batches come from :class:`Stream`, which draws a fresh permutation from a
``torch.Generator`` seeded by (seed, stream, pass) at each pass over a
dataset, so its position (pass, batches used) is two integers and a resumed run
sees exactly the batches an uninterrupted one would.

Model selection uses the validation split only (``select``); the chosen epoch
is recorded and the test metrics reported are those at that epoch.  Derived
and used in ``notebooks/01_the_mtl_problem.ipynb``.

Checkpoints (:mod:`mtlkit.checkpoints`) hold everything a resumed run needs to
continue exactly, with the run's identity; each step's losses, weights and
max |gradient| reach the host in one transfer, and a non-finite one stops the
run at that step, before the update is applied.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from mtlkit import checkpoints
from mtlkit.data.base import MTLData
from mtlkit.grads import GradEngine
from mtlkit.losses import criteria_for
from mtlkit.metrics import HIGHER_IS_BETTER, metric_for
from mtlkit.nb import jsonable, seed_everything
from mtlkit.weighting.base import Weighting

OPTIMIZERS = ("adam", "sgd")
SCHEDULERS = (None, "step", "cosine")
AMP_DTYPES = {None: None, "bf16": torch.bfloat16, "fp16": torch.float16}
#: training knobs recorded with the strategy's hyper-parameters in each record
_RUN_HPARAMS = ("optimizer", "lr", "weight_decay", "batch_size", "epochs")
#: settings that do not change the trajectory, so they may differ on resume
_FREE_ON_RESUME = ("progress", "num_workers", "checkpoint_every")
#: what a strategy raises for a non-finite loss or gradient row; the trainer re-raises it
#: as FloatingPointError naming the step (add the strategy base's own class here if it is
#: not a FloatingPointError)
_NONFINITE_ERRORS: tuple[type[Exception], ...] = (FloatingPointError,)


@dataclass
class TrainConfig:
    """Every knob of a run (all literal values, saved with the results)."""

    epochs: int = 10  #: number of epochs
    steps_per_epoch: int | None = None  #: None = one pass over the largest training set
    batch_size: int = 32  #: per task (homogeneous) or for all tasks (heterogeneous)
    eval_batch_size: int = 256  #: batch size for validation/test/query evaluation
    optimizer: str = "adam"  #: adam | sgd
    lr: float = 1e-3  #: learning rate
    weight_decay: float = 0.0  #: L2 weight decay
    momentum: float = 0.9  #: SGD momentum
    scheduler: str | None = None  #: None | step | cosine (stepped once per epoch)
    step_size: int = 10  #: StepLR period in epochs
    gamma: float = 0.5  #: StepLR decay factor
    clip_grad: float | None = None  #: max global gradient norm, None = no clipping
    #: None | bf16 | fp16, CUDA only (ignored with a warning elsewhere); fp16 has no loss
    #: scaling (the engine owns the backward): with a loss-only strategy an update that
    #: overflowed is skipped; a gradient-based strategy refuses a non-finite gradient row
    #: and the run stops with that message (use bf16)
    amp: str | None = None
    channels_last: bool = False  #: channels-last memory format (CUDA only)
    query_ratio: float | None = None  #: query fraction; None = 0.1 if needs_query else 0
    mode: str = "auto"  #: gradient mode passed to GradEngine
    seed: int = 0  #: seeds model-independent randomness: batches, split, strategies
    device: str = "cpu"  #: torch device string
    checkpoint_every: int = 0  #: steps between checkpoints (0 = only at the end)
    eval_every: int = 1  #: epochs between val/test evaluations
    select: str = "loss"  #: validation criterion: "loss" (mean over tasks) or a metric name
    progress: bool = True  #: tqdm progress bars
    num_workers: int = 0  #: DataLoader workers

    def validate(self) -> None:
        """Raise ValueError with the valid choices for a bad value."""
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={self.optimizer!r}; choose one of {OPTIMIZERS}")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler={self.scheduler!r}; choose one of {SCHEDULERS}")
        if self.amp not in AMP_DTYPES:
            raise ValueError(f"amp={self.amp!r}; choose None, 'bf16' or 'fp16'")
        for name in ("epochs", "batch_size", "eval_batch_size", "eval_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be None or >= 1, got {self.steps_per_epoch}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.query_ratio is not None and not 0 <= self.query_ratio < 1:
            raise ValueError(f"query_ratio must be in [0, 1), got {self.query_ratio}")
        if self.clip_grad is not None and not self.clip_grad > 0:
            raise ValueError(f"clip_grad must be None or > 0, got {self.clip_grad}")
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
        if self.select != "loss" and self.select not in HIGHER_IS_BETTER:
            raise ValueError(f"select={self.select!r}; use 'loss' or a metric name: "
                             f"{sorted(HIGHER_IS_BETTER)}")


# ------------------------------------------------------------------ data
class _PermutationSampler(Sampler[int]):
    """The indices perm[start:] of one seeded permutation of range(n)."""

    def __init__(self, n: int, seed: int, start: int = 0) -> None:
        self.n, self.seed, self.start = n, seed, start

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed)
        return iter(torch.randperm(self.n, generator=g)[self.start:].tolist())

    def __len__(self) -> int:
        return self.n - self.start


class Stream:
    """An endless, resumable stream of shuffled batches of one dataset.

    Pass ``p`` uses the permutation drawn from ``torch.Generator`` seeded with
    ``seed * 1_000_003 + key * 10_007 + p``; :meth:`state` is ``(p, batches
    used in pass p)`` and :meth:`load` restores it exactly.
    """

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, key: int,
                 num_workers: int = 0) -> None:
        if len(dataset) == 0:
            raise ValueError("a training dataset is empty")
        self.dataset, self.bs, self.seed, self.key = dataset, batch_size, seed, key
        self.num_workers = num_workers
        self.passes, self.used = 0, 0
        self._it = None

    @property
    def batches_per_pass(self) -> int:
        return math.ceil(len(self.dataset) / self.bs)

    def _open(self) -> None:
        seed = self.seed * 1_000_003 + self.key * 10_007 + self.passes
        sampler = _PermutationSampler(len(self.dataset), seed, self.used * self.bs)
        # an explicit generator: opening a DataLoader iterator must not draw from
        # the global RNG (it would shift dropout etc. after a resume)
        self._it = iter(DataLoader(self.dataset, batch_size=self.bs, sampler=sampler,
                                   num_workers=self.num_workers,
                                   generator=torch.Generator().manual_seed(seed)))

    def __next__(self):
        if self.used >= self.batches_per_pass:
            self.passes, self.used, self._it = self.passes + 1, 0, None
        if self._it is None:
            self._open()
        self.used += 1
        return next(self._it)

    def state(self) -> dict[str, int]:
        return {"passes": self.passes, "used": self.used}

    def load(self, state: Mapping[str, int]) -> None:
        self.passes, self.used, self._it = int(state["passes"]), int(state["used"]), None


def split_support_query(dataset: Dataset, ratio: float, seed: int) -> tuple[Dataset, Dataset]:
    """Split once, deterministically by ``seed``: (support, query) with
    round(ratio * n) (at least 1) query examples."""
    n = len(dataset)
    nq = max(1, int(round(ratio * n)))
    if nq >= n:
        raise ValueError(f"query_ratio={ratio} leaves no support examples out of {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return Subset(dataset, sorted(perm[nq:])), Subset(dataset, sorted(perm[:nq]))


def to_device(obj: Any, device: torch.device, channels_last: bool = False) -> Any:
    """Move tensors (also inside dicts, lists and tuples) to ``device``."""
    if isinstance(obj, Tensor):
        obj = obj.to(device, non_blocking=True)
        if channels_last and obj.dim() == 4 and obj.is_floating_point():
            obj = obj.contiguous(memory_format=torch.channels_last)
        return obj
    if isinstance(obj, Mapping):
        return {k: to_device(v, device, channels_last) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device, channels_last) for v in obj)
    return obj


# ------------------------------------------------------------------ results
@dataclass
class RunResult:
    """What :meth:`Trainer.fit` returns (also written under ``run_dir``)."""

    run_id: str
    run_dir: Path
    chosen_epoch: int  #: epoch chosen on the validation split
    val: dict[str, dict[str, float]]  #: {task: {metric: value}} at the chosen epoch
    test: dict[str, dict[str, float]]  #: {task: {metric: value}} at the chosen epoch
    epoch_time: float  #: mean training seconds per epoch (for Δt)
    records: pd.DataFrame  #: tidy records of every evaluated epoch (see mtlkit.results)
    steps: pd.DataFrame  #: per-step losses, query losses, weights and learning rate
    meta: dict[str, Any] = field(default_factory=dict)


class Interrupted(RuntimeError):
    """Raised by a callback to stop a run (tests simulate a crash with it)."""


# ------------------------------------------------------------------ trainer
class Trainer:
    """Train ``model`` on ``data`` with ``weighting``: minimise sum_t w_t L_t
    (``rlw.md`` §2, Eq. 1) with the strategy's w, or its direction (Eq. 2); see
    the module docstring and ``notebooks/01_the_mtl_problem.ipynb``.

    Parameters
    ----------
    model, weighting, data:
        An :class:`~mtlkit.arch.base.MTLModel`, a strategy from
        :func:`mtlkit.weighting.get`, and an :class:`~mtlkit.data.base.MTLData`.
    config:
        A :class:`TrainConfig` (or keyword overrides through ``**overrides``).
    run_dir:
        Where checkpoints, logs and results go.  A fresh run never reuses a
        non-empty directory: it appends ``-1``, ``-2``, ... .  ``fit(resume=True)``
        continues the run whose checkpoint is in ``run_dir`` (see :meth:`fit`).
    labels:
        ``dataset``, ``architecture``, ``method`` names for the records
        (defaults: the data's name, the model's class, the strategy's name).
    callbacks:
        Functions ``f(trainer, step, losses, weights)`` called after each step.
    """

    def __init__(self, model: nn.Module, weighting: Weighting, data: MTLData,
                 config: TrainConfig | None = None, *, run_dir: str | Path | None = None,
                 labels: Mapping[str, str] | None = None,
                 criteria: Mapping[str, Callable] | None = None,
                 callbacks: list[Callable] | None = None, **overrides: Any) -> None:
        cfg = config or TrainConfig()
        bad = sorted(set(overrides) - set(asdict(cfg)))
        if bad:
            raise ValueError(f"unknown TrainConfig field(s) {bad}; valid: {sorted(asdict(cfg))}")
        self.cfg = TrainConfig(**{**asdict(cfg), **overrides})
        self.cfg.validate()
        if list(model.tasks) != data.task_names:
            raise ValueError(f"model tasks {list(model.tasks)} differ from data tasks "
                             f"{data.task_names} (same names, same order)")
        self.model, self.weighting, self.data = model, weighting, data
        self.tasks = list(model.tasks)
        self.specs = {t.name: t for t in data.tasks}
        self.criteria = dict(criteria or criteria_for(data.tasks))
        self.callbacks = list(callbacks or [])
        self.labels = {"dataset": data.name, "architecture": type(model).__name__,
                       "method": weighting.name, **(labels or {})}
        self.run_dir = Path(run_dir) if run_dir else Path("runs") / "train" / self._default_id()
        self.query_ratio = self.cfg.query_ratio if self.cfg.query_ratio is not None else (
            0.1 if weighting.needs_query else 0.0)
        self.device = torch.device(self.cfg.device)
        self.amp_dtype = AMP_DTYPES[self.cfg.amp]
        self.channels_last = self.cfg.channels_last
        if self.device.type != "cuda" and (self.amp_dtype is not None or self.channels_last):
            warnings.warn("AMP and channels-last are used on CUDA only; running in float32 "
                          f"with the default memory format on {self.device}", stacklevel=2)
            self.amp_dtype, self.channels_last = None, False

    def _default_id(self) -> str:
        arch = type(self.model).__name__
        return f"{self.data.name}-{arch}-{self.weighting.name}-s{self.cfg.seed}"

    # ------------------------------------------------------------- set-up
    def _setup(self) -> None:
        cfg = self.cfg
        seed_everything(cfg.seed)
        self.model.to(self.device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.optimizer = self._make_optimizer()
        self.scheduler = self._make_scheduler()
        self.weighting.reset()
        self.weighting.attach(self.model, self.optimizer)
        self.engine = GradEngine(self.model, self.weighting, cfg.mode)
        self._make_streams()
        self.step_num, self.epoch = 0, 0
        self.steps_log: list[dict[str, float]] = []
        self.epoch_rows: list[dict[str, Any]] = []
        self.epoch_times: list[float] = []
        self.best: tuple[float, int] | None = None  # (score, epoch), lower is better
        self._last_losses = self._last_weights = None
        self._reset_epoch_acc()

    def _make_optimizer(self) -> torch.optim.Optimizer:
        cfg, params = self.cfg, [p for p in self.model.parameters() if p.requires_grad]
        if cfg.optimizer == "adam":
            return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)

    def _make_scheduler(self):
        cfg = self.cfg
        if cfg.scheduler == "step":
            return torch.optim.lr_scheduler.StepLR(self.optimizer, cfg.step_size, cfg.gamma)
        if cfg.scheduler == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=cfg.epochs)
        return None

    def _make_streams(self) -> None:
        cfg, data, r = self.cfg, self.data, self.query_ratio
        self.query_sets: Dataset | dict[str, Dataset] | None = None
        if data.homogeneous:
            support, query = {}, {}
            for i, t in enumerate(self.tasks):
                ds = data.train[t]
                support[t], query[t] = split_support_query(ds, r, cfg.seed + i) if r > 0 else (
                    ds, None)
            self.streams = {t: Stream(support[t], cfg.batch_size, cfg.seed, i, cfg.num_workers)
                            for i, t in enumerate(self.tasks)}
            if r > 0:
                self.query_sets = query
                self.qstreams = {t: Stream(query[t], cfg.batch_size, cfg.seed, 1000 + i,
                                           cfg.num_workers) for i, t in enumerate(self.tasks)}
        else:
            ds = data.train
            support, query = split_support_query(ds, r, cfg.seed) if r > 0 else (ds, None)
            self.streams = {"*": Stream(support, cfg.batch_size, cfg.seed, 0, cfg.num_workers)}
            if r > 0:
                self.query_sets = query
                self.qstreams = {"*": Stream(query, cfg.batch_size, cfg.seed, 1000,
                                             cfg.num_workers)}
        self.steps_per_epoch = cfg.steps_per_epoch or max(
            s.batches_per_pass for s in self.streams.values())

    def _draw(self, streams: Mapping[str, Stream]) -> tuple[Any, dict[str, Tensor]]:
        """(inputs, targets) of one step: dicts per task, or one batch."""
        if self.data.homogeneous:
            xs, ys = {}, {}
            for t in self.tasks:
                xs[t], ys[t] = next(streams[t])
        else:
            xs, ys = next(streams["*"])
        return (to_device(xs, self.device, self.channels_last), to_device(ys, self.device))

    # ---------------------------------------------------------------- fit
    def fit(self, resume: bool | str = False) -> RunResult:
        """Train for ``cfg.epochs`` epochs and return the results.

        ``resume=False`` starts afresh in ``run_dir`` (``run_dir-1``, ... when it is
        not empty: a run never writes into another's folder).  ``resume=True``
        continues from ``run_dir/checkpoint.pt``, ``resume="prev"`` from the
        checkpoint before it; an absent or empty ``run_dir`` starts afresh there.
        A resume is refused (:class:`~mtlkit.checkpoints.CheckpointError`, with the
        file and the choices) when the checkpoint is damaged, would need code to
        load, belongs to another run, or when ``run_dir`` holds a run but no
        checkpoint; it never silently starts over.
        """
        identity = checkpoints.run_identity(self.model, self.weighting, self.data,
                                            self._trajectory_config())
        self._setup()
        store = checkpoints.RunCheckpoints(self.run_dir)
        state = store.resume(identity, "last" if resume is True else resume) if resume else None
        if state is None:
            self.run_dir = _fresh_dir(self.run_dir)
            store = checkpoints.RunCheckpoints(self.run_dir)  # only once the folder is ours
        else:
            self._restore(state)
        self._checkpoints, self._identity = store, identity
        self.run_id = self.run_dir.name
        (self.run_dir / "config.json").write_text(json.dumps(self._meta(), indent=1, default=str))
        total = self.cfg.epochs * self.steps_per_epoch
        bar = _progress(total, self.step_num, self.cfg.progress, self.labels["method"])
        t0 = time.perf_counter()
        try:
            while self.step_num < total:
                self._train_step(bar)
                if self.step_num % self.steps_per_epoch == 0:
                    self.epoch_times.append(self._epoch_train_time + time.perf_counter() - t0)
                    self._end_epoch()
                    t0 = time.perf_counter()
                    self._epoch_train_time = 0.0
                if self.cfg.checkpoint_every and self.step_num % self.cfg.checkpoint_every == 0:
                    self._epoch_train_time += time.perf_counter() - t0
                    self.save()
                    t0 = time.perf_counter()
                for cb in self.callbacks:
                    cb(self, self.step_num, self._last_losses, self._last_weights)
        finally:
            bar.close()
        self.save()
        return self._finish()

    def _trajectory_config(self) -> dict[str, Any]:
        """The settings that shape the trajectory (all but :data:`_FREE_ON_RESUME`)."""
        return {k: v for k, v in asdict(self.cfg).items() if k not in _FREE_ON_RESUME}

    def _train_step(self, bar) -> None:
        """One step; stops at the step where a loss or the update turns non-finite,
        before the optimizer applies it."""
        model, opt = self.model, self.optimizer
        model.train()
        xs, ys = self._draw(self.streams)
        query = self._draw(self.qstreams) if self.query_sets is not None else None
        opt.zero_grad(set_to_none=True)
        step = self.step_num + 1
        with self._autocast():
            try:
                r = self.engine.step(xs, ys, self.criteria, query=query)
            except _NONFINITE_ERRORS as e:  # a strategy refused non-finite input
                raise FloatingPointError(self._diverged(step, self._refused(e))) from e
        host = self._to_host(r)
        if not math.isfinite(host["grad_max"]) or not torch.isfinite(host["losses"]).all():
            fp16_overflow = (self.amp_dtype == torch.float16
                             and torch.isfinite(host["losses"]).all())
            if not fp16_overflow:  # fp16 has no loss scaling: skip an overflowed update
                raise FloatingPointError(self._diverged(step, self._nonfinite_parts(host)))
        else:
            if self.cfg.clip_grad is not None:
                nn.utils.clip_grad_norm_(model.parameters(), self.cfg.clip_grad)
            opt.step()
        self.step_num = step
        self._log_step(host)
        bar.update(1)
        if self.cfg.progress:
            bar.set_postfix({t: f"{v:.3f}" for t, v in zip(self.tasks, host["losses"].tolist())},
                            refresh=False)

    def _to_host(self, r) -> dict[str, Any]:
        """The step's losses, weights, query losses and max |grad| in one transfer."""
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        gmax = (nn.utils.get_total_norm(grads, norm_type=math.inf) if grads
                else torch.zeros((), device=self.device))
        parts = [r.losses, r.weights] + ([r.query_losses] if r.query_losses is not None else [])
        flat = torch.cat([t.detach().float().reshape(-1).to(self.device)
                          for t in [*parts, gmax]]).cpu().double()
        T = len(self.tasks)
        return {"losses": flat[:T], "weights": flat[T:2 * T],
                "query_losses": flat[2 * T:3 * T] if r.query_losses is not None else None,
                "grad_max": float(flat[-1])}

    def _nonfinite_parts(self, host: Mapping[str, Any]) -> list[str]:
        """What is non-finite in this step: losses, the strategy's weights, and the
        gradients (each task's head; the shared parameters)."""
        parts = []
        for key, what in (("losses", "the loss"), ("weights", f"{self.weighting.name}'s weight")):
            bad = {t: float(v) for t, v in zip(self.tasks, host[key]) if not math.isfinite(v)}
            if bad:
                parts.append(f"{what} of {bad} is not finite")
        if not math.isfinite(host["grad_max"]):
            parts.append("the gradient is not finite in " + _nonfinite_grads(self.model))
        return parts

    def _refused(self, e: Exception) -> list[str]:
        """What a strategy's non-finite refusal (``NonFiniteError.where``) says, in task names."""
        where = getattr(e, "where", None)
        if not where:
            return [str(e)]
        names = {k: [self.tasks[i] for i in idx] for k, idx in where.items()}
        parts = [f"the {k} of {ts} is not finite" if "loss" in k else
                 f"{getattr(e, 'strategy', self.weighting.name)} got a non-finite {k} row for "
                 f"tasks {ts}" for k, ts in names.items()]
        if any("gradient" in k for k in where):
            parts.append("the gradient is not finite in " + _nonfinite_grads(self.model))
        return parts

    def _diverged(self, step: int, parts: list[str]) -> str:
        return (f"training diverged at step {step}: {'; '.join(parts)}. The update of this step "
                "was not applied. Lower the learning rate, set clip_grad (clipping bounds a "
                "large gradient, it cannot repair a NaN), avoid fp16 (use bf16 or float32), or "
                f"try another weighting. A checkpoint in {self.run_dir} (checkpoint_every) is "
                "from before this step.")

    def _autocast(self):
        if self.amp_dtype is None:
            return torch.autocast(device_type=self.device.type, enabled=False)
        return torch.autocast(device_type="cuda", dtype=self.amp_dtype)

    def _log_step(self, host: Mapping[str, Any]) -> None:
        losses, weights, q = host["losses"], host["weights"], host["query_losses"]
        self._last_losses, self._last_weights = losses.float(), weights.float()
        row: dict[str, float] = {"step": self.step_num, "epoch": self.epoch + 1,
                                 "lr": self.optimizer.param_groups[0]["lr"]}
        for i, t in enumerate(self.tasks):
            row[f"loss/{t}"] = float(losses[i])
            row[f"weight/{t}"] = float(weights[i])
            if q is not None:
                row[f"query_loss/{t}"] = float(q[i])
        self.steps_log.append(row)
        self._acc_loss += losses
        self._acc_w += weights
        self._acc_n += 1

    def _reset_epoch_acc(self) -> None:
        T = len(self.tasks)
        self._acc_loss = torch.zeros(T, dtype=torch.float64)
        self._acc_w = torch.zeros(T, dtype=torch.float64)
        self._acc_n = 0
        self._epoch_train_time = 0.0

    # ------------------------------------------------------------ epochs
    def _end_epoch(self) -> None:
        self.epoch += 1
        e, n = self.epoch, max(self._acc_n, 1)
        for i, t in enumerate(self.tasks):
            self._row(t, "loss", float(self._acc_loss[i] / n), "train")
            self._row(t, "weight", float(self._acc_w[i] / n), "train")
        if self.query_sets is not None:
            for t, v in self._eval_losses(self.query_sets).items():
                self._row(t, "loss", v, "query")
        if e % self.cfg.eval_every == 0 or e == self.cfg.epochs:
            val = self.evaluate("val")
            for split, res in (("val", val), ("test", self.evaluate("test"))):
                for t, ms in res.items():
                    for m, v in ms.items():
                        self._row(t, m, v, split)
            score = self._score(val)
            if self.best is None or score < self.best[0]:
                self.best = (score, e)
                checkpoints.save(self.model.state_dict(), self.run_dir / "best_model.pt")
        if self.scheduler is not None:
            self.scheduler.step()
        self._reset_epoch_acc()

    def _row(self, task: str, metric: str, value: float, split: str) -> None:
        self.epoch_rows.append({"task": task, "metric": metric, "value": value,
                                "split": split, "epoch": self.epoch})

    def _score(self, val: Mapping[str, Mapping[str, float]]) -> float:
        """Validation score to minimise: mean val loss, or -/+ mean of a metric."""
        name = self.cfg.select
        vals = [ms[name] for ms in val.values() if name in ms]
        if not vals:
            raise ValueError(f"select={name!r} but no task reports it; reported: "
                             f"{sorted({m for ms in val.values() for m in ms})}")
        mean = float(np.nanmean(vals))
        return -mean if name != "loss" and HIGHER_IS_BETTER[name] else mean

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, dict[str, float]]:
        """{task: {"loss": ..., metric: ...}} on ``val`` or ``test`` (or ``train``)."""
        self.model.eval()
        data = self.data.split(split)
        out: dict[str, dict[str, float]] = {}
        if self.data.homogeneous:
            for t in self.tasks:
                out[t] = self._eval_task(data[t], [t])[t]
        else:
            out = self._eval_task(data, self.tasks)
        return out

    def _eval_task(self, ds: Dataset, tasks: list[str]) -> dict[str, dict[str, float]]:
        mets = {t: metric_for(self.specs[t]) for t in tasks}
        loss_sum, n = dict.fromkeys(tasks, 0.0), 0
        loader = DataLoader(ds, batch_size=self.cfg.eval_batch_size,
                            generator=torch.Generator().manual_seed(0))  # keeps global RNG
        for x, y in loader:  # loss = batch losses averaged with batch-size weights
            x = to_device(x, self.device, self.channels_last)
            with self._autocast():
                outs = self.model(x, tasks)
            ys = {tasks[0]: y} if self.data.homogeneous else y
            b = _batch_len(ys[tasks[0]])
            for t in tasks:
                yt = to_device(ys[t], self.device)
                loss_sum[t] += float(self.criteria[t](outs[t].float(), yt)) * b
                mets[t].update(outs[t].float(), yt)
            n += b
        return {t: {"loss": loss_sum[t] / max(n, 1), **mets[t].compute()} for t in tasks}

    @torch.no_grad()
    def _eval_losses(self, sets: Dataset | Mapping[str, Dataset]) -> dict[str, float]:
        self.model.eval()
        if self.data.homogeneous:
            return {t: self._eval_task(sets[t], [t])[t]["loss"] for t in self.tasks}
        return {t: v["loss"] for t, v in self._eval_task(sets, self.tasks).items()}

    # --------------------------------------------------------- checkpoints
    def save(self) -> None:
        """Write the run's checkpoint (see :class:`mtlkit.checkpoints.RunCheckpoints`)."""
        self._checkpoints.save(self._state(), self._identity)

    def _state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "weighting": self.weighting.state_dict(),
            "rng": _rng_state(),
            "streams": {k: s.state() for k, s in self.streams.items()},
            "qstreams": ({k: s.state() for k, s in self.qstreams.items()}
                         if self.query_sets is not None else None),
            "step": self.step_num, "epoch": self.epoch, "best": self.best,
            "steps_log": self.steps_log, "epoch_rows": self.epoch_rows,
            "epoch_times": self.epoch_times,
            "acc": (self._acc_loss, self._acc_w, self._acc_n, self._epoch_train_time),
            "config": asdict(self.cfg),
        }

    def _restore(self, state: Mapping[str, Any]) -> None:
        """Continue from a checkpoint's state (its identity was checked)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.weighting.load_state_dict(state["weighting"])
        for k, s in state["streams"].items():
            self.streams[k].load(s)
        if state["qstreams"] is not None:
            for k, s in state["qstreams"].items():
                self.qstreams[k].load(s)
        self.step_num, self.epoch = state["step"], state["epoch"]
        self.best = None if state["best"] is None else tuple(state["best"])
        self.steps_log, self.epoch_rows = state["steps_log"], state["epoch_rows"]
        self.epoch_times = state["epoch_times"]
        self._acc_loss, self._acc_w, self._acc_n, self._epoch_train_time = state["acc"]
        _set_rng_state(state["rng"])

    # -------------------------------------------------------------- finish
    def _meta(self) -> dict[str, Any]:
        return {**self.labels, "run_id": self.run_dir.name, "seed": self.cfg.seed,
                "device": str(self.device), "config": asdict(self.cfg),
                "hparams": jsonable({**{k: asdict(self.cfg)[k] for k in _RUN_HPARAMS},
                                      "query_ratio": self.query_ratio,
                                      **self.weighting.hparams()}),
                "query_ratio": self.query_ratio, "steps_per_epoch": self.steps_per_epoch,
                "amp": str(self.amp_dtype), "channels_last": self.channels_last}

    def _finish(self) -> RunResult:
        from mtlkit import results

        meta = self._meta()
        chosen = self.best[1] if self.best else self.epoch
        epoch_time = float(np.mean(self.epoch_times)) if self.epoch_times else float("nan")
        rows = pd.DataFrame(self.epoch_rows)
        records = results.make_records(rows, run_id=self.run_id, dataset=self.labels["dataset"],
                                       architecture=self.labels["architecture"],
                                       method=self.labels["method"], hparams=meta["hparams"],
                                       seed=self.cfg.seed, device=str(self.device),
                                       wall_time=epoch_time, chosen_epoch=chosen)
        steps = pd.DataFrame(self.steps_log)
        own = self.run_dir / "records.csv"
        own.unlink(missing_ok=True)  # this run's own file (a resumed run rewrites it)
        results.write_records(records, own, append=False)
        steps.to_csv(self.run_dir / "steps.csv", index=False)
        pick = rows[rows["epoch"] == chosen]
        val = _nested(pick[pick["split"] == "val"])
        test = _nested(pick[pick["split"] == "test"])
        summary = {**meta, "chosen_epoch": chosen, "epoch_time": epoch_time,
                   "val": val, "test": test}
        (self.run_dir / "summary.json").write_text(json.dumps(jsonable(summary), indent=1))
        return RunResult(self.run_id, self.run_dir, chosen, val, test, epoch_time, records,
                         steps, meta)


# ------------------------------------------------------------------ helpers
def _nested(df: pd.DataFrame) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for r in df.itertuples():
        out.setdefault(r.task, {})[r.metric] = float(r.value)
    return out


def _batch_len(y: Any) -> int:
    if isinstance(y, Tensor):
        return int(y.shape[0])
    if isinstance(y, Mapping):
        return _batch_len(next(iter(y.values())))
    return len(y)


def _nonfinite_grads(model: nn.Module) -> str:
    """Where ``.grad`` holds a NaN or inf: the heads of which tasks, the shared part."""
    def bad(params) -> bool:
        return any(p.grad is not None and not torch.isfinite(p.grad).all() for p in params)

    where = []
    if hasattr(model, "shared_parameters") and bad(model.shared_parameters()):
        where.append("the shared parameters (the combined update)")
    if hasattr(model, "task_parameters"):
        heads = [t for t in model.tasks if bad(model.task_parameters(t))]
        if heads:
            where.append(f"the heads of tasks {heads} (each task's own gradient)")
    return " and ".join(where) or "some parameters"


def _rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_rng_state(s: Mapping[str, Any]) -> None:
    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    torch.set_rng_state(s["torch"])
    if s.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def _fresh_dir(path: Path) -> Path:
    """``path`` if it does not exist or is empty, else ``path-1``, ``path-2``, ...

    The directory is claimed by creating ``.run`` exclusively (``O_EXCL``), so two
    processes starting at once never share a directory."""
    i = 0
    while True:
        cand = path if i == 0 else path.with_name(f"{path.name}-{i}")
        i += 1
        if cand.exists() and any(cand.iterdir()):
            continue
        cand.mkdir(parents=True, exist_ok=True)
        try:
            os.close(os.open(cand / ".run", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            continue
        return cand


def _progress(total: int, initial: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc=desc, leave=False)


