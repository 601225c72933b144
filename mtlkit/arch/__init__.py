"""MTL architectures: what is shared and what is task-specific."""

from mtlkit.arch.base import MTLModel
from mtlkit.arch.hps import HPS

__all__ = ["HPS", "MTLModel"]
