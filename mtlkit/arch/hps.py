"""Hard parameter sharing (HPS): one shared encoder, one head per task."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from mtlkit.arch.base import MTLModel, register
from mtlkit.encoders.vision import LinearHead


@register
class HPS(MTLModel):
    """y_t = h_t(f(x)): the encoder f is shared, each head h_t is task-specific
    (Caruana 1997; ``rlw.md`` §2, Eq. 1 and §5.2; ``metaweighting.txt`` App. B).

    Shared parameters: the encoder's (trainable) parameters.
    Task-specific parameters of t: head h_t's.
    Shared representation: r = f(x), one tensor that every head reads
    (``shared_rep=True``), so rep mode (MGDA-UB) works with any strategy.
    Derived in ``notebooks/03_architectures.ipynb``.

    Parameters
    ----------
    encoder:
        Any module x -> r (TextCNN, TransformerEncoder, a ResNet, SmallCNN, ...).
    heads:
        {task: module r -> y_t}.
    """

    shared_rep = True

    def __init__(self, encoder: nn.Module, heads: Mapping[str, nn.Module]) -> None:
        super().__init__(list(heads))
        bad = [t for t, h in heads.items() if not isinstance(h, nn.Module)]
        if not isinstance(encoder, nn.Module) or bad:
            raise TypeError("HPS needs an nn.Module encoder and nn.Module heads"
                            + (f"; not modules: heads {bad}" if bad else ""))
        self.encoder = encoder
        self.heads = nn.ModuleDict(dict(heads))

    @classmethod
    def with_linear_heads(cls, encoder: nn.Module, in_features: int,
                          outputs: Mapping[str, int], hidden: int | None = None) -> HPS:
        """HPS with a :class:`~mtlkit.encoders.vision.LinearHead` per task:
        ``outputs = {task: number of outputs}`` (classes, or 1 for regression)."""
        return cls(encoder, {t: LinearHead(in_features, n, hidden) for t, n in outputs.items()})

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def decode(self, rep: Tensor, task: str) -> Tensor:
        return self.heads[task](rep)

    def shared_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.encoder.parameters() if p.requires_grad]

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        return [p for p in self.heads[task].parameters() if p.requires_grad]
