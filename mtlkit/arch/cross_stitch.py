"""Cross-stitch networks (Misra et al. 2016), and the column model they share
with NDDR-CNN.

A column model gives every task its own copy ("column") of a backbone cut into
J stages, and after each of the first J - 1 stages mixes the T task features
with a fusion unit.  For cross-stitch the unit is a learnt T x T matrix
(optionally one per channel):

    x~_t^(j) = sum_s alpha_ts^(j) x_s^(j)                       (Misra et al., Eq. 1)

Identity init (alpha = I) starts from T independent single-task networks; the
paper's alternative is alpha_tt = 0.9, alpha_ts = 0.1 for T = 2
(``CrossStitch(..., alpha_self=0.9, alpha_other=0.1)``; for T > 2 the 0.1 is
split evenly over the T - 1 other tasks).  ``rlw.md`` §5.7 and App. C.2 (Table 6).
Derived in ``notebooks/03_architectures.ipynb``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from mtlkit.arch.base import MTLModel, register
from mtlkit.encoders.vision import as_stages

#: a backbone to copy once per task (a Stages module or a list of stages), or a
#: function that builds a fresh one per task (independently initialised columns)
Backbone = nn.Module | Sequence[nn.Module] | Callable[[], nn.Module]


def mixing_matrix(num_tasks: int, alpha_self: float, alpha_other: float) -> Tensor:
    """A T x T matrix with ``alpha_self`` on the diagonal and ``alpha_other / (T-1)``
    elsewhere (each row sums to alpha_self + alpha_other)."""
    off = alpha_other / max(1, num_tasks - 1)
    m = torch.full((num_tasks, num_tasks), off)
    m.fill_diagonal_(alpha_self)
    return m


class ColumnModel(MTLModel):
    """Base of the column architectures (cross-stitch, NDDR-CNN).

    encode:  x_t^(1) = s_1^t(x);  x^(j) = unit_j(x^(j)) fused, then
             x_t^(j+1) = s_{j+1}^t(x~_t^(j)), up to the output of unit J-1.
    decode:  y_t = head_t(s_J^t(x~_t^(J-1))).

    Shared parameters: stages 1..J-1 of every column and every fusion unit
    (through the units each of them reaches every task's loss).
    Task-specific parameters of t: the top stage s_J^t of column t and head_t.
    Shared representation: none; ``encode`` returns {task: x~_t^(J-1)}, so
    ``shared_rep = False`` and rep mode needs a reweighting strategy.
    Subclasses implement :meth:`make_unit`.

    Columns: a backbone module is deep-copied, so every column starts from the
    same weights (right for pretrained backbones, as LibMTL does); a function
    ``lambda: SmallCNN(1)`` builds each column afresh, as T independently
    initialised single-task networks.  With copies, the columns stay identical
    until the heads' gradients differ, so a scale-invariant fusion (NDDR's
    BatchNorm after a diagonal mix) gives the BatchNorm scale of the stage
    below it zero gradient (up to BatchNorm's eps) at the first step
    (notebook 03, §4).
    """

    shared_rep = False

    def __init__(self, backbone: Backbone, heads: Mapping[str, nn.Module],
                 channels: Sequence[int] | None = None) -> None:
        super().__init__(list(heads))
        if isinstance(backbone, (nn.Module, Sequence)):
            stages = as_stages(backbone, channels)
            columns = {t: copy.deepcopy(stages) for t in self.tasks}
        elif callable(backbone):
            columns = {t: as_stages(backbone(), channels) for t in self.tasks}
        else:
            raise TypeError("backbone must be a Stages module, a list of stages, or a function "
                            f"that builds one, got {type(backbone).__name__}")
        first = columns[self.tasks[0]]
        if any(c.channels != first.channels for c in columns.values()):
            raise ValueError("the backbone factory built columns with different channels")
        if len(first.stages) < 2:
            raise ValueError(f"{type(self).__name__} needs a backbone of >= 2 stages (the units "
                             "sit between stages), got 1")
        self.channels = list(first.channels)
        self.columns = nn.ModuleDict(columns)
        self.units = nn.ModuleList(self.make_unit(c) for c in self.channels[:-1])
        self.heads = nn.ModuleDict(dict(heads))

    def make_unit(self, channels: int) -> nn.Module:
        """The fusion unit after a stage with ``channels`` output channels."""
        raise NotImplementedError

    def encode(self, x: Tensor) -> dict[str, Tensor]:
        xs = [x] * len(self.tasks)
        for j, unit in enumerate(self.units):
            xs = unit([self.columns[t].stages[j](xi) for t, xi in zip(self.tasks, xs)])
        return dict(zip(self.tasks, xs))

    def decode(self, rep: Tensor, task: str) -> Tensor:
        return self.heads[task](self.columns[task].stages[-1](rep))

    def task_modules(self, task: str) -> list[nn.Module]:
        """The modules that only ``task`` uses: its column's top stage and its head."""
        return [self.columns[task].stages[-1], self.heads[task]]

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        return [p for m in self.task_modules(task) for p in m.parameters() if p.requires_grad]


class CrossStitchUnit(nn.Module):
    """x~_t = sum_s alpha_ts x_s, with alpha of shape (T, T) or, channel-wise, (T, T, C)."""

    def __init__(self, num_tasks: int, channels: int | None = None, alpha_self: float = 1.0,
                 alpha_other: float = 0.0) -> None:
        super().__init__()
        m = mixing_matrix(num_tasks, alpha_self, alpha_other)
        if channels is not None:
            m = m.unsqueeze(-1).repeat(1, 1, channels)
        self.alpha = nn.Parameter(m)

    def forward(self, xs: Sequence[Tensor]) -> list[Tensor]:
        X = torch.stack(list(xs))  # (T, B, C, ...)
        a = self.alpha
        if a.dim() == 3:  # (T, T, C) -> broadcast over batch and spatial axes
            a = a.view(*a.shape[:2], 1, a.shape[2], *([1] * (X.dim() - 3)))
            return list((a * X.unsqueeze(0)).sum(1).unbind(0))
        return list(torch.tensordot(a, X, dims=([1], [0])).unbind(0))


@register
class CrossStitch(ColumnModel):
    """Cross-stitch network (Misra et al., CVPR 2016, Eq. 1); see module docstring.

    Shared parameters: stages 1..J-1 of all columns and the cross-stitch units.
    Shared representation: none (``shared_rep=False``; ``encode`` returns
    {task: mixed features after the last unit}).

    Parameters
    ----------
    backbone:
        A :class:`~mtlkit.encoders.vision.Stages` backbone (or a list of stages
        with ``channels``), copied once per task, or a function that builds a
        fresh one per task.
    heads:
        {task: head}; each head reads the output of its column's top stage.
    alpha_self, alpha_other:
        Initial unit: diagonal ``alpha_self`` and ``alpha_other`` split over the
        other tasks.  Default identity (1, 0); Misra et al. also use (0.9, 0.1).
    channelwise:
        One mixing matrix per channel instead of one per unit.
    """

    def __init__(self, backbone: Backbone, heads: Mapping[str, nn.Module],
                 channels: Sequence[int] | None = None, alpha_self: float = 1.0,
                 alpha_other: float = 0.0, channelwise: bool = False) -> None:
        self.alpha_self, self.alpha_other, self.channelwise = alpha_self, alpha_other, channelwise
        super().__init__(backbone, heads, channels)

    def make_unit(self, channels: int) -> nn.Module:
        return CrossStitchUnit(len(self.tasks), channels if self.channelwise else None,
                               self.alpha_self, self.alpha_other)
