"""Nash-MTL: multi-task learning as a bargaining game (Navon et al., ICML 2022)."""

from __future__ import annotations

import warnings

import numpy as np
from torch import Tensor

from mtlkit.weighting._gram import on_host, psd_factor
from mtlkit.weighting.base import PARAM, REP, GramWeighting, register


class _BargainingProblem:
    """min_{alpha > 0}  1/2 ||R alpha||^2 - sum_t log alpha_t,  with R^T R = G G^T.

    The problem is convex and its stationarity condition is exactly the Nash
    bargaining condition of Navon et al. (2022, Thm. 5.1):
        G G^T alpha = 1 / alpha   (element-wise).
    Built once with a cvxpy Parameter and re-solved each step.
    """

    def __init__(self, t: int) -> None:
        try:
            import cvxpy as cp
        except ImportError as e:  # pragma: no cover - cvxpy is a pinned dependency
            raise ImportError("Nash-MTL needs cvxpy (pip install cvxpy); it has no fallback") from e
        self.cp = cp
        self.r = cp.Parameter((t, t))
        self.alpha = cp.Variable(t, pos=True)
        obj = 0.5 * cp.sum_squares(self.r @ self.alpha) - cp.sum(cp.log(self.alpha))
        self.problem = cp.Problem(cp.Minimize(obj))

    def solve(self, m: np.ndarray) -> np.ndarray | None:
        self.r.value = psd_factor(m, eps=0.0)
        try:
            self.problem.solve(solver=self.cp.CLARABEL, tol_gap_abs=1e-10, tol_gap_rel=1e-10,
                               tol_feas=1e-10)
        except self.cp.SolverError:
            return None
        a = self.alpha.value
        if self.problem.status not in ("optimal", "optimal_inaccurate") or a is None:
            return None
        a = np.asarray(a, dtype=float)
        residual = np.linalg.norm(m @ a - 1 / a) / np.linalg.norm(1 / a)
        return a if np.all(np.isfinite(a)) and residual < 1e-3 else None


@register
class NashMTL(GramWeighting):
    """Nash bargaining direction d = G^T alpha with G G^T alpha = 1/alpha.

    Solved as the convex problem above with cvxpy's Clarabel solver (the paper
    uses a sequence of convex approximations; both reach the same fixed point
    when G G^T is non-singular).  At a Pareto-stationary point (0 in the convex
    hull of the g_t) the bargaining solution does not exist; then the previous
    alpha is kept and ``solver_failures`` counts it (a warning is issued once).

    Derived in ``notebooks/23_cagrad_nash_mtl_and_beyond.ipynb``.

    Parameters
    ----------
    update_every:
        Recompute alpha every k steps, reusing it in between (paper: 1).
    """

    name = "Nash-MTL"
    modes = (PARAM, REP)

    def __init__(self, update_every: int = 1) -> None:
        super().__init__()
        if not isinstance(update_every, int) or update_every < 1:
            raise ValueError(f"Nash-MTL update_every must be a positive int, got {update_every!r}")
        self.update_every = update_every
        self.alpha: np.ndarray | None = None
        self.steps = 0
        self.solver_failures = 0
        self._problem: _BargainingProblem | None = None

    def _needs_gram(self) -> bool:
        return self.alpha is None or self.steps % self.update_every == 0

    def _gram_weights(self, losses: Tensor, gram: Tensor | None) -> np.ndarray:
        t = losses.numel()
        if gram is not None:  # a step that recomputes alpha (:meth:`_needs_gram`)
            if self._problem is None:
                self._problem = _BargainingProblem(t)
            alpha = self._problem.solve(on_host(gram))
            if alpha is None:
                self.solver_failures += 1
                if self.solver_failures == 1:
                    warnings.warn("Nash-MTL: no bargaining solution (Pareto-stationary "
                                  "gradients?); keeping the previous weights", stacklevel=2)
                alpha = self.alpha if self.alpha is not None else np.ones(t)
            self.alpha = alpha
        self.steps += 1
        return self.alpha

    def reset(self) -> None:
        super().reset()
        self.alpha, self.steps, self.solver_failures = None, 0, 0
