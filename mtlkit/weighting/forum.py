"""FORUM: a first-order multi-gradient method for multi-objective bi-level optimisation (Ye, Lin,
Zhang, Xu, Wang, Kwok et al., ECAI 2024), as a loss weighting.

The problem is MOML's (:mod:`mtlkit.weighting.moml`): the query losses F_t(omega) of every task
as upper-level objectives, the weights lambda = softmax(beta) of the support losses
f(beta, omega) = sum_t lambda_t L^s_t(omega) as the lower level.  FORUM avoids
hypergradients altogether: it rewrites the lower level as the value-function constraint

    q(beta, omega) = f(beta, omega) - f(beta, omega^K) <= 0,

omega^K = K inner SGD steps on f(beta, .) from omega (an approximation of min_omega f), and
moves (beta, omega) jointly along the direction that MGDA would take for the T objectives under
that constraint.  With z = (beta, omega), the unit query gradients a_t = (0, g^q_t / ||g^q_t||)
and the constraint gradient b = grad_z q = (J_softmax (L^s(omega) - L^s(omega^K)),
G^s^T lambda), each step solves

    min_{mu in simplex, nu >= max(0, pi^T mu)}  ||sum_t mu_t a_t + nu b||^2 - phi ||b||^2 nu,
    pi_t = phi - a_t . b / ||b||^2,

keeps a running average of mu, and updates z by -(sum_t mu_t a_t + nu b) with
nu = max(pi^T mu, 0): beta by Adam on its block, the model by the optimiser on the rest.

Derived in ``notebooks/32_more_bilevel_weightings.ipynb``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtlkit.weighting._gram import psd_factor
from mtlkit.weighting._learnable import adam_update
from mtlkit.weighting._precision import combine_rows, inner_products
from mtlkit.weighting._solvers import solve_min_norm
from mtlkit.weighting.base import (
    PARAM,
    Combined,
    InnerPlan,
    QueryContext,
    Weighting,
    register,
    work_dtype,
)

#: added to ||b||^2 (the authors' code)
EPS = 1e-8


class ForumProblem:
    """min_x x^T M x - c nu over x = (mu, nu), mu in the simplex, nu >= 0, nu >= pi^T mu, with
    M = R^T R the (T+1) x (T+1) Gram matrix of (a_1, ..., a_T, b): built once per T with
    cvxpy Parameters (R, pi, c) and re-solved with Clarabel each step."""

    def __init__(self, t: int) -> None:
        import cvxpy as cp

        self.cp, self.t = cp, t
        self.r, self.pi, self.c = cp.Parameter((t + 1, t + 1)), cp.Parameter(t), \
            cp.Parameter(nonneg=True)
        self.x = cp.Variable(t + 1)
        cons = [self.x >= 0, cp.sum(self.x[:t]) == 1, self.x[t] >= self.pi @ self.x[:t]]
        self.problem = cp.Problem(cp.Minimize(cp.sum_squares(self.r @ self.x)
                                              - self.c * self.x[t]), cons)

    def solve(self, m: np.ndarray, pi: np.ndarray, c: float) -> np.ndarray | None:
        """mu for this step's M, pi and c (> 0, ||b|| > 0), or None where the solver fails.

        Solved in nu' = ||b|| nu (b scaled to unit length), so that b's scale (gradients of
        1e15 or 1e-20) does not reach the solver: x^T M x - c nu becomes
        x'^T M' x' - (c / ||b||) nu' and nu >= pi^T mu becomes nu' >= ||b|| pi^T mu."""
        t = self.t
        nb = float(np.sqrt(max(m[t, t], 0.0)))
        scale = np.ones(t + 1)
        scale[t] = 1.0 / nb
        m1 = m * scale[:, None] * scale[None, :]
        self.r.value, self.pi.value, self.c.value = psd_factor(m1, eps=0.0), nb * pi, c / nb
        try:
            self.problem.solve(solver=self.cp.CLARABEL, tol_gap_abs=1e-10, tol_gap_rel=1e-10,
                               tol_feas=1e-10)
        except self.cp.SolverError:
            return None
        x = self.x.value
        if x is None or not np.all(np.isfinite(x)):
            return None
        mu = np.clip(np.asarray(x[:t], dtype=float), 0.0, None)
        return mu / mu.sum() if mu.sum() > 0 else None


