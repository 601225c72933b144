"""CGC and PLE: customized gate control and progressive layered extraction (Tang, Liu, Zhao &
Gong, RecSys 2020), for vector inputs.

One extraction level k has shared experts E_s^k, experts E_t^k of each task t, a softmax gate
per task and, below the last level, a shared gate:

    h_t^k = sum_e g_t^k(h_t^{k-1})_e  [E_s^k(s^{k-1}), E_t^k(h_t^{k-1})]_e      (Eqs. 2-5)
    s^k   = sum_e g_s^k(s^{k-1})_e    [E_s^k(s^{k-1}), E_1^k(h_1^{k-1}), ..., E_T^k(h_T^{k-1})]_e
                                                                                 (Eq. 6)
with h_t^0 = s^0 = x; y_t = head_t(h_t^K).  CGC is the single level (K = 1, no shared gate).

What is shared, exactly: below the last level the shared gate mixes *every* task's experts
into s^k, which feeds all tasks above, so those experts are reached by every loss and count
as shared parameters; task t's own parameters are its head, its last-level experts and gate,
and its gate at level K-1 (h_t^{K-1} feeds only task t's last level).

Derived in ``notebooks/04_more_architectures.ipynb``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from mtlkit.arch.base import MTLModel, register
from mtlkit.arch.mmoe import mix, mlp


def gated_sum(logits: Tensor, experts: Tensor) -> Tensor:
    """sum_e softmax(logits)_e f_e: logits (B, E), expert outputs (B, E, O) -> (B, O)."""
    return mix(torch.softmax(logits, dim=-1), experts)


def _counts(tasks: Sequence[str], num_specific: int | Mapping[str, int]) -> dict[str, int]:
    counts = {t: num_specific for t in tasks} if isinstance(num_specific, int) \
        else {t: num_specific[t] for t in tasks}
    if any(not isinstance(c, int) or c < 0 for c in counts.values()):
        raise ValueError(f"num_specific must be an int >= 0 or a mapping task -> int, got "
                         f"{num_specific!r}")
    return counts


class ExtractionLevel(nn.Module):
    """One level: shared experts, each task's experts and gate, and (``shared_gate``) the
    shared gate of Eq. 6.  ``forward(s, {t: h_t})`` returns (s', {t: h_t'})."""

    def __init__(self, tasks: Sequence[str], in_features: int, num_shared: int,
                 num_specific: Mapping[str, int], sizes: Sequence[int], shared_gate: bool) -> None:
        super().__init__()
        self.tasks = tuple(tasks)
        self.shared = nn.ModuleList(mlp([in_features, *sizes]) for _ in range(num_shared))
        self.specific = nn.ModuleDict({t: nn.ModuleList(mlp([in_features, *sizes])
                                                        for _ in range(num_specific[t]))
                                       for t in tasks})
        self.gates = nn.ModuleDict({t: nn.Linear(in_features, num_shared + num_specific[t])
                                    for t in tasks})
        total = num_shared + sum(num_specific.values())
        self.shared_gate = nn.Linear(in_features, total) if shared_gate else None

    @staticmethod
    def _run(experts: nn.ModuleList, x: Tensor) -> list[Tensor]:
        return [e(x) for e in experts]

    def forward(self, s: Tensor, h: Mapping[str, Tensor]
                ) -> tuple[Tensor | None, dict[str, Tensor], dict[str, Tensor]]:
        fs = self._run(self.shared, s)
        ft = {t: self._run(self.specific[t], h[t]) for t in self.tasks}
        gates = {t: torch.softmax(self.gates[t](h[t]), dim=-1) for t in self.tasks}
        out = {t: mix(gates[t], torch.stack(fs + ft[t], dim=1)) for t in self.tasks}
        s_out = None
        if self.shared_gate is not None:
            every = fs + [f for t in self.tasks for f in ft[t]]
            s_out = gated_sum(self.shared_gate(s), torch.stack(every, dim=1))
        return s_out, out, gates


@register
class PLE(MTLModel):
    """Progressive layered extraction (Tang et al., RecSys 2020, Eqs. 2-6); see the module
    docstring.  ``shared_rep=False`` (``encode`` returns {task: h_t^K}); ``last_gates`` keeps
    each task's last-level gate values of the last forward.

    Parameters
    ----------
    in_features:
        Size of the (flattened) input vector.
    heads:
        {task: head} reading ``expert_out`` features.
    num_levels:
        K, the number of extraction levels (the paper: 2 on its industrial data).
    num_shared, num_specific:
        Shared experts per level, and each task's experts per level (an int, or a mapping
        task -> int).
    expert_hidden, expert_out:
        Each expert is an MLP (its input) -> expert_hidden... -> expert_out.
    """

    shared_rep = False

    def __init__(self, in_features: int, heads: Mapping[str, nn.Module], num_levels: int = 2,
                 num_shared: int = 2, num_specific: int | Mapping[str, int] = 1,
                 expert_hidden: Sequence[int] = (64,), expert_out: int = 32) -> None:
        super().__init__(list(heads))
        name = type(self).__name__
        if num_levels < 1 or in_features < 1 or expert_out < 1 or num_shared < 0:
            raise ValueError(f"{name} needs num_levels, in_features, expert_out >= 1 and "
                             "num_shared >= 0")
        counts = _counts(self.tasks, num_specific)
        if num_shared == 0 and min(counts.values()) == 0:
            raise ValueError(f"{name}: every task needs at least one expert (num_shared or "
                             "num_specific)")
        self.in_features, self.out_features = in_features, expert_out
        sizes = [*expert_hidden, expert_out]
        self.levels = nn.ModuleList(
            ExtractionLevel(self.tasks, in_features if k == 0 else expert_out, num_shared,
                            counts, sizes, shared_gate=k < num_levels - 1)
            for k in range(num_levels))
        self.heads = nn.ModuleDict(dict(heads))
        self.last_gates: dict[str, Tensor] = {}

    def encode(self, x: Tensor) -> dict[str, Tensor]:
        x = x.flatten(1)
        if x.shape[1] != self.in_features:
            raise ValueError(f"{type(self).__name__} expects {self.in_features} input "
                             f"features, got {x.shape[1]}")
        s, h = x, {t: x for t in self.tasks}
        for level in self.levels:
            s, h, gates = level(s, h)
        self.last_gates = {t: g.detach() for t, g in gates.items()}
        return h

    def decode(self, rep: Tensor, task: str) -> Tensor:
        return self.heads[task](rep)

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        last = self.levels[-1]
        mods: list[nn.Module] = [last.specific[task], last.gates[task], self.heads[task]]
        if len(self.levels) > 1:
            mods.append(self.levels[-2].gates[task])
        return [p for m in mods for p in m.parameters() if p.requires_grad]


@register
class CGC(PLE):
    """Customized gate control (Tang et al., RecSys 2020, §4.2, Eqs. 2-5): one extraction level
    of :class:`PLE` (shared experts, each task's experts, one gate per task over both).
    Task t's parameters: its experts, its gate and its head; the shared experts are shared.

    Parameters
    ----------
    in_features, heads, num_shared, num_specific, expert_hidden, expert_out:
        As :class:`PLE`'s.
    """

    def __init__(self, in_features: int, heads: Mapping[str, nn.Module], num_shared: int = 2,
                 num_specific: int | Mapping[str, int] = 1, expert_hidden: Sequence[int] = (64,),
                 expert_out: int = 32) -> None:
        super().__init__(in_features, heads, 1, num_shared, num_specific, expert_hidden,
                         expert_out)
