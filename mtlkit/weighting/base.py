"""The weighting API: the strategy contract, one base class per kind, and a registry.

A weighting strategy turns T per-task losses (and, if it needs them, the T x P
matrix of per-task gradients G) into one update:

    direction d in R^P   (None when no gradients were given)
    weights   w in R^T   (the weights that reproduce d, d = G^T w, where one
                          exists; else the scaling the strategy applied)

**One entry point.**  :meth:`Weighting.combine` is the public call: it validates the
input (below) and then dispatches to :meth:`Weighting._combine`, which each strategy
implements and which may assume valid input.  Bi-level strategies (``needs_query``)
also receive a :class:`QueryContext` (the query losses and gradients) that the
bi-level engine builds.  Strategies whose weights are a function of the Gram matrix
M = G G^T derive from :class:`GramWeighting`, which computes M once and turns the
weights into the direction.

Strategies with learnable weights (UW, GradNorm, ...) update them inside
``combine`` with their own step size, so the trainer needs no per-strategy
branch.  ``grads`` is a view of the engine's buffer, valid during the call
only: clone whatever you keep for the next step.  Subclasses store each
constructor argument as an attribute of the same name (``hparams()`` reads
them back); :meth:`~Weighting.load_state_dict` restores state only, never those
settings.

**Strategies and the model.**  A strategy computes from what ``combine`` is given; the
engines (:mod:`mtlkit.engine`) compute exactly what it declares (``modes``,
``needs_query``) and write the direction into the model.  The one contact with the
model is :meth:`Weighting.attach`, called once before training: a strategy may *read*
there what it needs (the order of the parameters in a gradient row, the architecture
it is defined on: :meth:`Weighting.check_model`) and keep the optimiser to *read* its
settings and state (MetaWeighting's learning rate and Adam moments).  It never runs,
modifies or back-propagates through the model, and never steps the optimiser.

Input every strategy refuses, in one place (:meth:`Weighting._check`, run by
``combine`` before any state changes):

* a NaN or inf loss or gradient row (query ones too, for the bi-level strategies):
  :class:`NonFiniteError`, naming the strategy and the task indices;
* a dtype other than float16, bfloat16, float32, float64: :class:`UnsupportedDtypeError`.

float16 and bfloat16 work: the T-vector and T x T math runs in float32 or float64
(:func:`work_dtype`; their range and 3-8 significant bits cannot hold a weight such as
1/(T eps^2), nor a learning-rate-sized update of a weight near 1), so the weights
are float32; the direction has the gradients' dtype.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from mtlkit.registry import Registry
from mtlkit.weighting._gram import gram64, to_weights
from mtlkit.weighting._precision import (  # noqa: F401 (at_work, work_dtype: for strategies)
    at_work,
    combine_rows,
    work_dtype,
)

LOSSES = "losses"  #: the strategy needs only the T losses
PARAM = "param"  #: per-task gradients of the shared parameters (T x P)
REP = "rep"  #: per-task gradients of the shared representation (T x R)
MODES = (LOSSES, PARAM, REP)

#: what :meth:`Weighting.combine` returns: (direction or None, weights)
Combined = tuple[Tensor | None, Tensor]

#: the dtypes a strategy accepts for losses and gradients
SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


class NonFiniteError(FloatingPointError, ValueError):
    """A strategy was given a NaN or inf loss or gradient row.

    A ``FloatingPointError`` (the trainer re-raises it naming the step) and a
    ``ValueError`` (it is bad input).  ``where`` maps each kind of input (``"loss"``,
    ``"gradient"``, ``"query loss"``, ``"query gradient"``) to the indices of the
    tasks whose entry is not finite; ``tasks`` is their sorted union.
    """

    def __init__(self, strategy: str, where: dict[str, list[int]],
                 values: dict[str, list[float]] | None = None) -> None:
        self.strategy, self.where = strategy, where
        self.tasks = sorted({i for idx in where.values() for i in idx})
        parts = []
        for kind, idx in where.items():
            vals = (values or {}).get(kind)  # the losses, shown with their index
            what = f"the {kind}{'' if 'loss' in kind else ' row'} of task{'s' * (len(idx) > 1)}"
            parts.append(what + " " + ", ".join(f"{i} ({vals[i]})" if vals else str(i)
                                                for i in idx))
        super().__init__(f"{strategy} got non-finite input (NaN or inf): {'; '.join(parts)}. "
                         "A strategy cannot weight tasks from it; in training this means the "
                         "run diverged (lower the learning rate or clip gradients).")


class UnsupportedDtypeError(TypeError):
    """Losses or gradients of a dtype no strategy supports (see :data:`SUPPORTED_DTYPES`)."""


@dataclass(frozen=True)
class QueryContext:
    """What a bi-level strategy (``needs_query``) receives besides the support losses and
    gradients: the query batch's, at the current parameters.

    ``owned=True``: the caller hands ``grads`` (the support gradients) and the query
    gradients over: it will not write to the support buffer before the next call returns
    (so the strategy may keep it by reference instead of copying), and the query
    gradients are scratch after the call (the strategy may overwrite them).
    """

    losses: Tensor | None = None  #: (T,) query losses
    grads: Tensor | None = None  #: (T, P) query gradients, rows laid out like ``grads``
    owned: bool = False


class Weighting:
    """Base class of every strategy.

    Subclasses set the class attributes below, take their hyper-parameters as
    keyword arguments with the paper's defaults, and implement :meth:`_combine`
    (:meth:`combine` validates, then calls it).

    Attributes
    ----------
    name:
        Registry name (as in the papers: ``"EW"``, ``"MGDA"``, ...).
    modes:
        Gradient modes the strategy supports, a subset of ``{"losses", "param",
        "rep"}``.  Loss-only strategies list ``("losses",)`` and are usable in
        every mode (the engine back-propagates ``sum_t w_t L_t``).
    is_reweighting:
        True when the direction is always ``G^T w`` for the returned ``w``.
        Such strategies also work with per-task (not shared) representations.
    needs_query:
        True for bi-level strategies (MetaWeighting): the engine then also computes the
        query losses and gradients and passes them as a :class:`QueryContext`.
    arch:
        The architecture the method is defined on (a name in :mod:`mtlkit.arch`'s
        registry, e.g. ``"SharedPrivate"``), or None for any: a model of another
        architecture is refused (:meth:`check_model`).
    """

    name: ClassVar[str] = ""
    modes: ClassVar[tuple[str, ...]] = (LOSSES,)
    is_reweighting: ClassVar[bool] = True
    needs_query: ClassVar[bool] = False
    arch: ClassVar[str | None] = None
    #: the boolean hyper-parameter that lets the method run on another architecture
    #: (:meth:`check_model` then warns instead of raising); None: no opt-in
    arch_opt_in: ClassVar[str | None] = None

    def __init__(self) -> None:
        self.num_tasks: int | None = None

    # ----------------------------------------------------------------- API
    def combine(self, losses: Tensor, grads: Tensor | None = None,
                query: QueryContext | None = None, *, query_losses: Tensor | None = None,
                query_grads: Tensor | None = None, owned: bool = False) -> Combined:
        """Return ``(direction, weights)`` for losses (T,), grads (T, P) or None, and, for
        a bi-level strategy, the query batch's :class:`QueryContext`.

        Validates first (:meth:`_check`: a refused call changes no state), then calls
        :meth:`_combine`.  ``query_losses=``, ``query_grads=`` and ``owned=`` are the
        keyword spelling of ``query`` (a :class:`QueryContext` is built from them).
        """
        if query is None and (query_losses is not None or query_grads is not None or owned):
            query = QueryContext(query_losses, query_grads, owned)
        if query is not None and not self.needs_query:
            raise TypeError(f"{self.name} takes no query batch (only strategies with "
                            "needs_query do)")
        self._check(losses, grads, *((query.losses, query.grads) if query else ()))
        return self._combine(losses, grads) if query is None else \
            self._combine(losses, grads, query)

    def _combine(self, losses: Tensor, grads: Tensor | None) -> Combined:
        """The strategy's computation, on input :meth:`combine` has validated (bi-level
        strategies take a third argument, the :class:`QueryContext` or None)."""
        raise NotImplementedError(f"{type(self).__name__} implements neither _combine "
                                  "nor combine")

    @property
    def needs_grads(self) -> bool:
        """True when the strategy cannot work from the losses alone."""
        return LOSSES not in self.modes

    def attach(self, model: Any, optimizer: Any) -> None:
        """Called once by the trainer before training (see the module docstring for what a
        strategy may do with ``model`` and ``optimizer``: read them, never change them).
        Default: :meth:`check_model`."""
        self.check_model(model)

    def check_model(self, model: Any) -> None:
        """Refuse a model that is not the architecture the method is defined on.

        For a strategy with :attr:`arch` set, ``model`` must be an instance of a class of
        that name, else ``ValueError`` saying which architecture to build; a strategy
        whose :attr:`arch_opt_in` hyper-parameter is True only warns (it then trains its
        weighting alone, on purpose).  Nothing to check for ``arch=None`` or
        ``model=None``.  Called by :meth:`attach` and by every engine's constructor."""
        if self.arch is None or model is None or \
                any(c.__name__ == self.arch for c in type(model).__mro__):
            return
        what = (f"{self.name} is defined on mtlkit.arch.{self.arch}, and "
                f"{type(model).__name__} is not one: it would train the weighting alone, "
                f"without the part of the method that lives in the architecture")
        opt_in = self.arch_opt_in
        if opt_in and getattr(self, opt_in):
            warnings.warn(f"{what} ({opt_in}=True)", stacklevel=3)
            return
        raise ValueError(f"{what}. Build the model with mtlkit.arch.{self.arch} "
                         f"(mtlkit.arch.get({self.arch!r}, ...))"
                         + (f", or pass {opt_in}=True to {self.name} to train its weighting "
                            "alone on purpose" if opt_in else ""))

    def reset(self) -> None:
        """Forget all state (called by the trainer at the start of a run)."""
        self.num_tasks = None

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume; tensors are cloned to the CPU."""
        return {k: _to_cpu(v) for k, v in vars(self).items() if not k.startswith("_")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the state that :meth:`state_dict` saved.  The constructor's settings
        (:meth:`hparams`, and what they determine, such as ``modes``) are kept as
        constructed: a state saved with other settings does not change them."""
        settings = self._settings()
        for k, v in state.items():
            if k not in settings:
                setattr(self, k, v)

    def _settings(self) -> set[str]:
        """Names of the attributes that hold constructor settings, not state."""
        sig = inspect.signature(type(self).__init__)
        return {k for k in sig.parameters if k != "self"} | {"modes"}

    def hparams(self) -> dict[str, Any]:
        """The constructor's keyword arguments with their current values."""
        sig = inspect.signature(type(self).__init__)
        return {k: getattr(self, k) for k in sig.parameters if k != "self" and hasattr(self, k)}

    # ------------------------------------------------------------ helpers
    def _check(self, losses: Tensor, grads: Tensor | None, query_losses: Tensor | None = None,
               query_grads: Tensor | None = None) -> int:
        """Validate shapes and dtypes, refuse non-finite input (:meth:`_require_finite`),
        remember T, and raise if gradients are missing; returns T.  Run first by
        :meth:`combine`, so a refused call changes no state (a subclass that overrides
        ``combine`` itself calls it first)."""
        if losses.dim() != 1:
            raise ValueError(f"{self.name}: losses must be a 1-D tensor of T losses, "
                             f"got shape {tuple(losses.shape)}")
        t = losses.numel()
        if grads is not None and (grads.dim() != 2 or grads.shape[0] != t):
            raise ValueError(f"{self.name}: grads must be a T x P matrix with T={t}, "
                             f"got shape {tuple(grads.shape)}")
        if grads is None and self.needs_grads:
            raise ValueError(f"{self.name} needs per-task gradients (modes {self.modes}); "
                             "pass grads=G, a T x P tensor")
        if query_losses is not None and query_losses.shape != losses.shape:
            raise ValueError(f"{self.name}: query_losses must have the shape of losses "
                             f"({t},), got {tuple(query_losses.shape)}")
        named = {"loss": losses, "gradient": grads, "query loss": query_losses,
                 "query gradient": query_grads}
        named = {k: v for k, v in named.items() if v is not None}
        for kind, x in named.items():
            if x.dtype not in SUPPORTED_DTYPES:
                plural = kind.replace("loss", "losses").replace("gradient", "gradients")
                raise UnsupportedDtypeError(
                    f"{self.name}: the {plural} are {x.dtype}; strategies support "
                    "float16, bfloat16, float32 and float64 (convert with .float())")
        self._require_finite(named)
        if self.num_tasks is None:
            self.num_tasks = t
        elif self.num_tasks != t:
            raise ValueError(f"{self.name} was used with {self.num_tasks} tasks and now gets {t}; "
                             "call reset() between problems")
        return t

    def _require_finite(self, named: dict[str, Tensor]) -> None:
        """Raise :class:`NonFiniteError` if a loss or a gradient row is NaN or inf.

        One pass over each gradient matrix (its row sums: a NaN or inf entry makes the
        sum non-finite; accumulated in float32, float64 for float64 input) and one host
        sync.  A sum that overflowed from finite entries is told apart exactly, on the
        error path only, so finite input is never refused."""
        rows = [x.detach().sum(1, dtype=_acc(x)) if x.dim() == 2 else x.detach().to(_acc(x))
                for x in named.values()]
        if bool(torch.stack([torch.isfinite(r).all() for r in rows]).all()):
            return
        where, values = {}, {}
        for (kind, x), r in zip(named.items(), rows):
            bad = ~torch.isfinite(x.detach()).all(1) if x.dim() == 2 else ~torch.isfinite(r)
            idx = bad.nonzero().flatten().tolist()
            if idx:
                where[kind] = idx
                if x.dim() == 1:
                    values[kind] = x.detach().float().cpu().tolist()
        if where:
            raise NonFiniteError(self.name, where, values)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hparams().items())
        return f"{type(self).__name__}({args})"


