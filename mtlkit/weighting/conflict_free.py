"""ConFIG: conflict-free inverse gradients (Liu, Chu, Thuerey, ICLR 2025; arXiv 2408.11104)."""

from __future__ import annotations

import numpy as np
from torch import Tensor

from mtlkit.weighting._gram import EPS64, on_host, rank_mask, symmetric_finite
from mtlkit.weighting.base import PARAM, REP, GramWeighting, register

#: the rank tolerance of the cosine matrix, in multiples of T * roundoff
COSINE_SAFETY = 10.0


def config_weights(m: np.ndarray, roundoff: float = EPS64) -> np.ndarray:
    """w with G^T w = ConFIG's update, from M = G G^T only (Liu et al. 2024, Eq. 2):

        v = [u_1, ..., u_T]^{T+} 1   (u_t = g_t / ||g_t||; the min-norm v with u_t . v = 1),
        d = (sum_t g_t . v_hat) v_hat,   v_hat = v / ||v||.

    With U = N^{-1} G (N = diag ||g_t||), U^+ = U^T (U U^T)^+, so v = G^T c with
    c = N^{-1} C^+ 1 and C = N^{-1} M N^{-1} the cosine matrix; ||v||^2 = c^T M c and
    sum_t g_t . v = 1^T M c, hence w = (1^T M c / c^T M c) c.  The pseudo-inverse drops
    the eigenvalues of C below 10 T ``roundoff`` times the largest (the rank of the unit
    gradients at G's precision; each cosine carries a few roundoffs, hence the 10); zero
    gradients get a zero unit vector.  Where 1 has no component in the range of C (at that
    precision; e.g. g_2 = -c g_1), v = 0 and so is the update.
    """
    t = m.shape[0]
    m = symmetric_finite(m)
    n = np.sqrt(np.clip(np.diagonal(m), 0.0, None))
    live = n > 0
    inv_n = np.where(live, 1.0 / np.where(live, n, 1.0), 0.0)
    cos = m * inv_n[:, None] * inv_n[None, :]
    vals, vecs = np.linalg.eigh(cos)
    keep = rank_mask(vals, None, COSINE_SAFETY * roundoff)
    if not keep.any():
        return np.zeros(t)
    u, s = vecs[:, keep], vals[keep]
    proj = u.T @ live.astype(float)  # 1 in the eigenbasis of the range of C
    if proj @ proj <= COSINE_SAFETY * t * roundoff * live.sum():
        return np.zeros(t)  # no v has u_t . v = 1 for all t (e.g. g_2 = -c g_1): v = 0
    c = inv_n * ((u / s) @ proj)
    vv = float(c @ m @ c)
    if not vv > 0:
        return np.zeros(t)
    return float(m.sum(0) @ c) / vv * c


@register
class ConFIG(GramWeighting):
    """ConFIG (Liu et al. 2024, Eq. 2): the update whose projection on every unit task
    gradient is the same positive number (when the u_t are linearly independent), so no
    task conflicts with it, scaled to the length sum_t g_t . v_hat of the summed gradients
    along it (:func:`config_weights`).

    The direction is the least-squares v with u_t . v = 1, like IMTL-G's equal projections
    but on unit gradients and without the simplex constraint on the weights.  The update is
    scaled as the authors' code (and TorchJD's ``ConFIG``) do: the length of the *sum*
    of the gradients along v_hat (not the mean; it is T times the mean's).

    Derived in ``notebooks/24_more_gradient_weightings.ipynb``.
    """

    name = "ConFIG"
    modes = (PARAM, REP)

    def _gram_weights(self, losses: Tensor, gram: Tensor) -> np.ndarray:
        return config_weights(on_host(gram), self._roundoff)
