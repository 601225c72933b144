"""Small T x T linear algebra shared by the solver-based strategies.

The T x P gradient matrix stays on its device; only the T x T Gram matrix
M = G G^T (T^2 numbers) is moved to the host, in float64, for the small
solves (one transfer per step).
"""

from __future__ import annotations

import numpy as np
from torch import Tensor


def gram(grads: Tensor) -> np.ndarray:
    """M = G G^T as a float64 NumPy array."""
    return (grads @ grads.T).detach().double().cpu().numpy()


def psd_factor(m: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """R with R^T R = M for a symmetric PSD M (eigen square root, clipped at 0)."""
    vals, vecs = np.linalg.eigh((m + m.T) / 2)
    vals = np.clip(vals, 0.0, None)
    return (vecs * np.sqrt(vals + eps * max(vals.max(initial=0.0), 1.0))).T


def to_weights(x: np.ndarray, like: Tensor) -> Tensor:
    """A NumPy vector as a tensor on ``like``'s device and dtype."""
    import torch

    return torch.as_tensor(np.asarray(x), dtype=like.dtype, device=like.device)
