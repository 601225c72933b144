"""Datasets: ``names()`` lists them, ``load(name, **kw)`` returns an :class:`MTLData`."""

from mtlkit.data.base import MTLData, TaskSpec
from mtlkit.data.common import DataCorrupt, DataUnavailable
from mtlkit.data.registry import load, names

__all__ = ["DataCorrupt", "DataUnavailable", "MTLData", "TaskSpec", "load", "names"]
