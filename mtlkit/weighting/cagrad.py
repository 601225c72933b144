"""CAGrad: conflict-averse gradient descent (Liu et al., NeurIPS 2021)."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize, nnls
from torch import Tensor

from mtlkit.weighting._gram import on_host, psd_factor
from mtlkit.weighting._solvers import simplex_faces, solve_min_norm
from mtlkit.weighting.base import PARAM, REP, GramWeighting, register

#: largest T solved by :func:`cagrad_weights_exact` (2^T faces); SLSQP above
EXACT_MAX_TASKS = 10


def cagrad_weights(m: np.ndarray, c: float) -> np.ndarray:
    """w* = argmin_{w in simplex} w^T M b + sqrt(phi) ||G^T w||, b = 1/T, phi = c^2 ||g0||^2.

    This is the dual of  max_d min_t g_t^T d  s.t. ||d - g0|| <= c ||g0||,
    whose solution is d = g0 + sqrt(phi) g_w / ||g_w|| (Liu et al. 2021, Eq. 4).
    """
    t = m.shape[0]
    b = np.full(t, 1.0 / t)
    sqrt_phi = c * np.sqrt(max(b @ m @ b, 0.0))
    mb = m @ b

    def objective(w: np.ndarray) -> float:
        return float(w @ mb + sqrt_phi * np.sqrt(max(w @ m @ w, 1e-20)))

    res = minimize(objective, b, bounds=[(0.0, 1.0)] * t, method="SLSQP",
                   constraints=({"type": "eq", "fun": lambda w: w.sum() - 1.0},),
                   options={"ftol": 1e-12, "maxiter": 200})
    w = np.clip(res.x, 0.0, None)
    return w / w.sum()


def cagrad_weights_exact(m: np.ndarray, c: float, ridge: float = 1e-12) -> np.ndarray:
    """The same w* as :func:`cagrad_weights`, exactly, by enumerating the faces S of
    the simplex (T <= :data:`EXACT_MAX_TASKS`).

    With a = M b, s = c ||g0|| and rho = ||G^T w|| > 0, stationarity of
    F(w) = a^T w + s rho on the relative interior of S reads
    a_S + (s / rho) M_SS w_S = mu 1.  So w_S = (rho / s)(mu u - v) with
    u = M_SS^{-1} 1, v = M_SS^{-1} a_S; the two conditions rho^2 = w_S^T M_SS w_S
    and 1^T w_S = 1 give mu^2 1^T u - 2 mu 1^T v + a_S^T v - s^2 = 0, whose root
    with rho > 0 is  w_S = (mu u - v) / sqrt(disc),
    disc = (1^T v)^2 - 1^T u (a_S^T v - s^2).  Every candidate is put on the
    simplex and F decides; the min-norm point is added as the candidate for
    rho = 0 (0 in the convex hull).  F is convex, so the best candidate is w*.
    One batched solve over the 2^T - 1 faces, in float64.
    """
    t = m.shape[0]
    m = (m + m.T) / 2
    b = np.full(t, 1.0 / t)
    a = m @ b
    s = c * np.sqrt(max(b @ a, 0.0))
    faces = simplex_faces(t).numpy().astype(np.float64)  # (F, T)
    eye = np.eye(t)
    scale = max(np.abs(np.diagonal(m)).max(), 1e-300)
    mss = m * faces[:, :, None] * faces[:, None, :] + eye * (1 - faces)[:, None, :] \
        + ridge * scale * eye
    with np.errstate(all="ignore"):
        uv = np.linalg.solve(mss, np.stack([faces, faces * a], -1))
        u, v = uv[..., 0] * faces, uv[..., 1] * faces
        one_u, one_v, a_v = u.sum(-1), v.sum(-1), v @ a
        root = np.sqrt(np.clip(one_v**2 - one_u * (a_v - s**2), 1e-300, None))
        x = ((one_v + root) / one_u)[:, None] * u - v
        x = np.clip(np.nan_to_num(x / root[:, None], nan=0.0, posinf=0.0, neginf=0.0), 0, None)
        tot = x.sum(-1, keepdims=True)
        x = np.where(tot > 0, x / np.where(tot > 0, tot, 1.0), faces / faces.sum(-1, keepdims=True))
    x = np.vstack([x, solve_min_norm(torch.as_tensor(m)).numpy()])
    f = x @ a + s * np.sqrt(np.clip(np.einsum("fi,ij,fj->f", x, m, x), 0.0, None))
    return x[np.argmin(f)]


def no_conflict_projection(m: np.ndarray) -> np.ndarray:
    """Coefficients b + y* of the projection of g0 = G^T b onto the cone
    {d : G d >= 0}.  By Moreau's decomposition, g0 minus the projection is the
    projection onto the polar cone {-G^T y : y >= 0}, so
    y* = argmin_{y >= 0} ||G^T (b + y)||^2, a non-negative least-squares problem
    on R with R^T R = M."""
    t = m.shape[0]
    b = np.full(t, 1.0 / t)
    r = psd_factor(m)
    y, _ = nnls(r, -r @ b)
    return b + y


@register
class CAGrad(GramWeighting):
    """Conflict-averse gradient: maximise the worst task's improvement in a ball
    around the average gradient g0 (Liu et al. 2021, Eq. 3):

        d* = argmax_{||d - g0|| <= c ||g0||}  min_t g_t^T d
           = g0 + c ||g0|| g_w / ||g_w||,  g_w = G^T w*  (w* from the dual)

    The dual is solved exactly by :func:`cagrad_weights_exact` for T <= 10 (by
    SLSQP above).  When g_w* = 0 (0 is in the convex hull of the gradients and
    the optimal worst-case improvement is 0) the formula above is undefined;
    then d* is the projection of g0 onto the cone {d : G d >= 0}, the direction
    closest to g0 that conflicts with no task (:func:`no_conflict_projection`).

    Derived in ``notebooks/23_cagrad_nash_mtl_and_beyond.ipynb``.

    Parameters
    ----------
    c:
        Radius of the ball, relative to ||g0|| (paper: 0.4 on NYUv2); c = 0 is EW.
    rescale:
        0: return d*; 1: d* / (1 + c^2) (the paper's code default); 2: d* / (1 + c).
    """

    name = "CAGrad"
    modes = (PARAM, REP)

    def __init__(self, c: float = 0.4, rescale: int = 1) -> None:
        super().__init__()
        if not c >= 0:
            raise ValueError(f"CAGrad c must be >= 0, got {c!r}")
        if rescale not in (0, 1, 2):
            raise ValueError(f"CAGrad rescale must be 0, 1 or 2, got {rescale!r}")
        self.c, self.rescale = float(c), int(rescale)

    def _gram_weights(self, losses: Tensor, gram: Tensor) -> np.ndarray:
        """d = G^T coef with coef = b + lambda w* (before ``rescale``)."""
        t, m = losses.numel(), on_host(gram)
        b = np.full(t, 1.0 / t)
        if self.c == 0 or not np.isfinite(m).all():  # EW (diverged gradients: nothing to solve)
            return self._rescaled(b)
        w = cagrad_weights_exact(m, self.c) if t <= EXACT_MAX_TASKS else \
            cagrad_weights(m, self.c)
        gw_norm = np.sqrt(max(w @ m @ w, 0.0))
        g0_norm = np.sqrt(max(b @ m @ b, 0.0))
        if g0_norm == 0:
            coef = b
        elif gw_norm > 1e-8 * np.sqrt(max(np.diagonal(m).max(), 0.0)):
            coef = b + self.c * g0_norm / gw_norm * w  # d = G^T (b + lam w)
        else:
            coef = no_conflict_projection(m)
        return self._rescaled(coef)

    def _rescaled(self, coef: np.ndarray) -> np.ndarray:
        """``coef`` with ``rescale`` applied."""
        return coef / {0: 1.0, 1: 1.0 + self.c**2, 2: 1.0 + self.c}[self.rescale]
