"""The classic two-task toy landscape of the CAGrad and Nash-MTL papers.

A 2-D parameter x = (x1, x2) and two losses (Liu et al. 2021, CAGrad, §4.1 and
their released toy; Navon et al. 2022, Nash-MTL, §6.1, which scales L1 by 0.1).
With h(u) = log(max(|u|, 5e-6)) + 6, the "upper" (x2 > 0) parts are

    a1(x) = h( 0.5 (-x1 - 7) - tanh(-x2) )
    a2(x) = h( 0.5 (-x1 + 3) + tanh(-x2) + 2 )

the "lower" (x2 < 0) parts are wide quadratic bowls

    b1(x) = ((-x1 + 7)^2 + 0.1 (-x2 - 8)^2) / 10 - 20
    b2(x) = ((-x1 - 7)^2 + 0.1 (-x2 - 8)^2) / 10 - 20

and they are blended by c1 = max(tanh(x2 / 2), 0), c2 = max(tanh(-x2 / 2), 0):

    L1(x) = scale * (c1 a1 + c2 b1),      L2(x) = c1 a2 + c2 b2.

Each log term has a sharp valley (the log of a small |u|) and the Pareto set is
a curve between the two valleys' minima; plain gradient descent on L1 + L2 gets
stuck or drifts to one task's optimum from some of the standard starts.

Used in notebooks 20-23 (trajectories per method).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

LOWER = 5e-6
#: starting points of the CAGrad paper's toy figure
STARTS_CAGRAD: tuple[tuple[float, float], ...] = ((-8.5, 7.5), (-8.5, -5.0), (9.0, 9.0))
#: starting points of the Nash-MTL paper's toy figure.  Note: at x2 = 0 exactly, the
#: clamps' kinks make autograd's gradient zero, so (0, 0) is stationary for every method.
STARTS_NASH: tuple[tuple[float, float], ...] = (
    (-8.5, 7.5), (0.0, 0.0), (9.0, 9.0), (-7.5, -0.5), (9.0, -1.0))


def toy_losses(x: Tensor, scale: float = 1.0) -> Tensor:
    """[L1(x), L2(x)] for x of shape (..., 2); returns shape (..., 2).

    ``scale`` multiplies L1 (1.0: CAGrad; 0.1: Nash-MTL's imbalanced version).
    """
    x1, x2 = x[..., 0], x[..., 1]
    th = torch.tanh(-x2)
    a1 = torch.log(torch.clamp((0.5 * (-x1 - 7) - th).abs(), LOWER)) + 6
    a2 = torch.log(torch.clamp((0.5 * (-x1 + 3) + th + 2).abs(), LOWER)) + 6
    b1 = ((-x1 + 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    b2 = ((-x1 - 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    c1 = torch.clamp(torch.tanh(x2 * 0.5), min=0)
    c2 = torch.clamp(torch.tanh(-x2 * 0.5), min=0)
    return torch.stack([scale * (c1 * a1 + c2 * b1), c1 * a2 + c2 * b2], dim=-1)


def toy_grads(x: Tensor, scale: float = 1.0) -> tuple[Tensor, Tensor]:
    """Losses (2,) and the 2 x 2 matrix G (row t = dL_t/dx) by autograd at one point."""
    x = x.detach().clone().requires_grad_(True)
    losses = toy_losses(x, scale)
    g = torch.stack([torch.autograd.grad(losses[t], x, retain_graph=t == 0)[0] for t in range(2)])
    return losses.detach(), g


def run_trajectory(strategy, start: Sequence[float], steps: int = 1000, lr: float = 1e-3,
                   scale: float = 1.0, optimizer: str = "adam",
                   dtype: torch.dtype = torch.float64) -> np.ndarray:
    """Optimise the toy with a weighting strategy; the visited points, (steps + 1, 2).

    At each step: (L, G) from autograd, ``d, w = strategy.combine(L, G)``, then
    an ``optimizer`` step ("adam", as in both papers, or "sgd": x <- x - lr d)
    with x.grad = d.  ``strategy`` is a :class:`~mtlkit.weighting.Weighting` or a
    registry name.
    """
    from mtlkit.weighting import get

    if isinstance(strategy, str):
        strategy = get(strategy)
    strategy.reset()
    x = torch.tensor(list(start), dtype=dtype).requires_grad_(True)
    if optimizer == "adam":
        opt = torch.optim.Adam([x], lr=lr)
    elif optimizer == "sgd":
        opt = torch.optim.SGD([x], lr=lr)
    else:
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    path = np.empty((steps + 1, 2))
    path[0] = x.detach().numpy()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 2-element tensors: intra-op threads only add overhead
    try:
        for k in range(steps):
            losses, g = toy_grads(x, scale)
            d, _ = strategy.combine(losses, g)
            x.grad = d.detach().to(dtype).reshape(2)
            opt.step()
            path[k + 1] = x.detach().numpy()
    finally:
        torch.set_num_threads(threads)
    return path


def landscape(n: int = 200, lim: tuple[float, float, float, float] = (-10, 10, -10, 10),
              scale: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grid X, Y (n x n) and losses F (2, n, n) for contour plots."""
    xs = torch.linspace(lim[0], lim[1], n, dtype=torch.float64)
    ys = torch.linspace(lim[2], lim[3], n, dtype=torch.float64)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    f = toy_losses(torch.stack([xx, yy], -1), scale)
    return xx.numpy(), yy.numpy(), f.permute(2, 0, 1).numpy()


def pareto_points(n: int = 400, lim: tuple[float, float, float, float] = (-10, 10, -10, 10),
                  scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Non-dominated grid points: (x of shape (K, 2), losses of shape (K, 2)).

    A brute-force approximation of the Pareto set: evaluate the losses on an
    n x n grid and keep the points no other grid point dominates (sort by L1,
    keep each point whose L2 is below every L2 seen so far).
    """
    xx, yy, f = landscape(n, lim, scale)
    pts = np.stack([xx.ravel(), yy.ravel()], 1)
    fl = f.reshape(2, -1).T
    order = np.lexsort((fl[:, 1], fl[:, 0]))
    keep, best = [], np.inf
    for i in order:
        if fl[i, 1] < best:
            keep.append(i)
            best = fl[i, 1]
    keep = np.array(keep)
    return pts[keep], fl[keep]


def front_gap(point: Sequence[float], front_f: np.ndarray, scale: float = 1.0) -> float:
    """How far the losses at ``point`` are from the sampled Pareto front ``front_f``
    (:func:`pareto_points`): min_k ||F_k - L(point)||, 0 on the front (up to the grid)."""
    losses = toy_losses(torch.as_tensor(np.asarray(point), dtype=torch.float64), scale)
    return float(np.min(np.linalg.norm(front_f - losses.numpy(), axis=1)))
