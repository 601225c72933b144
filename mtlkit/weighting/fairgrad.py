"""FairGrad: fair resource allocation in multi-task learning (Ban & Ji, ICML 2024)."""

from __future__ import annotations

import math
import warnings

import numpy as np
from torch import Tensor

from mtlkit.weighting._gram import on_host
from mtlkit.weighting.base import GramWeighting, register
from mtlkit.weighting.nash_mtl import pareto_stationary


def _utility(w: np.ndarray, alpha: float) -> float:
    """sum_t h(w_t) with h' = w^{-1/alpha}: log w (alpha = 1), else w^{1-1/alpha}/(1-1/alpha)."""
    if alpha == 1:
        return float(np.log(w).sum())
    return float((w ** (1 - 1 / alpha)).sum() / (1 - 1 / alpha))


def fairgrad_weights(m: np.ndarray, alpha: float, iters: int = 100) -> np.ndarray:
    """w > 0 with G G^T w = w^{-1/alpha} element-wise (Ban & Ji 2024, Eq. 4); alpha = 0 is
    the mean (linear scalarisation, §3).

    Eq. 4 is the stationarity condition of the strictly convex
    f(w) = 1/2 w^T M w - sum_t h(w_t), h' = w^{-1/alpha} (h concave for alpha > 0), solved
    by damped Newton steps (backtracking keeps w > 0 and decreases f) from the solution
    of the diagonal problem, w_t = M_tt^{-alpha/(1+alpha)}.  (The authors run scipy's
    least squares from 1/T, which stops short of the solution on badly scaled G.)"""
    t = m.shape[0]
    if alpha == 0:
        return np.full(t, 1.0 / t)
    w = np.maximum(np.diagonal(m), 1e-300) ** (-alpha / (1 + alpha))
    for _ in range(iters):
        grad = m @ w - w ** (-1 / alpha)
        if np.abs(grad * w ** (1 / alpha)).max() < 1e-13:
            break
        hess = m + np.diag(w ** (-1 / alpha - 1) / alpha)
        step = np.linalg.lstsq(hess, grad, rcond=None)[0]
        s, f0 = 1.0, 0.5 * w @ m @ w - _utility(w, alpha)
        while s > 1e-12 and (np.any(w - s * step <= 0) or 0.5 * (w - s * step) @ m @ (
                w - s * step) - _utility(w - s * step, alpha) > f0 - 1e-4 * s * grad @ step):
            s *= 0.5
        w = w - s * step
    return w


def is_fair_solution(m: np.ndarray, w: np.ndarray, alpha: float, tol: float = 1e-3) -> bool:
    """w_t^{1/alpha} (G G^T w)_t = 1 for every t within ``tol``, w finite and positive."""
    if alpha == 0:
        return True
    if not (np.all(np.isfinite(w)) and np.all(w > 0)):
        return False
    return bool(np.all(np.abs(np.power(w, 1.0 / alpha) * (m @ w) - 1.0) < tol))


@register
class FairGrad(GramWeighting):
    """FairGrad (Ban & Ji, ICML 2024, Algorithm 1): the update d = G^T w maximising the
    alpha-fair utility sum_t (g_t . d)^{1 - alpha} / (1 - alpha) of the tasks' first-order
    improvements within a ball; its optimality condition (Eq. 4) is

        G G^T w = w^{-1/alpha}   (element-wise, w > 0),

    solved by :func:`fairgrad_weights` (Newton on the convex problem behind Eq. 4).
    alpha = 1 is proportional fairness, the same condition as Nash-MTL (G G^T w = 1 / w);
    alpha -> inf approaches max-min fairness; alpha = 0 the mean.  Like Nash-MTL, no
    solution exists at a Pareto-stationary point
    (:func:`~mtlkit.weighting.nash_mtl.pareto_stationary`) and an answer that fails the
    condition task by task is not one: then the previous weights are kept (1/T at first),
    ``solver_failures`` counts it and a warning is issued once.

    Derived in ``notebooks/24_more_gradient_weightings.ipynb``.

    Parameters
    ----------
    alpha:
        The fairness parameter (default 1.0, LibMTL's; the paper reports several).
    """

    name = "FairGrad"

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        if not (isinstance(alpha, (int, float)) and not isinstance(alpha, bool)
                and math.isfinite(alpha) and alpha >= 0):
            raise ValueError(f"FairGrad alpha must be a number >= 0, got {alpha!r}")
        self.alpha = float(alpha)
        self.weights: np.ndarray | None = None
        self.solver_failures = 0

    def reset(self) -> None:
        super().reset()
        self.weights, self.solver_failures = None, 0

    def _gram_weights(self, losses: Tensor, gram: Tensor) -> np.ndarray:
        t, m = gram.shape[0], on_host(gram)
        w = None
        if self.alpha == 0 or not pareto_stationary(gram, self._roundoff):
            w = fairgrad_weights(m, self.alpha)
            w = w if is_fair_solution(m, w, self.alpha) else None
        if w is None:
            self.solver_failures += 1
            if self.solver_failures == 1:
                warnings.warn("FairGrad: no solution of G G^T w = w^(-1/alpha) (Pareto-"
                              "stationary gradients?); keeping the previous weights",
                              stacklevel=2)
            w = self.weights if self.weights is not None else np.full(t, 1.0 / t)
        self.weights = w
        return w
