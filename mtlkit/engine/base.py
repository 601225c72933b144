"""What every engine shares: the step's result, the gradient mode, and the forward pass."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from mtlkit.arch.base import MTLModel, Rep, detach_rep
from mtlkit.weighting.base import LOSSES, MODES, Weighting

Criterion = Callable[[Tensor, Tensor], Tensor]
#: one batch for all tasks, or ``{task: batch}``
Inputs = Tensor | Mapping[str, Tensor]
#: a query batch: (inputs, targets)
Query = tuple[Inputs, Mapping[str, Tensor]]


@dataclass
class StepResult:
    """What one engine step produced (all detached)."""

    losses: Tensor  #: (T,) per-task training losses
    weights: Tensor  #: (T,) the task weights the strategy used
    outputs: dict[str, Tensor]  #: head outputs, for metrics
    query_losses: Tensor | None = None  #: (T,) query losses, bi-level strategies only


def resolve_mode(weighting: Weighting, mode: str = "auto") -> str:
    """The gradient mode to use: ``auto`` picks the strategy's first mode."""
    if mode == "auto":
        return weighting.modes[0]
    if mode not in MODES:
        raise ValueError(f"unknown gradient mode {mode!r}; choose one of auto, {', '.join(MODES)}")
    if LOSSES in weighting.modes:
        return LOSSES  # a loss-only strategy trains identically in every mode
    if mode not in weighting.modes:
        raise ValueError(f"{weighting.name} supports gradient modes {weighting.modes}, "
                         f"not {mode!r}")
    return mode


def check_batched(batched: bool | str) -> bool | str:
    """``batched`` must be True, False or ``"auto"``."""
    if batched not in (True, False, "auto"):
        raise ValueError(f"batched must be True, False or 'auto', got {batched!r}")
    return batched


class Engine:
    """Base of the engines: the model, the strategy, the resolved mode, the forward pass.

    The caller zeroes gradients before :meth:`step` and calls ``optimizer.step()`` after.
    """

    def __init__(self, model: MTLModel, weighting: Weighting, mode: str = "auto") -> None:
        weighting.check_model(model)  # a method defined on another architecture: refused
        self.model = model
        self.weighting = weighting
        self.mode = resolve_mode(weighting, mode)
        self.shared = model.shared_parameters()
        if not self.shared:
            raise ValueError(f"{type(model).__name__} has no shared parameters to train")
        self.task_params = {t: model.task_parameters(t) for t in model.tasks}

    def step(self, inputs: Inputs, targets: Mapping[str, Tensor],
             criteria: Mapping[str, Criterion], query: Query | None = None) -> StepResult:
        """Forward, backward as the strategy needs, and ``.grad`` set."""
        raise NotImplementedError

    def forward(self, inputs: Inputs,
                detach: bool) -> tuple[dict[str, Tensor], list[Rep], list[Rep]]:
        """Heads' outputs, the representations, and the (maybe detached) copies
        the heads read.  ``inputs`` is one batch for all tasks, or a dict of
        one batch per task."""
        model = self.model
        if isinstance(inputs, Mapping):
            outs, reps, used = {}, [], []
            for t in model.tasks:
                rep = model.encode(inputs[t])
                rin = detach_rep(rep) if detach else rep
                outs[t] = model.decode(model.rep_for(rin, t), t)
                reps.append(model.rep_for(rep, t))
                used.append(model.rep_for(rin, t))
            return outs, reps, used
        rep = model.encode(inputs)
        rin = detach_rep(rep) if detach else rep
        outs = {t: model.decode(model.rep_for(rin, t), t) for t in model.tasks}
        return outs, [rep], [rin]

    @staticmethod
    def task_losses(outputs: Mapping[str, Tensor], targets: Mapping[str, Tensor],
                    criteria: Mapping[str, Criterion], tasks: tuple[str, ...]) -> Tensor:
        """The (T,) vector [L_1, ..., L_T]."""
        return torch.stack([criteria[t](outputs[t], targets[t]) for t in tasks])
