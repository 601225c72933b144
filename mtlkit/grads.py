"""The per-task gradient engine: the hot path of gradient-based weighting.

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

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from mtlkit.arch.base import MTLModel, Rep, detach_rep
from mtlkit.weighting.base import LOSSES, MODES, PARAM, REP, Weighting

Criterion = Callable[[Tensor, Tensor], Tensor]


@dataclass
class StepResult:
    """What one engine step produced (all detached)."""

    losses: Tensor  #: (T,) per-task training losses
    weights: Tensor  #: (T,) the task weights the strategy used
    outputs: dict[str, Tensor]  #: head outputs, for metrics
    query_losses: Tensor | None = None  #: (T,) query losses, bi-level strategies only


def resolve_mode(weighting: Weighting, mode: str = "auto") -> str:
    """The gradient mode to use: ``auto`` picks the strategy's first mode."""
    if mode == "auto":
        return weighting.modes[0]
    if mode not in MODES:
        raise ValueError(f"unknown gradient mode {mode!r}; choose one of auto, {', '.join(MODES)}")
    if LOSSES in weighting.modes:
        return LOSSES  # a loss-only strategy trains identically in every mode
    if mode not in weighting.modes:
        raise ValueError(f"{weighting.name} supports gradient modes {weighting.modes}, "
                         f"not {mode!r}")
    return mode


class GradEngine:
    """Computes exactly what ``weighting`` needs and writes the update into ``model``.

    Parameters
    ----------
    model:
        An :class:`~mtlkit.arch.base.MTLModel`.
    weighting:
        A strategy from :func:`mtlkit.weighting.get`.
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
        if batched not in (True, False, "auto"):
            raise ValueError(f"batched must be True, False or 'auto', got {batched!r}")
        #: param mode: one vmapped encoder backward (True), a loop of T (False),
        #: or 'auto' (vmapped on accelerators, loop on CPU)
        self.batched = batched
        self.model = model
        self.weighting = weighting
        self.mode = resolve_mode(weighting, mode)
        if self.mode == REP and not model.shared_rep and not weighting.is_reweighting:
            raise ValueError(
                f"{weighting.name} in 'rep' mode needs one shared representation, but "
                f"{type(model).__name__} gives each task its own; use mode='param'")
        self.shared = model.shared_parameters()
        if not self.shared:
            raise ValueError(f"{type(model).__name__} has no shared parameters to train")
        self.task_params = {t: model.task_parameters(t) for t in model.tasks}
        self._buf: Tensor | None = None
        self._numel = [p.numel() for p in self.shared]

    # ------------------------------------------------------------- forward
    def forward(self, inputs: Tensor | Mapping[str, Tensor],
                detach: bool) -> tuple[dict[str, Tensor], list[Rep], list[Rep]]:
        """Heads' outputs, the representations, and the (maybe detached) copies
        the heads read.  ``inputs`` is one batch for all tasks, or a dict of
        one batch per task."""
        model = self.model
        if isinstance(inputs, Mapping):
            outs, reps, used = {}, [], []
            for t in model.tasks:
                rep = model.encode(inputs[t])
                rin = detach_rep(rep) if detach else rep
                outs[t] = model.decode(model.rep_for(rin, t), t)
                reps.append(model.rep_for(rep, t))
                used.append(model.rep_for(rin, t))
            return outs, reps, used
        rep = model.encode(inputs)
        rin = detach_rep(rep) if detach else rep
        outs = {t: model.decode(model.rep_for(rin, t), t) for t in model.tasks}
        return outs, [rep], [rin]

    @staticmethod
    def task_losses(outputs: Mapping[str, Tensor], targets: Mapping[str, Tensor],
                    criteria: Mapping[str, Criterion], tasks: tuple[str, ...]) -> Tensor:
        """The (T,) vector [L_1, ..., L_T]."""
        return torch.stack([criteria[t](outputs[t], targets[t]) for t in tasks])

    # ---------------------------------------------------------------- step
    def step(self, inputs: Tensor | Mapping[str, Tensor], targets: Mapping[str, Tensor],
             criteria: Mapping[str, Criterion],
             query: tuple[Tensor | Mapping[str, Tensor], Mapping[str, Tensor]] | None = None,
             ) -> StepResult:
        """Forward, per-task backward as the mode requires, and ``.grad`` set.

        ``query`` = (inputs, targets) of a query batch, required by strategies
        with ``needs_query`` (bi-level; see :mod:`mtlkit.bilevel`).
        The caller zeroes gradients before and calls ``optimizer.step()`` after.
        """
        if self.weighting.needs_query:
            from mtlkit import bilevel

            if query is None:
                raise ValueError(f"{self.weighting.name} needs a query batch: give the trainer "
                                 "query_ratio > 0 (a support/query split)")
            return bilevel.step(self, inputs, targets, criteria, query)
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
            _accumulate(own, gs[1:])
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
                import warnings

                warnings.warn(f"batched per-task backward failed ({err}); using a loop of "
                              "T backward passes from now on", RuntimeWarning, stacklevel=3)
                self.batched = False
                self._encoder_grads_loop(G, reps, zs)
        else:
            self._encoder_grads_loop(G, reps, zs)
        d, w = self.weighting.combine(losses.detach(), G)
        _write_grads(shared, d, as_views=True)
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
            _flatten_into(G[i], gs[: len(shared)], shared)
            _accumulate(own, gs[len(shared):])

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
            _accumulate(self.task_params[t],
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


# ------------------------------------------------------------------ helpers
def _flatten_into(row: Tensor, grads: tuple[Tensor | None, ...], params: list) -> None:
    """Copy per-parameter gradients into one row of the T x P buffer (one kernel)."""
    parts = [(g if g is not None else torch.zeros_like(p)).reshape(-1).to(row.dtype)
             for g, p in zip(grads, params)]
    torch.cat(parts, out=row)


def _write_grads(params: list, direction: Tensor, as_views: bool = False) -> None:
    """theta.grad (+)= the slice of the flat direction that belongs to theta.

    ``as_views=True``: where theta.grad is None it becomes a view of
    ``direction`` (no copy); only for a direction nobody else will modify.
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


def _accumulate(params: list, grads: tuple[Tensor | None, ...]) -> None:
    """p.grad += g for task-specific parameters."""
    for p, g in zip(params, grads):
        if g is None:
            continue
        if p.grad is None:
            p.grad = g.detach().clone()
        else:
            p.grad.add_(g)


def flat_grad(loss: Tensor, params: list, retain_graph: bool = True) -> Tensor:
    """d loss / d params as one flat vector (zeros where a parameter is unused)."""
    gs = torch.autograd.grad(loss, params, retain_graph=retain_graph, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                      for g, p in zip(gs, params)])


def per_task_grads(losses: Tensor, params: list) -> Tensor:
    """G[t] = dL_t/dparams, the reference (slow, simple) T x P computation."""
    return torch.stack([flat_grad(losses[i], params) for i in range(losses.numel())])
