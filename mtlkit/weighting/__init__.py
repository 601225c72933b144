"""Weighting strategies: ``names()`` lists them, ``get(name, **hparams)`` builds one.

Every strategy has the functional call ``combine(losses, grads) -> (direction,
weights)``; see :mod:`mtlkit.weighting.base` for the contract.
"""

from mtlkit.weighting.base import LOSSES, MODES, PARAM, REP, Weighting, get, names, register

__all__ = ["LOSSES", "MODES", "PARAM", "REP", "Weighting", "get", "names", "register"]
