"""Uncertainty weighting (UW), Kendall, Gal & Cipolla, CVPR 2018."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mtlkit.weighting._learnable import check_optimizer, learn_step
from mtlkit.weighting.base import LOSSES, Combined, Weighting, at_work, register, weighted_direction


@register
class UW(Weighting):
    r"""Uncertainty weighting (Kendall et al., CVPR 2018, §3: the multi-task likelihoods).

    Each task gets a learnable log-variance :math:`s_t = \log\sigma_t^2` and the
    objective is the common implementation (LibMTL, many re-implementations)

    .. math:: \mathcal L(\theta, s) = \sum_t e^{-s_t} L_t(\theta) + s_t ,

    i.e. twice Kendall's regression form :math:`\frac{1}{2\sigma^2}L + \log\sigma`
    (the paper's classification form is :math:`\frac1{\sigma^2}L + \log\sigma`).
    The model sees weights :math:`w_t = e^{-s_t}`; inside :meth:`combine`, ``s``
    takes one optimiser step on :math:`\partial\mathcal L/\partial s_t = 1 - e^{-s_t}L_t`
    (with this step's losses, i.e. jointly with the model), whose fixed point is
    :math:`s_t^* = \log L_t`, :math:`w_t^* = 1/L_t`.  Derived in
    ``notebooks/10_learned_and_calculated_loss_weights.ipynb``.

    Parameters
    ----------
    lr:
        Step size for ``s``.  Kendall et al. and LibMTL train ``s`` with the
        model's optimiser; the default is the RLW paper's NYUv2 setting (Adam,
        1e-4).  Pass your model's learning rate.
    optimizer:
        ``"adam"`` (default, as with the model) or ``"sgd"``.
    init:
        Initial value of every :math:`s_t` (0 gives weights 1).
    """

    name = "UW"
    modes = (LOSSES,)

    def __init__(self, lr: float = 1e-4, optimizer: str = "adam", init: float = 0.0) -> None:
        super().__init__()
        check_optimizer("UW", optimizer, lr)
        if not (isinstance(init, (int, float)) and math.isfinite(init)):
            raise ValueError(f"UW: init must be a finite number, got {init!r}")
        self.lr, self.optimizer, self.init = float(lr), optimizer, float(init)
        self.s: Tensor | None = None
        self.opt_state: dict = {}

    def reset(self) -> None:
        super().reset()
        self.s, self.opt_state = None, {}

    @staticmethod
    def objective(losses: Tensor, s: Tensor) -> Tensor:
        """sum_t exp(-s_t) L_t + s_t (the quantity ``s`` descends)."""
        return (torch.exp(-s) * losses + s).sum()

    @staticmethod
    def grad_s(losses: Tensor, s: Tensor) -> Tensor:
        """d/ds_t of :meth:`objective`: 1 - exp(-s_t) L_t."""
        return 1.0 - torch.exp(-s) * losses

    def _combine(self, losses: Tensor, grads: Tensor | None) -> Combined:
        t = losses.numel()
        L = at_work(losses)
        if self.s is None:
            self.s = torch.full((t,), self.init, dtype=L.dtype, device=L.device)
        s = self.s.to(L.device, L.dtype)
        w = torch.exp(-s)
        g = self.grad_s(L, s)
        opt = {k: (v.to(s) if torch.is_tensor(v) else v) for k, v in self.opt_state.items()}
        self.s, self.opt_state = learn_step(s, g, opt, self.optimizer, self.lr)
        return weighted_direction(w, grads), w

    @property
    def weights(self) -> Tensor | None:
        """Current weights exp(-s) (those the next call will use)."""
        return None if self.s is None else torch.exp(-self.s)
