"""MMoE: multi-gate mixture of experts (Ma et al., KDD 2018), for vector inputs.

E shared experts and one softmax gate per task:

    g_t(x) = softmax(W_t x) in the simplex of R^E
    r_t    = sum_e g_t(x)_e f_e(x)                      (Ma et al., Eq. 5-6)
    y_t    = head_t(r_t)

Derived in ``notebooks/03_architectures.ipynb``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from mtlkit.arch.base import MTLModel, register


def mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers with ReLU after each (also the last: experts output features)."""
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers)


def mix(weights: Tensor, experts: Tensor) -> Tensor:
    """sum_e weights_e f_e per example: weights (B, E), expert outputs (B, E, ...) -> (B, ...)."""
    return torch.einsum("be,be...->b...", weights, experts)


@register
class MMoE(MTLModel):
    """Multi-gate mixture of experts (Ma et al., KDD 2018); see module docstring.

    Shared parameters: the experts.  Task-specific parameters of t: its gate W_t
    and its head.  Shared representation: none (``shared_rep=False``;
    ``encode`` returns {task: r_t}); the gates sit before r_t, so in rep mode
    they receive w_t dL_t.  ``last_gates`` keeps the gate values of the last forward.

    Parameters
    ----------
    in_features:
        Size of the (flattened) input vector.
    heads:
        {task: head} reading ``expert_out`` features.
    num_experts:
        E, the number of experts.
    expert_hidden, expert_out:
        Each expert is an MLP in_features -> expert_hidden... -> expert_out.
    """

    shared_rep = False

    def __init__(self, in_features: int, heads: Mapping[str, nn.Module], num_experts: int = 4,
                 expert_hidden: Sequence[int] = (64,), expert_out: int = 32) -> None:
        super().__init__(list(heads))
        if num_experts < 1 or in_features < 1 or expert_out < 1:
            raise ValueError("MMoE needs num_experts, in_features and expert_out >= 1")
        self.in_features, self.out_features = in_features, expert_out
        sizes = [in_features, *expert_hidden, expert_out]
        self.experts = nn.ModuleList(mlp(sizes) for _ in range(num_experts))
        self.gates = nn.ModuleDict({t: nn.Linear(in_features, num_experts) for t in self.tasks})
        self.heads = nn.ModuleDict(dict(heads))
        self.last_gates: dict[str, Tensor] = {}

    def encode(self, x: Tensor) -> dict[str, Tensor]:
        x = x.flatten(1)
        if x.shape[1] != self.in_features:
            raise ValueError(f"MMoE expects {self.in_features} input features, got {x.shape[1]}")
        fe = torch.stack([e(x) for e in self.experts], dim=1)  # (B, E, out)
        reps = {}
        for t in self.tasks:
            g = torch.softmax(self.gates[t](x), dim=-1)  # (B, E)
            self.last_gates[t] = g.detach()
            reps[t] = mix(g, fe)
        return reps

    def decode(self, rep: Tensor, task: str) -> Tensor:
        return self.heads[task](rep)

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        mods = [self.gates[task], self.heads[task]]
        return [p for m in mods for p in m.parameters() if p.requires_grad]
