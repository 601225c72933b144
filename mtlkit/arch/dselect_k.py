"""DSelect-k: differentiable selection of k experts (Hazimeh et al., NeurIPS 2021), for vector
inputs.

E shared experts; each task has k "single expert selectors", each a vector z_i of
m = ceil(log2 E) logits read as a binary code through the smooth step S:

    r_i(e) = prod_j  S(z_ij)^{b_j(e)} (1 - S(z_ij))^{1 - b_j(e)}    (b(e): the bits of e; Eq. 5)
    q      = sum_i softmax(w)_i r_i                               (Eq. 6)
    r_t    = sum_e q_e f_e(x)

with S(u) = 0 for u <= -gamma/2, 1 for u >= gamma/2, and -2u^3/gamma^3 + 3u/(2 gamma) + 1/2
in between (Eq. 4: C^1, so gradients flow until a selector is binary).  Per-example gating:
z and w are linear in x (the paper's "per-example" variant, as LibMTL).  Each r_i is a
distribution over the 2^m codes; when E is not a power of 2 the codes past E select nothing.

Derived in ``notebooks/04_more_architectures.ipynb``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from mtlkit.arch.base import MTLModel, register
from mtlkit.arch.mmoe import mix, mlp


def smooth_step(u: Tensor, gamma: float = 1.0) -> Tensor:
    """S(u) of Eq. 4 (see the module docstring)."""
    cubic = -2 / gamma**3 * u**3 + 3 / (2 * gamma) * u + 0.5
    return torch.where(u <= -gamma / 2, torch.zeros_like(u),
                       torch.where(u >= gamma / 2, torch.ones_like(u), cubic))


def binary_codes(num_experts: int) -> Tensor:
    """(E, m) booleans: row e is e in binary, most significant bit first."""
    m = max(math.ceil(math.log2(num_experts)), 1)
    e = torch.arange(num_experts)[:, None]
    return ((e >> torch.arange(m - 1, -1, -1)[None, :]) & 1).bool()


def selector_weights(z: Tensor, codes: Tensor, gamma: float) -> Tensor:
    """r (B, k, E): r_i(e) = prod_j S(z_ij) if bit j of e is 1 else 1 - S(z_ij); z (B, k, m)."""
    s = smooth_step(z, gamma).unsqueeze(2)  # (B, k, 1, m)
    return torch.where(codes[None, None], s, 1 - s).prod(-1)


def expert_weights(z: Tensor, w: Tensor, codes: Tensor, gamma: float) -> Tensor:
    """q (B, E) = sum_i softmax(w)_i r_i (Eq. 6); z (B, k, m), w (B, k)."""
    return mix(torch.softmax(w, dim=-1), selector_weights(z, codes, gamma))


@register
class DSelectK(MTLModel):
    """DSelect-k (Hazimeh et al., NeurIPS 2021); see the module docstring.  Registered as
    ``DSelectK`` (``"DSelect-k"`` and ``"DSelect_k"`` find it).

    Shared parameters: the experts.  Task t's: its selector logits (z and w layers) and its
    head.  ``shared_rep=False``.  :meth:`auxiliary_loss` is the paper's entropy
    regularisation of the selectors (weight ``entropy_reg``, pushing each r_i to one expert),
    plus, when E is not a power of 2, the mean of 1 / sum_e r_i(e) (LibMTL's term keeping
    the selectors on real experts); the engine adds it once, unweighted.

    Parameters
    ----------
    in_features:
        Size of the (flattened) input vector.
    heads:
        {task: head} reading ``expert_out`` features.
    num_experts, num_nonzeros:
        E and k (the paper's default k = 2, LibMTL's too).
    gamma:
        The smooth step's width (1.0).
    entropy_reg:
        Weight of the entropy term (LibMTL's 1e-6; 0 = none).
    expert_hidden, expert_out:
        Each expert is an MLP in_features -> expert_hidden... -> expert_out.
    """

    shared_rep = False

    def __init__(self, in_features: int, heads: Mapping[str, nn.Module], num_experts: int = 4,
                 num_nonzeros: int = 2, gamma: float = 1.0, entropy_reg: float = 1e-6,
                 expert_hidden: Sequence[int] = (64,), expert_out: int = 32) -> None:
        super().__init__(list(heads))
        if num_experts < 2 or num_nonzeros < 1 or in_features < 1 or expert_out < 1:
            raise ValueError("DSelectK needs num_experts >= 2, num_nonzeros >= 1, "
                             "in_features >= 1 and expert_out >= 1")
        if not gamma > 0 or not entropy_reg >= 0:
            raise ValueError(f"DSelectK needs gamma > 0 and entropy_reg >= 0, got {gamma!r}, "
                             f"{entropy_reg!r}")
        self.in_features, self.out_features = in_features, expert_out
        self.num_nonzeros, self.gamma, self.entropy_reg = num_nonzeros, float(gamma), \
            float(entropy_reg)
        self.register_buffer("codes", binary_codes(num_experts), persistent=False)
        m = self.codes.shape[1]
        self.experts = nn.ModuleList(mlp([in_features, *expert_hidden, expert_out])
                                     for _ in range(num_experts))
        self.z_logits = nn.ModuleDict({t: nn.Linear(in_features, num_nonzeros * m)
                                       for t in self.tasks})
        self.w_logits = nn.ModuleDict({t: nn.Linear(in_features, num_nonzeros)
                                       for t in self.tasks})
        with torch.no_grad():  # near-uniform selectors at the start (the authors' init)
            for p in self.z_logits.parameters():
                p.uniform_(-self.gamma / 100, self.gamma / 100)
            for p in self.w_logits.parameters():
                p.uniform_(-0.05, 0.05)
        self.heads = nn.ModuleDict(dict(heads))
        self.last_gates: dict[str, Tensor] = {}
        self._selectors: list[Tensor] = []

    def encode(self, x: Tensor) -> dict[str, Tensor]:
        x = x.flatten(1)
        if x.shape[1] != self.in_features:
            raise ValueError(f"DSelectK expects {self.in_features} input features, got "
                             f"{x.shape[1]}")
        fe = torch.stack([e(x) for e in self.experts], dim=1)  # (B, E, out)
        reps, self._selectors = {}, []
        for t in self.tasks:
            z = self.z_logits[t](x).reshape(len(x), self.num_nonzeros, -1)
            r = selector_weights(z, self.codes, self.gamma)
            q = mix(torch.softmax(self.w_logits[t](x), dim=-1), r)
            self._selectors.append(r)
            self.last_gates[t] = q.detach()
            reps[t] = mix(q, fe)
        return reps

    def decode(self, rep: Tensor, task: str) -> Tensor:
        return self.heads[task](rep)

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        mods = [self.z_logits[task], self.w_logits[task], self.heads[task]]
        return [p for m in mods for p in m.parameters() if p.requires_grad]

    def auxiliary_loss(self) -> Tensor | None:
        """Entropy of the selectors (x ``entropy_reg``), plus mean 1 / sum_e r_i(e) when E is
        not a power of 2; None before the first forward or when both terms vanish."""
        if not self._selectors:
            return None
        num = self.codes.shape[0]
        power_of_2 = num == 2 ** self.codes.shape[1]
        if self.entropy_reg == 0 and power_of_2:
            return None
        r = torch.stack(self._selectors)  # (T, B, k, E)
        loss = -self.entropy_reg * (r * torch.log(r + 1e-6)).sum(-1).mean(1).sum()
        if not power_of_2:
            loss = loss + (1 / r.sum(-1)).mean(1).sum()
        return loss
