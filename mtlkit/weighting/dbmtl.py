"""DB-MTL: dual-balancing multi-task learning (Lin et al., 2023)."""

from __future__ import annotations

import torch
from torch import Tensor

from mtlkit.weighting._precision import row_norms
from mtlkit.weighting.base import PARAM, REP, Combined, Weighting, at_work, register, work_dtype


@register
class DBMTL(Weighting):
    """Balance loss scales with log losses and gradient magnitudes with an EMA.

    1. Loss scale: use grad log L_t = g_t / L_t instead of g_t.
    2. Running average, with a decaying factor beta_k = beta / k^beta_sigma:
           h_t <- h_t + beta_k (h_t^{k-1} - grad log L_t)  (first step: h_t = grad log L_t)
    3. Magnitude balance: d = sum_t (max_j ||h_j|| / ||h_t||) h_t.

    The returned weights are the coefficients that the *current* gradients get,
    alpha_t (1 - beta_k) / L_t; d also carries the EMA of earlier steps, so it
    is not G^T w in general (``is_reweighting = False``).

    Derived in ``notebooks/23_cagrad_nash_mtl_and_beyond.ipynb``.

    Parameters
    ----------
    beta, beta_sigma:
        EMA factor and its decay exponent (paper defaults 0.9 and 0.5).
    eps:
        Guards against log 0 and division by a zero norm.
    """

    name = "DB-MTL"
    modes = (PARAM, REP)
    is_reweighting = False

    def __init__(self, beta: float = 0.9, beta_sigma: float = 0.5, eps: float = 1e-8) -> None:
        super().__init__()
        if not 0 <= beta < 1:
            raise ValueError(f"DB-MTL beta must be in [0, 1), got {beta!r}")
        if beta_sigma < 0:
            raise ValueError(f"DB-MTL beta_sigma must be >= 0, got {beta_sigma!r}")
        self.beta, self.beta_sigma, self.eps = float(beta), float(beta_sigma), float(eps)
        self.buffer: Tensor | None = None
        self.steps = 0

    def _combine(self, losses: Tensor, grads: Tensor | None) -> Combined:
        self.steps += 1
        # float32 for half gradients: 1 / L_t and the EMA overflow or stall in 16 bits
        scale = 1.0 / (at_work(losses).to(work_dtype(grads)) + self.eps)
        log_grads = grads * scale[:, None]
        if self.buffer is None or self.buffer.shape != grads.shape:
            self.buffer = log_grads.clone()
            keep = torch.ones_like(scale)
        else:
            b = self.beta / self.steps**self.beta_sigma
            self.buffer.mul_(b).add_(log_grads, alpha=1.0 - b)
            keep = torch.full_like(scale, 1.0 - b)
        norms = row_norms(self.buffer)  # h of huge gradients over tiny losses: no overflow
        alpha = norms.max() / (norms + self.eps)
        direction = (alpha @ self.buffer).to(grads.dtype)
        return direction, alpha * keep * scale

    def reset(self) -> None:
        super().reset()
        self.buffer, self.steps = None, 0
