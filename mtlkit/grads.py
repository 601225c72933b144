"""The gradient engine's earlier home, kept as a thin public re-export of
:mod:`mtlkit.engine` (new code imports from there).

``GradEngine(model, weighting, mode, batched)`` here is :func:`mtlkit.engine.make_engine`:
like the class that lived here, it accepts every strategy and gives bi-level ones
(``needs_query``) their :class:`~mtlkit.engine.BilevelEngine`.
"""

from __future__ import annotations

from mtlkit.engine import (
    Criterion,
    StepResult,
    flat_grad,
    per_task_grads,
    resolve_mode,
)
from mtlkit.engine import make_engine as GradEngine  # noqa: N813 (the earlier class's name)

__all__ = ["Criterion", "GradEngine", "StepResult", "flat_grad", "per_task_grads",
           "resolve_mode"]
