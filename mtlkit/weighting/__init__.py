"""Weighting strategies: ``names()`` lists them, ``get(name, **hparams)`` builds one.

Every strategy has the functional call ``combine(losses, grads) -> (direction,
weights)``; see :mod:`mtlkit.weighting.base` for the contract.

The package's modules: ``base`` (the contract, base classes, registry), one public
module per strategy family (the registry's loader imports exactly these), and private
modules of shared pieces that are not strategies: ``_solvers`` (the min-norm solvers,
public here as :mod:`min_norm <mtlkit.weighting._solvers>`), ``_learnable`` (the
optimiser of learnable weights; :data:`OPTIMIZERS`), ``_gram`` and ``_precision``.
"""

from mtlkit.weighting import _solvers as min_norm
from mtlkit.weighting._learnable import OPTIMIZERS
from mtlkit.weighting.base import (
    LOSSES,
    MODES,
    PARAM,
    REP,
    GramWeighting,
    QueryContext,
    SeededWeighting,
    Weighting,
    get,
    names,
    register,
)

__all__ = ["LOSSES", "MODES", "OPTIMIZERS", "PARAM", "REP", "GramWeighting", "QueryContext",
           "SeededWeighting", "Weighting", "get", "min_norm", "names", "register"]
