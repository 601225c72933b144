"""The bi-level step's earlier home, kept as a thin public re-export: the engine is
:class:`mtlkit.engine.BilevelEngine` (:mod:`mtlkit.engine.bilevel`), and a row's
parameters come from :meth:`mtlkit.arch.base.MTLModel.row_parameters`."""

from __future__ import annotations

from typing import Any

from mtlkit.engine.bilevel import BilevelEngine, RowLayout


def row_parameters(model: Any) -> list:
    """The parameters of one gradient row: shared ones, then each task's in task order
    (:meth:`~mtlkit.arch.base.MTLModel.row_parameters`)."""
    return model.row_parameters()


__all__ = ["BilevelEngine", "RowLayout", "row_parameters"]
