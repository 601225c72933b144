"""Random Loss Weighting (RLW), Lin, Ye & Zhang, "A Closer Look at Loss Weighting in
Multi-Task Learning" (``rlw.md``)."""

from __future__ import annotations

import torch
from torch import Tensor

from mtlkit.weighting.base import (
    LOSSES,
    Combined,
    SeededWeighting,
    register,
    weighted_direction,
    work_dtype,
)

#: the six distributions of ``rlw.md`` §3
DISTRIBUTIONS = ("uniform", "normal", "dirichlet", "bernoulli", "constrained_bernoulli",
                 "random_normal")
_SUM_NORMALISED = ("bernoulli", "constrained_bernoulli")
_PARAM_SEED_OFFSET = 0x5EED  # random_normal's (mean, var) come from their own stream


def _check_dist(dist: str) -> str:
    if dist not in DISTRIBUTIONS:
        raise ValueError(f"RLW: unknown distribution {dist!r}; choose one of "
                         + ", ".join(DISTRIBUTIONS))
    return dist


def random_normal_params(num_tasks: int, seed: int) -> tuple[Tensor, Tensor]:
    """Per-task mean ~ U(0,1) and variance ~ U(0,1) of ``random_normal``, drawn
    once per run from ``seed`` (returned as (mean, std), float64)."""
    g = torch.Generator().manual_seed(int(seed) + _PARAM_SEED_OFFSET)
    u = torch.rand(2, num_tasks, generator=g, dtype=torch.float64)
    return u[0], u[1].sqrt()


def sample_raw(dist: str, num_tasks: int, n: int, gen: torch.Generator,
               params: tuple[Tensor, Tensor] | None = None) -> Tensor:
    r"""``n`` draws of :math:`\tilde\lambda \sim p(\tilde\lambda)` (an n x T float64 tensor)."""
    _check_dist(dist)
    shape, f64 = (n, num_tasks), torch.float64
    if dist == "uniform":
        return torch.rand(shape, generator=gen, dtype=f64)
    if dist == "normal":
        return torch.randn(shape, generator=gen, dtype=f64)
    if dist == "dirichlet":  # Dir(1,...,1) = normalised Exp(1) draws
        e = -torch.log1p(-torch.rand(shape, generator=gen, dtype=f64))
        return e / e.sum(dim=1, keepdim=True)
    if dist == "bernoulli":
        return _bernoulli_nonzero(shape, gen)
    if dist == "constrained_bernoulli":  # Bernoulli(1/2) with sum = 1: a uniform one-hot
        idx = torch.randint(num_tasks, (n,), generator=gen)
        return torch.nn.functional.one_hot(idx, num_tasks).to(f64)
    mean, std = params if params is not None else random_normal_params(num_tasks, 0)
    return mean + std * torch.randn(shape, generator=gen, dtype=f64)


def _bernoulli_nonzero(shape: tuple[int, int], gen: torch.Generator) -> Tensor:
    """Bernoulli(1/2) draws conditioned on not all zero (all-zero rows are redrawn)."""
    out = (torch.rand(shape, generator=gen, dtype=torch.float64) < 0.5).to(torch.float64)
    bad = out.sum(dim=1) == 0
    while bool(bad.any()):
        k = int(bad.sum())
        out[bad] = (torch.rand(k, shape[1], generator=gen, dtype=torch.float64) < 0.5).double()
        bad = out.sum(dim=1) == 0
    return out


def normalise(dist: str, raw: Tensor) -> Tensor:
    r"""The map f of ``rlw.md`` §3: sum-normalisation for the two Bernoullis,
    softmax for the other four (Dirichlet included, as the paper states)."""
    if dist in _SUM_NORMALISED:
        return raw / raw.sum(dim=-1, keepdim=True)
    return torch.softmax(raw, dim=-1)


def sample_weights(dist: str, num_tasks: int, n: int, seed: int = 0) -> Tensor:
    r"""``n`` RLW weight vectors :math:`\lambda = f(\tilde\lambda)` (n x T, float64)."""
    gen = torch.Generator().manual_seed(int(seed))
    params = random_normal_params(num_tasks, seed) if dist == "random_normal" else None
    return normalise(dist, sample_raw(dist, num_tasks, n, gen, params))


