"""The two shapes of an MTL split behind one interface (see :mod:`mtlkit.data.base`).

A split is cut into *parts*, ``{key: Dataset}``; a part holds the examples of the tasks
:meth:`tasks_of` names:

* :class:`PerTask` (homogeneous data): one part per task, keyed by the task; its batches
  are ``(x, y)``.  A step's batch is ``({task: x_t}, {task: y_t})``.
* :class:`Shared` (heterogeneous data): one part, keyed :data:`ALL`, for every task; its
  batches are ``(x, {task: y})``, and so is a step's batch.

So the trainer, the evaluation and the data helpers never ask which shape they have.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch.utils.data import Dataset

ALL = "*"  #: the key of the one part of heterogeneous data


class PerTask:
    """Homogeneous data: each task has its own inputs (one part per task)."""

    def __init__(self, tasks: Sequence[str]) -> None:
        self.tasks = list(tasks)

    def parts(self, split: Mapping[str, Dataset]) -> dict[str, Dataset]:
        """``{task: Dataset of (x, y)}``, in task order."""
        return {t: split[t] for t in self.tasks}

    def tasks_of(self, key: str) -> list[str]:
        return [key]

    def key_of(self, task: str) -> str:
        """The part that holds ``task``'s examples."""
        return task

    def targets(self, key: str, y: Any) -> dict[str, Any]:
        """A part's batch labels as ``{task: y}``."""
        return {key: y}

    def join(self, batches: Mapping[str, tuple[Any, Any]]) -> tuple[Any, dict[str, Any]]:
        """One step's ``(inputs, targets)`` from one batch of every part."""
        return ({k: b[0] for k, b in batches.items()}, {k: b[1] for k, b in batches.items()})


class Shared:
    """Heterogeneous data: every input has a label for every task (one part)."""

    def __init__(self, tasks: Sequence[str]) -> None:
        self.tasks = list(tasks)

    def parts(self, split: Dataset) -> dict[str, Dataset]:
        """``{ALL: Dataset of (x, {task: y})}``."""
        return {ALL: split}

    def tasks_of(self, key: str) -> list[str]:
        return list(self.tasks)

    def key_of(self, task: str) -> str:
        return ALL

    def targets(self, key: str, y: Any) -> dict[str, Any]:
        return y

    def join(self, batches: Mapping[str, tuple[Any, Any]]) -> tuple[Any, dict[str, Any]]:
        x, y = batches[ALL]
        return x, y


Layout = PerTask | Shared
