"""Fast Adaptive Multitask Optimization (FAMO), Liu, Feng, Stone & Liu, NeurIPS 2023."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mtlkit.weighting._learnable import check_optimizer, learn_step
from mtlkit.weighting.base import LOSSES, Combined, Weighting, at_work, register, weighted_direction


def famo_weights(logits: Tensor, losses: Tensor, min_loss: float, eps: float) -> Tensor:
    r"""Loss weights of FAMO's update: :math:`\lambda_t = \frac{z_t/D_t}{\sum_j z_j/D_j}`,

    with :math:`z = \mathrm{softmax}(\xi)` and :math:`D_t = L_t - L_t^* + \epsilon`.
    :math:`\sum_t \lambda_t \nabla L_t = \nabla \sum_t z_t \log D_t / c` with
    :math:`c = \sum_j z_j/D_j` held constant, the step on the log-losses.
    """
    z = torch.softmax(logits, dim=0)
    q = z / ((losses - min_loss).clamp_min(0) + eps)
    return q / q.sum()


def famo_logit_grad(logits: Tensor, prev: Tensor, curr: Tensor, min_loss: float,
                    eps: float) -> Tensor:
    r"""FAMO's gradient for the logits (Liu et al. 2023, Algorithm 1):

    .. math:: \delta = J_z^\top\big(\log D(\theta_{k-1}) - \log D(\theta_k)\big),\quad
              J_z^\top v = z\odot(v - z^\top v),

    i.e. the gradient of :math:`z^\top(\log D_{k-1} - \log D_k)` w.r.t. :math:`\xi`.
    """
    z = torch.softmax(logits, dim=0)
    v = (torch.log((prev - min_loss).clamp_min(0) + eps)
         - torch.log((curr - min_loss).clamp_min(0) + eps))
    v = torch.nan_to_num(v, nan=0.0)
    return z * (v - (z * v).sum())


@register
class FAMO(Weighting):
    r"""FAMO (Liu et al., NeurIPS 2023, Algorithm 1).

    Logits :math:`\xi` (init 0), :math:`z = \mathrm{softmax}(\xi)`; the model
    descends :math:`\sum_t z_t \log D_t / c` (:func:`famo_weights`), so every
    task's *log*-loss is pushed with weight :math:`z_t`.  The logits then move
    so that tasks whose log-loss decreased least gain weight:
    :math:`\xi \leftarrow \xi - \beta(\delta + \gamma\xi)` (``optimizer="sgd"``,
    Algorithm 1 as printed) or Adam with L2 weight decay :math:`\gamma`
    (``"adam"``, default, as in the authors' code and Algorithm 2), with :math:`\delta` from
    :func:`famo_logit_grad`.

    Timing, made explicit: FAMO needs the losses *after* the step.  The
    authors recompute them on the same batch with an extra forward pass; a
    strategy sees only ``combine`` calls, so here call k first updates
    :math:`\xi` with (previous call's losses, this call's losses), which are
    the post-step losses on a *new* batch (noisier, no extra forward), and
    then returns the weights for this call.  The first call only records.
    Derived in ``notebooks/10_learned_and_calculated_loss_weights.ipynb``.

    Parameters
    ----------
    lr:
        Step size :math:`\beta` of the logits (authors' default 0.025).
    gamma:
        Weight decay :math:`\gamma` of the logits: 1e-3 as in the paper's
        Algorithm 2 (App. C); the authors' README class uses 0.01 and some of
        their experiment scripts 1e-5, so treat it as a tuning knob.
    optimizer:
        ``"adam"`` (authors' code) or ``"sgd"`` (Algorithm 1).
    min_loss:
        Known lower bound :math:`L^*` of the losses (0 for the usual losses).
    eps:
        Added to :math:`L - L^*` so that the logs stay finite.
    """

    name = "FAMO"
    modes = (LOSSES,)

    def __init__(self, lr: float = 0.025, gamma: float = 1e-3, optimizer: str = "adam",
                 min_loss: float = 0.0, eps: float = 1e-8) -> None:
        super().__init__()
        check_optimizer("FAMO", optimizer, lr)
        for nm, v in (("gamma", gamma), ("eps", eps)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"FAMO: {nm} must be a number >= 0, got {v!r}")
        if eps <= 0:
            raise ValueError("FAMO: eps must be > 0 (it keeps log(L - min_loss) finite)")
        if not (isinstance(min_loss, (int, float)) and math.isfinite(min_loss)):
            raise ValueError(f"FAMO: min_loss must be a finite number, got {min_loss!r}")
        self.lr, self.gamma, self.optimizer = float(lr), float(gamma), optimizer
        self.min_loss, self.eps = float(min_loss), float(eps)
        self.logits: Tensor | None = None
        self.prev_losses: Tensor | None = None
        self.opt_state: dict = {}

    def reset(self) -> None:
        super().reset()
        self.logits, self.prev_losses, self.opt_state = None, None, {}

    def _combine(self, losses: Tensor, grads: Tensor | None) -> Combined:
        t = losses.numel()
        L = at_work(losses)
        if self.logits is None:
            self.logits = torch.zeros(t, dtype=L.dtype, device=L.device)
        xi = self.logits.to(L)
        if self.prev_losses is not None:
            g = famo_logit_grad(xi, self.prev_losses.to(L), L, self.min_loss, self.eps)
            opt = {k: (v.to(xi) if torch.is_tensor(v) else v) for k, v in self.opt_state.items()}
            xi, self.opt_state = learn_step(xi, g, opt, self.optimizer, self.lr, self.gamma)
            self.logits = xi
        self.prev_losses = L.clone()
        w = famo_weights(xi, L, self.min_loss, self.eps)
        return weighted_direction(w, grads), w
