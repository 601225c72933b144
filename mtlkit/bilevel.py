"""The engine's bi-level step (strategies with ``needs_query``: MetaWeighting).

One call, at the current parameters theta (``metaweighting.txt`` Algorithm 1,
regrouped so that each step needs no extra forward pass):

1. support forward, L^s (T,); per-task gradients G^s[t] = grad L^s_t   (T backward)
2. query forward,   L^q (T,); per-task gradients G^q[t] = grad L^q_t   (T backward)
3. ``(d, w) = weighting.combine(L^s, G^s, query_losses=L^q, query_grads=G^q)``:
   the strategy pairs G^q (at theta^k) with the G^s it kept from the previous
   call (at theta^{k-1}), updates w, and returns d = G^s^T w
4. ``.grad`` of the shared parameters and of every head = the slice of d; the
   architecture's auxiliary loss is back-propagated once, unweighted.

So the cost is two forward passes and 2T per-task backward passes through
the shared part, the floor for an exact per-task hypergradient, plus what
cannot be avoided on top: writing the 2T gradient rows and two T x P products
(D and the direction).  G^s alternates between two buffers, so the strategy
keeps the previous one by reference instead of copying it (``owned=True``).

A row of G covers the shared parameters and then every task's parameters
(:func:`row_parameters`).  Row t is zero in the blocks of tasks j != t, so
head t enters the dot products of D only at (t, t) and receives the weighted
update w_t/T grad L^s_t of Eq. 9.  Derived in
``notebooks/30_hypergradients_and_metaweighting.ipynb``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from mtlkit.grads import StepResult, _flatten_into, _write_grads


def row_parameters(model: Any) -> list:
    """The parameters of one gradient row: shared ones, then each task's in task order."""
    return list(model.shared_parameters()) + [p for t in model.tasks
                                              for p in model.task_parameters(t)]


@dataclass
class _Layout:
    """Where each parameter's gradient lives in a row, and the two reusable buffers."""

    shared: list
    own: dict[str, list]
    offsets: dict[str, int]  # start of each task's block
    numel: int
    n_shared: int  # the shared block is row[:n_shared]
    bufs: dict[str, Tensor] = field(default_factory=dict)
    parity: int = 0  # which of the two support buffers this step writes

    def buffer(self, key: str, rows: int, like: Tensor) -> Tensor:
        """A zero-initialised rows x numel buffer, reused across steps.  Blocks of
        other tasks are never written, so they stay zero."""
        b = self.bufs.get(key)
        if b is None or b.shape != (rows, self.numel) or b.device != like.device \
                or b.dtype != like.dtype:
            b = self.bufs[key] = torch.zeros(rows, self.numel, device=like.device,
                                             dtype=like.dtype)
        return b


def _layout(engine: Any) -> _Layout:
    lay = getattr(engine, "_bilevel_layout", None)
    if lay is None:
        model = engine.model
        shared = list(engine.shared)
        own = {t: list(engine.task_params[t]) for t in model.tasks}
        offsets, i = {}, sum(p.numel() for p in shared)
        for t in model.tasks:
            offsets[t] = i
            i += sum(p.numel() for p in own[t])
        lay = _Layout(shared, own, offsets, i, sum(p.numel() for p in shared))
        engine._bilevel_layout = lay
    return lay


def _fill(buf: Tensor, losses: list[Tensor], lay: _Layout, tasks: tuple[str, ...],
          retain_last: bool) -> None:
    """buf[i] = grad L_i w.r.t. the shared parameters and task i's own parameters
    (one concatenating copy per block, straight into the row)."""
    n, k = len(tasks), len(lay.shared)
    for i, t in enumerate(tasks):
        gs = torch.autograd.grad(losses[i], lay.shared + lay.own[t],
                                 retain_graph=retain_last or i < n - 1, allow_unused=True)
        _flatten_into(buf[i, :lay.n_shared], gs[:k], lay.shared)
        if lay.own[t]:
            start = lay.offsets[t]
            end = start + sum(p.numel() for p in lay.own[t])
            _flatten_into(buf[i, start:end], gs[k:], lay.own[t])
        del gs  # free this task's gradients before the next backward allocates


def _task_losses(engine: Any, inputs: Any, targets: Mapping, criteria: Mapping
                 ) -> tuple[list[Tensor], dict[str, Tensor]]:
    """The T losses as a *list*: back-propagating losses[i] of a stacked tensor
    would send zeros through every other task's graph (StackBackward), T times
    the work when each task has its own batch."""
    outs, _, _ = engine.forward(inputs, detach=False)
    return [criteria[t](outs[t], targets[t]) for t in engine.model.tasks], outs


def step(engine: Any, inputs: Any, targets: Mapping[str, Tensor], criteria: Mapping,
         query: tuple[Any, Mapping[str, Tensor]]) -> StepResult:
    """One bi-level step (see the module docstring); the caller zeroes gradients
    before and calls ``optimizer.step()`` after."""
    model, strat = engine.model, engine.weighting
    tasks = model.tasks
    lay = _layout(engine)
    losses, outs = _task_losses(engine, inputs, targets, criteria)
    aux = model.auxiliary_loss()  # of the support forward, before the query forward
    lay.parity ^= 1  # alternate two support buffers: the strategy keeps the last one
    gs = lay.buffer(f"support{lay.parity}", len(tasks), lay.shared[0])
    _fill(gs, losses, lay, tasks, retain_last=aux is not None)
    q_inputs, q_targets = query
    with torch.enable_grad():
        q_losses, _ = _task_losses(engine, q_inputs, q_targets, criteria)
        gq = lay.buffer("query", len(tasks), lay.shared[0])
        _fill(gq, q_losses, lay, tasks, retain_last=False)
    losses, q_losses = torch.stack(losses).detach(), torch.stack(q_losses).detach()
    d, w = strat.combine(losses, gs, query_losses=q_losses, query_grads=gq, owned=True)
    _write_grads(lay.shared + [p for t in tasks for p in lay.own[t]], d, as_views=True)
    if aux is not None:
        aux.backward()
    return StepResult(losses, w.detach(), {t: o.detach() for t, o in outs.items()},
                      query_losses=q_losses)

