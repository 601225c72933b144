"""Empirical Rademacher complexity by Monte Carlo, for classes whose supremum is exact.

For a sample z_1..z_N and a class of [0,1]-valued losses {l_h}, the empirical
Rademacher complexity is

    R_hat = E_sigma sup_h (1/N) sum_i sigma_i l_h(z_i),   sigma_i = +-1 w.p. 1/2.

The multi-task version (``metaweighting.txt`` §5, Eq. 15) pools the T x n losses:

    R_MTL = E_sigma sup_theta 1/(T n) sum_t sum_i sigma_i^t l(h(x_i^t, theta), y_i^t).

Here the supremum is computed *exactly* for every sigma (no optimiser), so the only
error is the Monte Carlo error over sigma, reported as a standard error:

* a finite class (a K x N loss matrix):     sup = max_k sigma . l_k;
* 1-D thresholds h_theta(x) = 1[x > theta] with the 0-1 loss: one cumulative sum;
* the norm-bounded linear class {||w|| <= B} with the affine loss
  l_w(x, y) = (1 - y <w, x>) / 2 (in [0, 1] when ||x|| <= 1, B <= 1):
  sup = sum_i sigma_i / 2 + (B/2) ||sum_i sigma_i y_i x_i||.
  For the class of linear *functions* themselves, sup = B ||sum_i sigma_i x_i||.

Derived and used in ``notebooks/40_generalization_bounds.ipynb``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

SupFn = Callable[[np.ndarray], np.ndarray]
"""sigma (D, N) -> (D,) values of sup_h sum_i sigma_i l_h(z_i) for D sign vectors."""


def rademacher_signs(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Independent +-1 signs with probability 1/2 each (float64)."""
    return rng.integers(0, 2, size=shape).astype(np.float64) * 2.0 - 1.0


# ------------------------------------------------------------- exact supremums
def sup_finite(losses: np.ndarray) -> SupFn:
    """sup over a finite class given its K x N loss matrix: max_k sigma . l_k."""
    L = np.asarray(losses, dtype=np.float64)
    if L.ndim != 2:
        raise ValueError(f"losses must be a K x N matrix, got shape {L.shape}")
    return lambda sigma: (sigma @ L.T).max(axis=1)


