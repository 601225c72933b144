"""UPGrad: unconflicting projection of gradients (Quinton & Rey, 2024; TorchJD)."""

from __future__ import annotations

import numpy as np
from scipy.optimize import nnls
from torch import Tensor

from mtlkit.weighting._gram import on_host, psd_factor
from mtlkit.weighting.base import PARAM, REP, GramWeighting, register


def dual_cone_weights(m: np.ndarray, u: np.ndarray) -> np.ndarray:
    """w = argmin_{v >= u} v^T M v.

    For M = G G^T, G^T w is the Euclidean projection of G^T u onto the dual
    cone {y : G y >= 0} (Quinton & Rey 2024, Prop. 1).  With v = u + s, s >= 0
    and M = R^T R this is the non-negative least-squares problem
    min_s ||R s + R u||^2, solved exactly by an active-set method.
    """
    r = psd_factor(m)
    s, _ = nnls(r, -r @ u, maxiter=50 * len(u))
    return u + s


@register
class UPGrad(GramWeighting):
    """d = (1/T) sum_t pi(g_t), pi = projection onto the dual cone of the rows of G.

    Every projected gradient, hence d, satisfies G d >= 0: no task's loss
    increases to first order.  The weights are (1/T) sum_t w^(t), with
    w^(t) = argmin_{v >= e_t} v^T G G^T v, so d = G^T w.

    Derived in ``notebooks/23_cagrad_nash_mtl_and_beyond.ipynb``.

    Parameters
    ----------
    norm_eps:
        Scale-free regulariser: M + norm_eps * trace(M)/T * I (0 = none).
    """

    name = "UPGrad"
    modes = (PARAM, REP)

    def __init__(self, norm_eps: float = 1e-4) -> None:
        super().__init__()
        if norm_eps < 0:
            raise ValueError(f"UPGrad norm_eps must be >= 0, got {norm_eps!r}")
        self.norm_eps = float(norm_eps)

    def _gram_weights(self, losses: Tensor, gram: Tensor) -> np.ndarray:
        t, m = losses.numel(), on_host(gram)
        m = m + self.norm_eps * np.trace(m) / t * np.eye(t)
        return np.mean([dual_cone_weights(m, np.eye(t)[i]) for i in range(t)], axis=0)
