"""IMTL: impartial multi-task learning (Liu et al., ICLR 2021)."""

from __future__ import annotations

import torch
from torch import Tensor

from mtlkit.weighting.base import (
    LOSSES,
    PARAM,
    REP,
    Combined,
    GramWeighting,
    register,
    weighted_direction,
    work_dtype,
)

METHODS = ("hybrid", "grad", "loss")


def imtl_g_weights(m: Tensor) -> Tensor:
    """IMTL-G's alpha from the Gram matrix M = G G^T (Liu et al. 2021, Eq. 9):

        D = [g_1 - g_t]_{t>=2},  U = [u_1 - u_t]_{t>=2},  u_t = g_t / ||g_t||,
        alpha_{2:T} = g_1 U^T (D U^T)^{-1},   alpha_1 = 1 - sum_{t>=2} alpha_t,

    so that d = G^T alpha has equal projections d . u_t on every unit gradient.
    Every entry is a Gram entry: g_a . u_b = M_ab / ||g_b||.  Solved in float64
    with ``solve_ex`` (no host sync); where D U^T is singular (parallel or zero
    gradients) a ridge least-squares (near minimum-norm) solution is used instead.
    """
    t = m.shape[0]
    if t == 1:
        return torch.ones(1, dtype=m.dtype, device=m.device)
    n = m.diagonal().clamp_min(0).sqrt()
    n = torch.where(n > 0, n, torch.ones_like(n))
    gu = m / n[None, :]  # gu[a, b] = g_a . u_b
    b = gu[0, 0] - gu[0, 1:]  # g_1 . (u_1 - u_s)
    a = gu[0, 0] - gu[0, 1:][None, :] - gu[1:, 0][:, None] + gu[1:, 1:]  # (g_1-g_t).(u_1-u_s)
    x, info = torch.linalg.solve_ex(a.T, b)
    ridge = 1e-10 * (a * a).sum().clamp_min(1e-300)
    eye = torch.eye(t - 1, dtype=m.dtype, device=m.device)
    x_ls, _ = torch.linalg.solve_ex(a @ a.T + ridge * eye, a @ b)  # min ||x A - b||
    # trust the exact solve unless it failed or blew up relative to the ridge one
    # (a singular D U^T: then every solution works and we keep the small one)
    ok = (info == 0) & torch.isfinite(x).all() & (x.norm() <= 1.5 * x_ls.norm() + 1e-9)
    x = torch.where(ok, x, torch.nan_to_num(x_ls, nan=0.0, posinf=0.0, neginf=0.0))
    return torch.cat([(1 - x.sum()).reshape(1), x])


@register
class IMTL(GramWeighting):
    """Impartial MTL (Liu et al. 2021): IMTL-L makes the scaled losses equal,
    IMTL-G makes the aggregated gradient's projections on all task directions equal.

    IMTL-L (§3.1, Eq. 3): each loss is scaled as e^{s_t} L_t - s_t with a
    learnable s_t; its minimiser over s_t is e^{s_t} L_t = 1.  We update
    s_t <- s_t - lr (e^{s_t} L_t - 1) inside :meth:`combine` (the paper trains s
    with the network's optimiser).  IMTL-L assumes positive losses: for
    L_t <= 0 the scale objective is unbounded below and s_t diverges (notebook
    22 shows it).  IMTL-G (§3.2, Eq. 9): d = G^T alpha with
    alpha from :func:`imtl_g_weights` (alpha may be negative: for T >= 3, -d can
    then increase every task, see notebook 22).  The hybrid (§3.3) applies IMTL-G to the
    gradients of the scaled losses e^{s_t} g_t, so the weights on the raw
    gradients are w_t = alpha_t e^{s_t}.

    ``method="loss"`` needs only the losses (mode ``"losses"``); ``"grad"`` and
    ``"hybrid"`` need gradients (the paper uses the shared representation's,
    mode ``"rep"``; ``"param"`` also works).  Returned weights reproduce d = G^T w.

    Derived in ``notebooks/22_imtl_and_gradvac.ipynb``.

    Parameters
    ----------
    method:
        'hybrid' (paper's full method), 'grad' (IMTL-G) or 'loss' (IMTL-L).
    lr:
        Step size of the loss-scale parameters s (IMTL-L and hybrid).
    """

    name = "IMTL"
    modes = (PARAM, REP)

    def __init__(self, method: str = "hybrid", lr: float = 0.01) -> None:
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"IMTL method must be one of {METHODS}, got {method!r}")
        if not lr >= 0:
            raise ValueError(f"IMTL lr must be >= 0, got {lr!r}")
        self.method, self.lr = method, float(lr)
        if method == "loss":
            self.modes = (LOSSES,)
        self.s: Tensor | None = None

    def reset(self) -> None:
        super().reset()
        self.s = None

    def _scales(self, losses: Tensor) -> Tensor:
        """e^{s} (before the step), then one gradient step on s."""
        if self.s is None:
            self.s = torch.zeros(losses.numel(), dtype=torch.float64, device=losses.device)
        s = self.s.to(losses.device)
        scale = s.exp()
        self.s = s - self.lr * (scale * losses.detach().double() - 1)
        return scale

    def _combine(self, losses: Tensor, grads: Tensor | None) -> Combined:
        if self.method == "loss":  # IMTL-L needs no gradients (and no Gram matrix)
            w = self._scales(losses).to(work_dtype(losses))
            return weighted_direction(w, grads), w
        return super()._combine(losses, grads)

    def _gram_weights(self, losses: Tensor, gram: Tensor) -> Tensor:
        if self.method == "grad":
            return imtl_g_weights(gram)
        scale = self._scales(losses)
        return imtl_g_weights(gram * scale[:, None] * scale[None, :]) * scale
