"""Dynamic Weight Average (DWA), Liu, Johns & Davison, CVPR 2019 (MTAN paper)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mtlkit.weighting.base import LOSSES, Combined, Weighting, at_work, register, weighted_direction

_EPS = 1e-12


def dwa_weights(prev: Tensor, prev2: Tensor, temperature: float) -> Tensor:
    r"""Liu et al. 2019, the DWA rule: :math:`w = T\,\mathrm{softmax}(r/\tau)`,
    :math:`r_t = L_t^{k-1}/L_t^{k-2}`."""
    r = torch.nan_to_num(prev / prev2.clamp_min(_EPS), nan=1.0).clamp(max=1e6)  # inf/inf -> 1
    return prev.numel() * torch.softmax(r / temperature, dim=0)


@register
class DWA(Weighting):
    r"""Dynamic Weight Average (Liu et al., CVPR 2019, the DWA rule; ``rlw.md`` Table 5).

    .. math:: w_t(k) = T\,\frac{\exp(r_t(k-1)/\tau)}{\sum_j \exp(r_j(k-1)/\tau)},\qquad
              r_t(k-1) = \frac{\bar L_t(k-1)}{\bar L_t(k-2)} ,

    where :math:`\bar L(k)` is the average loss over *period* k, and
    :math:`w = 1` for the first two periods.  Weights sum to T, as in the paper.

    Periods, made explicit: the paper averages over epochs, but a strategy
    does not know where an epoch ends.  Here a period is ``period`` consecutive
    :meth:`combine` calls: the strategy averages the losses it sees within a
    period, keeps the averages of the last two completed periods, and uses
    them for every call of the next period.  ``period=1`` (default) is the
    per-iteration variant used by many re-implementations; set ``period`` to
    the number of batches per epoch for the paper's epoch-level DWA.
    Derived in ``notebooks/10_learned_and_calculated_loss_weights.ipynb``.

    Parameters
    ----------
    temperature:
        Softmax temperature :math:`\tau`; the paper uses 2.
    period:
        Number of calls averaged into one period (see above).
    """

    name = "DWA"
    modes = (LOSSES,)

    def __init__(self, temperature: float = 2.0, period: int = 1) -> None:
        super().__init__()
        if not (isinstance(temperature, (int, float)) and math.isfinite(temperature)
                and temperature > 0):
            raise ValueError(f"DWA: temperature must be a positive number, got {temperature!r}")
        if isinstance(period, bool) or not isinstance(period, int) or period < 1:
            raise ValueError(f"DWA: period must be a positive integer (calls per period), "
                             f"got {period!r}")
        self.temperature, self.period = float(temperature), period
        self.history: list[Tensor] = []  # averages of the last two completed periods
        self.running: Tensor | None = None  # sum of losses in the current period
        self.count = 0  # calls in the current period

    def reset(self) -> None:
        super().reset()
        self.history, self.running, self.count = [], None, 0

    def current_weights(self, like: Tensor) -> Tensor:
        """The weights for calls of the current period."""
        if len(self.history) < 2:
            return torch.ones_like(like)
        prev2, prev = (h.to(like) for h in self.history[-2:])
        return dwa_weights(prev, prev2, self.temperature)

    def _combine(self, losses: Tensor, grads: Tensor | None) -> Combined:
        L = at_work(losses)
        w = self.current_weights(L)
        self.running = L.clone() if self.running is None else self.running.to(L) + L
        self.count += 1
        if self.count == self.period:
            self.history = (self.history + [self.running / self.period])[-2:]
            self.running, self.count = None, 0
        return weighted_direction(w, grads), w
