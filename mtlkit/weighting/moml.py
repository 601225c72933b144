"""MOML: multi-objective meta learning (Ye, Lin, Yang, Zhang, Xu, Guo, Zhang & Wei, NeurIPS 2021;
AIJ 2024), as a loss weighting: the task weights are the upper-level variables of a
multi-objective bi-level problem,

    min_beta  (L^q_1(theta*(beta)), ..., L^q_T(theta*(beta))),
    theta*(beta) = argmin_theta sum_t softmax(beta)_t L^s_t(theta),

solved, as in the authors' and LibMTL's fast variant, with one inner SGD step
theta' = theta - eta sum_j softmax(beta)_j g^s_j, so that (chain rule, no second order)

    d L^q_t / d beta = -eta  g^q_t(theta')^T [g^s_1 ... g^s_T](theta)  J_softmax(beta),

and a common descent direction of the T hypergradients by MGDA (the min-norm point of their
convex hull, each normalised to unit length as in LibMTL's ``ntype='l2'``); beta takes an
Adam step along it.  MetaWeighting (:mod:`mtlkit.weighting.metaweighting`, Mao et al. 2022)
is the same one-step, min-norm scheme on linear weights w (no softmax) without the
normalisation.  Same engine and delayed pairing as MetaWeighting (support gradients of the
previous step, query gradients of this one).

Derived in ``notebooks/32_more_bilevel_weightings.ipynb``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from mtlkit.weighting._learnable import adam_update
from mtlkit.weighting.base import register
from mtlkit.weighting.metaweighting import Hypergradient, hypergradient_matrix, min_norm_weights


def softmax_jacobian(beta: Tensor) -> Tensor:
    """d softmax(beta) / d beta = diag(s) - s s^T, s = softmax(beta)."""
    s = torch.softmax(beta, dim=0)
    return torch.diag(s) - torch.outer(s, s)


def moml_direction(d: Tensor, beta: Tensor, fw_iters: int = 250, solver: str = "auto"
                   ) -> tuple[Tensor, Tensor]:
    """(direction, lambda): the rows h_t = D_t J_softmax(beta) of the hypergradients w.r.t.
    beta (D[t, j] = -<g^q_t, g^s_j>, the positive eta dropped), each scaled to unit norm,
    and the min-norm point of their convex hull, lambda^T H (Sener & Koltun 2018, Eq. 3)."""
    h = d @ softmax_jacobian(beta)
    n = h.norm(dim=1)
    h = h / torch.where(n > 0, n, torch.ones_like(n))[:, None]
    lam = min_norm_weights(h, fw_iters, solver=solver)
    return lam @ h, lam


@register
class MOML(Hypergradient):
    """MOML (Ye et al. 2021), see the module docstring: weights softmax(beta) (returned; the
    direction is G^s^T softmax(beta)), beta <- Adam(beta, MGDA of the unit hypergradients),
    beta^0 = 0 (EW).  The first step only records the support gradients.

    The inner step size eta multiplies every hypergradient and the rows are normalised, so
    it does not enter: no optimiser needs to be attached.  Runs in the bi-level engine
    (``needs_query``), in ``param`` mode.

    Parameters
    ----------
    outer_lr:
        Adam step size of beta (LibMTL's ``outer_lr`` default, 1e-3).
    fw_iters, solver:
        Min-norm solver settings (see MetaWeighting).
    """

    name = "MOML"
    needs_query = True

    def __init__(self, outer_lr: float = 1e-3, fw_iters: int = 250, solver: str = "auto") -> None:
        if not (isinstance(outer_lr, (int, float)) and math.isfinite(outer_lr) and outer_lr > 0):
            raise ValueError(f"MOML outer_lr must be a positive number, got {outer_lr!r}")
        super().__init__(float(outer_lr), "minnorm", "sgd", 1.0, "none", 1.0, fw_iters, solver)
        self.outer_lr = float(outer_lr)
        self.beta: Tensor | None = None
        self.adam: dict[str, Any] = {}

    def reset(self) -> None:
        super().reset()
        self.beta, self.adam = None, {}

    def update_weights(self, val_grads: Tensor, overwrite_val: bool = False) -> None:
        """One Adam step on beta along the MGDA direction of the hypergradients, if the
        previous step's support gradients are known; then w = T softmax(beta)."""
        prev = self._prev
        if prev is None or prev.shape != val_grads.shape:
            return
        prev = self._prev = prev.to(val_grads)
        t = val_grads.shape[0]
        beta = torch.zeros(t, dtype=self.w.dtype, device=self.w.device) if self.beta is None \
            else self.beta.to(self.w)
        d = hypergradient_matrix(val_grads, prev, 1.0, overwrite_val).to(beta.dtype)
        direction, lam = moml_direction(d, beta, self.fw_iters, self.solver)
        state = {k: (v.to(beta) if torch.is_tensor(v) else v) for k, v in self.adam.items()}
        self.beta, self.adam = adam_update(beta, direction, state, self.outer_lr)
        self.w = t * torch.softmax(self.beta, dim=0)
        self.hypergrad, self.lam = d.detach(), lam.detach()
