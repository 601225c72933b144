"""Equal weighting and single-task learning, the two baselines."""

from __future__ import annotations

import torch
from torch import Tensor

from mtlkit.weighting.base import (
    LOSSES,
    Combined,
    Weighting,
    register,
    weighted_direction,
    work_dtype,
)


@register
class EW(Weighting):
    """Equal weighting: L = sum_t L_t / T, so w_t = 1/T (``rlw.md`` §2, Eq. 2).

    Derived in ``notebooks/01_the_mtl_problem.ipynb``.
    """

    name = "EW"
    modes = (LOSSES,)

    def _combine(self, losses: Tensor, grads: Tensor | None) -> Combined:
        t = losses.numel()
        w = torch.full((t,), 1.0 / t, dtype=work_dtype(losses), device=losses.device)
        return weighted_direction(w, grads), w


@register
class STL(Weighting):
    """Single-task learning as a weighting: w = e_task (one-hot).

    Training one model per task with STL(task=i) gives the STL baseline that
    Delta_p is measured against (``rlw.md`` §5.3).

    Parameters
    ----------
    task:
        Index of the task to train (0-based).
    """

    name = "STL"
    modes = (LOSSES,)

    def __init__(self, task: int = 0) -> None:
        super().__init__()
        if not isinstance(task, int) or task < 0:
            raise ValueError(f"STL task must be a non-negative task index, got {task!r}")
        self.task = task

    def _combine(self, losses: Tensor, grads: Tensor | None) -> Combined:
        t = losses.numel()
        if self.task >= t:
            raise ValueError(f"STL task={self.task} but there are only {t} tasks")
        w = torch.zeros(t, dtype=work_dtype(losses), device=losses.device)
        w[self.task] = 1.0
        return weighted_direction(w, grads), w
