"""CAGrad: conflict-averse gradient descent (Liu et al., NeurIPS 2021)."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from torch import Tensor

from mtlkit.weighting._gram import gram, to_weights
from mtlkit.weighting.base import PARAM, REP, Weighting, register


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


@register
class CAGrad(Weighting):
    """Conflict-averse gradient: maximise the worst task's improvement in a ball
    around the average gradient g0 (Liu et al. 2021, Eq. 3):

        d* = argmax_{||d - g0|| <= c ||g0||}  min_t g_t^T d
           = g0 + c ||g0|| g_w / ||g_w||,  g_w = G^T w*  (w* from the dual)

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
    is_reweighting = True

    def __init__(self, c: float = 0.4, rescale: int = 1) -> None:
        super().__init__()
        if not c >= 0:
            raise ValueError(f"CAGrad c must be >= 0, got {c!r}")
        if rescale not in (0, 1, 2):
            raise ValueError(f"CAGrad rescale must be 0, 1 or 2, got {rescale!r}")
        self.c, self.rescale = float(c), int(rescale)

    def combine(self, losses: Tensor, grads: Tensor | None = None):
        t = self._check(losses, grads)
        m = gram(grads)
        b = np.full(t, 1.0 / t)
        w = cagrad_weights(m, self.c)
        gw_norm = np.sqrt(max(w @ m @ w, 0.0))
        g0_norm = np.sqrt(max(b @ m @ b, 0.0))
        lam = self.c * g0_norm / gw_norm if gw_norm > 1e-12 else 0.0
        coef = b + lam * w  # d = G^T (b + lam w)
        coef /= {0: 1.0, 1: 1.0 + self.c**2, 2: 1.0 + self.c}[self.rescale]
        weights = to_weights(coef, grads)
        return weights @ grads, weights
