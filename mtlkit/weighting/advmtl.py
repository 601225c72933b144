"""AdvMTL (Liu, Qiu & Huang, "Adversarial Multi-task Learning for Text
Classification", ACL 2017; ``metaweighting.txt`` §6.2).

    L = sum_t alpha_t L_t + lambda_adv L_adv + lambda_orth L_diff              (Liu et al. Eq. 15)

The task losses are summed with equal weights; everything adversarial (the
task discriminator behind a gradient reversal layer, L_adv, and the
orthogonality penalty L_diff) is in the architecture,
:class:`mtlkit.arch.shared_private.SharedPrivate`, whose ``auxiliary_loss()``
the engine adds once.  So AdvMTL as a *weighting* is EW; it exists as a name
so that a benchmark can ask for "AdvMTL" and read ``arch`` to build the model.
Derived in ``notebooks/31_adversarial_and_minmax_baselines.ipynb``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mtlkit.weighting.base import (
    LOSSES,
    Combined,
    Weighting,
    check_flag,
    register,
    weighted_direction,
    work_dtype,
)


@register
class AdvMTL(Weighting):
    """Adversarial shared-private MTL (Liu et al. 2017, Eq. 15): task weights
    alpha_t = 1/T (EW) on :class:`~mtlkit.arch.shared_private.SharedPrivate`.
    Derived in ``notebooks/31_adversarial_and_minmax_baselines.ipynb``.

    Parameters
    ----------
    allow_without_discriminator:
        False (default): a model other than ``SharedPrivate`` is refused (at ``attach``
        and engine construction); True: it trains, with a warning, as EW.
    """

    name = "AdvMTL"
    modes = (LOSSES,)
    arch = "SharedPrivate"
    arch_opt_in = "allow_without_discriminator"

    def __init__(self, allow_without_discriminator: bool = False) -> None:
        super().__init__()
        self.allow_without_discriminator = check_flag(self.name, "allow_without_discriminator",
                                                      allow_without_discriminator)

    def _combine(self, losses: Tensor, grads: Tensor | None) -> Combined:
        t = losses.numel()
        w = torch.full((t,), 1.0 / t, dtype=work_dtype(losses), device=losses.device)
        return weighted_direction(w, grads), w
