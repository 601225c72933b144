"""BanditMTL (Mao, Wang, Liu, Lin & Hu, "BanditMTL: Bandit-based Multi-task
Learning for Text Classification", ACL 2021; ``metaweighting.txt`` §6.2).

Task-variance regularisation as a min-max game between the model (descent on
theta) and an adversarial bandit over tasks (mirror ascent on p in the simplex):

    min_theta max_{p in simplex}  F(theta, p) = sum_t p_t L_t(theta) - (rho T / 2) ||p - 1/T||^2

For fixed losses the inner max has the closed form (when it is interior)
p*_t = 1/T + (L_t - mean L) / (rho T), and its value is

    max_p F = mean_t L_t + Var_t(L) / (2 rho)          (Var = population variance of the T losses)

so the game minimises the mean loss plus a task-variance penalty.  Each step,
the bandit takes one entropic mirror-ascent (exponentiated-gradient, EXP3-like)
step p <- p * exp(lr grad_p F) / Z with grad_p F = L - rho T (p - 1/T), and the
model descends on sum_t p_t L_t.  The quadratic (chi^2) penalty is our
reading of the paper's variance regulariser; see the notebook for the
derivation.  Derived in ``notebooks/31_adversarial_and_minmax_baselines.ipynb``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mtlkit.weighting.base import LOSSES, Combined, Weighting, at_work, register, weighted_direction


def mirror_ascent_step(p: Tensor, losses: Tensor, rho: float, lr: float) -> Tensor:
    """One entropic mirror-ascent step on F(p) = p^T L - (rho T/2) ||p - 1/T||^2."""
    t = p.numel()
    grad = losses - rho * t * (p - 1.0 / t)
    return torch.softmax(torch.log(p) + lr * grad, dim=0)


def variance_regularised_p(losses: Tensor, rho: float) -> Tensor:
    """The interior maximiser p* = 1/T + (L - mean L)/(rho T) (valid when it is >= 0)."""
    t = losses.numel()
    return 1.0 / t + (losses - losses.mean()) / (rho * t)


@register
class BanditMTL(Weighting):
    """BanditMTL (Mao et al. 2021): w = p, the bandit's distribution over tasks,
    updated by one mirror-ascent step per iteration on the task-variance
    regularised objective (module docstring).  Derived in
    ``notebooks/31_adversarial_and_minmax_baselines.ipynb``.

    Parameters
    ----------
    rho:
        Strength of the pull towards uniform p; the min-max equals mean loss +
        task variance / (2 rho).  rho -> infinity gives EW.
    lr:
        Mirror-ascent step size of the bandit.
    """

    name = "BanditMTL"
    modes = (LOSSES,)

    def __init__(self, rho: float = 1.0, lr: float = 0.1) -> None:
        super().__init__()
        if not rho > 0:
            raise ValueError(f"BanditMTL rho must be > 0, got {rho!r}")
        if not lr > 0:
            raise ValueError(f"BanditMTL lr must be > 0, got {lr!r}")
        self.rho, self.lr = float(rho), float(lr)
        self.p: Tensor | None = None  #: the bandit's distribution over tasks

    def reset(self) -> None:
        super().reset()
        self.p = None

    def _combine(self, losses: Tensor, grads: Tensor | None) -> Combined:
        t = losses.numel()
        L = at_work(losses)
        if self.p is None:
            self.p = torch.full((t,), 1.0 / t, dtype=L.dtype, device=L.device)
        self.p = mirror_ascent_step(self.p.to(L), L, self.rho, self.lr)
        return weighted_direction(self.p, grads), self.p.clone()
