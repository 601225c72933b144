"""CAGrad, Nash-MTL, Aligned-MTL, DB-MTL, UPGrad checked against independent computations."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mtlkit import weighting as W
from mtlkit.weighting.aligned_mtl import balance_matrix

MODERN = ["CAGrad", "Nash-MTL", "Aligned-MTL", "DB-MTL", "UPGrad"]


def random_problem(seed: int, t: int = 3, p: int = 12):
    g = torch.Generator().manual_seed(seed)
    grads = torch.randn(t, p, generator=g, dtype=torch.float64)
    losses = torch.rand(t, generator=g, dtype=torch.float64) + 0.5
    return losses, grads


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("c", [0.2, 0.5, 0.9])
@pytest.mark.parametrize("t,kind", [(3, "random"), (2, "random"), (5, "random"), (8, "random"),
                                    (12, "random"), (4, "parallel"), (4, "opposite"),
                                    (4, "shifted")])
def test_cagrad_solves_its_primal_socp(seed, c, t, kind):
    """d maximises min_t g_t.d over the ball ||d - g0|| <= c||g0|| (solved by cvxpy), with
    the exact face-enumeration dual (T <= 10) and SLSQP (T = 12)."""
    losses, grads = random_problem(seed, t)
    if kind == "parallel":
        grads[1] = 2 * grads[0]
    elif kind == "opposite":  # 0 is in the convex hull of the gradients
        grads[1] = -grads[0]
    elif kind == "shifted":
        grads += 2.0
    d, w = W.get("CAGrad", c=c, rescale=0).combine(losses, grads)
    g = grads.numpy()
    g0 = g.mean(0)
    x = cp.Variable(g.shape[1])
    prob = cp.Problem(cp.Maximize(cp.min(g @ x)), [cp.norm(x - g0) <= c * np.linalg.norm(g0)])
    prob.solve(solver=cp.CLARABEL)
    ours = (g @ d.numpy()).min()
    assert ours == pytest.approx(prob.value, rel=1e-4, abs=1e-6 * np.abs(g).max() ** 2)
    assert np.linalg.norm(d.numpy() - g0) <= c * np.linalg.norm(g0) * (1 + 1e-6)
    assert torch.allclose(w @ grads, d)


@pytest.mark.parametrize("t", [2, 3, 6, 9])
def test_cagrad_exact_dual_matches_slsqp(t):
    """The face-enumeration dual never does worse than SLSQP on the dual objective."""
    from mtlkit.weighting.cagrad import cagrad_weights, cagrad_weights_exact

    rng = np.random.default_rng(t)
    for _ in range(10):
        g = rng.normal(size=(t, 7)) + rng.normal(size=7)
        m = g @ g.T
        b = np.full(t, 1 / t)
        s = 0.5 * np.sqrt(b @ m @ b)

        def f(w, m=m, b=b, s=s):
            return w @ m @ b + s * np.sqrt(max(w @ m @ w, 0.0))

        we = cagrad_weights_exact(m, 0.5)
        assert we.min() >= 0 and abs(we.sum() - 1) < 1e-12
        assert f(we) <= f(cagrad_weights(m, 0.5)) + 1e-9 * np.abs(m).max()


def test_cagrad_c0_is_ew_and_rescale():
    losses, grads = random_problem(0)
    d, w = W.get("CAGrad", c=0.0).combine(losses, grads)
    assert torch.allclose(d, grads.mean(0))
    d0, _ = W.get("CAGrad", c=0.5, rescale=0).combine(losses, grads)
    d1, _ = W.get("CAGrad", c=0.5, rescale=1).combine(losses, grads)
    assert torch.allclose(d1 * 1.25, d0)


def _newton_bargaining(m: np.ndarray, iters: int = 100) -> np.ndarray:
    """Independent solve of M a = 1/a: damped Newton on 1/2 a^T M a - sum log a."""
    a = np.ones(len(m))
    for _ in range(iters):
        grad = m @ a - 1 / a
        hess = m + np.diag(1 / a**2)
        step = np.linalg.solve(hess, grad)
        s = 1.0
        while np.any(a - s * step <= 0):
            s /= 2
        a = a - s * step
    return a


@pytest.mark.parametrize("seed", range(4))
def test_nash_mtl_bargaining_condition(seed):
    losses, grads = random_problem(seed)
    d, alpha = W.get("Nash-MTL").combine(losses, grads)
    m = (grads @ grads.T).numpy()
    a = alpha.numpy()
    assert np.all(a > 0)
    assert np.allclose(m @ a, 1 / a, rtol=1e-3, atol=1e-3)
    assert np.allclose(a, _newton_bargaining(m), rtol=1e-3)
    assert torch.allclose(alpha @ grads, d)


def test_nash_mtl_keeps_weights_at_pareto_stationary_point():
    g = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    s = W.get("Nash-MTL")
    with pytest.warns(UserWarning, match="Pareto-stationary"):
        d, w = s.combine(torch.ones(2, dtype=torch.float64), g)
    assert s.solver_failures == 1 and torch.isfinite(d).all()


@pytest.mark.parametrize("seed", range(4))
def test_aligned_mtl_equalises_singular_values(seed):
    losses, grads = random_problem(seed)
    m = (grads @ grads.T).numpy()
    b = balance_matrix(m)
    aligned = b @ grads.numpy()
    s_min = np.linalg.svd(grads.numpy(), compute_uv=False).min()
    assert np.allclose(aligned @ aligned.T, s_min**2 * np.eye(3), atol=1e-8)
    d, w = W.get("Aligned-MTL").combine(losses, grads)
    assert np.allclose(d.numpy(), aligned.mean(0))
    assert torch.allclose(w @ grads, d)


def test_dbmtl_hand_worked_two_steps():
    """h^0 = 0 (Lin et al. 2023, Algorithm 1; the authors' code): h^1 = (1 - beta) g / L."""
    g1 = torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    l1 = torch.tensor([1.0, 0.5], dtype=torch.float64)
    s = W.get("DB-MTL", beta=0.9, beta_sigma=0.5, eps=0.0)
    d, w = s.combine(l1, g1)
    h = 0.1 * np.array([[2.0, 0.0], [0.0, 2.0]])  # (1 - beta_1) g_t / L_t, beta_1 = 0.9
    assert np.allclose(d.numpy(), h.sum(0))  # equal norms: alpha = 1
    assert np.allclose(w.numpy(), [0.1, 0.2])  # alpha (1 - beta_1) / L
    g2 = torch.tensor([[1.0, 1.0], [0.0, 3.0]], dtype=torch.float64)
    l2 = torch.tensor([1.0, 1.0], dtype=torch.float64)
    d2, _ = s.combine(l2, g2)
    b = 0.9 / 2**0.5
    h2 = b * h + (1 - b) * g2.numpy()
    n = np.linalg.norm(h2, axis=1)
    assert np.allclose(d2.numpy(), ((n.max() / n)[:, None] * h2).sum(0))


@pytest.mark.parametrize("seed", range(3))
def test_upgrad_projections_match_a_qp(seed):
    losses, grads = random_problem(seed, t=3, p=6)
    g = grads.numpy()
    projections = []
    for i in range(3):
        y = cp.Variable(6)
        cp.Problem(cp.Minimize(cp.sum_squares(y - g[i])), [g @ y >= 0]).solve(solver=cp.CLARABEL)
        projections.append(y.value)
    d, w = W.get("UPGrad", norm_eps=0.0).combine(losses, grads)
    assert np.allclose(d.numpy(), np.mean(projections, axis=0), atol=1e-5)
    assert np.all(g @ d.numpy() >= -1e-8)


@settings(max_examples=25, deadline=None)
@given(kind=st.sampled_from(["random", "zero", "parallel", "opposite"]),
       name=st.sampled_from(MODERN), seed=st.integers(0, 1000))
def test_no_nan_on_degenerate_gradients(kind, name, seed):
    losses, grads = random_problem(seed, t=2, p=5)
    if kind == "zero":
        grads = torch.zeros_like(grads)
    elif kind == "parallel":
        grads = torch.stack([grads[0], 3 * grads[0]])
    elif kind == "opposite":
        grads = torch.stack([grads[0], -grads[0]])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d, w = W.get(name).combine(losses, grads)
    assert torch.isfinite(d).all() and torch.isfinite(w).all()


@pytest.mark.parametrize("name", MODERN)
def test_deterministic_and_state_roundtrip(name):
    losses, grads = random_problem(7)
    a, b = W.get(name), W.get(name)
    a.combine(losses, grads)
    b.load_state_dict(a.state_dict())
    l2, g2 = random_problem(8)
    assert torch.allclose(a.combine(l2, g2)[0], b.combine(l2, g2)[0], atol=1e-6)


@pytest.mark.parametrize("name", MODERN)
def test_bad_hyperparameters_raise(name):
    with pytest.raises(ValueError, match="hyper-parameter"):
        W.get(name, no_such_knob=1)
