"""Aligned-MTL: gradient alignment by the Procrustes balance (Senushkin et al., CVPR 2023)."""

from __future__ import annotations

import numpy as np
from torch import Tensor

from mtlkit.weighting._gram import on_host, symmetric_finite
from mtlkit.weighting.base import PARAM, REP, GramWeighting, register

#: float64's unit roundoff, the default precision of :func:`balance_matrix`'s input
EPS64 = float(np.finfo(np.float64).eps)


def rank_mask(vals: np.ndarray, rtol: float | None = None,
              roundoff: float = EPS64) -> np.ndarray:
    """Which eigenvalues of M = G G^T (from ``eigh``) belong to the span of G.

    Default (``rtol=None``): lambda > T * roundoff * lambda_max, the rank tolerance of a
    T x T symmetric matrix whose entries carry relative errors of ``roundoff`` (the unit
    roundoff of G's dtype: M's entries are no more precise than G's; the eigen-solver's
    own error is T * eps64 * lambda_max, below it).  An eigenvalue under it is
    indistinguishable from 0: kept, it would become sigma_min and shrink the update.
    ``rtol`` given: the old relative threshold on singular values, sigma > rtol sigma_max.
    """
    top = max(float(vals.max(initial=0.0)), 1e-300)
    if rtol is None:
        return vals > len(vals) * roundoff * top
    return np.sqrt(np.clip(vals, 0.0, None)) > rtol * np.sqrt(top)


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
