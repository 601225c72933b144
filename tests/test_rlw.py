"""RLW (``rlw.md`` §3): its six distributions, E[lambda], and Eq. 3's unbiasedness."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import mtlkit.weighting as W
from mtlkit.arch.hps import HPS
from mtlkit.engine import GradEngine, per_task_grads
from mtlkit.weighting.rlw import (
    DISTRIBUTIONS,
    expected_weights,
    random_normal_params,
    sample_weights,
)

FIRST_FIVE = DISTRIBUTIONS[:5]


@pytest.mark.parametrize("dist", DISTRIBUTIONS)
@pytest.mark.parametrize("t", [1, 2, 5])
def test_weights_on_the_simplex(dist, t):
    lam = sample_weights(dist, t, 3000, seed=1)
    assert (lam >= 0).all()
    assert torch.allclose(lam.sum(1), torch.ones(3000, dtype=lam.dtype))
    rlw = W.get("RLW", dist=dist)
    for _ in range(20):
        _, w = rlw.combine(torch.rand(t))
        assert (w >= 0).all() and abs(float(w.sum()) - 1) < 1e-6


@pytest.mark.parametrize("dist", FIRST_FIVE)
@pytest.mark.parametrize("t", [2, 3, 5])
def test_monte_carlo_expectation_is_uniform_for_first_five(dist, t):
    lam = sample_weights(dist, t, 40_000, seed=2)
    se = lam.std(0) / 200  # standard error of the mean with 40k draws
    assert ((lam.mean(0) - 1 / t).abs() < 5 * se + 1e-12).all()
    assert torch.allclose(expected_weights(dist, t), torch.full((t,), 1 / t, dtype=torch.float64))


def test_random_normal_expectation_matches_an_independent_monte_carlo():
    t, seed = 3, 0
    mean, std = random_normal_params(t, seed)
    assert ((mean > 0) & (mean < 1) & (std > 0) & (std < 1)).all()
    rng = np.random.default_rng(123)  # numpy's own sampler, independent of the library's
    raw = rng.normal(mean.numpy(), std.numpy(), size=(200_000, t))
    e = np.exp(raw - raw.max(1, keepdims=True))
    ref = (e / e.sum(1, keepdims=True)).mean(0)
    got = expected_weights("random_normal", t, seed=seed, n_samples=200_000).numpy()
    assert np.allclose(got, ref, atol=5e-3)
    assert np.ptp(ref) > 0.05  # parameters drawn once per run: E[lambda] is not 1/T


def test_bernoulli_redraws_all_zero_and_keeps_symmetry():
    lam = sample_weights("bernoulli", 2, 30_000, seed=4)
    patterns = {(1.0, 0.0): 0, (0.0, 1.0): 0, (0.5, 0.5): 0}
    for row in lam.tolist():
        patterns[tuple(row)] += 1  # KeyError on (0, 0) or anything else
    freq = np.array(list(patterns.values())) / 30_000
    assert np.allclose(freq, 1 / 3, atol=0.015)  # Bernoulli(1/2)^2 conditioned on not (0, 0)
    assert torch.equal(sample_weights("bernoulli", 1, 50, seed=0), torch.ones(50, 1,
                                                                              dtype=torch.float64))


def test_constrained_bernoulli_is_a_uniform_one_hot():
    lam = sample_weights("constrained_bernoulli", 4, 20_000, seed=5)
    assert ((lam == 0) | (lam == 1)).all() and (lam.sum(1) == 1).all()
    assert np.allclose(lam.mean(0).numpy(), 0.25, atol=0.015)


def test_seed_determinism_and_round_trip():
    a, b, c = W.get("RLW", seed=7), W.get("RLW", seed=7), W.get("RLW", seed=8)
    L = torch.ones(3)
    wa = [a.combine(L)[1] for _ in range(5)]
    assert all(torch.equal(x, b.combine(L)[1]) for x in wa)
    assert not torch.equal(wa[0], c.combine(L)[1])
    state = a.state_dict()
    nxt = [a.combine(L)[1] for _ in range(3)]
    d = W.get("RLW", seed=7)
    d.load_state_dict(state)
    assert all(torch.equal(x, d.combine(L)[1]) for x in nxt)
    a.reset()
    assert torch.equal(a.combine(L)[1], wa[0])


def test_unknown_distribution_lists_choices():
    with pytest.raises(ValueError, match="constrained_bernoulli"):
        W.get("RLW", dist="gamma")


@pytest.mark.parametrize("dist", ["uniform", "bernoulli", "random_normal"])
def test_rlw_gradient_is_unbiased_eq3(dist):
    """Mean of the engine's shared-parameter gradient over many RLW draws equals
    E[lambda]^T grad l (Eq. 3), on a fixed batch of a small linear HPS model."""
    torch.manual_seed(0)
    t, n_steps = 3, 3000
    model = HPS(nn.Linear(4, 3), {f"t{i}": nn.Linear(3, 1) for i in range(t)})
    x = torch.randn(16, 4)
    y = {f"t{i}": torch.randn(16, 1) for i in range(t)}
    crit = {k: nn.functional.mse_loss for k in y}
    shared = model.shared_parameters()
    losses = torch.stack([crit[k](model(x)[k], y[k]) for k in model.tasks])
    G = per_task_grads(losses, shared)  # reference per-task gradients
    engine = GradEngine(model, W.get("RLW", dist=dist, seed=1), mode="losses")
    samples = torch.empty(n_steps, G.shape[1])
    for i in range(n_steps):
        model.zero_grad()
        engine.step(x, y, crit)
        samples[i] = torch.cat([p.grad.reshape(-1) for p in shared])
    expected = expected_weights(dist, t, seed=1).float() @ G
    se = samples.std(0) / n_steps ** 0.5
    assert ((samples.mean(0) - expected).abs() <= 5 * se + 1e-5).all()
    # and the spread is real: a single draw is far from the mean (RLW adds noise)
    assert float(samples.std(0).max()) > 10 * float(se.max())
