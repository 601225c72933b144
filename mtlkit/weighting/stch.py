"""STCH: smooth Tchebycheff scalarisation (Lin, Zhang, Liu, Zhang & Kwong, ICML 2024)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from mtlkit.weighting.base import (
    LOSSES,
    Combined,
    Weighting,
    at_work,
    register,
    weighted_direction,
)

#: added inside the log of the log-loss mode (the authors' code: log(L / z + 1e-20))
LOG_EPS = 1e-20


def stch_value(scores: Tensor, mu: float) -> Tensor:
    """g_mu(s) = mu log sum_t exp(s_t / mu) (Lin et al. 2024, Eq. 9, with s_t = pi_t (L_t - z_t)):
    a smooth upper bound of max_t s_t, within mu log T of it."""
    return mu * torch.logsumexp(scores / mu, dim=0)


@register
class STCH(Weighting):
    """Smooth Tchebycheff scalarisation (Lin et al., ICML 2024, Eq. 9):

        min_theta  g_mu(theta) = mu log sum_t exp(pi_t (L_t(theta) - z_t) / mu),

    whose gradient is sum_t w_t grad L_t with w = pi * softmax(pi (L - z) / mu)
    (:func:`stch_value`'s derivative): the weights sum to 1 for pi = 1 and tend to
    Tchebycheff's one-hot weight on the worst task as mu -> 0 (the paper's Thm. 3.3: every
    Pareto solution is reachable), to the mean as mu -> inf.

    Log-loss mode, as in the authors' multi-task code (``warmup > 0``): for the first
    ``warmup`` calls the update is that of the mean of log L_t (weights 1 / (T L_t)) and
    the losses are averaged into a nadir point z; afterwards the scores are
    s_t = log(L_t / z_t + 1e-20), so tasks on different scales are compared by relative
    progress, with weights softmax(s / mu)_t / (L_t + 1e-20 z_t).  The authors warm up for
    4 epochs: pass ``warmup`` = 4 x batches per epoch (a strategy does not see epochs).
    Where the authors' code multiplies the scalarisation by T (to match a sum of T losses)
    the weights here are not (they match mtlkit's EW, the mean).

    Derived in ``notebooks/12_more_loss_weightings.ipynb``.

    Parameters
    ----------
    mu:
        Smoothing parameter (default 1.0, the authors' MTL code).
    preference:
        pi (T positive numbers); None = all ones.
    ideal:
        z of the raw-loss mode: a number or T numbers (0 for non-negative losses).
    warmup:
        0 (default): raw-loss STCH; k > 0: log-loss mode after k warm-up calls (above).
    """

    name = "STCH"
    modes = (LOSSES,)

    def __init__(self, mu: float = 1.0, preference: Sequence[float] | None = None,
                 ideal: float | Sequence[float] = 0.0, warmup: int = 0) -> None:
        super().__init__()
        if not (isinstance(mu, (int, float)) and math.isfinite(mu) and mu > 0):
            raise ValueError(f"STCH mu must be a positive number, got {mu!r}")
        if preference is not None and (len(preference) == 0
                                       or not all(p > 0 for p in preference)):
            raise ValueError(f"STCH preference must be positive numbers (one per task) or "
                             f"None, got {preference!r}")
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
            raise ValueError(f"STCH warmup must be an int >= 0 (calls), got {warmup!r}")
        self.mu, self.warmup = float(mu), warmup
        self.preference = None if preference is None else [float(p) for p in preference]
        self.ideal = ideal if isinstance(ideal, (int, float)) else [float(z) for z in ideal]
        self.loss_sum: Tensor | None = None  #: sum of the warm-up losses
        self.steps = 0

    def reset(self) -> None:
        super().reset()
        self.loss_sum, self.steps = None, 0

    def _pi(self, like: Tensor) -> Tensor:
        t = like.numel()
        if self.preference is None:
            return torch.ones_like(like)
        if len(self.preference) != t:
            raise ValueError(f"STCH has {len(self.preference)} preferences for {t} tasks")
        return torch.tensor(self.preference, dtype=like.dtype, device=like.device)

    def _combine(self, losses: Tensor, grads: Tensor | None) -> Combined:
        L = at_work(losses)
        self.steps += 1
        if self.warmup == 0:
            z = torch.as_tensor(self.ideal, dtype=L.dtype, device=L.device)
            pi = self._pi(L)
            w = pi * torch.softmax(pi * (L - z) / self.mu, dim=0)
        elif self.steps <= self.warmup:
            self.loss_sum = L.clone() if self.loss_sum is None else self.loss_sum.to(L) + L
            w = 1.0 / (L.numel() * (L.clamp_min(0) + LOG_EPS))
        else:
            nadir = (self.loss_sum.to(L) / self.warmup).clamp_min(LOG_EPS)
            scores = torch.log(L.clamp_min(0) / nadir + LOG_EPS)
            w = torch.softmax(scores / self.mu, dim=0) / (L.clamp_min(0) + LOG_EPS * nadir)
        return weighted_direction(w, grads), w
