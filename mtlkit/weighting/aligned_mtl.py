"""Aligned-MTL: gradient alignment by the Procrustes balance (Senushkin et al., CVPR 2023)."""

from __future__ import annotations

import numpy as np
from torch import Tensor

from mtlkit.weighting._gram import EPS64, on_host, rank_mask, symmetric_finite
from mtlkit.weighting.base import PARAM, REP, GramWeighting, register


def balance_matrix(m: np.ndarray, rtol: float | None = None,
                   roundoff: float = EPS64) -> np.ndarray:
    """B = sigma_min U S^{-1} U^T for G = U S V^T (M = G G^T = U S^2 U^T) (Senushkin et al.
    2023, Eq. 9-10, on the span of G).

    The aligned gradients G_hat = B G = sigma_min U V^T have all non-zero
    singular values equal to sigma_min: condition number 1 on the span of G.
    Directions outside the numerical rank (:func:`rank_mask`) are dropped.
    """
    vals, vecs = np.linalg.eigh(symmetric_finite(m))
    keep = rank_mask(vals, rtol, roundoff)
    if not keep.any():
        return np.zeros_like(m)
    u, s = vecs[:, keep], np.sqrt(vals[keep])
    return s.min() * (u / s) @ u.T


@register
class AlignedMTL(GramWeighting):
    """d = G_hat^T w0 with G_hat = B G, B from :func:`balance_matrix`, and
    pre-set task weights w0 (uniform, summing to 1): the returned weights are
    B^T w0, so d = G^T (B^T w0).

    Derived in ``notebooks/23_cagrad_nash_mtl_and_beyond.ipynb``.

    Parameters
    ----------
    rtol:
        None (default): the rank tolerance tied to the gradients' precision and T
        (:func:`rank_mask`: eigenvalues of G G^T below T eps lambda_max are zero); a number
        in (0, 1): singular values below rtol * sigma_max are zero.
    """

    name = "Aligned-MTL"
    modes = (PARAM, REP)

    def __init__(self, rtol: float | None = None) -> None:
        super().__init__()
        if rtol is not None and not 0 < rtol < 1:
            raise ValueError(f"Aligned-MTL rtol must be None or in (0, 1), got {rtol!r}")
        self.rtol = None if rtol is None else float(rtol)

    def _gram_weights(self, losses: Tensor, gram: Tensor) -> np.ndarray:
        t = losses.numel()
        b = balance_matrix(on_host(gram), self.rtol, self._roundoff)
        return b.T @ np.full(t, 1.0 / t)
