"""Datasets: ``names()`` lists them, ``load(name, **kw)`` returns an :class:`MTLData`."""

from mtlkit.data.base import MTLData, TaskSpec
from mtlkit.data.registry import load, names

__all__ = ["MTLData", "TaskSpec", "load", "names"]
