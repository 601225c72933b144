"""Uncertainty weighting (UW), Kendall, Gal & Cipolla, CVPR 2018.

Also home of :func:`adam_update`, the explicit-state Adam step that the
strategies with learnable weights (UW, GradNorm, FAMO) use for their own
parameters, so that their whole optimiser state is plain tensors that
``state_dict()`` saves and ``load_state_dict()`` restores.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mtlkit.weighting.base import LOSSES, Weighting, at_work, register, weighted_direction

OPTIMIZERS = ("adam", "sgd")


def adam_update(param: Tensor, grad: Tensor, state: dict[str, Tensor], lr: float,
                betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                weight_decay: float = 0.0) -> tuple[Tensor, dict[str, Tensor]]:
    """One Adam step (``torch.optim.Adam`` semantics, L2 weight decay), functional.

    g <- g + wd p;  m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;
    p <- p - lr (m / (1-b1^k)) / (sqrt(v / (1-b2^k)) + eps).

    ``state`` holds ``m``, ``v`` and ``k`` (empty on the first call).  Returns
    new tensors (nothing is modified in place, so saved states stay intact).
    """
    g = grad + weight_decay * param if weight_decay else grad
    m = state.get("m", torch.zeros_like(param))
    v = state.get("v", torch.zeros_like(param))
    k = int(state.get("k", 0)) + 1
    b1, b2 = betas
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    denom = (v / (1 - b2 ** k)).sqrt() + eps
    new = param - lr * (m / (1 - b1 ** k)) / denom
    return new, {"m": m, "v": v, "k": k}


def check_optimizer(cls: str, optimizer: str, lr: float) -> None:
    """Validate the (optimizer, lr) pair of a strategy with learnable weights."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"{cls}: optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"{cls}: lr must be a positive number, got {lr!r}")


def learn_step(param: Tensor, grad: Tensor, state: dict, optimizer: str, lr: float,
               weight_decay: float = 0.0) -> tuple[Tensor, dict]:
    """param - lr * grad (``sgd``) or one :func:`adam_update` (``adam``)."""
    if optimizer == "sgd":
        return param - lr * (grad + weight_decay * param), state
    return adam_update(param, grad, state, lr, weight_decay=weight_decay)


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

    def combine(self, losses: Tensor, grads: Tensor | None = None):
        t = self._check(losses, grads)
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
