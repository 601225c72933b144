"""The bi-level engine (strategies with ``needs_query``: MetaWeighting).

One call, at the current parameters theta (``metaweighting.txt`` Algorithm 1,
regrouped so that each step needs no extra forward pass):

1. support forward, L^s (T,); per-task gradients G^s[t] = grad L^s_t   (T backward)
2. query forward,   L^q (T,); per-task gradients G^q[t] = grad L^q_t   (T backward)
3. ``(d, w) = weighting.combine(L^s, G^s, QueryContext(L^q, G^q, owned=True))``:
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
(:meth:`~mtlkit.arch.base.MTLModel.row_parameters`; :class:`RowLayout`).  Row t is
zero in the blocks of tasks j != t, so head t enters the dot products of D only at
(t, t) and receives the weighted update w_t/T grad L^s_t of Eq. 9.  Derived in
``notebooks/30_hypergradients_and_metaweighting.ipynb``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from mtlkit.arch.base import MTLModel
from mtlkit.engine.base import Criterion, Engine, Inputs, Query, StepResult, check_batched
from mtlkit.engine.rows import flatten_into, write_grads
from mtlkit.weighting.base import QueryContext, Weighting


class RowLayout:
    """Where each parameter's gradient lives in a full row (the shared block, then each
    task's block, as :meth:`~mtlkit.arch.base.MTLModel.row_parameters` orders them),
    and the reusable row buffers."""

    def __init__(self, model: MTLModel) -> None:
        self.shared: list[nn.Parameter] = list(model.shared_parameters())
        self.own = {t: list(model.task_parameters(t)) for t in model.tasks}
        self.params = model.row_parameters()  #: the order of a row
        self.n_shared = sum(p.numel() for p in self.shared)  #: the shared block is row[:n_shared]
        self.blocks: dict[str, tuple[int, int]] = {}  #: each task's block, (start, end)
        i = self.n_shared
        for t in model.tasks:
            n = sum(p.numel() for p in self.own[t])
            self.blocks[t] = (i, i + n)
            i += n
        self.numel = i
        self._bufs: dict[str, Tensor] = {}

    def buffer(self, key: str, rows: int, like: Tensor) -> Tensor:
        """A zero-initialised rows x numel buffer, reused across steps.  Blocks of
        other tasks are never written, so they stay zero."""
        b = self._bufs.get(key)
        if b is None or b.shape != (rows, self.numel) or b.device != like.device \
                or b.dtype != like.dtype:
            b = self._bufs[key] = torch.zeros(rows, self.numel, device=like.device,
                                              dtype=like.dtype)
        return b

    def fill(self, buf: Tensor, losses: list[Tensor], tasks: tuple[str, ...],
             retain_last: bool) -> None:
        """buf[i] = grad L_i w.r.t. the shared parameters and task i's own parameters
        (one concatenating copy per block, straight into the row)."""
        n, k = len(tasks), len(self.shared)
        for i, t in enumerate(tasks):
            gs = torch.autograd.grad(losses[i], self.shared + self.own[t],
                                     retain_graph=retain_last or i < n - 1, allow_unused=True)
            flatten_into(buf[i, :self.n_shared], gs[:k], self.shared)
            if self.own[t]:
                start, end = self.blocks[t]
                flatten_into(buf[i, start:end], gs[k:], self.own[t])
            del gs  # free this task's gradients before the next backward allocates


class BilevelEngine(Engine):
    """The engine of strategies with ``needs_query`` (see the module docstring).

    Parameters as :class:`~mtlkit.engine.single.GradEngine`'s; ``mode`` resolves to
    ``"param"`` (full rows), and ``batched`` is checked but unused (the per-task
    backward passes of a row run in a loop).
    """

    def __init__(self, model: MTLModel, weighting: Weighting, mode: str = "auto",
                 batched: bool | str = "auto") -> None:
        check_batched(batched)
        if not weighting.needs_query:
            raise ValueError(f"{weighting.name} is not bi-level (no needs_query): use "
                             "mtlkit.engine.make_engine (or GradEngine)")
        super().__init__(model, weighting, mode)
        self.layout = RowLayout(model)
        self._parity = 0  # which of the two support buffers this step writes

    def _losses(self, inputs: Inputs, targets: Mapping[str, Tensor],
                criteria: Mapping[str, Criterion]) -> tuple[list[Tensor], dict[str, Tensor]]:
        """The T losses as a *list*: back-propagating losses[i] of a stacked tensor
        would send zeros through every other task's graph (StackBackward), T times
        the work when each task has its own batch."""
        outs, _, _ = self.forward(inputs, detach=False)
        return [criteria[t](outs[t], targets[t]) for t in self.model.tasks], outs

    def step(self, inputs: Inputs, targets: Mapping[str, Tensor],
             criteria: Mapping[str, Criterion], query: Query | None = None) -> StepResult:
        """One bi-level step on a support batch and ``query`` = (inputs, targets) of a
        query batch (see the module docstring); the caller zeroes gradients before and
        calls ``optimizer.step()`` after."""
        if query is None:
            raise ValueError(f"{self.weighting.name} needs a query batch: give the trainer "
                             "query_ratio > 0 (a support/query split)")
        tasks, lay = self.model.tasks, self.layout
        losses, outs = self._losses(inputs, targets, criteria)
        aux = self.model.auxiliary_loss()  # of the support forward, before the query forward
        self._parity ^= 1  # alternate two support buffers: the strategy keeps the last one
        gs = lay.buffer(f"support{self._parity}", len(tasks), lay.shared[0])
        lay.fill(gs, losses, tasks, retain_last=aux is not None)
        q_inputs, q_targets = query
        with torch.enable_grad():
            q_losses, _ = self._losses(q_inputs, q_targets, criteria)
            gq = lay.buffer("query", len(tasks), lay.shared[0])
            lay.fill(gq, q_losses, tasks, retain_last=False)
        losses, q_losses = torch.stack(losses).detach(), torch.stack(q_losses).detach()
        d, w = self.weighting.combine(losses, gs, QueryContext(q_losses, gq, owned=True))
        write_grads(lay.params, d, as_views=True)
        if aux is not None:
            aux.backward()
        return StepResult(losses, w.detach(), {t: o.detach() for t, o in outs.items()},
                          query_losses=q_losses)
