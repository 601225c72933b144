"""The shared-private model with an adversarial task discriminator and an
orthogonality constraint (Liu, Qiu & Huang, "Adversarial Multi-task Learning
for Text Classification", ACL 2017, §4; used by AdvMTL and TchebycheffAdv of
``metaweighting.txt`` §6.2).

For an input x of task t:

    s   = E_sh(x)                    shared features (N x d_s)
    p_t = E_t(x)                     private features of task t (N x d_p)
    y_t = head_t([s, p_t])

plus two terms that :meth:`SharedPrivate.auxiliary_loss` returns (the engine
adds them once, unweighted):

* adversarial (Liu et al. Eq. 13): a discriminator D(s) predicts which task an
  example came from; ``lambda_adv * CE(D(GRL(s)), t)``.  The gradient reversal
  layer GRL is the identity forward and multiplies the gradient by -1 backward,
  so D *minimises* the cross-entropy while the shared encoder *maximises* it:
  min_{E_sh} max_D  -lambda_adv CE, the min-max of Eq. 13 in one backward pass.
* orthogonality (Liu et al. Eq. 14): ``lambda_orth * sum_t ||S_t^T P_t||_F^2``, which
  pushes the shared and private features of each task apart.

Derived and checked in ``notebooks/31_adversarial_and_minmax_baselines.ipynb``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtlkit.arch.base import MTLModel, register


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return -ctx.scale * grad, None


def grad_reverse(x: Tensor, scale: float = 1.0) -> Tensor:
    """GRL (Ganin & Lempitsky 2015): identity forward, gradient times -scale backward."""
    return _Reverse.apply(x, scale)


def orthogonality(shared: Tensor, private: Tensor) -> Tensor:
    """||S^T P||_F^2 for features S (N x d_s), P (N x d_p) (Liu et al. 2017, Eq. 14)."""
    s, p = shared.reshape(shared.shape[0], -1), private.reshape(private.shape[0], -1)
    return (s.T @ p).pow(2).sum()


class _TaskReps(Mapping):
    """{task: [s, p_task]} computed on demand, so a per-task batch runs only its own
    private encoder; each computed entry is recorded for the auxiliary loss."""

    def __init__(self, model: SharedPrivate, x: Tensor, shared: Tensor) -> None:
        self._model, self._x, self._s = model, x, shared
        self._cache: dict[str, Tensor] = {}

    def __getitem__(self, task: str) -> Tensor:
        if task not in self._cache:
            p = self._model.private[task](self._x)
            self._cache[task] = torch.cat([self._s, p], dim=-1)
            self._model._records[task] = (self._s, p)
        return self._cache[task]

    def __iter__(self) -> Iterator[str]:
        return iter(self._model.tasks)

    def __len__(self) -> int:
        return len(self._model.tasks)


@register
class SharedPrivate(MTLModel):
    """Shared-private MTL model with a task discriminator (Liu et al. 2017, Fig. 1c).

    Parameters
    ----------
    shared:
        Shared encoder E_sh: x -> (N, d_s).
    private:
        One private encoder per task, x -> (N, d_p).
    heads:
        One head per task, reading the concatenation [s, p_t] (N, d_s + d_p).
    shared_dim:
        d_s, the width of the discriminator's input.
    adv_weight:
        lambda_adv of the adversarial term (Liu et al.: 0.05); 0 switches it off.
    orth_weight:
        lambda_orth of the orthogonality term (Liu et al.: 0.01); 0 switches it off.
    discriminator:
        D: (N, d_s) -> (N, T) logits; default one linear layer (softmax(U s + b), Eq. 12).

    Shared parameters: E_sh only.  Task t's parameters: E_t and head_t.  The
    discriminator is neither: it is trained only through :meth:`auxiliary_loss`.
    The adversarial term needs to know each example's task, so it is meaningful
    for per-task batches (homogeneous data, ``inputs = {task: x_t}``); with one
    batch for all tasks every example is labelled with every task.
    """

    shared_rep = False

    def __init__(self, shared: nn.Module, private: Mapping[str, nn.Module],
                 heads: Mapping[str, nn.Module], shared_dim: int, adv_weight: float = 0.05,
                 orth_weight: float = 0.01, discriminator: nn.Module | None = None) -> None:
        super().__init__(list(heads))
        if set(private) != set(heads):
            raise ValueError(f"private encoders {sorted(private)} and heads {sorted(heads)} "
                             "must be given for the same tasks")
        for name, v in (("adv_weight", adv_weight), ("orth_weight", orth_weight)):
            if not v >= 0:
                raise ValueError(f"SharedPrivate {name} must be >= 0, got {v!r}")
        self.shared = shared
        self.private = nn.ModuleDict(dict(private))
        self.heads = nn.ModuleDict(dict(heads))
        self.discriminator = discriminator or nn.Linear(shared_dim, len(self.tasks))
        self.adv_weight, self.orth_weight = float(adv_weight), float(orth_weight)
        self._records: dict[str, tuple[Tensor, Tensor]] = {}
        self.last_adv: Tensor | None = None  #: last discriminator cross-entropy (detached)
        self.last_orth: Tensor | None = None  #: last sum_t ||S_t^T P_t||_F^2 (detached)

    def encode(self, x: Tensor) -> _TaskReps:
        return _TaskReps(self, x, self.shared(x))

    def rep_for(self, rep: Any, task: str) -> Tensor:
        return rep[task]

    def decode(self, rep: Tensor, task: str) -> Tensor:
        return self.heads[task](rep)

    def shared_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.shared.parameters() if p.requires_grad]

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        return [p for m in (self.private[task], self.heads[task]) for p in m.parameters()
                if p.requires_grad]

    # ------------------------------------------------------- the two terms
    def adversarial_loss(self, records: Mapping[str, tuple[Tensor, Tensor]]) -> Tensor:
        """CE(D(GRL(s)), task) over every recorded example (Liu et al. Eq. 13)."""
        idx = {t: i for i, t in enumerate(self.tasks)}
        s = torch.cat([records[t][0].reshape(records[t][0].shape[0], -1) for t in records])
        y = torch.cat([torch.full((records[t][0].shape[0],), idx[t], dtype=torch.long,
                                  device=s.device) for t in records])
        return F.cross_entropy(self.discriminator(grad_reverse(s)), y)

    def auxiliary_loss(self) -> Tensor | None:
        """lambda_adv CE(D(GRL(s)), t) + lambda_orth sum_t ||S_t^T P_t||_F^2 of the
        last forward pass (the latest batch of each task); None when both are off."""
        rec, self._records = self._records, {}
        if not rec or (self.adv_weight == 0 and self.orth_weight == 0):
            return None
        total = 0.0
        if self.adv_weight > 0:
            adv = self.adversarial_loss(rec)
            self.last_adv, total = adv.detach(), total + self.adv_weight * adv
        if self.orth_weight > 0:
            orth = sum(orthogonality(s, p) for s, p in rec.values())
            self.last_orth, total = orth.detach(), total + self.orth_weight * orth
        return total
