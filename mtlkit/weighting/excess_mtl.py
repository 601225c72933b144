"""ExcessMTL: robust multi-task learning with excess risks (He, Zhou, Zhao & Zhang, ICML 2024)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mtlkit.weighting.base import PARAM, Combined, Weighting, register, weighted_direction

#: AdaGrad's epsilon in sqrt(S + eps) (the authors' code)
ADAGRAD_EPS = 1e-7


def excess_risks(grads: Tensor, sq_sum: Tensor) -> Tensor:
    """E_t ~= g_t^T H_t^{-1} g_t with the diagonal AdaGrad estimate H_t = diag(sqrt(S_t + eps)),
    S_t the running sum of g_t^2 (He et al. 2024, Eqs. 6-7): sum_p g_tp^2 / sqrt(S_tp + eps)."""
    return (grads * grads / torch.sqrt(sq_sum + ADAGRAD_EPS)).sum(1)


@register
class ExcessMTL(Weighting):
    """ExcessMTL (He et al., ICML 2024, Algorithm 1): weights on the simplex, moved by an
    exponentiated-gradient step towards the tasks with the largest *excess* risk (the
    distance to their own optimum, estimated from the gradients: :func:`excess_risks`),
    so a task with a large but irreducible loss (label noise) does not take over:

        alpha_t <- alpha_t exp(eta E_t / E_t^0) / sum_j (...)          (Eq. 9; alpha^0 = 1/T)

    with E^0 the excess risks of the first call ("scale processing", §3.2: the first call
    only records E^0 and keeps the weights uniform, as the authors' code).  The update is
    d = G^T alpha (the weights are those of the losses; they sum to 1 where the authors'
    code lets them sum to T).  Computed in log space, so a huge ratio saturates instead of
    overflowing.  Keeps S, a T x P running sum of squared gradients (memory: one more
    gradient buffer); shared-parameter gradients only (S must follow the same parameters).

    Derived in ``notebooks/12_more_loss_weightings.ipynb``.

    Parameters
    ----------
    robust_step_size:
        eta (default 1e-2, the authors' code).
    """

    name = "ExcessMTL"
    modes = (PARAM,)

    def __init__(self, robust_step_size: float = 1e-2) -> None:
        super().__init__()
        if not (isinstance(robust_step_size, (int, float)) and math.isfinite(robust_step_size)
                and robust_step_size > 0):
            raise ValueError(f"ExcessMTL robust_step_size must be a positive number, got "
                             f"{robust_step_size!r}")
        self.robust_step_size = float(robust_step_size)
        self.sq_sum: Tensor | None = None
        self.initial: Tensor | None = None
        self.log_weights: Tensor | None = None

    def reset(self) -> None:
        super().reset()
        self.sq_sum = self.initial = self.log_weights = None

    def _combine(self, losses: Tensor, grads: Tensor | None) -> Combined:
        g = grads.float() if grads.dtype in (torch.float16, torch.bfloat16) else grads
        if self.sq_sum is None or self.sq_sum.shape != g.shape:
            self.sq_sum = torch.zeros_like(g)
            self.initial = None
            self.log_weights = torch.full((g.shape[0],), -math.log(g.shape[0]), dtype=g.dtype,
                                          device=g.device)
        self.sq_sum = self.sq_sum.to(g) + g * g
        e = excess_risks(g, self.sq_sum)
        if self.initial is None:
            self.initial = e
        else:
            tiny = torch.finfo(e.dtype).tiny
            ratio = e / self.initial.to(e).clamp_min(tiny)
            self.log_weights = torch.log_softmax(self.log_weights.to(e)
                                                 + self.robust_step_size * ratio, dim=0)
        w = self.log_weights.exp()
        return weighted_direction(w, grads), w
