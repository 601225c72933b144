"""The single-level engine: the hot path of gradient-based weighting.

One training step, for T tasks with losses L_t(theta_sh, theta_t):

* ``losses`` mode: w = strategy(L); back-propagate sum_t w_t L_t once.
* ``param`` mode:  G[t] = dL_t/dtheta_sh (a T x P matrix in one preallocated
  buffer on the device); (d, w) = strategy(L, G); theta_sh.grad = d.
* ``rep`` mode:    G[t] = dL_t/dr for the shared representation r (MGDA-UB);
  (d_r, w) = strategy(L, G); r.backward(d_r), so the encoder receives
  dr/dtheta_sh^T d_r.  With per-task representations (no single shared r)
  the strategy must be a reweighting and each r_t receives w_t G[t].

Heads always receive the gradient of their own loss (unweighted) in the two
gradient modes, and of sum_t w_t L_t in ``losses`` mode, as in LibMTL.
An architecture's :meth:`~mtlkit.arch.base.MTLModel.auxiliary_loss` is added
once, unweighted.

Each per-task backward goes through task t's head and the shared part only:
``torch.autograd.grad`` follows just the paths from L_t to the inputs asked for.

``param`` mode runs in two stages.  (1) Each head is back-propagated once, to
the (detached) representation: z_t = dL_t/dr, plus the head's own gradient.
(2) The encoder is back-propagated T times with ``grad_outputs=z_t``, or once
with ``is_grads_batched=True`` (vmap over the T cotangents) when the model has
one shared representation; if an operator has no batching rule the engine
falls back to the loop, once, with a warning.  The rows are written into the
T x P buffer with one ``torch.cat(out=...)`` per backward, and the direction is
handed to the parameters as views (no per-parameter copies).  Nothing in a
step reads a value on the host.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import torch
from torch import Tensor

from mtlkit.arch.base import MTLModel, Rep
from mtlkit.engine.base import (
    Criterion,
    Engine,
    Inputs,
    Query,
    StepResult,
    check_batched,
    resolve_mode,
)
from mtlkit.engine.rows import accumulate_grads, flatten_into, write_grads
from mtlkit.weighting.base import LOSSES, PARAM, REP, Weighting


class GradEngine(Engine):
    """Computes exactly what a single-level ``weighting`` needs and writes the update
    into ``model`` (bi-level strategies: :class:`~mtlkit.engine.bilevel.BilevelEngine`;
    :func:`~mtlkit.engine.make_engine` picks).

    Parameters
    ----------
    model:
        An :class:`~mtlkit.arch.base.MTLModel`.
    weighting:
        A strategy from :func:`mtlkit.weighting.get` without ``needs_query``.
    mode:
        ``"auto"``, ``"losses"``, ``"param"`` or ``"rep"``.  Invalid
        combinations raise here, at construction.
    batched:
        ``param`` mode only: back-propagate the T representation gradients
        through the encoder in one vmapped call (True), in a loop (False), or
        ``"auto"`` (vmapped except on CPU).  Same result either way.
    """

    def __init__(self, model: MTLModel, weighting: Weighting, mode: str = "auto",
                 batched: bool | str = "auto") -> None:
        #: param mode: one vmapped encoder backward (True), a loop of T (False),
        #: or 'auto' (vmapped on accelerators, loop on CPU)
        self.batched = check_batched(batched)
        if weighting.needs_query:
            raise ValueError(f"{weighting.name} is bi-level (needs_query): build its engine "
                             "with mtlkit.engine.make_engine (or BilevelEngine)")
        mode = resolve_mode(weighting, mode)
        if mode == REP and not model.shared_rep and not weighting.is_reweighting:
            raise ValueError(
                f"{weighting.name} in 'rep' mode needs one shared representation, but "
                f"{type(model).__name__} gives each task its own; use mode='param'")
        super().__init__(model, weighting, mode)
        self._buf: Tensor | None = None
        self._numel = [p.numel() for p in self.shared]

    # ---------------------------------------------------------------- step
    def step(self, inputs: Inputs, targets: Mapping[str, Tensor],
             criteria: Mapping[str, Criterion], query: Query | None = None) -> StepResult:
        """Forward, per-task backward as the mode requires, and ``.grad`` set.

        ``query`` is ignored: a single-level strategy uses no query batch (a trainer
        may still hold one out, e.g. to train every method on the same support set).
        The caller zeroes gradients before and calls ``optimizer.step()`` after.
        """
        tasks = self.model.tasks
        outs, reps, used = self.forward(inputs, detach=self.mode in (REP, PARAM))
        # keep the list: back-propagating one entry of a stacked vector would send
        # zeros through every other task's head (StackBackward)
        loss_list = [criteria[t](outs[t], targets[t]) for t in tasks]
        losses = torch.stack(loss_list)
        aux = self.model.auxiliary_loss()
        if self.mode == LOSSES:
            weights = self._losses_step(losses, aux)
        elif self.mode == PARAM:
            weights = self._param_step(losses, aux, reps, used, loss_list)
        else:
            weights = self._rep_step(losses, aux, reps, used, loss_list)
        return StepResult(losses.detach(), weights.detach(),
                          {t: o.detach() for t, o in outs.items()})

    def _losses_step(self, losses: Tensor, aux: Tensor | None) -> Tensor:
        _, w = self.weighting.combine(losses.detach(), None)
        total = (w.to(losses.dtype) * losses).sum()
        (total if aux is None else total + aux).backward()
        return w

    def buffer(self, rows: int, cols: int, like: Tensor) -> Tensor:
        """The preallocated rows x cols gradient matrix, reused across steps."""
        b = self._buf
        if b is None or b.shape != (rows, cols) or b.device != like.device or b.dtype != like.dtype:
            self._buf = b = torch.empty(rows, cols, device=like.device, dtype=like.dtype)
        return b

    def _rep_grads(self, losses: list[Tensor], reps: list[Rep], used: list[Rep]
                   ) -> tuple[list[Tensor], list[Tensor], list[Tensor | None], bool]:
        """Stage 1: z_t = dL_t/dr_t through task t's head only (heads get their
        own gradient).  Returns the per-task representations, the leaves the
        heads read, z_t (None where L_t does not use r_t), and whether each task
        has its own representation."""
        tasks = self.model.tasks
        per_task = len(used) == len(tasks) and len(tasks) > 1
        if not per_task and isinstance(used[0], Mapping):
            flat, reps = [used[0][t] for t in tasks], [reps[0][t] for t in tasks]
            per_task = True
        elif per_task:
            flat = used
        else:
            flat, reps = [used[0]] * len(tasks), [reps[0]] * len(tasks)
        zs: list[Tensor | None] = []
        for i, t in enumerate(tasks):
            own = self.task_params[t]
            gs = torch.autograd.grad(losses[i], [flat[i]] + own, retain_graph=True,
                                     allow_unused=True)
            zs.append(gs[0])
            accumulate_grads(own, gs[1:])
        return reps, flat, zs, per_task

    def _param_step(self, losses: Tensor, aux: Tensor | None, reps: list[Rep],
                    used: list[Rep], loss_list: list[Tensor]) -> Tensor:
        tasks, shared = self.model.tasks, self.shared
        reps, _, zs, per_task = self._rep_grads(loss_list, reps, used)
        G = self.buffer(len(tasks), sum(self._numel), shared[0])
        if not per_task and self._use_batched(shared[0]):
            try:
                self._encoder_grads_batched(G, reps[0], zs)
            except RuntimeError as err:  # an operator without a vmap batching rule
                warnings.warn(f"batched per-task backward failed ({err}); using a loop of "
                              "T backward passes from now on", RuntimeWarning, stacklevel=3)
                self.batched = False
                self._encoder_grads_loop(G, reps, zs)
        else:
            self._encoder_grads_loop(G, reps, zs)
        d, w = self.weighting.combine(losses.detach(), G)
        write_grads(shared, d, as_views=True)
        if aux is not None:
            aux.backward()
        return w

    def _use_batched(self, like: Tensor) -> bool:
        if self.batched == "auto":
            return like.device.type != "cpu"
        return bool(self.batched)

    def _encoder_grads_loop(self, G: Tensor, reps: list[Tensor], zs: list[Tensor | None]
                            ) -> None:
        """Stage 2, one backward per task: G[t] = (dr_t/dtheta_sh)^T z_t."""
        shared, tasks = self.shared, self.model.tasks
        for i, t in enumerate(tasks):
            if zs[i] is None:
                G[i].zero_()
                continue
            own = self.task_params[t]  # task parameters inside the encoder, if any
            gs = torch.autograd.grad(reps[i], shared + own, grad_outputs=zs[i],
                                     retain_graph=True, allow_unused=True)
            flatten_into(G[i], gs[: len(shared)], shared)
            accumulate_grads(own, gs[len(shared):])

    def _encoder_grads_batched(self, G: Tensor, rep: Tensor, zs: list[Tensor | None]) -> None:
        """Stage 2 for one shared representation: one vmapped backward of the
        stacked z_t (``is_grads_batched=True``), rows written straight into G."""
        tasks, shared = self.model.tasks, self.shared
        z = torch.stack([torch.zeros_like(rep) if zt is None else zt for zt in zs])
        own = [p for t in tasks for p in self.task_params[t]]
        gs = torch.autograd.grad(rep, shared + own, grad_outputs=z, retain_graph=True,
                                 allow_unused=True, is_grads_batched=True)
        t_rows = len(tasks)
        parts = [(g.reshape(t_rows, -1) if g is not None else
                  torch.zeros(t_rows, p.numel(), dtype=G.dtype, device=G.device))
                 for g, p in zip(gs[: len(shared)], shared)]
        torch.cat(parts, dim=1, out=G)
        k = len(shared)
        for i, t in enumerate(tasks):  # a task's own encoder parameters: its own row only
            n = len(self.task_params[t])
            accumulate_grads(self.task_params[t],
                        tuple(None if g is None else g[i] for g in gs[k:k + n]))
            k += n

    def _rep_step(self, losses: Tensor, aux: Tensor | None, reps: list[Rep],
                  used: list[Rep], loss_list: list[Tensor]) -> Tensor:
        tasks = self.model.tasks
        reps, flat, zs, per_task = self._rep_grads(loss_list, reps, used)
        numel = flat[0].numel()
        if any(r.numel() != numel for r in flat):
            raise ValueError("rep mode needs representations of equal size for every task")
        G = self.buffer(len(tasks), numel, flat[0])
        for i in range(len(tasks)):
            if zs[i] is None:
                G[i].zero_()
            else:
                G[i].copy_(zs[i].reshape(-1))
        d, w = self.weighting.combine(losses.detach(), G)
        if per_task:
            if not self.weighting.is_reweighting and len(reps) > 1:
                raise ValueError(f"{self.weighting.name} is not a reweighting; per-task "
                                 "representations need mode='param'")
            grads = [w[i].to(G.dtype) * G[i].view_as(reps[i]) for i in range(len(tasks))]
            torch.autograd.backward(reps, grads, retain_graph=aux is not None)
        else:
            reps[0].backward(d.view_as(reps[0]), retain_graph=aux is not None)
        if aux is not None:
            aux.backward()
        return w
