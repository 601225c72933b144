"""MTAN: the multi-task attention network (Liu et al., CVPR 2019).

One shared backbone cut into J stages gives features p^(1..J).  Each task t
has a soft-attention module per stage that selects from the shared features:

    a_t^(1) = h_t^(1)(g_t^(1)(p^(1)))
    a_t^(j) = h_t^(j)(g_t^(j)([p^(j); f^(j-1)(a^_t^(j-1))]))      j > 1
    a^_t^(j) = a_t^(j) * p^(j)                                      (Liu et al., Eq. 1)

g = [1x1 conv, BN, ReLU], h = [1x1 conv, BN, sigmoid], so every mask entry is
in (0, 1) (g's width is C/4 by default, ``att_reduction``); f^(j) = [3x3 conv,
BN, ReLU] then resampling to stage j+1's size, shared by all tasks.
Simplification: the paper feeds g the feature inside block j and masks the
block's output; here both are the stage output p^(j).
``rlw.md`` §5.7 (Table 4).  Derived in ``notebooks/03_architectures.ipynb``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtlkit.arch.base import MTLModel, register
from mtlkit.encoders.vision import as_stages


def attention_block(c_in: int, c_out: int, hidden: int | None = None) -> nn.Sequential:
    """h(g(.)): [1x1 conv to ``hidden``, BN, ReLU, 1x1 conv to c_out, BN, sigmoid];
    outputs in (0, 1).  No conv bias: the BatchNorm after each would cancel it."""
    h = hidden or c_out
    return nn.Sequential(nn.Conv2d(c_in, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU(),
                         nn.Conv2d(h, c_out, 1, bias=False), nn.BatchNorm2d(c_out),
                         nn.Sigmoid())


def resize(x: Tensor, size: Sequence[int]) -> Tensor:
    """Max-pool down (as MTAN's 2x2 pooling) or bilinearly up to ``size``."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    h, w = x.shape[-2:]
    if h % size[0] == 0 and w % size[1] == 0:
        return F.max_pool2d(x, (h // size[0], w // size[1]))
    if h >= size[0] and w >= size[1]:
        return F.adaptive_max_pool2d(x, tuple(size))
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


@register
class MTAN(MTLModel):
    """Multi-task attention network (Liu et al., CVPR 2019, Eq. 1); see module docstring.

    Shared parameters: the backbone and the bridges f^(j).
    Task-specific parameters of t: its attention modules g_t, h_t and its head.
    Shared representation: none (``shared_rep=False``; ``encode`` returns
    {task: a^_t^(J)}); the attention modules sit before the representation,
    so in rep mode they receive w_t dL_t (as in losses mode), in param mode
    dL_t (as the heads).  ``last_masks`` keeps the masks of the last forward.

    Parameters
    ----------
    backbone:
        A :class:`~mtlkit.encoders.vision.Stages` backbone whose stages output
        (B, C, H, W) maps (or a list of stages with ``channels``).
    heads:
        {task: head}; each reads a^_t^(J), shaped like the backbone's output.
    att_reduction:
        g's hidden width is C_j // att_reduction (a bottleneck, as ResNet-based
        MTAN implementations use); 1 keeps the full width C_j.
    """

    shared_rep = False

    def __init__(self, backbone: nn.Module | Sequence[nn.Module], heads: Mapping[str, nn.Module],
                 channels: Sequence[int] | None = None, att_reduction: int = 4) -> None:
        super().__init__(list(heads))
        if not isinstance(att_reduction, int) or att_reduction < 1:
            raise ValueError(f"att_reduction must be an integer >= 1, got {att_reduction!r}")
        self.att_reduction = att_reduction
        self.backbone = as_stages(backbone, channels)
        c = self.backbone.channels
        self.bridges = nn.ModuleList(
            nn.Sequential(nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU())
            for a, b in zip(c[:-1], c[1:]))
        self.attention = nn.ModuleDict({
            t: nn.ModuleList(attention_block(cj if j == 0 else 2 * cj, cj,
                                             max(1, cj // att_reduction))
                             for j, cj in enumerate(c)) for t in self.tasks})
        self.heads = nn.ModuleDict(dict(heads))
        self.last_masks: dict[str, list[Tensor]] = {}

    def encode(self, x: Tensor) -> dict[str, Tensor]:
        feats = []
        for stage in self.backbone.stages:
            x = stage(x)
            if x.dim() != 4:
                raise ValueError(f"MTAN needs (B, C, H, W) stage outputs, got shape "
                                 f"{tuple(x.shape)}; use CrossStitch, NDDR or MMoE otherwise")
            feats.append(x)
        reps, self.last_masks = {}, {}
        for t in self.tasks:
            masks, att = [], None
            for j, p in enumerate(feats):
                inp = p if j == 0 else torch.cat([p, resize(self.bridges[j - 1](att),
                                                            p.shape[-2:])], 1)
                a = self.attention[t][j](inp)
                masks.append(a.detach())
                att = a * p
            reps[t], self.last_masks[t] = att, masks
        return reps

    def decode(self, rep: Tensor, task: str) -> Tensor:
        return self.heads[task](rep)

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        mods = [self.attention[task], self.heads[task]]
        return [p for m in mods for p in m.parameters() if p.requires_grad]
