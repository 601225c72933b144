"""Weighted Tchebycheff scalarisation (Mao, Yun, Liu & Du, "Tchebycheff
Procedure for Multi-task Text Classification", ACL 2020; ``metaweighting.txt``
§6.2 and App. C).

    min_theta  max_t  pi_t (L_t(theta) - z_t)                                  (L-infinity metric)

with preference weights pi_t > 0 and an ideal point z (z_t <= min L_t; 0 for
non-negative losses).  Unlike a weighted sum (the L1 metric), every Pareto
optimal point is a minimiser for some pi, convex front or not.  A subgradient
of the max is pi_{t*} grad L_{t*} with t* = argmax_t pi_t (L_t - z_t): each step
trains the currently worst (weighted) task.  TchebycheffAdv is the same
scalarisation on the adversarial shared-private model
(:class:`mtlkit.arch.shared_private.SharedPrivate`).

Derived and checked in ``notebooks/31_adversarial_and_minmax_baselines.ipynb``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mtlkit.weighting.base import (
    LOSSES,
    Combined,
    Weighting,
    at_work,
    check_flag,
    register,
    weighted_direction,
)


def tchebycheff_weights(losses: Tensor, preference: Tensor, ideal: Tensor) -> Tensor:
    """pi_{t*} e_{t*}, t* = argmax_t pi_t (L_t - z_t) (the first one on ties)."""
    scores = preference * (losses - ideal)
    j = torch.argmax(scores)
    return torch.zeros_like(losses).scatter(0, j.reshape(1), preference[j].reshape(1))


@register
class Tchebycheff(Weighting):
    """Weighted Tchebycheff procedure (Mao et al. 2020): w = pi_{t*} e_{t*},
    t* = argmax_t pi_t (L_t - z_t).  Derived in
    ``notebooks/31_adversarial_and_minmax_baselines.ipynb``.

    Parameters
    ----------
    preference:
        pi (T positive numbers); None = all ones.
    ideal:
        z, a number or T numbers below the attainable losses (0 for losses >= 0).
    normalize:
        If True, divide pi_t by task t's first loss, so tasks on different
        scales are compared by relative progress (a common Tchebycheff practice;
        an option here, off by default).
    """

    name = "Tchebycheff"
    modes = (LOSSES,)

    def __init__(self, preference: Sequence[float] | None = None,
                 ideal: float | Sequence[float] = 0.0, normalize: bool = False) -> None:
        super().__init__()
        if preference is not None and (len(preference) == 0
                                       or not all(p > 0 for p in preference)):
            raise ValueError(f"{self.name} preference must be positive numbers (one per task) "
                             f"or None, got {preference!r}")
        self.preference = None if preference is None else [float(p) for p in preference]
        self.ideal = ideal if isinstance(ideal, (int, float)) else [float(z) for z in ideal]
        self.normalize = bool(normalize)
        self.scale: Tensor | None = None  #: first losses (normalize=True)

    def reset(self) -> None:
        super().reset()
        self.scale = None

    def _pi(self, losses: Tensor) -> Tensor:
        t = losses.numel()
        if self.preference is not None and len(self.preference) != t:
            raise ValueError(f"{self.name} has {len(self.preference)} preferences for {t} tasks")
        pi = torch.ones_like(losses) if self.preference is None else torch.tensor(
            self.preference, dtype=losses.dtype, device=losses.device)
        if self.normalize:
            if self.scale is None:
                self.scale = losses.detach().clamp_min(1e-12).clone()
            pi = pi / self.scale.to(losses)
        return pi

    def _combine(self, losses: Tensor, grads: Tensor | None) -> Combined:
        L = at_work(losses)
        z = torch.as_tensor(self.ideal, dtype=L.dtype, device=L.device)
        w = tchebycheff_weights(L, self._pi(L), z)
        return weighted_direction(w, grads), w


@register
class TchebycheffAdv(Tchebycheff):
    """Adversarial Tchebycheff procedure (Mao et al. 2020, §4.3): the Tchebycheff
    scalarisation of the task losses on the shared-private model with the
    adversarial task discriminator and orthogonality terms
    (:class:`~mtlkit.arch.shared_private.SharedPrivate`, whose
    ``auxiliary_loss()`` the engine adds unweighted).  The weighting is exactly
    :class:`Tchebycheff`'s; the adversarial part lives in the architecture.
    Not implemented: Mao et al.'s rule that switches the discriminator term on
    only above a loss threshold.  Derived in
    ``notebooks/31_adversarial_and_minmax_baselines.ipynb``.

    Parameters
    ----------
    preference, ideal, normalize:
        As :class:`Tchebycheff`'s.
    allow_without_discriminator:
        False (default): a model other than ``SharedPrivate`` is refused (at ``attach``
        and engine construction); True: it trains, with a warning, as Tchebycheff.
    """

    name = "TchebycheffAdv"
    arch = "SharedPrivate"
    arch_opt_in = "allow_without_discriminator"

    def __init__(self, preference: Sequence[float] | None = None,
                 ideal: float | Sequence[float] = 0.0, normalize: bool = False,
                 allow_without_discriminator: bool = False) -> None:
        super().__init__(preference, ideal, normalize)
        self.allow_without_discriminator = check_flag(self.name, "allow_without_discriminator",
                                                      allow_without_discriminator)