def sup_thresholds(x: np.ndarray, y: np.ndarray) -> SupFn:
    """sup over h_theta(x) = 1[x > theta] (theta in R) of sum_i sigma_i 1[h(x_i) != y_i].

    Sorting x, a threshold between the j-th and (j+1)-th point predicts 0 on the
    first j points and 1 on the rest, so
    sum_i sigma_i l_i = cumsum(sigma y)[j] + sum_{i>j} sigma_i (1 - y_i),  j = 0..N.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError("x and y must be 1-D arrays of the same length")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("threshold labels y must be 0 or 1")
    order = np.argsort(x, kind="stable")
    ys = y[order]

    def sup(sigma: np.ndarray) -> np.ndarray:
        s = sigma[:, order]
        below = np.cumsum(s * ys, axis=1)  # points predicted 0 (error if y=1)
        above = np.cumsum((s * (1 - ys))[:, ::-1], axis=1)[:, ::-1]  # predicted 1
        zero = np.zeros((s.shape[0], 1))
        below = np.concatenate([zero, below], axis=1)  # j = 0..N points below
        above = np.concatenate([above, zero], axis=1)
        return (below + above).max(axis=1)

    return sup


def sup_linear_loss(X: np.ndarray, y: np.ndarray, B: float = 1.0) -> SupFn:
    """sup_{||w||<=B} sum_i sigma_i (1 - y_i <w, x_i>)/2
    = sum_i sigma_i / 2 + (B/2) ||sum_i sigma_i y_i x_i||  (Cauchy-Schwarz, attained)."""
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64)
    _check_linear(X, y, B)
    yx = X * y[:, None]
    return lambda sigma: 0.5 * sigma.sum(axis=1) + 0.5 * B * np.linalg.norm(sigma @ yx, axis=1)


def sup_linear_functions(X: np.ndarray, B: float = 1.0) -> SupFn:
    """sup_{||w||<=B} sum_i sigma_i <w, x_i> = B ||sum_i sigma_i x_i||."""
    X = np.asarray(X, dtype=np.float64)
    return lambda sigma: B * np.linalg.norm(sigma @ X, axis=1)


def _check_linear(X: np.ndarray, y: np.ndarray, B: float) -> None:
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError("X must be N x d and y of length N")
    if not np.all(np.abs(y) == 1):
        raise ValueError("linear-loss labels y must be -1 or +1")
    if B <= 0 or B * np.linalg.norm(X, axis=1).max() > 1 + 1e-9:
        raise ValueError("need B > 0 and B ||x_i|| <= 1 so that the loss lies in [0, 1]")


# ------------------------------------------------------------------ estimators
@dataclass
class MCEstimate:
    """A Monte Carlo mean with its standard error and the number of draws (the estimate of
    Eq. 15 of ``metaweighting.txt``; ``notebooks/40_generalization_bounds.ipynb``)."""

    mean: float
    stderr: float
    draws: int


def empirical_rademacher(sup: SupFn, n_points: int, draws: int = 1000,
                         rng: np.random.Generator | None = None,
                         chunk: int = 512) -> MCEstimate:
    """R_hat = E_sigma sup_h (1/N) sum_i sigma_i l_h(z_i), estimated over ``draws`` sigmas."""
    if draws < 2:
        raise ValueError("draws must be at least 2 (the standard error needs two)")
    rng = np.random.default_rng() if rng is None else rng
    vals = []
    for start in range(0, draws, chunk):
        d = min(chunk, draws - start)
        vals.append(sup(rademacher_signs(rng, (d, n_points))) / n_points)
    v = np.concatenate(vals)
    return MCEstimate(float(v.mean()), float(v.std(ddof=1) / np.sqrt(draws)), draws)


def mtl_sup(sups: Sequence[SupFn], sizes: Sequence[int], shared_sup: SupFn | None = None
            ) -> SupFn:
    """The supremum in Eq. 15 over a T-task sample of sizes n_t (sigma is (D, sum n_t)).

    * task-specific parameters (``shared_sup=None``): the sup separates,
      sup_theta sum_t (...) = sum_t sup_{theta_t} (...), so add the per-task sups;
    * one parameter shared by every task: pass ``shared_sup``, the sup over the
      pooled sample (the tasks' points concatenated in order).
    """
    if shared_sup is not None:
        return shared_sup
    edges = np.cumsum([0, *sizes])

    def sup(sigma: np.ndarray) -> np.ndarray:
        return sum(s(sigma[:, a:b]) for s, a, b in zip(sups, edges[:-1], edges[1:]))

    return sup


def mtl_rademacher(sups: Sequence[SupFn], sizes: Sequence[int], draws: int = 1000,
                   rng: np.random.Generator | None = None,
                   shared_sup: SupFn | None = None) -> MCEstimate:
    """R(l o H o D) of Eq. 15: E_sigma sup_theta 1/(T n) sum_{t,i} sigma_i^t l(...)."""
    return empirical_rademacher(mtl_sup(sups, sizes, shared_sup), int(sum(sizes)), draws, rng)


def exact_rademacher(sup: SupFn, n_points: int) -> float:
    """R_hat by enumerating all 2^N sign vectors (N <= 16): the reference for tests."""
    if n_points > 16:
        raise ValueError("exact enumeration is for N <= 16 points")
    grid = np.array(np.meshgrid(*[[-1.0, 1.0]] * n_points, indexing="ij")).reshape(n_points, -1).T
    return float(sup(grid).mean() / n_points)


def massart_bound(losses: np.ndarray) -> float:
    """Massart's lemma for a finite class: R_hat <= max_k ||l_k||_2 sqrt(2 log K) / N."""
    L = np.asarray(losses, dtype=np.float64)
    return float(np.linalg.norm(L, axis=1).max() * np.sqrt(2 * np.log(L.shape[0])) / L.shape[1])