@register
class FORUM(Weighting):
    """FORUM (Ye et al., ECAI 2024; LibMTL's implementation) -- see the module docstring.

    Runs in the bi-level engine: it asks for the support losses after ``inner_steps`` SGD
    steps of size ``inner_lr`` on sum_t softmax(beta)_t L^s_t (:meth:`inner_plan`; the engine
    runs them on a copy of the model) and receives the query gradients.  The direction
    given to the model, sum_t mu_t g^q_t / ||g^q_t|| + nu G^s^T softmax(beta), is not a
    combination of the support gradients alone (``is_reweighting = False``); the returned
    weights are those of the support gradients, nu softmax(beta).

    The running average of mu: mu_bar <- mu_bar + r_k (mu - mu_bar), r_k = (1/e)^ema_power
    with e the "epoch" (calls / ``period``, from 1), as the authors' code (which counts
    epochs; ``period=1`` counts calls).

    Parameters
    ----------
    phi:
        The constraint's weight phi (LibMTL's ``FORUM_phi``, 0.1).
    outer_lr:
        Adam step size of beta (LibMTL's ``outer_lr``, 1e-3).
    inner_lr, inner_steps:
        The inner SGD steps that approximate min_omega f (LibMTL's 0.1 and 5).
    ema_power, period:
        The running average's rate (above; 3/4 as the authors).
    """

    name = "FORUM"
    modes = (PARAM,)
    needs_query = True
    is_reweighting = False

    def __init__(self, phi: float = 0.1, outer_lr: float = 1e-3, inner_lr: float = 0.1,
                 inner_steps: int = 5, ema_power: float = 0.75, period: int = 1) -> None:
        super().__init__()
        for key, v in (("phi", phi), ("outer_lr", outer_lr), ("inner_lr", inner_lr),
                       ("ema_power", ema_power)):
            if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                    and v > 0):
                raise ValueError(f"FORUM {key} must be a positive number, got {v!r}")
        for key, v in (("inner_steps", inner_steps), ("period", period)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"FORUM {key} must be a positive int, got {v!r}")
        self.phi, self.outer_lr, self.inner_lr = float(phi), float(outer_lr), float(inner_lr)
        self.inner_steps, self.ema_power, self.period = inner_steps, float(ema_power), period
        self.beta: Tensor | None = None
        self.adam: dict[str, Any] = {}
        self.mu: Tensor | None = None  #: the running average of mu
        self.steps = 0
        self.solver_failures = 0
        self._problem: ForumProblem | None = None

    def reset(self) -> None:
        super().reset()
        self.beta, self.adam, self.mu, self.steps, self.solver_failures = None, {}, None, 0, 0

    def _beta(self, t: int) -> Tensor:
        if self.beta is None or self.beta.numel() != t:
            self.beta, self.adam, self.mu = torch.zeros(t, dtype=torch.float64), {}, None
        return self.beta

    def inner_plan(self, num_tasks: int) -> InnerPlan:
        """softmax(beta), ``inner_lr``, ``inner_steps`` (see :class:`InnerPlan`)."""
        return InnerPlan(torch.softmax(self._beta(num_tasks), 0), self.inner_lr,
                         self.inner_steps)

    def _solve(self, m: Tensor, pi: Tensor, bb: float) -> Tensor:
        """mu of this step: the QP (:class:`ForumProblem`); where b = 0 (nothing to keep
        feasible) MGDA's min-norm point of the unit query gradients; where the solver fails,
        the running average so far (``solver_failures`` counts it, one warning)."""
        t = pi.numel()
        if not bb > np.finfo(np.float64).tiny:
            return solve_min_norm(torch.nan_to_num(m[:t, :t]))
        if self._problem is None or self._problem.t != t:
            self._problem = ForumProblem(t)
        mu = self._problem.solve(m.cpu().numpy(), pi.cpu().numpy(), self.phi * (bb + EPS))
        if mu is not None:
            return torch.as_tensor(mu, dtype=torch.float64, device=m.device)
        self.solver_failures += 1
        if self.solver_failures == 1:
            warnings.warn("FORUM: the step's QP could not be solved; keeping the running "
                          "average of mu", stacklevel=3)
        return self.mu.to(m) if self.mu is not None else \
            solve_min_norm(torch.nan_to_num(m[:t, :t]))

    def _combine(self, losses: Tensor, grads: Tensor | None,
                 query: QueryContext | None = None) -> Combined:
        if query is None or query.grads is None or query.inner_losses is None:
            raise ValueError("FORUM needs the query gradients and the support losses after "
                             "its inner steps: run it through mtlkit.engine.make_engine (the "
                             "bi-level engine), or pass query_grads= and inner_losses=")
        t, dev = losses.numel(), grads.device
        beta = self._beta(t).to(dev)
        lam = torch.softmax(beta, 0)
        jac = torch.diag(lam) - torch.outer(lam, lam)
        b_beta = jac @ (losses.double() - query.inner_losses.double())  # grad_beta q
        gq, gs = query.grads, grads
        qs = inner_products(gq, gs).double()  # g^q_t . g^s_j
        qq = inner_products(gq, gq).double()
        ss = inner_products(gs, gs).double()
        n = qq.diagonal().clamp_min(0).sqrt()
        inv = torch.where(n > 0, 1 / torch.where(n > 0, n, 1.0), 0.0)
        m = torch.empty(t + 1, t + 1, dtype=torch.float64, device=dev)
        m[:t, :t] = qq * inv[:, None] * inv[None, :]  # a_s . a_t
        m[:t, t] = m[t, :t] = inv * (qs @ lam)  # a_t . b (b's beta block meets a_t's zeros)
        bb = b_beta @ b_beta + lam @ ss @ lam  # ||b||^2
        m[t, t] = bb
        pi = self.phi - m[:t, t] / (bb + EPS)
        mu = self._solve(m, pi, float(bb))
        self.steps += 1
        rate = (1.0 / ((self.steps - 1) // self.period + 1)) ** self.ema_power
        self.mu = mu if self.mu is None else self.mu.to(mu) + rate * (mu - self.mu.to(mu))
        nu = torch.clamp(self.mu @ pi, min=0.0)
        wd = work_dtype(grads)
        direction = combine_rows((self.mu * inv).to(wd), gq) + combine_rows((nu * lam).to(wd), gs)
        state = {k: (v.to(beta) if torch.is_tensor(v) else v) for k, v in self.adam.items()}
        self.beta, self.adam = adam_update(beta, nu * b_beta, state, self.outer_lr)
        return direction.to(grads.dtype), (nu * lam).to(wd)