def expected_weights(dist: str, num_tasks: int, seed: int = 0,
                     n_samples: int = 200_000) -> Tensor:
    r""":math:`\mathbb E[\lambda]` of RLW with ``dist`` (float64, shape (T,)).

    Closed form :math:`(1/T, \dots, 1/T)` for the first five distributions: each
    draw is exchangeable across tasks (the all-zero Bernoulli draw being
    redrawn keeps it so) and sums to 1, so every coordinate has mean 1/T.
    ``random_normal`` draws its per-task (mean, variance) once per run from
    ``seed``, which breaks the symmetry; its expectation is estimated by Monte
    Carlo with ``n_samples`` draws (standard error below 1/(2 sqrt(n))).
    """
    _check_dist(dist)
    if dist != "random_normal":
        return torch.full((num_tasks,), 1.0 / num_tasks, dtype=torch.float64)
    return _mc_random_normal(num_tasks, seed, n_samples)


def _mc_random_normal(num_tasks: int, seed: int, n_samples: int) -> Tensor:
    params = random_normal_params(num_tasks, seed)
    gen = torch.Generator().manual_seed(int(seed) + 1)  # a stream other than training's
    return normalise("random_normal", sample_raw("random_normal", num_tasks, n_samples, gen,
                                                 params)).mean(dim=0)


@register
class RLW(SeededWeighting):
    r"""Random Loss Weighting (``rlw.md`` §3, Eq. 3 and Algorithm 1).

    Each call draws :math:`\tilde\lambda \sim p(\tilde\lambda)` and uses
    :math:`\lambda = f(\tilde\lambda)`: softmax for ``uniform`` (U(0,1)),
    ``normal`` (N(0,1)), ``dirichlet`` (Dir(1)) and ``random_normal``;
    sum-normalisation for ``bernoulli`` (p=1/2) and ``constrained_bernoulli``
    (exactly one task, uniformly).  Weights sum to 1.  Since the direction is
    linear in :math:`\lambda`, it is an unbiased estimate of
    :math:`\mathbb E[\lambda]^\top \nabla\ell` (Eq. 3); see :func:`expected_weights`.

    Choices the paper leaves open, made here:

    * an all-zero ``bernoulli`` draw (probability :math:`2^{-T}`) has no
      sum-normalisation; it is redrawn, so the distribution is Bernoulli
      conditioned on at least one task, still exchangeable, so still
      :math:`\mathbb E[\lambda_t] = 1/T`;
    * ``random_normal`` draws each task's mean and *variance* (as the paper
      says) from U(0,1) once per run, from ``seed``; drawing them anew every
      step would make the draw exchangeable and :math:`\mathbb E[\lambda]`
      uniform again, contradicting the paper's point that it is not.

    Draws come from a ``torch.Generator`` seeded with ``seed``; its state is in
    :meth:`state_dict`, so a resumed run draws the same weights.  Derived in
    ``notebooks/11_random_loss_weighting.ipynb``.

    Parameters
    ----------
    dist:
        One of :data:`DISTRIBUTIONS`.
    seed:
        Seed of the weight sampler (independent of the global seed).
    """

    name = "RLW"
    modes = (LOSSES,)

    def __init__(self, dist: str = "normal", seed: int = 0) -> None:
        super().__init__(seed)
        self.dist = _check_dist(dist)

    def params(self, num_tasks: int) -> tuple[Tensor, Tensor] | None:
        """(mean, std) per task for ``random_normal``, else None."""
        return random_normal_params(num_tasks, self.seed) if self.dist == "random_normal" else None

    def sample(self, num_tasks: int, n: int = 1) -> Tensor:
        """``n`` weight vectors (n x T, float64), advancing the generator."""
        raw = sample_raw(self.dist, num_tasks, n, self._gen, self.params(num_tasks))
        return normalise(self.dist, raw)

    def expected_weights(self, num_tasks: int, n_samples: int = 200_000) -> Tensor:
        r""":math:`\mathbb E[\lambda]` for this strategy (see :func:`expected_weights`)."""
        return expected_weights(self.dist, num_tasks, self.seed, n_samples)

    def _combine(self, losses: Tensor, grads: Tensor | None) -> Combined:
        t = losses.numel()
        w = self.sample(t)[0].to(work_dtype(losses))  # drawn on the CPU: same on every device
        if losses.device.type == "cuda":  # pinned + non_blocking: no host-device sync per step
            w = w.pin_memory().to(losses.device, non_blocking=True)
        else:
            w = w.to(losses.device)
        return weighted_direction(w, grads), w
