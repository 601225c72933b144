"""LTB: learning to branch (Guo, Lee & Ulbricht, ICML 2020), for vector inputs.

T columns of L layers (one column per task).  The input of layer i of column t is a
branching mixture of every column's layer i-1 output,

    a_t^i  = GumbelSoftmax(alpha_t^i / tau)   in the simplex of R^T               (§3.2)
    x_t^i  = layer_t^i( sum_j a_tj^i x_j^{i-1} ),     x_t^0 = layer_t^0(x),
    y_t    = head_t(x_t^{L-1}),

so training learns, layer by layer, which column each task reads: a tree of shared and
branched layers (at evaluation a_t^i is the one-hot argmax: the learned tree).

What is shared: every layer below the last feeds every column above it through the mixtures,
so it is shared; task t's own parameters are its last layer, its mixing logits alpha_t^{L-1}
and its head.

Derived in ``notebooks/04_more_architectures.ipynb``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtlkit.arch.base import MTLModel, register


@register
class LTB(MTLModel):
    """Learning to branch (Guo et al., ICML 2020); see the module docstring.
    ``shared_rep=False`` (``encode`` returns {task: x_t^{L-1}}).

    Training samples the mixtures with the Gumbel-softmax relaxation (``hard=False``: soft
    samples, so every column gets a gradient at every step; ``hard=True``: one-hot samples
    with the straight-through gradient, as LibMTL); evaluation uses the argmax.  ``tau`` is
    an attribute: anneal it during training (the paper decays it; LibMTL as
    epochs / 20 / sqrt(epoch + 1) after a warm-up).  ``last_branches`` keeps the mixtures
    of the last forward.

    Parameters
    ----------
    in_features:
        Size of the (flattened) input vector.
    heads:
        {task: head} reading ``hidden[-1]`` features.
    hidden:
        Widths of the L layers of each column (L >= 2).
    tau:
        Gumbel-softmax temperature.
    hard:
        One-hot straight-through samples instead of soft ones.
    """

    shared_rep = False

    def __init__(self, in_features: int, heads: Mapping[str, nn.Module],
                 hidden: Sequence[int] = (64, 64, 32), tau: float = 1.0,
                 hard: bool = False) -> None:
        super().__init__(list(heads))
        if len(hidden) < 2 or in_features < 1 or min(hidden) < 1:
            raise ValueError(f"LTB needs in_features >= 1 and at least two layer widths >= 1, "
                             f"got {in_features!r}, {list(hidden)!r}")
        if not tau > 0:
            raise ValueError(f"LTB tau must be > 0, got {tau!r}")
        self.in_features, self.out_features = in_features, hidden[-1]
        self.tau, self.hard = float(tau), bool(hard)
        sizes = [in_features, *hidden]
        self.columns = nn.ModuleDict({
            t: nn.ModuleList(nn.Sequential(nn.Linear(a, b), nn.ReLU())
                             for a, b in zip(sizes[:-1], sizes[1:])) for t in self.tasks})
        n = len(self.tasks)
        self.alpha = nn.ModuleDict({t: nn.ParameterList(nn.Parameter(torch.zeros(n))
                                                        for _ in range(len(hidden) - 1))
                                    for t in self.tasks})
        self.heads = nn.ModuleDict(dict(heads))
        self.last_branches: dict[str, list[Tensor]] = {}

    def branch_weights(self, task: str, layer: int) -> Tensor:
        """a_t^i for layer i >= 1: a Gumbel-softmax sample in training, one-hot argmax in eval."""
        logits = self.alpha[task][layer - 1]
        if self.training:
            return F.gumbel_softmax(logits, tau=self.tau, hard=self.hard)
        return F.one_hot(logits.argmax(), len(self.tasks)).to(logits.dtype)

    def encode(self, x: Tensor) -> dict[str, Tensor]:
        x = x.flatten(1)
        if x.shape[1] != self.in_features:
            raise ValueError(f"LTB expects {self.in_features} input features, got {x.shape[1]}")
        reps = [self.columns[t][0](x) for t in self.tasks]
        branches: dict[str, list[Tensor]] = {t: [] for t in self.tasks}
        for i in range(1, len(self.columns[self.tasks[0]])):
            stacked = torch.stack(reps)  # (T, B, width)
            new = []
            for t in self.tasks:
                a = self.branch_weights(t, i)
                branches[t].append(a.detach())
                new.append(self.columns[t][i](torch.einsum("j,jbo->bo", a, stacked)))
            reps = new
        self.last_branches = branches
        return dict(zip(self.tasks, reps))

    def decode(self, rep: Tensor, task: str) -> Tensor:
        return self.heads[task](rep)

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        own = [*self.columns[task][-1].parameters(), self.alpha[task][-1],
               *self.heads[task].parameters()]
        return [p for p in own if p.requires_grad]
