"""MTL architectures: what is shared and what is task-specific."""

from mtlkit.arch.base import MTLModel, count_parameters
from mtlkit.arch.cross_stitch import CrossStitch
from mtlkit.arch.hps import HPS
from mtlkit.arch.mmoe import MMoE
from mtlkit.arch.mtan import MTAN
from mtlkit.arch.nddr import NDDR
from mtlkit.arch.shared_private import SharedPrivate

__all__ = ["HPS", "MMoE", "MTAN", "NDDR", "CrossStitch", "MTLModel", "SharedPrivate",
           "count_parameters"]
