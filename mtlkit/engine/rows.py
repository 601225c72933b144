"""Gradient rows: per-parameter gradients flattened into one row of a T x P matrix, and a
flat direction written back into ``.grad``.

A *row* is the concatenation of the flattened gradients of a list of parameters, in that
list's order (the shared parameters, or the shared ones and then each task's:
:meth:`~mtlkit.arch.base.MTLModel.row_parameters`).  These are the only places where the
engines move gradients between parameters and rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def flatten_into(row: Tensor, grads: Sequence[Tensor | None], params: Sequence[Tensor]) -> None:
    """Copy per-parameter gradients into ``row`` (one concatenating kernel); a missing
    gradient (None: the parameter was not used) is written as zeros."""
    parts = [(g if g is not None else torch.zeros_like(p)).reshape(-1).to(row.dtype)
             for g, p in zip(grads, params)]
    torch.cat(parts, out=row)


def write_grads(params: Sequence[Tensor], direction: Tensor, as_views: bool = False) -> None:
    """theta.grad (+)= the slice of the flat ``direction`` that belongs to theta.

    ``as_views=True``: where theta.grad is None it becomes a view of ``direction`` (no
    copy); only for a direction nobody else will modify.
    """
    i = 0
    for p in params:
        n = p.numel()
        g = direction[i:i + n].view_as(p)
        if p.grad is None:
            p.grad = g if as_views and g.dtype == p.dtype else g.to(p.dtype, copy=True)
        else:
            p.grad.add_(g)
        i += n


def accumulate_grads(params: Sequence[Tensor], grads: Sequence[Tensor | None]) -> None:
    """p.grad += g for each (parameter, gradient) pair; None gradients are skipped."""
    for p, g in zip(params, grads):
        if g is None:
            continue
        if p.grad is None:
            p.grad = g.detach().clone()
        else:
            p.grad.add_(g)


def flat_grad(loss: Tensor, params: Sequence[Tensor], retain_graph: bool = True) -> Tensor:
    """d loss / d params as one flat row (zeros where a parameter is unused)."""
    gs = torch.autograd.grad(loss, list(params), retain_graph=retain_graph, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                      for g, p in zip(gs, params)])


def per_task_grads(losses: Tensor, params: Sequence[Tensor]) -> Tensor:
    """G[t] = dL_t/dparams, the reference (slow, simple) T x P computation."""
    return torch.stack([flat_grad(losses[i], params) for i in range(losses.numel())])
