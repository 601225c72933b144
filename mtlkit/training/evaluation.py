"""Evaluation on a split, and model selection on the validation split only.

:class:`Evaluator` gives ``{task: {"loss": ..., metric: ...}}``: the loss is the mean of
the batch losses weighted by batch size, the metrics are :func:`mtlkit.metrics.metric_for`'s.
:class:`Selection` keeps the epoch with the best validation score; the test metrics
reported are those of that epoch (``notebooks/01_the_mtl_problem.ipynb``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from mtlkit.data.base import MTLData
from mtlkit.metrics import HIGHER_IS_BETTER, metric_for
from mtlkit.training.device import DevicePolicy

Results = dict[str, dict[str, float]]  #: {task: {metric: value}}


def batch_len(y: Any) -> int:
    """The number of examples in a batch of labels (a tensor, or a dict of them)."""
    if isinstance(y, Tensor):
        return int(y.shape[0])
    if isinstance(y, Mapping):
        return batch_len(next(iter(y.values())))
    return len(y)


class Evaluator:
    """Evaluate ``model`` on parts of ``data``'s splits (:meth:`MTLData.parts`)."""

    def __init__(self, model: nn.Module, data: MTLData, policy: DevicePolicy,
                 batch_size: int) -> None:
        self.model, self.layout, self.policy = model, data.layout, policy
        self.batch_size = batch_size
        self.specs = {t.name: t for t in data.tasks}

    @torch.no_grad()
    def evaluate(self, parts: Mapping[str, Dataset],
                 criteria: Mapping[str, Callable]) -> Results:
        """``{task: {"loss": ..., metric: ...}}`` of every task the parts hold."""
        self.model.eval()
        out: Results = {}
        for key, ds in parts.items():
            out.update(self._part(ds, key, criteria))
        return out

    def losses(self, parts: Mapping[str, Dataset],
               criteria: Mapping[str, Callable]) -> Results:
        """``{task: {"loss": ...}}`` (e.g. of the query sets)."""
        return {t: {"loss": r["loss"]} for t, r in self.evaluate(parts, criteria).items()}

    def _part(self, ds: Dataset, key: str, criteria: Mapping[str, Callable]) -> Results:
        tasks = self.layout.tasks_of(key)
        mets = {t: metric_for(self.specs[t]) for t in tasks}
        loss_sum, n = dict.fromkeys(tasks, 0.0), 0
        loader = DataLoader(ds, batch_size=self.batch_size,
                            generator=torch.Generator().manual_seed(0))  # keeps global RNG
        for x, y in loader:
            with self.policy.autocast():
                outs = self.model(self.policy.inputs(x), tasks)
            ys = self.layout.targets(key, y)
            b = batch_len(ys[tasks[0]])
            for t in tasks:
                yt = self.policy.targets(ys[t])
                loss_sum[t] += float(criteria[t](outs[t].float(), yt)) * b
                mets[t].update(outs[t].float(), yt)
            n += b
        return {t: {"loss": loss_sum[t] / max(n, 1), **mets[t].compute()} for t in tasks}


class Selection:
    """Model selection: the epoch with the lowest validation score (:meth:`score`)."""

    def __init__(self, select: str) -> None:
        self.select = select
        self.best: tuple[float, int] | None = None  #: (score, epoch)

    def score(self, val: Results) -> float:
        """Mean validation loss, or the mean of metric ``select`` (negated when higher
        is better), over the tasks that report it."""
        name = self.select
        vals = [ms[name] for ms in val.values() if name in ms]
        if not vals:
            raise ValueError(f"select={name!r} but no task reports it; reported: "
                             f"{sorted({m for ms in val.values() for m in ms})}")
        mean = float(np.nanmean(vals))
        return -mean if name != "loss" and HIGHER_IS_BETTER[name] else mean

    def update(self, val: Results, epoch: int) -> bool:
        """Record ``epoch``'s validation results; True if it is the best so far."""
        score = self.score(val)
        if self.best is None or score < self.best[0]:
            self.best = (score, epoch)
            return True
        return False

    def chosen(self, last_epoch: int) -> int:
        """The selected epoch (``last_epoch`` if none was evaluated)."""
        return self.best[1] if self.best else last_epoch

    def state(self) -> dict[str, Any]:
        return {"best": self.best}

    def load(self, state: Mapping[str, Any]) -> None:
        self.best = None if state["best"] is None else tuple(state["best"])