class SeededWeighting(Weighting):
    """A strategy that draws from its own seeded CPU generator ``_gen`` (task
    orders, random weights); the generator's state is saved and restored, so a
    resumed run draws what the uninterrupted one would have."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError(f"{self.name} seed must be an int, got {seed!r}")
        self.seed = seed
        self._gen = torch.Generator().manual_seed(seed)

    def reset(self) -> None:
        super().reset()
        self._gen = torch.Generator().manual_seed(self.seed)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "rng_state": self._gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        state = dict(state)
        rng = state.pop("rng_state", None)
        super().load_state_dict(state)
        if rng is not None:
            self._gen.set_state(rng)


class GramWeighting(Weighting):
    """A reweighting whose weights are a function of the losses and the Gram matrix
    M = G G^T of the task gradients (MGDA, PCGrad, IMTL, GradVac, CAGrad, Nash-MTL,
    UPGrad, Aligned-MTL).

    The base computes M once, in float64 on G's device
    (:func:`~mtlkit.weighting._gram.gram64`), asks :meth:`_gram_weights` for w (a
    tensor, or a NumPy vector from a solve on the host), and returns ``(G^T w, w)`` with
    w in the :func:`work_dtype` of G.
    """

    modes: ClassVar[tuple[str, ...]] = (PARAM, REP)
    is_reweighting: ClassVar[bool] = True

    def _combine(self, losses: Tensor, grads: Tensor | None) -> Combined:
        m = gram64(grads) if self._needs_gram() else None
        w = self._gram_weights(losses, m)
        w = to_weights(w, grads) if isinstance(w, np.ndarray) else w.to(work_dtype(grads))
        return weighted_direction(w, grads), w

    def _gram_weights(self, losses: Tensor, gram: Tensor | None) -> Tensor | np.ndarray:
        """The task weights w, from the losses and M (T x T, float64, on G's device)."""
        raise NotImplementedError

    def _needs_gram(self) -> bool:
        """False when this call's weights need no M (then :meth:`_gram_weights` gets
        None); default True."""
        return True


def _to_cpu(v: Any) -> Any:
    if isinstance(v, Tensor):
        return v.detach().cpu().clone()
    if isinstance(v, dict):
        return {k: _to_cpu(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return type(v)(_to_cpu(x) for x in v)
    return v


def _acc(x: Tensor) -> torch.dtype:
    """Accumulation dtype of the finiteness check: float64 for float64, else float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def check_flag(strategy: str, name: str, value: Any) -> bool:
    """A boolean hyper-parameter ``name`` of ``strategy``, or ``ValueError``."""
    if not isinstance(value, bool):
        raise ValueError(f"{strategy} {name} must be True or False, got {value!r}")
    return value


def weighted_direction(weights: Tensor, grads: Tensor | None) -> Tensor | None:
    """d = G^T w in the gradients' dtype (:func:`~mtlkit.weighting._precision.combine_rows`),
    or None when no gradients were given."""
    return None if grads is None else combine_rows(weights, grads)


# ------------------------------------------------------------------ registry
def _load_all() -> None:
    """Import every strategy module so that its classes register themselves.

    The rule: the strategy modules are the public modules of :mod:`mtlkit.weighting`
    other than ``base``; shared pieces that are not strategies (solvers, the
    learnable-weight optimiser, precision rules) live in private modules (``_name.py``),
    which the loader never imports as strategies."""
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if is_strategy_module(info.name):
            importlib.import_module(f"{__package__}.{info.name}")


def is_strategy_module(name: str) -> bool:
    """True for the modules of :mod:`mtlkit.weighting` that define strategies (see
    :func:`_load_all`)."""
    return not name.startswith("_") and name != "base"


_REGISTRY: Registry[type[Weighting]] = Registry("weighting strategy", load=_load_all,
                                                argument="hyper-parameter")


def register(cls: type[Weighting]) -> type[Weighting]:
    """Class decorator: add a strategy to the registry under ``cls.name``."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} has no name")
    return _REGISTRY.add(cls.name, cls)


def names() -> list[str]:
    """Every registered strategy name, sorted."""
    return _REGISTRY.names()


def get(name: str, **hparams: Any) -> Weighting:
    """Build the strategy ``name`` with hyper-parameters (paper defaults otherwise).

    ``name`` follows :mod:`mtlkit.registry`'s rules (case, ``-`` and ``_`` do not matter).
    Raises ``ValueError`` naming the valid choices for an unknown strategy or an
    unknown hyper-parameter.
    """
    return _REGISTRY.build(name, **hparams)


def as_tensor(x: Any, like: Tensor | None = None) -> Tensor:
    """A float tensor on ``like``'s device and dtype."""
    t = torch.as_tensor(x)
    return t.to(like) if like is not None else t.float()
