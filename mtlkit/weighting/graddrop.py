"""GradDrop: gradient sign dropout (Chen et al., NeurIPS 2020)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mtlkit.weighting._gram import gram64
from mtlkit.weighting._precision import inner_products
from mtlkit.weighting.base import PARAM, REP, Combined, Weighting, register, work_dtype


def reproducing_weights(grads: Tensor, direction: Tensor, ridge: float = 1e-10) -> Tensor:
    """Least-squares w = argmin ||G^T w - d||^2, i.e. (G G^T + eps I) w = G d.

    A tiny ridge (relative to trace(G G^T)) keeps rank-deficient G solvable
    (it then gives the minimum-norm solution, approximately); float64, no host sync.
    """
    m = gram64(grads)
    t = m.shape[0]
    eps = ridge * m.diagonal().sum().clamp_min(1e-300) / t
    rhs = inner_products(grads, direction.unsqueeze(0)).double().squeeze(1)
    w, _ = torch.linalg.solve_ex(m + eps * torch.eye(t, dtype=m.dtype, device=m.device), rhs)
    return torch.nan_to_num(w, nan=0.0, posinf=0.0, neginf=0.0).to(work_dtype(grads))


def sign_purity(grads: Tensor, eps: float = 1e-12) -> Tensor:
    """P = 1/2 (1 + sum_t g_t / sum_t |g_t|), elementwise in [0, 1] (Chen et al. Eq. 1)."""
    return 0.5 * (1 + grads.sum(0) / (grads.abs().sum(0) + eps))


def graddrop_direction(grads: Tensor, u: Tensor, leak: float = 0.0) -> Tensor:
    """d = sum_t (leak + (1 - leak) M_t) g_t,  M_t = 1[P > U] 1[g_t > 0] + 1[P < U] 1[g_t < 0]
    (float32 for half G)."""
    # coordinate-wise, M_t keeps every positive g_t (if P > U) or every negative one
    # (if P < U), so sum_t M_t g_t is the sum of the positive parts, (tot + |g|_1) / 2,
    # or of the negative ones, (tot - |g|_1) / 2, with tot = sum_t g_t.  And
    # P > U  <=>  tot > (2U - 1) sum_t |g_t|: no division, two passes over G, and
    # masks applied by multiplication (torch.where is several times slower on CPU).
    wd = work_dtype(grads)  # float32 sums for half G: sum_t |g_t| may exceed float16's range
    tot, ab = grads.sum(0, dtype=wd), grads.abs().sum(0, dtype=wd)
    if u.shape != tot.shape:  # u broadcasts against the coordinates (many draws at once)
        shape = torch.broadcast_shapes(u.shape, tot.shape)
        tot, ab, u = (x.expand(shape).contiguous() for x in (tot, ab, u))
    # in place where possible: fresh P-sized temporaries cost more than the arithmetic
    thr = u.mul(2).sub_(1).mul_(ab)
    kept = (tot + ab).mul_(tot.gt(thr)).add_((tot - ab).mul_(tot.lt(thr))).mul_(0.5)
    return kept if leak == 0 else leak * tot + (1 - leak) * kept


@register
class GradDrop(Weighting):
    """Keep, at every coordinate, only the gradients of one sign, the sign being
    drawn with probability given by its "purity" (Chen et al. 2020, Eqs. 1-3):

        P = 1/2 (1 + sum_t g_t / sum_t |g_t|),   U ~ Uniform(0, 1) per coordinate,
        M_t = 1[P > U] 1[g_t > 0] + 1[P < U] 1[g_t < 0],
        d = sum_t (leak_t + (1 - leak_t) M_t) g_t.

    The paper applies it to the gradients of an activation layer: that is mode
    ``"rep"`` here, coordinate by coordinate over the whole (batch x features)
    representation gradient, i.e. the batch-separated form without the paper's
    optional sign(activation)-weighted sum over the batch.  In mode ``"param"``
    the same rule is applied per coordinate of the shared parameter vector: a
    variant, not the paper's method (LibMTL offers only the representation one).

    The direction is not G^T w for any w in general; the returned weights are
    the least-squares w minimising ||G^T w - d|| (see :func:`reproducing_weights`).

    Derived in ``notebooks/21_pcgrad_and_graddrop.ipynb``.

    Parameters
    ----------
    leak:
        In [0, 1]: the fraction of every gradient passed through unmasked
        (paper: 0; leak = 1 is EW summed).
    seed:
        Seed of the generator of U (on the gradients' device).
    """

    name = "GradDrop"
    modes = (REP, PARAM)
    is_reweighting = False

    def __init__(self, leak: float = 0.0, seed: int = 0) -> None:
        super().__init__()
        if not 0 <= leak <= 1:
            raise ValueError(f"GradDrop leak must be in [0, 1], got {leak!r}")
        if not isinstance(seed, int):
            raise ValueError(f"GradDrop seed must be an int, got {seed!r}")
        self.leak, self.seed = float(leak), seed
        self._gen: torch.Generator | None = None
        self._rng_state: Tensor | None = None

    def reset(self) -> None:
        super().reset()
        self._gen = None
        self._rng_state = None

    def _generator(self, device: torch.device) -> torch.Generator:
        if self._gen is None or self._gen.device != device:
            self._gen = torch.Generator(device=device).manual_seed(self.seed)
            if self._rng_state is not None:
                self._gen.set_state(self._rng_state)
                self._rng_state = None
        return self._gen

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self._gen is not None:
            state["rng_state"] = self._gen.get_state()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        state = dict(state)
        rng = state.pop("rng_state", None)
        super().load_state_dict(state)
        self._gen, self._rng_state = None, rng

    def _combine(self, losses: Tensor, grads: Tensor | None) -> Combined:
        gen = self._generator(grads.device)
        # U in float32 for half gradients (bfloat16 would quantise P > U to 1/256 steps)
        u = torch.rand(grads.shape[1], generator=gen, device=grads.device,
                       dtype=work_dtype(grads))
        d = graddrop_direction(grads, u, self.leak).to(grads.dtype)
        return d, reproducing_weights(grads, d)
