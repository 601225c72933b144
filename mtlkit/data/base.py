"""What a dataset loader returns: tasks, splits, and what it stands in for.

Two shapes of MTL problem (``rlw.md`` §2, ``metaweighting.txt`` §3):

* homogeneous, one batch per task: each task has its own inputs
  (per-domain sentiment, topic tasks).  ``train[task]`` is a Dataset of
  ``(x, y)`` pairs.
* heterogeneous, one batch for all tasks: every input has a label for every
  task (segmentation + depth + normals).  ``train`` is one Dataset of
  ``(x, {task: y})``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch.utils.data import Dataset

from mtlkit.data.layout import Layout, PerTask, Shared

#: task kinds the trainer knows a loss and metrics for
TASK_KINDS = ("classification", "multilabel", "segmentation", "depth", "normals",
              "regression", "tagging")


@dataclass(frozen=True)
class TaskSpec:
    """One task: its name, kind, and (for classification-like kinds) classes.

    ``ignore_index`` marks void labels (segmentation, tagging padding).
    """

    name: str
    kind: str
    num_classes: int | None = None
    ignore_index: int = -1

    def __post_init__(self) -> None:
        if self.kind not in TASK_KINDS:
            raise ValueError(f"task {self.name!r}: unknown kind {self.kind!r}; "
                             f"choose one of {TASK_KINDS}")


@dataclass
class MTLData:
    """A multi-task dataset with train/val/test splits.

    Attributes
    ----------
    homogeneous:
        True: ``train``/``val``/``test`` map task name -> Dataset of (x, y).
        False: each is one Dataset of (x, {task: y}).
    stands_in_for / differences:
        For embedded stand-ins, the benchmark they replace and how they differ.
    """

    name: str
    tasks: list[TaskSpec]
    homogeneous: bool
    train: Dataset | dict[str, Dataset]
    val: Dataset | dict[str, Dataset]
    test: Dataset | dict[str, Dataset]
    stands_in_for: str = ""
    differences: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def split(self, name: str) -> Dataset | dict[str, Dataset]:
        """``train``, ``val`` or ``test``."""
        if name not in ("train", "val", "test"):
            raise ValueError(f"unknown split {name!r}; choose train, val or test")
        return getattr(self, name)

    @property
    def layout(self) -> Layout:
        """How a split is cut into parts and a step's batch is put together."""
        return (PerTask if self.homogeneous else Shared)(self.task_names)

    def parts(self, name: str) -> dict[str, Dataset]:
        """Split ``name`` as ``{key: Dataset}``: one per task, or one for all tasks."""
        return self.layout.parts(self.split(name))

    def sizes(self) -> dict[str, dict[str, int]]:
        """``{split: {task: number of examples}}`` (see :func:`mtlkit.data.common.sizes`)."""
        from mtlkit.data.common import sizes

        return sizes(self)
