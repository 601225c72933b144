"""Small T x T linear algebra shared by the solver-based strategies.

The T x P gradient matrix stays on its device; only the T x T Gram matrix
M = G G^T (T^2 numbers) is moved to the host, in float64, for the small
solves (one transfer per step).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from mtlkit.weighting._precision import inner_products, work_dtype


def gram64(grads: Tensor) -> Tensor:
    """M = G G^T in float64 on G's device (T x T; the small solves run in float64)."""
    return inner_products(grads, grads).double()


def on_host(m: Tensor) -> np.ndarray:
    """A (T x T) tensor as a float64 NumPy array, for a solve on the host (one transfer)."""
    return m.detach().cpu().numpy()


def symmetric_finite(m: np.ndarray) -> np.ndarray:
    """(M + M^T) / 2 with non-finite entries made finite, so that an eigen-solver
    gives an answer instead of a LinAlgError.  Strategies refuse non-finite gradients
    (:class:`~mtlkit.weighting.base.NonFiniteError`); this only catches a Gram matrix
    that overflowed from huge finite ones."""
    big = np.sqrt(np.finfo(np.float64).max) / max(len(m), 1)
    m = np.nan_to_num(m, nan=0.0, posinf=big, neginf=-big)
    return (m + m.T) / 2


def psd_factor(m: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """R with R^T R = M for a symmetric PSD M (eigen square root, clipped at 0)."""
    vals, vecs = np.linalg.eigh(symmetric_finite(m))
    vals = np.clip(vals, 0.0, None)
    return (vecs * np.sqrt(vals + eps * max(vals.max(initial=0.0), 1.0))).T


def to_weights(x: np.ndarray, like: Tensor) -> Tensor:
    """A NumPy vector as a tensor on ``like``'s device, in its
    :func:`~mtlkit.weighting.base.work_dtype` (float32 for half gradients)."""
    return torch.as_tensor(np.asarray(x), dtype=work_dtype(like), device=like.device)
