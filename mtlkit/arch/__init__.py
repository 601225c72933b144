"""MTL architectures: what is shared and what is task-specific.

``names()`` lists them and ``get(name, **kwargs)`` builds one (the lookup rules of
:mod:`mtlkit.registry`: case, ``-`` and ``_`` do not matter).
"""

from typing import Any

from mtlkit.arch.base import ARCHITECTURES, MTLModel, count_parameters
from mtlkit.arch.cross_stitch import CrossStitch
from mtlkit.arch.hps import HPS
from mtlkit.arch.mmoe import MMoE
from mtlkit.arch.mtan import MTAN
from mtlkit.arch.nddr import NDDR
from mtlkit.arch.shared_private import SharedPrivate


def names() -> list[str]:
    """Every registered architecture name, sorted."""
    return ARCHITECTURES.names()


def get(name: str, **kwargs: Any) -> MTLModel:
    """Build the architecture ``name`` from its constructor's keyword arguments
    (``ValueError`` naming the choices for an unknown name or keyword)."""
    return ARCHITECTURES.build(name, **kwargs)


__all__ = ["ARCHITECTURES", "HPS", "MMoE", "MTAN", "NDDR", "CrossStitch", "MTLModel",
           "SharedPrivate", "count_parameters", "get", "names"]
