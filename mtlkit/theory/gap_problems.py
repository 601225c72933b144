"""Learning problems whose true loss and *uniform* generalization gap are exact.

Theorem 2 of ``metaweighting.txt`` (§5, Eq. 14) bounds, with probability 1 - delta,

    sup_h 1/T sum_t (L_t(h) - L_t^tr(h))          (the uniform gap)

so checking it needs the supremum over the class of the true-minus-training loss
for each drawn training set.  Two families make that exact:

* :class:`ThresholdTask`: x ~ U[0, 1], y = 1[x > a] flipped with probability p,
  h_theta(x) = 1[x > theta], 0-1 loss.  L(theta) = p + (1 - 2p) |theta - a| on
  [0, 1]; the training loss is piecewise constant, so the sup is over finitely
  many intervals.
* :class:`LinearTask`: x uniform on the unit sphere of R^d, y = sign(<u, x>)
  flipped with probability p, loss (1 - y <w, x>)/2 over ||w|| <= B <= 1.  With
  m = E[y x] = (1 - 2p) E|<u, x>| u, L(w) - L_hat(w) = <w, m_hat - m>/2, so the
  sup is (B/2) ||m_hat - m|| (one shared w: of the task-average of m_hat - m).

Used in ``notebooks/40_generalization_bounds.ipynb``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import gamma, pi, sqrt

import numpy as np


def _check_noise(p: float) -> None:
    if not 0 <= p < 0.5:
        raise ValueError(f"label noise must be in [0, 0.5), got {p}")


@dataclass
class ThresholdTask:
    """x ~ U[0,1], y = 1[x > a] xor Bernoulli(noise); hypotheses 1[x > theta].

    A task with an exact uniform gap for ``metaweighting.txt`` Theorem 2 (Eq. 14);
    ``notebooks/40_generalization_bounds.ipynb``."""

    a: float = 0.5
    noise: float = 0.1

    def __post_init__(self) -> None:
        _check_noise(self.noise)
        if not 0 <= self.a <= 1:
            raise ValueError(f"threshold a must be in [0, 1], got {self.a}")

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.random(n)
        y = ((x > self.a) ^ (rng.random(n) < self.noise)).astype(np.float64)
        return x, y

    def true_loss(self, theta: np.ndarray | float) -> np.ndarray:
        """L(theta) = p + (1 - 2p) |clip(theta) - a|."""
        th = np.clip(np.asarray(theta, dtype=np.float64), 0.0, 1.0)
        return self.noise + (1 - 2 * self.noise) * np.abs(th - self.a)


def threshold_empirical_loss(x: np.ndarray, y: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """(1/n) sum_i 1[1[x_i > theta] != y_i] for each theta (O((n + M) log n))."""
    order = np.argsort(x)
    xs, ys = x[order], y[order]
    pos_below = np.concatenate([[0.0], np.cumsum(ys)])  # y=1 at or below theta: errors
    neg_total = len(ys) - ys.sum()
    neg_below = np.concatenate([[0.0], np.cumsum(1 - ys)])
    j = np.searchsorted(xs, theta, side="right")  # number of points <= theta
    return (pos_below[j] + (neg_total - neg_below[j])) / len(xs)


def _threshold_candidates(tasks: Sequence[ThresholdTask], xs: Sequence[np.ndarray]) -> np.ndarray:
    pts = np.concatenate([np.clip(np.concatenate(xs), 0, 1), [0.0, 1.0], [t.a for t in tasks]])
    return np.unique(pts)


def threshold_uniform_gap(tasks: Sequence[ThresholdTask], samples: Sequence[tuple],
                          shared: bool) -> float:
    """sup over thresholds of 1/T sum_t (L_t - L_t^tr): one theta for all tasks
    (``shared``) or one theta_t per task (then the sup splits over tasks).

    Between consecutive candidate points (sample points, kinks a_t, 0, 1) the
    training loss is constant and L is linear, so the sup on each open interval is
    max(L at its ends) - L_hat(midpoint); a threshold at a sample point acts like
    the interval to its right, and theta outside [0, 1] like 0 or 1.
    """
    if shared:
        c = _threshold_candidates(tasks, [s[0] for s in samples])
        mid = (c[:-1] + c[1:]) / 2
        L, L_hat = np.zeros_like(c), np.zeros_like(mid)
        for task, (x, y) in zip(tasks, samples):
            L += task.true_loss(c)
            L_hat += threshold_empirical_loss(x, y, mid)
        return float((np.maximum(L[:-1], L[1:]) - L_hat).max() / len(tasks))
    return float(np.mean([threshold_uniform_gap([t], [s], True) for t, s in zip(tasks, samples)]))


def mean_abs_projection(d: int) -> float:
    """E|<u, x>| for x uniform on the unit sphere of R^d: Gamma(d/2) / (sqrt(pi) Gamma((d+1)/2))."""
    return gamma(d / 2) / (sqrt(pi) * gamma((d + 1) / 2))


@dataclass
class LinearTask:
    """x uniform on S^{d-1}, y = sign(<u, x>) flipped w.p. noise; loss (1 - y<w,x>)/2.

    The norm-bounded linear class with a [0,1] loss for ``metaweighting.txt`` Theorem 2
    (Eqs. 14-15); ``notebooks/40_generalization_bounds.ipynb``."""

    u: np.ndarray
    noise: float = 0.1

    def __post_init__(self) -> None:
        _check_noise(self.noise)
        self.u = np.asarray(self.u, dtype=np.float64)
        self.u = self.u / np.linalg.norm(self.u)

    @property
    def d(self) -> int:
        return self.u.shape[0]

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.standard_normal((n, self.d))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        y = np.sign(x @ self.u)
        y[y == 0] = 1.0
        y = np.where(rng.random(n) < self.noise, -y, y)
        return x, y

    def mean_yx(self) -> np.ndarray:
        """m = E[y x] = (1 - 2 noise) E|<u, x>| u."""
        return (1 - 2 * self.noise) * mean_abs_projection(self.d) * self.u

    def true_loss(self, w: np.ndarray) -> np.ndarray:
        """L(w) = 1/2 - <w, m>/2 for w of shape (d,) or (K, d)."""
        return 0.5 - 0.5 * (np.asarray(w) @ self.mean_yx())


def linear_uniform_gap(tasks: Sequence[LinearTask], samples: Sequence[tuple], shared: bool,
                       B: float = 1.0) -> float:
    """sup_{||w||<=B} 1/T sum_t (L_t(w) - L_t^tr(w)) = (B/2)||mean_t (m_hat_t - m_t)||
    (one shared w) or 1/T sum_t (B/2) ||m_hat_t - m_t|| (one w_t per task)."""
    diffs = np.stack([(X * y[:, None]).mean(axis=0) - t.mean_yx()
                      for t, (X, y) in zip(tasks, samples)])
    if shared:
        return float(0.5 * B * np.linalg.norm(diffs.mean(axis=0)))
    return float(0.5 * B * np.linalg.norm(diffs, axis=1).mean())


def _sups_for(tasks, samples, shared: bool):
    """The exact-supremum function of Eq. 15 for these tasks and samples."""
    from mtlkit.theory import rademacher as rd

    linear = isinstance(tasks[0], LinearTask)
    one = (lambda s: rd.sup_linear_loss(*s)) if linear else (lambda s: rd.sup_thresholds(*s))
    sizes = [len(s[1]) for s in samples]
    if shared:
        pooled = tuple(np.concatenate([s[i] for s in samples]) for i in range(2))
        return rd.mtl_sup([], sizes, one(pooled)), sizes
    return rd.mtl_sup([one(s) for s in samples], sizes), sizes


def theorem2_trials(tasks: Sequence, n: int, shared: bool, trials: int, draws: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``trials`` training sets of n points per task; for each return the exact
    uniform gap sup_h 1/T sum_t (L_t - L_t^tr) and the MC estimate (``draws`` sigmas)
    of the empirical MTL Rademacher complexity of Eq. 15 on that set."""
    from mtlkit.theory import rademacher as rd

    gap_fn = linear_uniform_gap if isinstance(tasks[0], LinearTask) else threshold_uniform_gap
    gaps, rads = np.empty(trials), np.empty(trials)
    for i in range(trials):
        samples = [t.sample(rng, n) for t in tasks]
        gaps[i] = gap_fn(tasks, samples, shared)
        sup, sizes = _sups_for(tasks, samples, shared)
        rads[i] = rd.empirical_rademacher(sup, sum(sizes), draws, rng).mean
    return gaps, rads
