"""The gradient engines: they run the model, compute exactly what a strategy needs
(the T losses, per-task gradient rows of the shared parameters or of the shared
representation, a query batch's too) and write the update into ``.grad``.

``make_engine(model, weighting)`` picks the engine by the strategy's needs:

* :class:`GradEngine` (:mod:`mtlkit.engine.single`): the single-level modes
  ``losses``, ``param`` and ``rep``;
* :class:`BilevelEngine` (:mod:`mtlkit.engine.bilevel`): strategies with
  ``needs_query`` (MetaWeighting), support and query batches, full rows.

:mod:`mtlkit.engine.rows` holds the gradient-row machinery both use
(:func:`flat_grad`, :func:`per_task_grads`, :func:`flatten_into`, :func:`write_grads`,
:func:`accumulate_grads`).
"""

from __future__ import annotations

from mtlkit.arch.base import MTLModel
from mtlkit.engine.base import Criterion, Engine, StepResult, resolve_mode
from mtlkit.engine.bilevel import BilevelEngine, RowLayout
from mtlkit.engine.rows import (
    accumulate_grads,
    flat_grad,
    flatten_into,
    per_task_grads,
    write_grads,
)
from mtlkit.engine.single import GradEngine
from mtlkit.weighting.base import Weighting


def make_engine(model: MTLModel, weighting: Weighting, mode: str = "auto",
                batched: bool | str = "auto") -> GradEngine | BilevelEngine:
    """The engine for ``weighting`` on ``model``: a :class:`BilevelEngine` when the
    strategy ``needs_query``, else a :class:`GradEngine` in ``mode``.  Every invalid
    combination (a mode the strategy lacks, ``rep`` mode of a non-reweighting on
    per-task representations, a model with no shared parameters, a method defined on
    another architecture: :meth:`~mtlkit.weighting.base.Weighting.check_model`) raises
    here, at construction."""
    cls = BilevelEngine if weighting.needs_query else GradEngine
    return cls(model, weighting, mode, batched)


__all__ = ["BilevelEngine", "Criterion", "Engine", "GradEngine", "RowLayout", "StepResult",
           "accumulate_grads", "flat_grad", "flatten_into", "make_engine", "per_task_grads",
           "resolve_mode", "write_grads"]
