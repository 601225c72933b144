"""The min-norm solvers against an independent QP, the closed form and Désidéri's theorem."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from mtlkit.weighting._gram import gram64
from mtlkit.weighting._solvers import (
    min_norm_2,
    min_norm_active_set,
    min_norm_element,
    min_norm_exact,
    min_norm_frank_wolfe,
)


def qp_reference(m: np.ndarray) -> float:
    """min_{lambda in simplex} lambda^T M lambda by SLSQP from several starts (each
    answer put back on the simplex, so the reference is a feasible objective value)."""
    t = m.shape[0]
    best = np.inf
    for x0 in [np.full(t, 1 / t)] + list(np.eye(t)):
        r = minimize(lambda x: x @ m @ x, x0, jac=lambda x: 2 * m @ x, method="SLSQP",
                     bounds=[(0, 1)] * t,
                     constraints=({"type": "eq", "fun": lambda x: x.sum() - 1},),
                     options={"ftol": 1e-15, "maxiter": 1000})
        x = np.clip(r.x, 0, None)
        x /= x.sum()
        best = min(best, float(x @ m @ x))
    return best


def kkt_residual(lam: torch.Tensor, m: torch.Tensor) -> float:
    """KKT of min l^T M l on the simplex: (M l)_k >= l^T M l, with equality where l_k > 0."""
    ml = m @ lam
    f = lam @ ml
    gap = float(f - ml.min())  # Frank-Wolfe gap, >= 0
    support = lam > 1e-9
    eq = float((ml[support] - f).abs().max())
    return max(gap, eq)


def random_gram(t: int, p: int, seed: int, degenerate: bool = False) -> torch.Tensor:
    g = torch.randn(t, p, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    if degenerate:
        g[1] = 2 * g[0]  # parallel pair: M is singular
    return gram64(g)


@pytest.mark.parametrize("t,p", [(2, 5), (3, 2), (4, 10), (5, 3), (6, 40)])
@pytest.mark.parametrize("degenerate", [False, True])
def test_exact_solver_matches_qp_with_tiny_kkt_residual(t, p, degenerate):
    for seed in range(4):
        m = random_gram(t, p, seed, degenerate)
        lam = min_norm_exact(m)
        assert lam.min() >= 0 and abs(float(lam.sum()) - 1) < 1e-12
        scale = float(m.diagonal().max())
        assert kkt_residual(lam, m) < 1e-8 * scale
        assert float(lam @ m @ lam) <= qp_reference(m.numpy()) + 1e-9 * scale


@pytest.mark.parametrize("t,p", [(2, 5), (3, 2), (5, 3), (8, 40), (14, 6), (16, 300), (40, 30)])
@pytest.mark.parametrize("kind", ["random", "parallel", "opposite", "shifted"])
def test_active_set_matches_qp_and_enumeration_with_tiny_kkt_residual(t, p, kind):
    """Wolfe's method against SLSQP (every T), the support enumeration (T <= 10),
    and the KKT conditions; "shifted" gradients share a large common component,
    so lambda* is interior and Frank-Wolfe is at its slowest."""
    for seed in range(3):
        g = torch.randn(t, p, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        if kind == "parallel":
            g[1] = 2 * g[0]
        elif kind == "opposite":
            g[1] = -0.5 * g[0]
        elif kind == "shifted":
            g += 3.0
        m = gram64(g)
        lam = min_norm_active_set(m)
        scale = float(m.diagonal().max())
        assert lam.min() >= 0 and abs(float(lam.sum()) - 1) < 1e-12
        assert kkt_residual(lam, m) < 1e-10 * scale
        assert float(lam @ m @ lam) <= qp_reference(m.numpy()) + 1e-10 * scale
        if t <= 10:
            ex = min_norm_exact(m)
            assert abs(float(lam @ m @ lam - ex @ m @ ex)) < 1e-10 * scale


def test_active_set_survives_non_finite_gradients():
    """A diverged gradient (inf or NaN in M) gives weights on the simplex, no warning."""
    import warnings

    inf_row = torch.tensor([[float("inf"), 0, 0], [0, 1, 0], [0, 0, 1]], dtype=torch.float64)
    for m in (inf_row, torch.full((3, 3), float("nan"), dtype=torch.float64)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            lam = min_norm_active_set(m)
        assert torch.isfinite(lam).all() and lam.min() >= 0 and abs(float(lam.sum()) - 1) < 1e-12
    assert float(min_norm_active_set(inf_row)[0]) == 0.0  # the infinite gradient gets no weight


def test_auto_picks_an_exact_solver_where_frank_wolfe_is_slow():
    g = torch.randn(14, 50, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 3
    m = gram64(g)
    lam, _ = min_norm_element(g)  # "auto"
    fw = min_norm_frank_wolfe(m)  # 250 iterations
    assert kkt_residual(lam, m) < 1e-10 * float(m.diagonal().max())
    assert kkt_residual(fw, m) > 1e3 * kkt_residual(lam, m)


@pytest.mark.parametrize("t,p", [(3, 2), (4, 10), (6, 40)])
def test_frank_wolfe_converges_to_the_qp_value(t, p):
    for seed in range(3):
        m = random_gram(t, p, seed)
        lam = min_norm_frank_wolfe(m, iters=5000, tol=0.0)
        ref = qp_reference(m.numpy())
        scale = float(m.diagonal().max())
        # Frank-Wolfe converges sublinearly; the gap certifies the sub-optimality
        assert float(lam @ m @ lam) - ref <= 2e-3 * scale
        assert kkt_residual(lam, m) < 5e-2 * scale


def test_frank_wolfe_sync_free_path_equals_early_exit_path():
    m = random_gram(5, 8, 3)
    a = min_norm_frank_wolfe(m, iters=300, tol=1e-6, early_exit=True)
    b = min_norm_frank_wolfe(m, iters=300, tol=1e-6, early_exit=False)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_two_task_closed_form_against_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(50):
        g = rng.normal(size=(2, 3))
        if rng.random() < 0.3:
            g[1] = g[0] * rng.uniform(0.2, 3)  # parallel: an endpoint is optimal
        gam, cost = min_norm_2(*(torch.tensor(v) for v in (g[0] @ g[0], g[0] @ g[1], g[1] @ g[1])))
        grid = np.linspace(0, 1, 20001)
        costs = np.linalg.norm(grid[:, None] * g[0] + (1 - grid[:, None]) * g[1], axis=1) ** 2
        assert float(cost) <= costs.min() + 1e-12
        direct = np.linalg.norm(float(gam) * g[0] + (1 - float(gam)) * g[1]) ** 2
        assert abs(direct - float(cost)) < 1e-10
    # the 2-task solvers all give the closed form
    m = random_gram(2, 4, 1)
    gam, _ = min_norm_2(m[0, 0], m[0, 1], m[1, 1])
    for lam in (min_norm_frank_wolfe(m), min_norm_exact(m), min_norm_active_set(m)):
        torch.testing.assert_close(lam, torch.stack([gam, 1 - gam]), atol=1e-10, rtol=0)


def test_desideri_common_descent_direction():
    """metaweighting.txt Theorem 1: d = G^T lambda* != 0 gives g_t . d >= ||d||^2 > 0."""
    for seed in range(20):
        g = torch.randn(4, 6, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        lam, d = min_norm_element(g, method="exact")
        if d.norm() < 1e-8:
            continue
        assert (g @ d >= d @ d - 1e-9).all()


def test_zero_in_hull_gives_zero_direction():
    g = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    lam, d = min_norm_element(g)
    assert d.norm() < 1e-12 and abs(float(lam[0] - lam[1])) < 1e-12


def test_float32_and_bad_input():
    g = torch.randn(3, 5)
    lam, d = min_norm_element(g, method="fw")
    assert lam.dtype == torch.float64 and d.dtype == torch.float32
    with pytest.raises(ValueError, match="square"):
        min_norm_exact(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="method"):
        min_norm_element(g, method="simplex")
    with pytest.raises(ValueError, match="too many"):
        min_norm_exact(torch.eye(11))


@settings(max_examples=25, deadline=None)
@given(t=st.integers(1, 6), p=st.integers(1, 6), seed=st.integers(0, 10_000),
       kind=st.sampled_from(["random", "zero", "parallel", "opposite"]))
def test_solvers_stay_on_the_simplex(t, p, seed, kind):
    g = torch.randn(t, p, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    if kind == "zero":
        g[0] = 0
    elif kind == "parallel":
        g = g[:1] * torch.arange(1, t + 1, dtype=g.dtype)[:, None]
    elif kind == "opposite":
        g = g[:1] * torch.tensor([(-1.0) ** k for k in range(t)], dtype=g.dtype)[:, None]
    m = gram64(g)
    for lam in (min_norm_frank_wolfe(m), min_norm_exact(m), min_norm_active_set(m)):
        assert torch.isfinite(lam).all() and lam.min() >= 0
        assert abs(float(lam.sum()) - 1) < 1e-9
