"""GradNorm, Chen, Badrinarayanan, Lee & Rabinovich, ICML 2018."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mtlkit.weighting._learnable import check_optimizer, learn_step
from mtlkit.weighting._precision import row_norms
from mtlkit.weighting.base import (
    PARAM,
    REP,
    Combined,
    Weighting,
    at_work,
    register,
    weighted_direction,
    work_dtype,
)

_EPS = 1e-12


def gradnorm_loss(w: Tensor, norms: Tensor, losses: Tensor, initial: Tensor,
                  alpha: float) -> Tensor:
    r"""The GradNorm objective (Chen et al. 2018, L_grad of §3; ``rlw.md`` Table 5).

    .. math:: \sum_t \big| w_t\|g_t\| - \bar G\, r_t^{\alpha} \big|,\quad
              \bar G = \tfrac1T\sum_j w_j\|g_j\|,\quad
              r_t = \frac{L_t/L_t(0)}{\tfrac1T\sum_j L_j/L_j(0)} ,

    with the target :math:`\bar G r_t^\alpha` treated as a constant (detached),
    as in the paper.  Differentiable in ``w``.
    """
    wn = w * norms
    ratio = losses / initial.clamp_min(_EPS)
    r = ratio / ratio.mean().clamp_min(_EPS)
    target = (wn.mean() * r ** alpha).detach()
    return (wn - target).abs().sum()


@register
class GradNorm(Weighting):
    r"""GradNorm (Chen et al., ICML 2018, L_grad of §3 and Algorithm 1).

    Learnable weights :math:`w` (initialised to 1) scale the per-task gradients;
    the direction is :math:`d = G^\top w`.  In each :meth:`combine` call, with
    :math:`n_t = \|g_t\|` the norm of task t's gradient *as the engine gives it*,
    ``w`` takes one optimiser step on :func:`gradnorm_loss`, whose gradient is

    .. math:: \partial/\partial w_t = \operatorname{sign}(w_t n_t - \bar G r_t^\alpha)\, n_t ,

    and is then renormalised to :math:`\sum_t w_t = T` (clamped at a tiny
    positive floor first so it stays a non-negative weighting).  The initial
    losses :math:`L_t(0)` are those of the first call.  Returned weights are
    those used for this step's direction (the update applies from the next
    call on).  Derived in ``notebooks/10_learned_and_calculated_loss_weights.ipynb``.

    Which gradient norms: the paper uses the last shared layer's weights W.
    ``mode="param"`` gives the norms over all shared parameters (faithful in
    spirit, T backward passes through the encoder); ``mode="rep"`` gives the
    norms of dL_t/dz for the shared representation z (the cheap common choice,
    as in MGDA-UB).

    Parameters
    ----------
    alpha:
        Restoring-force asymmetry; the paper uses 1.5 on NYUv2 (0 = equalise
        gradient norms only).
    lr:
        Step size for ``w`` (the paper trains ``w`` with the model's
        optimiser; default: the RLW paper's NYUv2 setting, Adam 1e-4).
    optimizer:
        ``"adam"`` (default) or ``"sgd"``.
    last_numel:
        If > 0, the norms use only the last ``last_numel`` columns of G: in
        ``"param"`` mode the flat parameters of the last shared layer, as in
        the paper (e.g. ``sum(p.numel() for p in last_layer.parameters())``
        when it is the last module of the encoder).  0 (default) = all columns.
        The direction always uses all of G.
    """

    name = "GradNorm"
    modes = (PARAM, REP)

    def __init__(self, alpha: float = 1.5, lr: float = 1e-4, optimizer: str = "adam",
                 last_numel: int = 0) -> None:
        super().__init__()
        if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha >= 0):
            raise ValueError(f"GradNorm: alpha must be a number >= 0, got {alpha!r}")
        check_optimizer("GradNorm", optimizer, lr)
        if isinstance(last_numel, bool) or not isinstance(last_numel, int) or last_numel < 0:
            raise ValueError("GradNorm: last_numel must be an integer >= 0 (0 = every column "
                             f"of G), got {last_numel!r}")
        self.alpha, self.lr, self.optimizer = float(alpha), float(lr), optimizer
        self.last_numel = last_numel
        self.w: Tensor | None = None
        self.initial_losses: Tensor | None = None
        self.opt_state: dict = {}

    def reset(self) -> None:
        super().reset()
        self.w, self.initial_losses, self.opt_state = None, None, {}

    def grad_w(self, w: Tensor, norms: Tensor, losses: Tensor) -> Tensor:
        """Closed-form gradient of :func:`gradnorm_loss` w.r.t. ``w``."""
        ratio = losses / self.initial_losses.to(losses).clamp_min(_EPS)
        r = ratio / ratio.mean().clamp_min(_EPS)
        wn = w * norms
        return torch.sign(wn - wn.mean() * r ** self.alpha) * norms

    def _combine(self, losses: Tensor, grads: Tensor | None) -> Combined:
        t = losses.numel()
        if self.last_numel > grads.shape[1]:
            raise ValueError(f"GradNorm: last_numel={self.last_numel} but G has only "
                             f"{grads.shape[1]} columns")
        wd = work_dtype(grads)  # w in float32 for half gradients (Adam steps of 1e-4)
        L = at_work(losses).to(wd)
        if self.initial_losses is None:
            self.initial_losses = L.clone()
        if self.w is None:
            self.w = torch.ones(t, dtype=wd, device=grads.device)
        w = self.w.to(grads.device, wd)
        cols = grads[:, grads.shape[1] - self.last_numel:] if self.last_numel else grads
        norms = row_norms(cols).to(wd)
        g = torch.nan_to_num(self.grad_w(w, norms, L))
        opt = {k: (v.to(w) if torch.is_tensor(v) else v) for k, v in self.opt_state.items()}
        new, self.opt_state = learn_step(w, g, opt, self.optimizer, self.lr)
        new = new.clamp_min(1e-8)
        self.w = t * new / new.sum()
        return weighted_direction(w, grads), w
