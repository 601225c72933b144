"""The optimiser of the strategies with learnable weights (UW, GradNorm, FAMO): explicit-
state Adam and SGD steps, so that a strategy's whole optimiser state is plain tensors
that ``state_dict()`` saves and ``load_state_dict()`` restores.  A private module (not a
strategy); :data:`OPTIMIZERS` is public as ``mtlkit.weighting.OPTIMIZERS``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: the optimisers the library knows by name (a strategy's learnable weights; the trainer's
#: model optimiser)
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
