"""One training criterion per task kind (:data:`mtlkit.data.base.TASK_KINDS`).

Each criterion maps ``(output, target)`` to a scalar loss ``L_t``, the ``l_t``
of ``rlw.md`` §2, Eq. 1.  Shapes (N = batch):

=============== ================= ================= =====================================
kind            output            target            loss
=============== ================= ================= =====================================
classification  (N, C) logits     (N,) long         cross-entropy
multilabel      (N, C) logits     (N, C) in {0, 1}  binary cross-entropy, mean over N*C
segmentation    (N, C, H, W)      (N, H, W) long    cross-entropy, void = ignore_index
depth           (N, 1, H, W)      same shape        L1 on valid pixels (finite, > 0)
normals         (N, 3, H, W)      (N, 3, H, W)      1 - cos(pred, gt) on valid pixels
regression      (N,) or (N, D)    same shape        mean squared error
tagging         (N, L, C) logits  (N, L) long       token CE, padding = ignore_index
=============== ================= ================= =====================================

Valid pixels: depth 0 (or NaN) means "no measurement" (NYUv2 convention);
a zero target normal means "no measurement".  Used by
``notebooks/01_the_mtl_problem.ipynb``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from mtlkit.data.base import TASK_KINDS, TaskSpec

Criterion = Callable[[Tensor, Tensor], Tensor]


def depth_valid(target: Tensor) -> Tensor:
    """Boolean mask of pixels with a depth measurement (finite and > 0)."""
    return torch.isfinite(target) & (target > 0)


def normals_valid(target: Tensor) -> Tensor:
    """(N, H, W) mask of pixels whose ground-truth normal is non-zero."""
    return target.abs().sum(dim=1) > 0


def classification_loss(out: Tensor, y: Tensor) -> Tensor:
    """Cross-entropy -log softmax(out)_y, mean over the batch."""
    return F.cross_entropy(out.float(), y.long())


def multilabel_loss(out: Tensor, y: Tensor) -> Tensor:
    """Binary cross-entropy with logits, mean over samples and labels."""
    return F.binary_cross_entropy_with_logits(out.float(), y.float())


def make_ignoring_ce(ignore_index: int) -> Criterion:
    """Cross-entropy over the class dimension 1 that skips ``ignore_index`` targets.

    Works for (N, C, H, W) segmentation and, after moving the class axis,
    (N, L, C) tagging.  A batch with no valid target gives a loss of 0 (with a
    gradient), not NaN.
    """

    def loss(out: Tensor, y: Tensor) -> Tensor:
        y = y.long()
        if (y != ignore_index).any():
            return F.cross_entropy(out.float(), y, ignore_index=ignore_index)
        return out.float().sum() * 0.0

    return loss


def make_tagging_loss(ignore_index: int) -> Criterion:
    """Token cross-entropy: out (N, L, C), y (N, L); padding = ``ignore_index``."""
    ce = make_ignoring_ce(ignore_index)
    return lambda out, y: ce(out.reshape(-1, out.shape[-1]), y.reshape(-1))


def depth_loss(out: Tensor, y: Tensor) -> Tensor:
    """mean |out - y| over valid pixels (y finite and > 0)."""
    out = out.float().reshape(y.shape)
    mask = depth_valid(y)
    if not mask.any():
        return out.sum() * 0.0
    return (out[mask] - y[mask]).abs().mean()


def normals_loss(out: Tensor, y: Tensor) -> Tensor:
    """mean (1 - <out/|out|, y/|y|>) over valid pixels (non-zero y)."""
    mask = normals_valid(y)
    if not mask.any():
        return out.float().sum() * 0.0
    cos = F.cosine_similarity(out.float(), y.float(), dim=1, eps=1e-8)
    return (1.0 - cos[mask]).mean()


def regression_loss(out: Tensor, y: Tensor) -> Tensor:
    """Mean squared error."""
    return F.mse_loss(out.float().reshape(y.shape), y.float())


def criterion_for(spec: TaskSpec) -> Criterion:
    """The training loss for one task, chosen by ``spec.kind``."""
    kind = spec.kind
    if kind == "classification":
        return classification_loss
    if kind == "multilabel":
        return multilabel_loss
    if kind == "segmentation":
        return make_ignoring_ce(spec.ignore_index)
    if kind == "tagging":
        return make_tagging_loss(spec.ignore_index)
    if kind == "depth":
        return depth_loss
    if kind == "normals":
        return normals_loss
    if kind == "regression":
        return regression_loss
    raise ValueError(f"task {spec.name!r}: no criterion for kind {kind!r}; "
                     f"choose one of {TASK_KINDS}")


def criteria_for(tasks: Sequence[TaskSpec]) -> dict[str, Criterion]:
    """{task name: criterion} for every task."""
    return {t.name: criterion_for(t) for t in tasks}
