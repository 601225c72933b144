"""NDDR-CNN: neural discriminative dimensionality reduction (Gao et al., CVPR 2019).

A column model (see :class:`~mtlkit.arch.cross_stitch.ColumnModel`) whose
fusion unit after stage j concatenates the T task features along the channels
and reduces them back to C channels, one 1x1 convolution and BatchNorm per task:

    x~_t = BN_t( W_t [x_1; ...; x_T] ),   W_t in R^{C x TC}     (Gao et al., Eq. 1-2)

"Diagonal" initialisation (their §3.3): W_t = [beta I, ..., alpha I, ..., beta I]
with alpha I on task t's own block, alpha = 0.9 and beta = 0.1 for T = 2 (for
T > 2 the 0.1 is split evenly over the other T - 1 blocks here).  So at the
start x~_t is BN(0.9 x_t + 0.1 x_s): close to the single-task networks.
``rlw.md`` §5.7 and App. C.2 (Table 7).  Derived in
``notebooks/03_architectures.ipynb``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from mtlkit.arch.base import register
from mtlkit.arch.cross_stitch import Backbone, ColumnModel, mixing_matrix


class NDDRLayer(nn.Module):
    """T per-task 1x1 convolutions (no bias) on the concatenated features, then
    per-task BatchNorm; works for features of any rank (B, C, ...)."""

    def __init__(self, num_tasks: int, channels: int, alpha: float = 0.9, beta: float = 0.1,
                 bn_momentum: float = 0.1) -> None:
        super().__init__()
        self.num_tasks, self.channels = num_tasks, channels
        self.convs = nn.ModuleList(nn.Conv1d(num_tasks * channels, channels, 1, bias=False)
                                   for _ in range(num_tasks))
        self.bns = nn.ModuleList(nn.BatchNorm1d(channels, momentum=bn_momentum)
                                 for _ in range(num_tasks))
        self.reset_diagonal(alpha, beta)

    @torch.no_grad()
    def reset_diagonal(self, alpha: float, beta: float) -> None:
        """W_t[:, sC:(s+1)C] = m_ts I_C with m the :func:`mixing_matrix`."""
        m = mixing_matrix(self.num_tasks, alpha, beta)
        eye = torch.eye(self.channels)
        for t, conv in enumerate(self.convs):
            conv.weight.copy_(torch.cat([m[t, s] * eye for s in range(self.num_tasks)], 1)
                              .unsqueeze(-1))

    def blocks(self, task: int) -> Tensor:
        """W_t as a (T, C, C) stack of blocks (block s multiplies x_s)."""
        w = self.convs[task].weight.squeeze(-1)  # (C, T*C)
        return w.view(self.channels, self.num_tasks, self.channels).transpose(0, 1)

    def forward(self, xs: Sequence[Tensor]) -> list[Tensor]:
        shape = xs[0].shape
        cat = torch.cat([x.reshape(shape[0], shape[1], -1) for x in xs], dim=1)  # (B, TC, L)
        return [bn(conv(cat)).reshape(shape) for conv, bn in zip(self.convs, self.bns)]


@register
class NDDR(ColumnModel):
    """NDDR-CNN (Gao et al., CVPR 2019, Eq. 1-2); see module docstring.

    Shared parameters: stages 1..J-1 of all columns and the NDDR layers
    (convolutions and BatchNorm) except the last one's.  Task-specific
    parameters of t: task t's convolution and BatchNorm in the last NDDR layer,
    column t's top stage and head.  Shared representation: none
    (``shared_rep=False``; ``encode`` returns {task: output of the last NDDR
    layer}); task t's part of the last NDDR layer sits before that output, so
    in rep mode it receives w_t dL_t (as in losses mode), in param mode dL_t.

    Parameters
    ----------
    backbone, heads, channels:
        As :class:`~mtlkit.arch.cross_stitch.CrossStitch`.
    alpha, beta:
        Diagonal initialisation: own block alpha, other blocks beta (split
        over the T - 1 other tasks).  Paper: 0.9 and 0.1.
    bn_momentum:
        Momentum of the NDDR layers' BatchNorm.
    """

    def __init__(self, backbone: Backbone, heads: Mapping[str, nn.Module],
                 channels: Sequence[int] | None = None, alpha: float = 0.9, beta: float = 0.1,
                 bn_momentum: float = 0.1) -> None:
        if alpha < 0 or beta < 0:
            raise ValueError(f"NDDR alpha and beta must be >= 0, got {alpha}, {beta}")
        self.alpha, self.beta, self.bn_momentum = alpha, beta, bn_momentum
        super().__init__(backbone, heads, channels)

    def make_unit(self, channels: int) -> nn.Module:
        return NDDRLayer(len(self.tasks), channels, self.alpha, self.beta, self.bn_momentum)

    def task_modules(self, task: str) -> list[nn.Module]:
        """Column t's top stage, head, and task t's convolution and BatchNorm in the
        last NDDR layer (they feed task t only)."""
        i, last = self.tasks.index(task), self.units[-1]
        return [*super().task_modules(task), last.convs[i], last.bns[i]]
