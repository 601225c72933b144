"""Hypergradient descent on the learning rate (``metaweighting.txt`` §3.1, Eqs. 1-3;
Baydin et al. 2018, Almeida et al. 1998).

With theta_k = theta_{k-1} - eta grad f(theta_{k-1})  (Eq. 1), holding theta_{k-1} fixed,

    d f(theta_k) / d eta = grad f(theta_k) . (-grad f(theta_{k-1}))       (Eq. 2)

and gradient descent on eta gives

    eta_{k+1} = eta_k + beta grad f(theta_k) . grad f(theta_{k-1}).       (Eq. 3)

Checked against finite differences in ``notebooks/41_query_loss_bound_and_hypergradients.ipynb``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Grad = Callable[[np.ndarray], np.ndarray]


def lr_hypergradient(grad: Grad, theta_prev: np.ndarray, eta: float) -> float:
    """Eq. 2: d f(theta_prev - eta grad f(theta_prev)) / d eta
    = -grad f(theta_k) . grad f(theta_prev)."""
    g_prev = grad(theta_prev)
    return float(-grad(theta_prev - eta * g_prev) @ g_prev)


def lr_hypergradient_fd(f: Callable[[np.ndarray], float], grad: Grad, theta_prev: np.ndarray,
                        eta: float, h: float = 1e-6) -> float:
    """The same derivative by central finite differences in eta (the independent check)."""
    g_prev = grad(theta_prev)
    return (f(theta_prev - (eta + h) * g_prev) - f(theta_prev - (eta - h) * g_prev)) / (2 * h)


@dataclass
class HDTrace:
    """Per-iteration objective values and learning rates of hypergradient descent
    (``metaweighting.txt`` §3.1, Eqs. 1 and 3)."""

    f: np.ndarray
    eta: np.ndarray
    theta: np.ndarray


def hypergradient_descent(f: Callable[[np.ndarray], float], grad: Grad, theta0: np.ndarray,
                          eta0: float, beta: float, K: int) -> HDTrace:
    """Run Eqs. 1 and 3 for K steps (beta = 0 gives plain gradient descent with eta0)."""
    if beta < 0:
        raise ValueError(f"the hypergradient step size beta must be >= 0, got {beta}")
    theta = np.asarray(theta0, dtype=np.float64).copy()
    eta, g_prev = float(eta0), None
    fs, etas = [f(theta)], [eta]
    for _ in range(K):
        g = grad(theta)
        if g_prev is not None:
            eta = eta + beta * float(g @ g_prev)  # Eq. 3
        theta = theta - eta * g  # Eq. 1
        g_prev = g
        fs.append(f(theta))
        etas.append(eta)
    return HDTrace(np.array(fs), np.array(etas), theta)
