"""GradVac: gradient vaccine (Wang et al., ICLR 2021)."""

from __future__ import annotations

import torch
from torch import Tensor

from mtlkit.weighting.base import PARAM, REP, GramWeighting, SeededWeighting, register


def vaccine_coefficient(rho: Tensor, target: Tensor, norm_i: Tensor, norm_j: Tensor) -> Tensor:
    """a with cos(g_i + a g_j, g_j) = target, given cos(g_i, g_j) = rho (Wang et al. Eq. 4):

        a = ||g_i|| (target sqrt(1 - rho^2) - rho sqrt(1 - target^2))
            / (||g_j|| sqrt(1 - target^2)).
    """
    st = (1 - target**2).clamp_min(1e-12).sqrt()
    sr = (1 - rho**2).clamp_min(0).sqrt()
    return norm_i * (target * sr - rho * st) / (norm_j * st)


@register
class GradVac(SeededWeighting, GramWeighting):
    """Set gradient similarity goals from an EMA of the observed cosines
    (Wang et al. 2021, §3.2, Eqs. 3-5):

        rho_ij = cos(g_i', g_j);  if rho_ij < phi_ij:  g_i' <- g_i' + a_ij g_j  (a from Eq. 4),
        phi_ij <- (1 - beta) phi_ij + beta rho_ij        (phi starts at 0),
        d = sum_i g_i'.

    For each i the other tasks are visited in a random order drawn from a
    seeded generator.  After the update cos(g_i', g_j) equals the goal phi_ij
    (before its EMA update).  With phi = 0 this is PCGrad's projection.  The
    goals are tracked for the whole shared parameter vector (the paper also
    has per-layer goals; not implemented).  Every g_i' is a combination of the
    g_k, so d = G^T w exactly for the returned w.  ``phi`` is saved with
    :meth:`state_dict`.

    Derived in ``notebooks/22_imtl_and_gradvac.ipynb``.

    Parameters
    ----------
    beta:
        EMA rate of the similarity goals (paper: 0.01).
    seed:
        Seed of the generator of the task orders.
    """

    name = "GradVac"
    modes = (PARAM, REP)

    def __init__(self, beta: float = 0.01, seed: int = 0) -> None:
        super().__init__(seed)
        if not 0 <= beta <= 1:
            raise ValueError(f"GradVac beta must be in [0, 1], got {beta!r}")
        self.beta = float(beta)
        self.phi: Tensor | None = None

    def reset(self) -> None:
        super().reset()
        self.phi = None

    def _gram_weights(self, losses: Tensor, gram: Tensor) -> Tensor:
        t, m = losses.numel(), gram
        if self.phi is None:
            self.phi = torch.zeros(t, t, dtype=m.dtype, device=m.device)
        phi = self.phi.to(m.device, m.dtype)
        w = torch.eye(t, dtype=m.dtype, device=m.device)
        norms = m.diagonal().clamp_min(0).sqrt()
        for i in range(t):
            others = [j for j in torch.randperm(t, generator=self._gen).tolist() if j != i]
            for j in others:
                dot = w[i] @ m[:, j]
                norm_i = (w[i] @ m @ w[i]).clamp_min(0).sqrt()
                ok = (norm_i > 0) & (norms[j] > 0)
                rho = torch.where(ok, dot / torch.where(ok, norm_i * norms[j], 1.0), 0.0)
                rho = rho.clamp(-1.0, 1.0)
                a = vaccine_coefficient(rho, phi[i, j], norm_i, torch.where(ok, norms[j], 1.0))
                w[i, j] = w[i, j] + torch.where(ok & (rho < phi[i, j]), a, 0.0)
                phi[i, j] = (1 - self.beta) * phi[i, j] + self.beta * rho
        self.phi = phi
        return w.sum(0)
