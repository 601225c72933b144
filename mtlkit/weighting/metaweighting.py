"""MetaWeighting: task weights learnt by multi-objective hypergradient descent
(Mao et al., "MetaWeighting: Learning to Weight Tasks in Multi-Task Learning",
ACL Findings 2022; ``metaweighting.txt`` §4, Eqs. 9-13, Algorithms 1-2).

The bi-level problem (Problem 3) at iteration k::

    min_w  (L^q_1(theta^k), ..., L^q_T(theta^k))
    s.t.   theta^k = theta^{k-1} - (eta/T) sum_j w_j g^s_j,  g^s_j = grad L^s_j(theta^{k-1})   (9)

theta^{k-1} is held fixed (the one-step truncation of Problem 2), so theta^k is
*affine* in w: d theta^k / d w_j = -(eta/T) g^s_j exactly, and the chain rule
gives the hypergradient of task t's query loss with no second-order term (Eq. 10)::

    D[t, j] = d L^q_t(theta^k) / d w_j = -(eta/T) <g^q_t(theta^k), g^s_j(theta^{k-1})>

Row t of the T x T matrix D is d_t.  MetaWeighting takes the min-norm point of
the convex hull of the rows, d_c = lambda*^T D with lambda* from Frank-Wolfe on
B = D D^T (Eqs. 11-12, Algorithm 2), and steps w <- w - alpha d_c (Eq. 13).
Auto-lambda (:mod:`mtlkit.weighting.auto_lambda`) takes the column sum 1^T D
instead, and a training batch instead of a held-out query batch.

Implementation notes (all derived in ``notebooks/30_hypergradients_and_metaweighting.ipynb``):

* **Delayed pairing.**  The engine calls ``combine`` once per step, at the
  current parameters.  The query gradients at theta^k are paired with the
  support gradients kept from the previous call (at theta^{k-1}, the ones that
  produced theta^k); then w is updated and the new direction is built with the
  new w.  This is Algorithm 1 regrouped, and it needs only two forward passes
  and 2T per-task backward passes per step.  The first step has no previous
  support gradients and keeps w = w0.
* **Inner step.**  ``inner="sgd"`` is Eq. 10 as written: the preconditioner is
  the scalar eta/T, with eta the optimiser's learning rate (or ``eta``).  This
  is the exact hypergradient only when the optimiser really is plain SGD.
  ``inner="adam"`` differentiates the step Adam actually took,
  theta^k = theta^{k-1} - lr m_hat / (sqrt(v_hat) + eps) with
  m = beta1 m_prev + (1 - beta1) sum_j (w_j/T) g_j, so
  d theta^k / d w_j = -lr (1 - beta1) / (1 - beta1^k) / (sqrt(v_hat) + eps) * g_j / T,
  holding the second moment v fixed (v depends on w through g^2; that
  dependence is dropped).  App. B trains with Adam but uses Eq. 10, i.e. the
  paper's setting is ``inner="sgd"`` applied to an Adam run: a hypergradient of
  a step that was not taken.
* **Keeping w valid.**  The paper says nothing about negative weights.
  ``constraint="simplex"`` (default) projects w onto {w >= 0, sum w = T w0}
  (Euclidean projection): the total sum is a learning rate, which the
  hypergradient would otherwise also learn.  ``"clamp"`` sets negative entries
  to 0 (sum free), ``"none"`` follows Eq. 13 literally.
* **Resuming.**  ``state_dict()`` keeps w but not the T x P support gradients
  of the last step, so the first step after a resume does not update w.
* **Task-specific parameters.**  In the engine's bi-level step the gradient
  rows cover the shared parameters and every head, with head t's block zero
  outside row t; so head t contributes only to D[t, t], as the chain rule says
  (head t's query loss does not depend on head j != t).  Heads receive the
  weighted update w_t/T grad L^s_t of Eq. 9.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mtlkit.weighting._precision import inner_products
from mtlkit.weighting._solvers import METHODS, min_norm_frank_wolfe, solve_min_norm
from mtlkit.weighting.base import (
    PARAM,
    Combined,
    QueryContext,
    Weighting,
    register,
    weighted_direction,
    work_dtype,
)

REDUCES = ("minnorm", "sum")
INNERS = ("sgd", "adam")
CONSTRAINTS = ("simplex", "clamp", "none")
SOLVERS = METHODS


# --------------------------------------------------------------- the math
def hypergradient_matrix(val_grads: Tensor, support_grads: Tensor,
                         precond: Tensor | float, overwrite_val: bool = False) -> Tensor:
    """D[t, j] = -<g^val_t, precond * g^s_j> (Eq. 10; precond = eta/T for SGD).

    ``val_grads`` (T, P) at theta^k, ``support_grads`` (T, P) at theta^{k-1},
    ``precond`` a scalar or a (P,) vector (the optimiser's d theta / d g).
    ``overwrite_val=True`` scales ``val_grads`` in place (no T x P temporary).
    """
    if isinstance(precond, Tensor) and precond.dim() > 0:
        if overwrite_val and val_grads.dtype == work_dtype(val_grads):
            scaled = val_grads.mul_(precond)
        else:  # half gradients: scaled in float32 (lr / (sqrt(v) + eps) exceeds float16)
            scaled = val_grads * precond.to(work_dtype(val_grads))
        return -inner_products(scaled, support_grads)
    return inner_products(val_grads, support_grads) * (-precond)


def min_norm_weights(d: Tensor, iters: int = 250, tol: float = 1e-8,
                     solver: str = "fw") -> Tensor:
    """lambda* = argmin_{lambda in simplex} ||lambda^T D||^2 (Eq. 12) on B = D D^T, by
    the solvers of :mod:`mtlkit.weighting.min_norm`: ``"fw"`` Frank-Wolfe with the
    exact line search (Algorithm 2; ``iters``/``tol`` its iteration cap and relative
    duality-gap tolerance), ``"exact"`` support enumeration (T <= 10), ``"active"``
    Wolfe's active-set method, ``"auto"`` the fastest exact one for the device."""
    d64 = d.double()
    b = d64 @ d64.T  # in float64: D of huge float32 gradients squares past float32
    # lambda* is invariant to the scale of B; D is O(eta) small, so normalise
    # before the solver's relative stopping rule sees it.
    b = b / torch.diagonal(b).max().clamp_min(torch.finfo(b.dtype).tiny)
    if solver == "fw":
        return min_norm_frank_wolfe(b, iters=iters, tol=tol).to(d.dtype)
    return solve_min_norm(b, solver, iters, tol).to(d.dtype)


def common_direction(d: Tensor, reduce: str = "minnorm", fw_iters: int = 250,
                     solver: str = "fw") -> tuple[Tensor, Tensor]:
    """(d_c, lambda): d_c = lambda^T D, lambda = lambda* (``minnorm``, Eq. 11) or
    the all-ones vector (``sum``: the hypergradient of sum_t L^q_t, Auto-lambda)."""
    if reduce == "minnorm":
        lam = min_norm_weights(d, fw_iters, solver=solver)
    elif reduce == "sum":
        lam = torch.ones(d.shape[0], dtype=d.dtype, device=d.device)
    else:
        raise ValueError(f"reduce must be one of {REDUCES}, got {reduce!r}")
    return lam @ d, lam


def project_simplex(v: Tensor, total: float = 1.0) -> Tensor:
    """Euclidean projection of v onto {w >= 0, sum w = total} (sort-based, no host sync).

    v is shifted first so that its largest entry is 0 (the projection is invariant to
    adding c 1): the largest entry is then always active (u_1 - css_1 = total > 0
    exactly), however large |v| is (a float32 v of -2e13 absorbed total before)."""
    u, _ = torch.sort(v - v.max(), descending=True)
    css = torch.cumsum(u, 0) - total
    k = torch.arange(1, v.numel() + 1, device=v.device, dtype=v.dtype)
    active = (u - css / k) > 0
    r = torch.where(active, k, torch.zeros_like(k)).max()  # number of positive entries
    theta = css.gather(0, (r - 1).long().reshape(1)) / r
    return torch.clamp(v - v.max() - theta, min=0.0)


def constrain(w: Tensor, constraint: str, total: float) -> Tensor:
    """Apply the validity rule of ``constraint`` (see the module docstring)."""
    if constraint == "simplex":
        return project_simplex(w, total)
    if constraint == "clamp":
        return torch.clamp(w, min=0.0)
    return w


def adam_preconditioner(optimizer: Any, params: list, num_tasks: int) -> Tensor:
    """The (P,) vector -d theta / d (w_j g_j) of the Adam/AdamW step just taken,
    lr (1 - beta1) / (1 - beta1^k) / (sqrt(v_k / (1 - beta2^k)) + eps) / T,
    with v_k held fixed; 0 for parameters the optimiser has not stepped."""
    groups = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    parts = []
    for p in params:
        g, st = groups.get(id(p)), optimizer.state.get(p, {})
        dtype = work_dtype(p)
        if g is None or "exp_avg_sq" not in st:
            parts.append(torch.zeros(p.numel(), device=p.device, dtype=dtype))
            continue
        b1, b2 = g["betas"]
        k = torch.as_tensor(st["step"], dtype=dtype, device=p.device)
        v = st.get("max_exp_avg_sq", st["exp_avg_sq"]) if g.get("amsgrad") else st["exp_avg_sq"]
        denom = (v.to(dtype) / (1 - b2 ** k)).sqrt() + g["eps"]
        parts.append((g["lr"] * (1 - b1) / (1 - b1 ** k) / denom).reshape(-1))
    return torch.cat(parts) / num_tasks


def sgd_preconditioner(optimizer: Any, params: list, num_tasks: int,
                       eta: float | None) -> Tensor | float:
    """eta/T (Eq. 10): ``eta`` if given, else the optimiser's learning rate
    (a (P,) vector when parameter groups have different rates)."""
    if eta is not None:
        return eta / num_tasks
    if optimizer is None:
        raise ValueError("inner='sgd' needs the learning rate: pass eta=... or call "
                         "attach(model, optimizer) first")
    lrs = {g["lr"] for g in optimizer.param_groups}
    if len(lrs) == 1:
        return lrs.pop() / num_tasks
    groups = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    return torch.cat([torch.full((p.numel(),), groups.get(id(p), 0.0), device=p.device,
                                 dtype=work_dtype(p)) for p in params]) / num_tasks


# ------------------------------------------------------------ strategies
class Hypergradient(Weighting):
    """Shared machinery of MetaWeighting and Auto-lambda (not registered).

    Subclasses choose the defaults of ``reduce`` (min-norm vs sum of the rows of
    D) and where the validation gradients come from (``needs_query``: a
    held-out query batch, or the next training batch).
    """

    modes = (PARAM,)
    is_reweighting = True

    def __init__(self, alpha: float, reduce: str, inner: str, eta: float | None,
                 constraint: str, init: float, fw_iters: int, solver: str) -> None:
        super().__init__()
        if not (isinstance(fw_iters, int) and fw_iters >= 1):
            raise ValueError(f"{self.name} fw_iters must be a positive integer, got {fw_iters!r}")
        if not (isinstance(alpha, (int, float)) and alpha >= 0):
            raise ValueError(f"{self.name} alpha (hypergradient step size) must be >= 0, "
                             f"got {alpha!r}")
        for arg, val, ok in (("reduce", reduce, REDUCES), ("inner", inner, INNERS),
                             ("constraint", constraint, CONSTRAINTS)):
            if val not in ok:
                raise ValueError(f"{self.name} {arg} must be one of {ok}, got {val!r}")
        if eta is not None and not eta > 0:
            raise ValueError(f"{self.name} eta must be > 0 or None (use the optimiser's lr), "
                             f"got {eta!r}")
        if not init > 0:
            raise ValueError(f"{self.name} init (w0) must be > 0, got {init!r}")
        self.alpha, self.reduce, self.inner = float(alpha), reduce, inner
        self.eta, self.constraint, self.init = eta, constraint, float(init)
        if solver not in SOLVERS:
            raise ValueError(f"{self.name} solver must be one of {SOLVERS}, got {solver!r}")
        self.fw_iters, self.solver = fw_iters, solver
        self.w: Tensor | None = None  #: the learnt weights (Algorithm 1's w, w0 = init)
        self.hypergrad: Tensor | None = None  #: last T x T matrix D (rows d_t)
        self.lam: Tensor | None = None  #: last lambda (min-norm) or ones (sum)
        self._prev: Tensor | None = None
        self._borrowed = False  #: _prev is the caller's buffer (combine(..., owned=True))
        self._optimizer: Any = None
        self._params: list | None = None

    def attach(self, model: Any, optimizer: Any) -> None:
        """Keep the optimiser (to read its lr / Adam state) and the parameter order of a
        gradient row (read from the model)."""
        super().attach(model, optimizer)
        self._optimizer = optimizer
        if model is not None:
            self._params = model.row_parameters() if self.needs_query else \
                list(model.shared_parameters())
        if self.inner == "adam" and not isinstance(optimizer, (torch.optim.Adam,
                                                               torch.optim.AdamW)):
            raise ValueError(f"{self.name} inner='adam' needs a torch.optim.Adam/AdamW "
                             f"optimiser, got {type(optimizer).__name__}; use inner='sgd'")

    def reset(self) -> None:
        super().reset()
        self.w = self.hypergrad = self.lam = self._prev = None
        self._borrowed = False

    def state_dict(self) -> dict[str, Any]:
        """Also the previous step's support gradients, so a resumed run's next
        hypergradient is the uninterrupted run's."""
        state = super().state_dict()
        state["prev_grads"] = None if self._prev is None else self._prev.detach().cpu().clone()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        state = dict(state)
        self._prev, self._borrowed = state.pop("prev_grads", None), False
        super().load_state_dict(state)

    # ------------------------------------------------------------------
    def _precond(self, t: int) -> Tensor | float:
        if self.inner == "sgd":
            return sgd_preconditioner(self._optimizer, self._params or [], t, self.eta)
        if self._optimizer is None or self._params is None:
            raise ValueError(f"{self.name} inner='adam' needs attach(model, optimizer)")
        return adam_preconditioner(self._optimizer, self._params, t)

    def _val_grads(self, grads: Tensor, query_grads: Tensor | None) -> Tensor:
        if not self.needs_query:
            return grads  # the next training batch is the validation batch
        if query_grads is None or query_grads.shape != grads.shape:
            raise ValueError(f"{self.name} needs query_grads, a T x P tensor like grads "
                             "(the gradients of the query losses at the current parameters)")
        return query_grads

    def update_weights(self, val_grads: Tensor, overwrite_val: bool = False) -> None:
        """One hypergradient step w <- constrain(w - alpha d_c) (Eq. 13), if the
        support gradients of the previous step are known (``overwrite_val``: see
        :func:`hypergradient_matrix`)."""
        prev = self._prev
        if prev is None or prev.shape != val_grads.shape:
            return
        prev = self._prev = prev.to(val_grads)
        t = val_grads.shape[0]
        d = hypergradient_matrix(val_grads, prev, self._precond(t), overwrite_val)
        dc, lam = common_direction(d, self.reduce, self.fw_iters, self.solver)
        self.w = constrain(self.w - self.alpha * dc, self.constraint, self.init * t)
        self.hypergrad, self.lam = d.detach(), lam.detach()

    def _combine(self, losses: Tensor, grads: Tensor | None,
                 query: QueryContext | None = None) -> Combined:
        """``query.owned``: the caller hands ``grads`` (and the query gradients) over: it
        will not write to ``grads`` before the next call returns, so it is kept by
        reference, not copied (the engine alternates two support buffers), and the
        query gradients may be overwritten (they are scratch after this call)."""
        t = losses.numel()
        query_grads = None if query is None else query.grads
        owned = query is not None and query.owned
        val = self._val_grads(grads, query_grads)
        if self.w is None:
            self.w = torch.full((t,), self.init, dtype=work_dtype(grads), device=grads.device)
        # after load_state_dict w is on the CPU; float32 for half gradients
        self.w = self.w.to(grads.device, work_dtype(grads))
        self.update_weights(val, overwrite_val=owned and query_grads is not None)
        if owned:
            self._prev, self._borrowed = grads, True
        else:  # copy into a buffer of our own (never into one the caller lent us)
            if self._prev is None or self._borrowed or self._prev.shape != grads.shape \
                    or self._prev.device != grads.device or self._prev.dtype != grads.dtype:
                self._prev = torch.empty_like(grads)
            self._prev.copy_(grads)
            self._borrowed = False
        weights = self.w / t  # Eq. 9: the inner objective is (1/T) sum_t w_t L^s_t
        return weighted_direction(weights, grads), weights


@register
class MetaWeighting(Hypergradient):
    """MetaWeighting (Mao et al. 2022, ``metaweighting.txt`` §4, Eqs. 9-13, Alg. 1-2).

    Learns w by multi-objective hypergradient descent on the held-out query
    losses: d_t = -(eta/T) g^q_t(theta^k) [g^s_1 ... g^s_T](theta^{k-1}) (Eq. 10),
    d_c = min-norm point of conv{d_t} by Frank-Wolfe (Eqs. 11-12), w <- w - alpha d_c
    (Eq. 13).  See the module docstring for the delayed pairing, the two inner
    steps and the validity constraint.  Derived in
    ``notebooks/30_hypergradients_and_metaweighting.ipynb``.

    Parameters
    ----------
    alpha:
        Hypergradient step size (App. B: 0.1 sentiment, 0.5 topics).
    reduce:
        ``"minnorm"`` (the paper) or ``"sum"`` (Auto-lambda's column sum; ablation).
    inner:
        ``"sgd"``: Eq. 10 as written (exact for plain SGD); ``"adam"``: the
        derivative of the Adam step actually taken (second moment held fixed).
    eta:
        Inner learning rate of Eq. 10; None reads it from the attached optimiser.
    constraint:
        ``"simplex"`` (w >= 0, sum w = T init), ``"clamp"`` (w >= 0) or ``"none"``.
    init:
        w0 (Algorithm 1: 1, so the first steps are EW).
    fw_iters:
        Frank-Wolfe iteration cap (Algorithm 2's N); it stops earlier once the
        duality gap is below 1e-8 of the largest ||d_t||^2.
    solver:
        Eq. 12's solver: ``"fw"`` (Algorithm 2), ``"exact"`` (support
        enumeration, T <= 10), ``"active"`` (Wolfe's active-set method) or
        ``"auto"`` (default: the fastest exact one for the device, see
        :func:`mtlkit.weighting.min_norm.solve_min_norm`).  Same problem, same
        answer: Frank-Wolfe converges sublinearly when lambda* is interior (250
        iterations can leave lambda ~5e-3 off and cost ~20 ms on CPU at T = 14),
        while the exact solvers end in well under a millisecond.
    """

    name = "MetaWeighting"
    needs_query = True

    def __init__(self, alpha: float = 0.1, reduce: str = "minnorm", inner: str = "sgd",
                 eta: float | None = None, constraint: str = "simplex",
                 init: float = 1.0, fw_iters: int = 250, solver: str = "auto") -> None:
        super().__init__(alpha, reduce, inner, eta, constraint, init, fw_iters, solver)
