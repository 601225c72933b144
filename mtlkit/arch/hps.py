"""Hard parameter sharing (HPS): one shared encoder, one head per task."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from mtlkit.arch.base import MTLModel


class HPS(MTLModel):
    """y_t = h_t(f(x)): the encoder f is shared, each head h_t is task-specific
    (Caruana 1997; ``rlw.md`` §2, Eq. 1).

    Shared parameters: the encoder's.  Shared representation: f(x).
    """

    shared_rep = True

    def __init__(self, encoder: nn.Module, heads: Mapping[str, nn.Module]) -> None:
        super().__init__(list(heads))
        self.encoder = encoder
        self.heads = nn.ModuleDict(dict(heads))

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def decode(self, rep: Tensor, task: str) -> Tensor:
        return self.heads[task](rep)

    def shared_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.encoder.parameters() if p.requires_grad]

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        return [p for p in self.heads[task].parameters() if p.requires_grad]
