"""Aligned-MTL: gradient alignment by the Procrustes balance (Senushkin et al., CVPR 2023)."""

from __future__ import annotations

import numpy as np
from torch import Tensor

from mtlkit.weighting._gram import on_host, symmetric_finite
from mtlkit.weighting.base import PARAM, REP, GramWeighting, register


def balance_matrix(m: np.ndarray, rtol: float = 1e-8) -> np.ndarray:
    """B = sigma_min U S^{-1} U^T for G = U S V^T (M = G G^T = U S^2 U^T).

    The aligned gradients G_hat = B G = sigma_min U V^T have all non-zero
    singular values equal to sigma_min: condition number 1 on the span of G.
    Directions with singular value below rtol * sigma_max are dropped.
    """
    vals, vecs = np.linalg.eigh(symmetric_finite(m))
    sv = np.sqrt(np.clip(vals, 0.0, None))
    keep = sv > rtol * max(sv.max(initial=0.0), 1e-300)
    if not keep.any():
        return np.zeros_like(m)
    u, s = vecs[:, keep], sv[keep]
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
        Relative threshold below which singular directions are treated as zero.
    """

    name = "Aligned-MTL"
    modes = (PARAM, REP)

    def __init__(self, rtol: float = 1e-8) -> None:
        super().__init__()
        if not 0 < rtol < 1:
            raise ValueError(f"Aligned-MTL rtol must be in (0, 1), got {rtol!r}")
        self.rtol = float(rtol)

    def _gram_weights(self, losses: Tensor, gram: Tensor) -> np.ndarray:
        t = losses.numel()
        return balance_matrix(on_host(gram), self.rtol).T @ np.full(t, 1.0 / t)
