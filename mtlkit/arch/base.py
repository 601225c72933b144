"""What every MTL architecture tells the gradient engine.

An architecture splits into a shared part (the encoder, parameters theta_sh)
and task-specific parts (the heads, parameters theta_t):

    r   = encode(x)             shared representation (one tensor), or one
                                representation per task (a dict) when the
                                architecture has no single shared one
    y_t = decode(r_t, t)        the head of task t

The engine needs exactly three things from a model: which parameters are
shared, which belong to each task, and where the representation is.

Architectures register themselves under their class name (:func:`register`); look
them up with :func:`mtlkit.arch.get` / :func:`mtlkit.arch.names`, by the rules of
:mod:`mtlkit.registry`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from mtlkit.registry import Registry

Rep = Tensor | dict[str, Tensor]


class MTLModel(nn.Module):
    """Base class: subclasses implement :meth:`encode` and :meth:`decode`.

    Attributes
    ----------
    tasks:
        Task names, in the order of the loss vector.
    shared_rep:
        True when :meth:`encode` returns one tensor fed to every head (HPS).
        False when it returns ``{task: tensor}`` (cross-stitch, MTAN, NDDR):
        then representation-gradient mode works only for strategies that are
        reweightings, and the engine says so at construction.
    """

    shared_rep: bool = True

    def __init__(self, tasks: Sequence[str]) -> None:
        super().__init__()
        if len(tasks) == 0 or len(set(tasks)) != len(tasks):
            raise ValueError(f"tasks must be distinct and non-empty, got {list(tasks)}")
        self.tasks: tuple[str, ...] = tuple(tasks)

    # ---------------------------------------------------------- to override
    def encode(self, x: Tensor) -> Rep:
        """Shared part: r = encoder(x)."""
        raise NotImplementedError

    def decode(self, rep: Tensor, task: str) -> Tensor:
        """Task part: y_t = head_t(r_t)."""
        raise NotImplementedError

    def shared_parameters(self) -> list[nn.Parameter]:
        """theta_sh: every trainable parameter that is not task-specific."""
        own = {id(p) for t in self.tasks for p in self.task_parameters(t)}
        return [p for p in self.parameters() if p.requires_grad and id(p) not in own]

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        """theta_t: the trainable parameters that only task ``task`` uses."""
        raise NotImplementedError

    def auxiliary_loss(self) -> Tensor | None:
        """An extra, unweighted loss of the last forward (adversarial or
        orthogonality terms of shared-private models); None for most models."""
        return None

    # -------------------------------------------------------------- helpers
    def rep_for(self, rep: Rep, task: str) -> Tensor:
        """The representation that the head of ``task`` reads."""
        return rep[task] if isinstance(rep, Mapping) else rep

    def forward(self, x: Tensor, tasks: Sequence[str] | None = None) -> dict[str, Tensor]:
        """All heads on one input: {t: decode(encode(x)_t, t)}."""
        rep = self.encode(x)
        return {t: self.decode(self.rep_for(rep, t), t) for t in (tasks or self.tasks)}

    def all_task_parameters(self) -> list[nn.Parameter]:
        """The union of every task's parameters, in task order."""
        return [p for t in self.tasks for p in self.task_parameters(t)]

    def row_parameters(self) -> list[nn.Parameter]:
        """The parameters of one full gradient row, in its order: the shared ones, then
        each task's in task order (the bi-level engine's rows, MetaWeighting's
        preconditioner)."""
        return list(self.shared_parameters()) + self.all_task_parameters()


#: every architecture, by class name (``mtlkit.arch.get(name, **kwargs)`` builds one)
ARCHITECTURES: Registry[type[MTLModel]] = Registry("architecture")


def register(cls: type[MTLModel]) -> type[MTLModel]:
    """Class decorator: add an architecture to :data:`ARCHITECTURES` under its class name."""
    return ARCHITECTURES.add(cls.__name__, cls)


def count_parameters(params: Sequence[nn.Parameter]) -> int:
    """Number of scalar parameters."""
    return sum(p.numel() for p in params)


def detach_rep(rep: Rep) -> Rep:
    """A leaf copy of the representation that collects gradients."""
    if isinstance(rep, Mapping):
        return {k: v.detach().requires_grad_(True) for k, v in rep.items()}
    return rep.detach().requires_grad_(True)


def check_partition(model: MTLModel) -> None:
    """Raise if a parameter is both shared and task-specific, or in two tasks."""
    seen: dict[int, str] = {}
    for t in model.tasks:
        for p in model.task_parameters(t):
            if id(p) in seen:
                raise ValueError(f"a parameter belongs to tasks {seen[id(p)]!r} and {t!r}")
            seen[id(p)] = t
    if not model.shared_parameters():
        raise ValueError(f"{type(model).__name__} has no shared parameters")
