"""Is a step's update finite?  One host transfer per step, and a clear message if not.

Each step's losses, weights, query losses and max |gradient| reach the host in one
transfer (:meth:`StepCheck.host`).  A non-finite loss or gradient stops the run at that
step, before the optimizer applies the update, with a :class:`FloatingPointError` that says
what is non-finite (which tasks' losses, weights or gradient rows; the shared parameters or
which heads) and what to do.  Under fp16 autocast (no loss scaling) an update that
overflowed while the losses stayed finite is skipped instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

#: what a strategy raises for a non-finite loss or gradient row; the trainer re-raises it
#: as FloatingPointError naming the step (add the strategy base's own class here if it is
#: not a FloatingPointError)
NONFINITE_ERRORS: tuple[type[Exception], ...] = (FloatingPointError,)


def nonfinite_grads(model: nn.Module) -> str:
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


def diverged(step: int, parts: Sequence[str], run_dir: Path) -> FloatingPointError:
    """The error that stops a run at ``step``, saying what is non-finite and what to do."""
    return FloatingPointError(
        f"training diverged at step {step}: {'; '.join(parts)}. The update of this step "
        "was not applied. Lower the learning rate, set clip_grad (clipping bounds a "
        "large gradient, it cannot repair a NaN), avoid fp16 (use bf16 or float32), or "
        f"try another weighting. A checkpoint in {run_dir} (checkpoint_every) is "
        "from before this step.")


class StepCheck:
    """The finiteness checks of one run's steps (``model`` with ``tasks``, trained by the
    strategy called ``strategy``; ``skip_overflow`` under fp16 autocast)."""

    def __init__(self, model: nn.Module, tasks: Sequence[str], strategy: str,
                 device: torch.device, skip_overflow: bool = False) -> None:
        self.model, self.tasks, self.strategy = model, list(tasks), strategy
        self.device, self.skip_overflow = device, skip_overflow

    def host(self, r: Any) -> dict[str, Any]:
        """A :class:`~mtlkit.grads.StepResult`'s losses, weights, query losses and the max
        |grad| of the model, in one transfer (float64 on the CPU)."""
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

    def should_apply(self, host: Mapping[str, Any], step: int, run_dir: Path) -> bool:
        """True for a finite step, False for an fp16 overflow to skip; raises
        FloatingPointError (:func:`diverged`) otherwise."""
        finite_losses = bool(torch.isfinite(host["losses"]).all())
        if math.isfinite(host["grad_max"]) and finite_losses:
            return True
        if self.skip_overflow and finite_losses:
            return False  # fp16 has no loss scaling: skip an overflowed update
        raise diverged(step, self._nonfinite_parts(host), run_dir)

    def refusal(self, e: Exception, step: int, run_dir: Path) -> FloatingPointError:
        """The error for a strategy that refused non-finite input (its ``where`` attribute,
        ``{"loss"|"gradient"...: [task indices]}``, in task names)."""
        where = getattr(e, "where", None)
        if not where:
            return diverged(step, [str(e)], run_dir)
        names = {k: [self.tasks[i] for i in idx] for k, idx in where.items()}
        parts = [f"the {k} of {ts} is not finite" if "loss" in k else
                 f"{getattr(e, 'strategy', self.strategy)} got a non-finite {k} row for "
                 f"tasks {ts}" for k, ts in names.items()]
        if any("gradient" in k for k in where):
            parts.append("the gradient is not finite in " + nonfinite_grads(self.model))
        return diverged(step, parts, run_dir)

    def _nonfinite_parts(self, host: Mapping[str, Any]) -> list[str]:
        """What is non-finite in this step: losses, the strategy's weights, and the
        gradients (each task's head; the shared parameters)."""
        parts = []
        for key, what in (("losses", "the loss"), ("weights", f"{self.strategy}'s weight")):
            bad = {t: float(v) for t, v in zip(self.tasks, host[key]) if not math.isfinite(v)}
            if bad:
                parts.append(f"{what} of {bad} is not finite")
        if not math.isfinite(host["grad_max"]):
            parts.append("the gradient is not finite in " + nonfinite_grads(self.model))
        return parts
