"""One training loop for every weighting strategy and every architecture.

Each step (``rlw.md`` §2, Eq. 1; ``metaweighting.txt`` §3)::

    zero grads
    r = engine.step(batch, targets, criteria, query=query batch or None)
    clip grads (optional); optimizer.step()

where ``engine = make_engine(model, weighting, mode)`` (the engine package) computes
exactly what the strategy needs (losses, per-task gradients, a query batch)
and writes the update into ``.grad``: the trainer has no per-strategy branch.

The loop hands the rest to its collaborators (:mod:`mtlkit.training`):

* batches (:class:`~mtlkit.training.batches.TrainBatches`): each step takes one batch of
  every task (homogeneous data) or one batch of ``(x, {task: y})`` (heterogeneous).  An
  *epoch* is ``steps_per_epoch`` steps, by default one pass over the largest training set;
  with ``query_ratio > 0`` (``None``: 0.1 for strategies with ``needs_query``, else 0) each
  training set is split once into support and query, and the query batch goes to the
  engine.  Batches are resumable: a resumed run sees exactly the batches an uninterrupted
  one would;
* evaluation and model selection on the validation split only
  (:mod:`~mtlkit.training.evaluation`); the test metrics reported are those of the chosen
  epoch.  Derived and used in ``notebooks/01_the_mtl_problem.ipynb``;
* the step's health (:mod:`~mtlkit.training.health`): losses, weights and max |gradient|
  reach the host in one transfer, and a non-finite one stops the run at that step, before
  the update is applied;
* the run log and result files (:mod:`~mtlkit.training.runlog`), the device/AMP policy
  and the optimizer/scheduler (:mod:`~mtlkit.training.device`, ``optim``);
* checkpoints (:mod:`mtlkit.checkpoints`): everything a resumed run needs to continue
  exactly, with the run's identity.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mtlkit import checkpoints
from mtlkit.checkpoints import fresh_dir as _fresh_dir  # noqa: F401 (tests import it here)
from mtlkit.data.base import MTLData
from mtlkit.engine import make_engine
from mtlkit.losses import criteria_for
from mtlkit.training.batches import Stream, TrainBatches, split_support_query  # noqa: F401
from mtlkit.training.config import AMP_DTYPES, OPTIMIZERS, SCHEDULERS, TrainConfig  # noqa: F401
from mtlkit.training.device import DevicePolicy, to_device  # noqa: F401 (re-exported)
from mtlkit.training.evaluation import Evaluator, Results, Selection
from mtlkit.training.health import NONFINITE_ERRORS, StepCheck
from mtlkit.training.optim import make_optimizer, make_scheduler
from mtlkit.training.runlog import Progress, RunLog, RunResult, run_meta, write_result
from mtlkit.utils import rng_state, seed_everything, set_rng_state
from mtlkit.weighting.base import Weighting


class Interrupted(RuntimeError):
    """Raised by a callback to stop a run (tests simulate a crash with it)."""


class Trainer:
    """Train ``model`` on ``data`` with ``weighting``: minimise sum_t w_t L_t
    (``rlw.md`` §2, Eq. 1) with the strategy's w, or its direction (Eq. 2); see
    the module docstring and ``notebooks/01_the_mtl_problem.ipynb``.

    ``model``: an :class:`~mtlkit.arch.base.MTLModel`; ``weighting``: a strategy from
    :func:`mtlkit.weighting.get`; ``data``: an :class:`~mtlkit.data.base.MTLData`;
    ``config``: a :class:`TrainConfig` (or keyword ``**overrides``); ``run_dir``: where
    checkpoints, logs and results go (a fresh run never reuses a non-empty folder: it
    appends ``-1``, ``-2``, ...; see :meth:`fit`); ``labels``: ``dataset``,
    ``architecture``, ``method`` names for the records (default: the data's name, the
    model's class, the strategy's name); ``callbacks``: ``f(trainer, step, losses,
    weights)``, called after each step.
    """

    def __init__(self, model: nn.Module, weighting: Weighting, data: MTLData,
                 config: TrainConfig | None = None, *, run_dir: str | Path | None = None,
                 labels: Mapping[str, str] | None = None,
                 criteria: Mapping[str, Callable] | None = None,
                 callbacks: list[Callable] | None = None, **overrides: Any) -> None:
        self.cfg = cfg = TrainConfig.merged(config, overrides)
        if list(model.tasks) != data.task_names:
            raise ValueError(f"model tasks {list(model.tasks)} differ from data tasks "
                             f"{data.task_names} (same names, same order)")
        self.model, self.weighting, self.data = model, weighting, data
        self.tasks = list(model.tasks)
        self.criteria = dict(criteria or criteria_for(data.tasks))
        self.callbacks = list(callbacks or [])
        self.labels = {"dataset": data.name, "architecture": type(model).__name__,
                       "method": weighting.name, **(labels or {})}
        self.run_dir = Path(run_dir) if run_dir else Path("runs") / "train" / (
            f"{data.name}-{type(model).__name__}-{weighting.name}-s{cfg.seed}")
        self.query_ratio = cfg.query_ratio_for(weighting.needs_query)
        self.policy = DevicePolicy.from_config(cfg)
        self.evaluator = Evaluator(model, data, self.policy, cfg.eval_batch_size)

    device = property(lambda self: self.policy.device)
    amp_dtype = property(lambda self: self.policy.amp_dtype)
    channels_last = property(lambda self: self.policy.channels_last)

    def prepare(self) -> None:
        """Seed, place the model, and build the optimizer, scheduler, engine, batches and
        logs: everything :meth:`step` needs (:meth:`fit` starts with it)."""
        cfg = self.cfg
        seed_everything(cfg.seed)
        self.policy.place(self.model)
        self.optimizer = make_optimizer(cfg, self.model)
        self.scheduler = make_scheduler(cfg, self.optimizer)
        self.weighting.reset()
        self.weighting.attach(self.model, self.optimizer)
        self.engine = make_engine(self.model, self.weighting, cfg.mode)
        self.batches = TrainBatches(self.data, cfg.batch_size, cfg.seed, self.query_ratio,
                                    self.policy, cfg.num_workers)
        self.steps_per_epoch = cfg.steps_per_epoch or self.batches.steps_per_pass
        self.check = StepCheck(self.model, self.tasks, self.weighting.name, self.device,
                               skip_overflow=self.amp_dtype == torch.float16)
        self.log, self.selection = RunLog(self.tasks), Selection(cfg.select)
        self.step_num, self.epoch = 0, 0

    # ---------------------------------------------------------------- fit
    def fit(self, resume: bool | str = False) -> RunResult:
        """Train for ``cfg.epochs`` epochs and return the results.

        ``resume=False`` starts afresh (in ``run_dir``, or ``run_dir-1``, ... when it is not
        empty), ``True`` continues from ``run_dir``'s last checkpoint, ``"prev"`` from the
        one before (:func:`mtlkit.checkpoints.open_run`).  A resume that cannot continue
        exactly this run is refused with the file and the choices, never restarted.
        """
        self._identity = checkpoints.run_identity(self.model, self.weighting, self.data,
                                                  self.cfg.trajectory())
        self.prepare()
        self._checkpoints, state = checkpoints.open_run(self.run_dir, self._identity, resume)
        self.run_dir = self._checkpoints.run_dir
        self.run_id = self.run_dir.name
        if state is not None:
            self._restore(state)
        (self.run_dir / "config.json").write_text(json.dumps(self._meta(), indent=1, default=str))
        total, every = self.cfg.epochs * self.steps_per_epoch, self.cfg.checkpoint_every
        bar = Progress(total, self.step_num, self.cfg.progress, self.labels["method"], self.tasks)
        self.log.start_clock()
        try:
            while self.step_num < total:
                host = self.step(*self.batches.draw(), query=self.batches.draw_query())
                self.log.step(self.step_num, self.epoch + 1, self.optimizer.param_groups[0]["lr"],
                              host)
                bar.update(host["losses"])
                if self.step_num % self.steps_per_epoch == 0:
                    with self.log.untimed(end_of_epoch=True):
                        self._end_epoch()
                if every and self.step_num % every == 0:
                    with self.log.untimed():
                        self.save()
                for cb in self.callbacks:
                    cb(self, self.step_num, *self.log.last)
        finally:
            bar.close()
        self.save()
        result = write_result(self.log, self.run_dir, self._meta(),
                              self.selection.chosen(self.epoch))
        checkpoints.prune(self.run_dir, self.cfg.keep_files)
        return result

    def step(self, inputs: Any, targets: Any, query: tuple[Any, Any] | None = None
             ) -> dict[str, Any]:
        """One update on a batch; returns the step's losses, weights, query losses and max
        |grad| on the host.  Stops (FloatingPointError) at a step whose loss or update is
        not finite, before the optimizer applies it."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        n = self.step_num + 1
        with self.policy.autocast():
            try:
                r = self.engine.step(inputs, targets, self.criteria, query=query)
            except NONFINITE_ERRORS as e:  # a strategy refused non-finite input
                raise self.check.refusal(e, n, self.run_dir) from e
        host = self.check.host(r)
        if self.check.should_apply(host, n, self.run_dir):
            if self.cfg.clip_grad is not None:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad)
            self.optimizer.step()
        self.step_num = n
        return host

    def _end_epoch(self) -> None:
        self.epoch = e = self.epoch + 1
        self.log.add_train_means(e)
        if self.batches.query_sets is not None:
            self.log.add("query", self.evaluator.losses(self.batches.query_sets, self.criteria), e)
        if e % self.cfg.eval_every == 0 or e == self.cfg.epochs:
            val, test = self.evaluate("val"), self.evaluate("test")
            self.log.add("val", val, e)
            self.log.add("test", test, e)
            if self.selection.update(val, e):
                checkpoints.save(self.model.state_dict(), self.run_dir / checkpoints.BEST)
        if self.scheduler is not None:
            self.scheduler.step()
        self.log.reset_epoch()

    def evaluate(self, split: str) -> Results:
        """{task: {"loss": ..., metric: ...}} on ``val`` or ``test`` (or ``train``)."""
        return self.evaluator.evaluate(self.data.parts(split), self.criteria)

    # --------------------------------------------------------- checkpoints
    def save(self) -> None:
        """Write the run's checkpoint (see :class:`mtlkit.checkpoints.RunCheckpoints`)."""
        self._checkpoints.save(checkpoints.capture(
            self._objects(), *self._parts(), rng=rng_state(), step=self.step_num,
            epoch=self.epoch, config=asdict(self.cfg)), self._identity)

    def _restore(self, state: Mapping[str, Any]) -> None:
        """Continue from a checkpoint's state (its identity was checked)."""
        checkpoints.restore(state, self._objects(), *self._parts())
        self.step_num, self.epoch = state["step"], state["epoch"]
        set_rng_state(state["rng"])

    def _objects(self) -> dict[str, Any]:  # saved with state_dict() (None: no scheduler)
        return {"model": self.model, "optimizer": self.optimizer,
                "scheduler": self.scheduler, "weighting": self.weighting}

    def _parts(self) -> tuple[Any, ...]:  # saved with state()
        return self.batches, self.log, self.selection

    def _meta(self) -> dict[str, Any]:
        return run_meta(self.cfg, self.labels, self.run_dir.name, self.policy, self.query_ratio,
                        self.steps_per_epoch, self.weighting.hparams())
