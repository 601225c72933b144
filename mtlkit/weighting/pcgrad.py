"""PCGrad: projecting conflicting gradients (Yu et al., NeurIPS 2020)."""

from __future__ import annotations

import torch
from torch import Tensor

from mtlkit.weighting.base import PARAM, REP, GramWeighting, SeededWeighting, register


def pcgrad_coefficients(m: Tensor, perms: list[list[int]]) -> Tensor:
    """W with g_i^PC = sum_k W[i, k] g_k, computed from the Gram matrix M only.

    For each task i and each j in ``perms[i]`` (Yu et al. 2020, Algorithm 1):
    if g_i^PC . g_j < 0 then g_i^PC <- g_i^PC - (g_i^PC . g_j) / ||g_j||^2 g_j.
    Since g_i^PC = W[i] G, its dot with g_j is (W[i] M)[j]; the branch is a
    ``min(., 0)`` so nothing leaves the device.
    """
    t = m.shape[0]
    w = torch.eye(t, dtype=m.dtype, device=m.device)
    diag = m.diagonal()
    safe = torch.where(diag > 0, diag, torch.ones_like(diag))
    for i in range(t):
        for j in perms[i]:
            dot = w[i] @ m[:, j]
            coef = torch.where(diag[j] > 0, dot.clamp(max=0) / safe[j], torch.zeros_like(dot))
            w[i, j] = w[i, j] - coef
    return w


@register
class PCGrad(SeededWeighting, GramWeighting):
    """Gradient surgery: remove from each task gradient its component along any
    other task gradient it conflicts with (Yu et al. 2020, Eq. 1 / Algorithm 1):

        g_i <- g_i - min(g_i . g_j, 0) / ||g_j||^2 g_j   for j in a random order,
        d = sum_i g_i^PC.

    The order is drawn per task and per step from a seeded generator.  As in
    the authors' code the shuffled list holds every task, i itself included
    (projecting onto itself never fires: g_i^PC . g_i >= 0 stays true for two
    tasks).  Each g_i^PC is a linear combination of the g_k, so d = G^T w
    exactly with w = the column sums of the projection coefficients: the
    returned weights reproduce the direction.

    Derived in ``notebooks/21_pcgrad_and_graddrop.ipynb``.

    Parameters
    ----------
    seed:
        Seed of the generator of the random task orders.
    """

    name = "PCGrad"
    modes = (PARAM, REP)

    def _gram_weights(self, losses: Tensor, gram: Tensor) -> Tensor:
        t = losses.numel()
        perms = [torch.randperm(t, generator=self._gen).tolist() for _ in range(t)]
        return pcgrad_coefficients(gram, perms).sum(0)
