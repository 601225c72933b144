"""Simulations for the RLW analysis (``rlw.md`` §4, App. B): SGD with fixed or random
loss weights on problems where every constant of the theorems is known.

* :class:`QuadraticTasks`: l_t(theta) = c_t/2 ||theta - a_t||^2 with Gaussian
  mini-batch noise; strongly convex (c_t) and smooth (c_t) — Theorems 1 and 3.
* :class:`TightQuadratic`: one task, l = c/2 theta^2, whose stochastic gradient
  g = c theta + sqrt(kappa - c^2 theta^2) * (+-1) has E g^2 = kappa *exactly*
  while |theta| <= sqrt(kappa)/c (a set SGD never leaves when eta c <= 1).  Every
  inequality of the proof of Theorem 1 is then an equality, which makes it the
  sharpest test of the theorem's statements.
* :class:`SharpFlatLandscape`: a 1-D loss with a sharp and a flat minimum, split
  into T tasks l_t = F + b_t theta (sum_t mu_t b_t = 0) so that random weights add
  gradient noise (lambda - mu)^T b — Theorem 2 / App. B.3.

Weights come from a *sampler*, ``sampler(rng, R) -> (R, T)``: :func:`fixed_sampler`
for FW/EW, :func:`bank_sampler` to resample weights drawn from any strategy of the
registry (:func:`draw_weights`, e.g. ``get("RLW", dist="Normal")``).

Used in ``notebooks/42_rlw_convergence.ipynb`` and ``43_rlw_noise_and_flat_minima.ipynb``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

Sampler = Callable[[np.random.Generator, int], np.ndarray]


# ------------------------------------------------------------------ weights
def fixed_sampler(w: np.ndarray) -> Sampler:
    """Fixed weights (FW; EW when w = 1/T): the same w for every run and step."""
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 1 or np.any(w < 0):
        raise ValueError("fixed weights must be a 1-D non-negative vector")
    return lambda rng, R: np.broadcast_to(w, (R, w.size))


def bank_sampler(bank: np.ndarray) -> Sampler:
    """Draw rows of ``bank`` (S x T weights drawn beforehand) uniformly with replacement:
    the empirical distribution of the bank, whose mean ``bank.mean(0)`` is its exact E[lambda]."""
    bank = np.asarray(bank, dtype=np.float64)
    if bank.ndim != 2:
        raise ValueError("the weight bank must be an S x T array")
    return lambda rng, R: bank[rng.integers(0, bank.shape[0], size=R)]


def draw_weights(strategy, T: int, n: int, seed: int = 0) -> np.ndarray:
    """n weight vectors from a registry strategy, as an n x T array: its vectorised
    ``sample(T, n)`` when it has one (RLW), else n calls of ``combine(ones)[1]`` (the losses
    passed are ones; RLW's weights do not depend on them).  The strategy is ``reset()`` first."""
    import torch

    torch.manual_seed(seed)
    strategy.reset()
    if hasattr(strategy, "sample"):
        return strategy.sample(T, n).detach().cpu().double().numpy()
    ones = torch.ones(T, dtype=torch.float64)
    out = np.empty((n, T))
    for i in range(n):
        out[i] = strategy.combine(ones)[1].detach().cpu().double().numpy()
    return out


# ----------------------------------------------------------------- problems
@dataclass
class QuadraticTasks:
    """l_t(theta) = c_t/2 ||theta - a_t||^2; stochastic grad c_t(theta - a_t) + s_t N(0, I).

    The strongly convex tasks of ``rlw.md`` Theorems 1 and 3 (§4, App. B.1, B.4); used in
    ``notebooks/42_rlw_convergence.ipynb``."""

    c: np.ndarray  # (T,) strong-convexity (and smoothness) constants
    a: np.ndarray  # (T, d) per-task minimisers
    noise: np.ndarray  # (T,) mini-batch noise std per coordinate

    def __post_init__(self) -> None:
        self.c = np.asarray(self.c, dtype=np.float64)
        self.a = np.atleast_2d(np.asarray(self.a, dtype=np.float64))
        self.noise = np.asarray(self.noise, dtype=np.float64)
        if np.any(self.c <= 0):
            raise ValueError("every c_t must be positive (strong convexity)")
        if self.a.shape[0] != self.c.size or self.noise.shape != self.c.shape:
            raise ValueError("c, a and noise must describe the same number of tasks")

    @property
    def T(self) -> int:
        return self.c.size

    def optimum(self, mu: np.ndarray) -> np.ndarray:
        """theta* = argmin mu^T l = sum_t mu_t c_t a_t / sum_t mu_t c_t."""
        wc = np.asarray(mu) * self.c
        return wc @ self.a / wc.sum()

    def stoch_grads(self, theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(R, T, d) per-task stochastic gradients at theta (R, d)."""
        diff = theta[:, None, :] - self.a[None]
        eps = rng.standard_normal(diff.shape)
        return self.c[None, :, None] * diff + self.noise[None, :, None] * eps

    def sigma2(self, max_dist: np.ndarray) -> np.ndarray:
        """sigma_t^2 = sup E||g_t||^2 over the visited set: c_t^2 max||theta - a_t||^2 + d s_t^2."""
        return self.c ** 2 * np.asarray(max_dist) ** 2 + self.a.shape[1] * self.noise ** 2

    def dist_to_minimisers(self, theta: np.ndarray) -> np.ndarray:
        """(R, T) distances ||theta - a_t||."""
        return np.linalg.norm(theta[:, None, :] - self.a[None], axis=2)


@dataclass
class TightQuadratic:
    """One task, l(theta) = c/2 theta^2 in 1-D, with E g^2 = kappa exactly (see module doc).

    Makes Eq. 6 of ``rlw.md`` App. B.1 an equality; the counterexamples to Theorem 1's
    iteration count and Theorem 3's loss bound in ``notebooks/42_rlw_convergence.ipynb``."""

    c: float = 1.0
    kappa: float = 1.0

    @property
    def T(self) -> int:
        return 1

    @property
    def radius(self) -> float:
        """sqrt(kappa)/c: the oracle is defined for |theta| <= radius."""
        return float(np.sqrt(self.kappa) / self.c)

    def optimum(self, mu: np.ndarray | None = None) -> np.ndarray:
        return np.zeros(1)

    def stoch_grads(self, theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        g = self.c * theta
        var = self.kappa - g ** 2
        if np.any(var < -1e-9 * self.kappa):
            raise ValueError("theta left |theta| <= sqrt(kappa)/c; keep eta c <= 1")
        sign = rng.integers(0, 2, size=theta.shape) * 2.0 - 1.0
        return (g + np.sqrt(np.maximum(var, 0.0)) * sign)[:, None, :]

    def dist_to_minimisers(self, theta: np.ndarray) -> np.ndarray:
        return np.abs(theta)


@dataclass
class BoundedNoiseQuadratic:
    """One task, l(theta) = c/2 ||theta||^2, with noise xi = sqrt(r) * (+-1) per coordinate
    scaled so that ||xi||^2 = r exactly (``rlw.md`` Theorem 2's ||xi_k||^2 <= r, attained);
    the r-vs-r^2 counterexample of ``notebooks/43_rlw_noise_and_flat_minima.ipynb``."""

    c: float = 1.0
    r: float = 0.01
    d: int = 1

    @property
    def T(self) -> int:
        return 1

    def stoch_grads(self, theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        sign = rng.integers(0, 2, size=theta.shape) * 2.0 - 1.0
        return (self.c * theta + np.sqrt(self.r / theta.shape[1]) * sign)[:, None, :]

    def dist_to_minimisers(self, theta: np.ndarray) -> np.ndarray:
        return np.linalg.norm(theta, axis=1, keepdims=True)


@dataclass
class SharpFlatLandscape:
    """F(theta) = -A_s exp(-(theta-m_s)^2/(2 w_s^2)) - A_f exp(-(theta-m_f)^2/(2 w_f^2))
    + gamma theta^2/2, split into tasks l_t = F + b_t theta with mini-batch noise s.

    The sharp/flat landscape for ``rlw.md`` §4 (after Theorem 2) and App. B.3, used in
    ``notebooks/43_rlw_noise_and_flat_minima.ipynb``."""

    b: np.ndarray = field(default_factory=lambda: np.array([1.0, -1.0]))
    sharp: tuple[float, float, float] = (-1.0, 0.08, 1.0)  # centre, width, depth
    flat: tuple[float, float, float] = (1.0, 0.5, 0.8)
    gamma: float = 0.05
    noise: float = 0.5

    def __post_init__(self) -> None:
        self.b = np.asarray(self.b, dtype=np.float64)

    @property
    def T(self) -> int:
        return self.b.size

    def F(self, theta: np.ndarray) -> np.ndarray:
        th = np.asarray(theta, dtype=np.float64)
        out = 0.5 * self.gamma * th ** 2
        for m, w, A in (self.sharp, self.flat):
            out = out - A * np.exp(-(th - m) ** 2 / (2 * w * w))
        return out

    def dF(self, theta: np.ndarray) -> np.ndarray:
        th = np.asarray(theta, dtype=np.float64)
        out = self.gamma * th
        for m, w, A in (self.sharp, self.flat):
            out = out + A * (th - m) / (w * w) * np.exp(-(th - m) ** 2 / (2 * w * w))
        return out

    def stoch_grads(self, theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(R, T, 1): F'(theta) + b_t + s * N(0, 1), independent mini-batch noise per task."""
        g = self.dF(theta)[:, None, :] + self.b[None, :, None]
        return g + self.noise * rng.standard_normal(g.shape)

    def dist_to_minimisers(self, theta: np.ndarray) -> np.ndarray:
        """(R, T) distances to the sharp minimum's centre (recorded, not used by a bound)."""
        return np.repeat(np.abs(theta[:, :1] - self.sharp[0]), self.T, axis=1)

    def barrier(self) -> float:
        """The local maximum of F between the two minima (the basin boundary)."""
        lo, hi = sorted([self.sharp[0], self.flat[0]])
        grid = np.linspace(lo, hi, 20001)
        return float(grid[np.argmax(self.F(grid))])

    def minima(self) -> tuple[float, float]:
        """(sharp, flat) local minimisers of F, refined on a fine grid."""
        out = []
        for m, w, _ in (self.sharp, self.flat):
            grid = np.linspace(m - 2 * w, m + 2 * w, 40001)
            out.append(float(grid[np.argmin(self.F(grid))]))
        return out[0], out[1]

    def curvature(self, theta: float, h: float = 1e-4) -> float:
        """F''(theta) by central differences of F'."""
        return float((self.dF(np.array(theta + h)) - self.dF(np.array(theta - h))) / (2 * h))


# ---------------------------------------------------------------------- SGD
@dataclass
class SGDTrace:
    """Mean squared distance to theta* per iteration over R runs, with its standard error
    (the left side of ``rlw.md`` Eq. 4, estimated by Monte Carlo)."""

    msd: np.ndarray  # (K+1,) E||theta_k - theta*||^2 (Monte Carlo over runs)
    stderr: np.ndarray  # (K+1,)
    final: np.ndarray  # (R, d) last iterates
    max_dist: np.ndarray  # (T,) largest ||theta_k - a_t|| seen (for sigma_t^2)
    theta_star: np.ndarray


def run_sgd(problem, sampler: Sampler, theta0: np.ndarray, eta, K: int, R: int,
            rng: np.random.Generator, theta_star: np.ndarray | None = None) -> SGDTrace:
    """Algorithm 1 of rlw.md, vectorised over R independent runs:
    theta_{k+1} = theta_k - eta_k sum_t lambda_t g_t(theta_k), lambda ~ sampler.

    ``eta`` is a float or a function k -> eta_k (k = 1..K, e.g. alpha/k for Theorem 3).
    """
    theta = np.tile(np.asarray(theta0, dtype=np.float64), (R, 1))
    ts = np.zeros(theta.shape[1]) if theta_star is None else np.asarray(theta_star)
    msd, se = np.empty(K + 1), np.empty(K + 1)
    max_dist = problem.dist_to_minimisers(theta).max(axis=0)

    def record(k: int) -> None:
        sq = ((theta - ts) ** 2).sum(axis=1)
        msd[k], se[k] = sq.mean(), sq.std(ddof=1) / np.sqrt(R) if R > 1 else 0.0

    record(0)
    for k in range(1, K + 1):
        lam = sampler(rng, R)
        g = np.einsum("rt,rtd->rd", lam, problem.stoch_grads(theta, rng))
        step = eta(k) if callable(eta) else eta
        theta = theta - step * g
        max_dist = np.maximum(max_dist, problem.dist_to_minimisers(theta).max(axis=0))
        record(k)
    return SGDTrace(msd, se, theta, max_dist, ts)


def flat_fraction(problem: SharpFlatLandscape, final: np.ndarray) -> float:
    """Fraction of runs whose last iterate lies in the flat minimum's basin."""
    bar = problem.barrier()
    side = np.sign(problem.flat[0] - bar)
    return float(np.mean(np.sign(final[:, 0] - bar) == side))


# ------------------------------------------------------------ noise intensity
def noise_intensity(G_mb: np.ndarray, g_full: np.ndarray, lam: np.ndarray,
                    mu: np.ndarray) -> dict[str, float]:
    """Gradient noise of FW and RLW (App. B.3), paired over S mini-batch/weight draws.

    G_mb (S, T, P) per-task mini-batch gradients; g_full (P,) = mu^T grad l(D);
    lam (S, T) sampled weights.  Returns the mean squared norms
    r_FW = E||mu^T G~ - g||^2, r_RLW = E||lam^T G~ - g||^2 and
    r_extra = E||(lam - mu)^T G~||^2; since E[lam] = mu and lam is independent of the
    batch, r_RLW = r_FW + r_extra in expectation (``cross`` is the sample cross term).
    """
    fw = np.einsum("t,stp->sp", mu, G_mb) - g_full
    extra = np.einsum("st,stp->sp", lam - mu, G_mb)
    rlw = fw + extra
    return {"r_FW": float((fw ** 2).sum(1).mean()), "r_RLW": float((rlw ** 2).sum(1).mean()),
            "r_extra": float((extra ** 2).sum(1).mean()),
            "cross": float(2 * (fw * extra).sum(1).mean())}
