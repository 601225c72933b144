"""Geometric Loss Strategy (GLS), Chennupati, Sistu, Yogamani & Rawashdeh, CVPRW 2019."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mtlkit.weighting.base import LOSSES, Combined, Weighting, at_work, register, weighted_direction


def geometric_mean(losses: Tensor, eps: float = 1e-8) -> Tensor:
    r""":math:`L_{GLS} = (\prod_t L_t)^{1/T} = \exp(\frac1T\sum_t \log L_t)`, losses
    clamped at eps."""
    return torch.exp(torch.log(losses.clamp_min(eps)).mean())


@register
class GLS(Weighting):
    r"""Geometric loss strategy (Chennupati et al., "MultiNet++", CVPRW 2019).

    The objective is the geometric mean :math:`L_{GLS} = (\prod_t L_t)^{1/T}`.
    Its gradient is :math:`\sum_t w_t \nabla L_t` with

    .. math:: w_t = \frac{\partial L_{GLS}}{\partial L_t} = \frac{L_{GLS}}{T\,L_t},

    so the weights returned (and the direction :math:`G^\top w`) give exactly
    the gradient of the geometric mean: a task's weight is inversely
    proportional to its loss, a scale-invariant balancing (multiplying
    :math:`L_t` by c multiplies :math:`L_{GLS}` by :math:`c^{1/T}` and leaves
    every minimiser unchanged).  Losses are clamped to [eps, 1/eps], so that a
    zero loss gives a large, finite weight and no weight exceeds 1/(T eps^2)
    (with the default eps = 1e-8 the direction stays finite in float32 even for
    gradients of 1e15).  Derived in
    ``notebooks/10_learned_and_calculated_loss_weights.ipynb``.

    Parameters
    ----------
    eps:
        Each loss is clamped to [eps, 1/eps] inside the log and the division.
    """

    name = "GLS"
    modes = (LOSSES,)

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        if not (isinstance(eps, (int, float)) and math.isfinite(eps) and 0 < eps < 1):
            raise ValueError(f"GLS: eps must be a number in (0, 1), got {eps!r}")
        self.eps = float(eps)

    def _combine(self, losses: Tensor, grads: Tensor | None) -> Combined:
        t = losses.numel()
        L = at_work(losses).clamp(self.eps, 1 / self.eps)
        logL = torch.log(L)
        # w_t = exp(mean log L - log L_t) / T, computed in log space (no overflow)
        w = torch.exp(logL.mean() - logL) / t
        return weighted_direction(w, grads), w
