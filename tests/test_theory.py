"""Unit tests for mtlkit.theory: each estimator against an independent computation
(exhaustive enumeration, brute force over a grid, closed forms, Monte Carlo)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtlkit.theory import bounds as B
from mtlkit.theory import gap_problems as gp
from mtlkit.theory import hypergrad as hg
from mtlkit.theory import rademacher as rd
from mtlkit.theory import sgd_sim as sim


# ------------------------------------------------------------------ Rademacher
def _brute_threshold_sup(x, y, sigma):
    thetas = np.concatenate([[-1.0], np.sort(x)])  # every distinct behaviour
    losses = ((x[None, :] > thetas[:, None]).astype(float) != y[None, :]).astype(float)
    return (sigma @ losses.T).max(axis=1)


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 9), st.integers(0, 10_000))
def test_threshold_sup_matches_enumeration(n, seed):
    rng = np.random.default_rng(seed)
    x, y = rng.random(n), (rng.random(n) < 0.5).astype(float)
    sigma = rd.rademacher_signs(rng, (20, n))
    np.testing.assert_allclose(rd.sup_thresholds(x, y)(sigma), _brute_threshold_sup(x, y, sigma))


def test_mc_rademacher_matches_exact_enumeration():
    rng = np.random.default_rng(0)
    L = (rng.random((7, 10)) < 0.5).astype(float)
    sup = rd.sup_finite(L)
    exact = rd.exact_rademacher(sup, 10)
    est = rd.empirical_rademacher(sup, 10, draws=20_000, rng=rng)
    assert abs(est.mean - exact) < 4 * est.stderr
    assert exact <= rd.massart_bound(L) + 1e-12


def test_linear_loss_sup_is_attained_and_not_exceeded():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((12, 3))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = np.where(rng.random(12) < 0.5, -1.0, 1.0)
    sigma = rd.rademacher_signs(rng, (5, 12))
    closed = rd.sup_linear_loss(X, y)(sigma)
    W = rng.standard_normal((20_000, 3))
    W /= np.linalg.norm(W, axis=1, keepdims=True)
    brute = (sigma @ ((1 - y[:, None] * (X @ W.T)) / 2)).max(axis=1)
    assert np.all(brute <= closed + 1e-9)
    np.testing.assert_allclose(brute, closed, atol=0.02)
    with pytest.raises(ValueError, match="loss lies in"):
        rd.sup_linear_loss(2 * X, y)


def test_mtl_sup_separable_and_shared():
    rng = np.random.default_rng(2)
    data = [(rng.random(5), (rng.random(5) < 0.5).astype(float)) for _ in range(3)]
    sups = [rd.sup_thresholds(x, y) for x, y in data]
    sigma = rd.rademacher_signs(rng, (50, 15))
    sep = rd.mtl_sup(sups, [5, 5, 5])(sigma)
    np.testing.assert_allclose(sep, sum(s(sigma[:, 5 * i:5 * i + 5]) for i, s in enumerate(sups)))
    xs = np.concatenate([d[0] for d in data])
    ys = np.concatenate([d[1] for d in data])
    shared = rd.mtl_sup(sups, [5, 5, 5], rd.sup_thresholds(xs, ys))(sigma)
    assert np.all(shared <= sep + 1e-12)  # one threshold for all tasks is a subclass


def test_rademacher_bad_input():
    with pytest.raises(ValueError, match="K x N"):
        rd.sup_finite(np.zeros(3))
    with pytest.raises(ValueError, match="0 or 1"):
        rd.sup_thresholds(np.zeros(3), np.array([0, 2, 1]))
    with pytest.raises(ValueError, match="at least 2"):
        rd.empirical_rademacher(rd.sup_finite(np.zeros((2, 3))), 3, draws=1)


# ----------------------------------------------------------------- gap problems
def test_threshold_true_loss_and_uniform_gap():
    rng = np.random.default_rng(3)
    task = gp.ThresholdTask(0.3, 0.1)
    x, y = task.sample(rng, 400_000)
    for th in (0.0, 0.3, 0.55, 1.0):
        emp = gp.threshold_empirical_loss(x, y, np.array([th]))[0]
        assert abs(emp - task.true_loss(th)) < 3e-3
    tasks = [gp.ThresholdTask(0.3, 0.1), gp.ThresholdTask(0.6, 0.2)]
    samples = [t.sample(rng, 30) for t in tasks]
    grid = np.linspace(-0.01, 1.01, 200_001)
    gaps = [t.true_loss(grid) - gp.threshold_empirical_loss(x_, y_, grid)
            for t, (x_, y_) in zip(tasks, samples)]
    shared_brute = (sum(gaps) / 2).max()
    sep_brute = np.mean([g.max() for g in gaps])
    shared = gp.threshold_uniform_gap(tasks, samples, shared=True)
    sep = gp.threshold_uniform_gap(tasks, samples, shared=False)
    assert shared_brute <= shared + 1e-12 and shared - shared_brute < 1e-4
    assert sep_brute <= sep + 1e-12 and sep - sep_brute < 1e-4


def test_linear_task_closed_forms():
    rng = np.random.default_rng(4)
    d = 5
    x = rng.standard_normal((400_000, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    assert abs(np.abs(x[:, 0]).mean() - gp.mean_abs_projection(d)) < 3e-3
    assert gp.mean_abs_projection(2) == pytest.approx(2 / math.pi)
    task = gp.LinearTask(np.eye(d)[0], noise=0.2)
    X, y = task.sample(rng, 400_000)
    w = rng.standard_normal(d)
    w /= np.linalg.norm(w)
    emp = ((1 - y * (X @ w)) / 2).mean()
    assert abs(emp - task.true_loss(w)) < 3e-3
    tasks = [task, gp.LinearTask(np.ones(d))]
    samples = [t.sample(rng, 20) for t in tasks]
    W = rng.standard_normal((50_000, d))
    W /= np.linalg.norm(W, axis=1, keepdims=True)
    per = [t.true_loss(W) - ((1 - y_[:, None] * (X_ @ W.T)) / 2).mean(0)
           for t, (X_, y_) in zip(tasks, samples)]
    shared = gp.linear_uniform_gap(tasks, samples, shared=True)
    assert (sum(per) / 2).max() <= shared + 1e-12
    assert shared - (sum(per) / 2).max() < 0.01
    assert np.mean([p.max() for p in per]) <= gp.linear_uniform_gap(tasks, samples, False) + 1e-12


# ----------------------------------------------------------------------- bounds
def test_hoeffding_radius_inverts_tail():
    for m, delta in ((10, 0.1), (500, 0.01)):
        eps = B.hoeffding_radius(m, delta)
        assert B.hoeffding_tail(m, eps) == pytest.approx(delta)
        one_sided = B.hoeffding_radius(m, delta, False)
        assert B.hoeffding_tail(m, one_sided, False) == pytest.approx(delta)
    assert B.pooled_radius(4, 100, 0.05) == pytest.approx(B.hoeffding_radius(400, 0.05, False))
    assert B.union_radius(100, 0.05, 10) == pytest.approx(math.sqrt(math.log(200) / 200))
    with pytest.raises(ValueError, match="delta"):
        B.hoeffding_radius(10, 1.5)


def test_theorem2_constants():
    s = math.sqrt(2 * math.log(4 / 0.05) / 100)
    assert B.theorem2_bound(0.1, 4, 25, 0.05) == pytest.approx(0.2 + 4 * s)
    assert B.theorem2_from_proof_steps(0.1, 4, 25, 0.05) == pytest.approx(0.2 + 5 * s)
    assert B.standard_rademacher_bound(0.1, 100, 0.05) < B.theorem2_bound(0.1, 4, 25, 0.05)


def test_rlw_theorem1_formulas():
    c, kappa, e0, eps = 1.0, 1.0, 1.0, 0.05
    eta = B.rlw_thm1_eta(eps, c, kappa)
    for k in (0, 10, 100):  # the exact recursion never exceeds Eq. 4
        assert B.rlw_thm1_recursion(k, eta, c, kappa, e0) <= B.rlw_thm1_bound(k, eta, c, kappa, e0)
    k_ok = math.ceil(B.rlw_thm1_iterations_corrected(eps, e0, c, kappa))
    assert B.rlw_thm1_bound(k_ok, eta, c, kappa, e0) <= eps
    k_paper = math.ceil(B.rlw_thm1_iterations(eps, e0, c, kappa))
    assert B.rlw_thm1_recursion(k_paper, eta, c, kappa, e0) > eps  # the count is too small
    with pytest.raises(ValueError, match="1/\\(2c\\)"):
        B.rlw_thm1_bound(1, 1.0, 1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="alpha > 1/\\(2c\\)"):
        B.rlw_thm3_Q(0.4, 1.0, 1.0, 1.0)


# ------------------------------------------------------------------ simulations
def test_tight_oracle_matches_recursion():
    prob = sim.TightQuadratic(c=1.0, kappa=1.0)
    rng = np.random.default_rng(5)
    g = prob.stoch_grads(np.full((200_000, 1), 0.6), rng)
    assert abs((g ** 2).mean() - 1.0) < 0.01 and abs(g.mean() - 0.6) < 0.01
    eta, K, R = 0.05, 60, 20_000
    tr = sim.run_sgd(prob, sim.fixed_sampler(np.ones(1)), np.array([1.0]), eta, K, R, rng)
    for k in (10, 30, 60):
        expected = B.rlw_thm1_recursion(k, eta, 1.0, 1.0, 1.0)
        assert abs(tr.msd[k] - expected) < 4 * tr.stderr[k] + 1e-3


def test_quadratic_optimum_and_sgd_converges():
    prob = sim.QuadraticTasks(c=[1.0, 3.0], a=[[0.0, 1.0], [2.0, -1.0]], noise=[0.0, 0.0])
    mu = np.array([0.25, 0.75])
    ts = prob.optimum(mu)
    grad = mu @ (prob.c[:, None] * (ts[None] - prob.a))
    np.testing.assert_allclose(grad, 0, atol=1e-12)
    tr = sim.run_sgd(prob, sim.fixed_sampler(mu), np.zeros(2), 0.1, 300, 2,
                     np.random.default_rng(0), ts)
    assert tr.msd[-1] < 1e-12


def test_landscape_derivative_and_basins():
    land = sim.SharpFlatLandscape()
    th = np.linspace(-2, 2, 101)
    fd = (land.F(th + 1e-6) - land.F(th - 1e-6)) / 2e-6
    np.testing.assert_allclose(land.dF(th), fd, atol=1e-5)
    s, f = land.minima()
    assert land.curvature(s) > 10 * land.curvature(f) > 0
    assert s < land.barrier() < f
    assert sim.flat_fraction(land, np.array([[s], [f], [f]])) == pytest.approx(2 / 3)


def test_noise_intensity_decomposition():
    rng = np.random.default_rng(6)
    G = rng.standard_normal((100, 3, 7))
    lam = rng.dirichlet(np.ones(3), size=100)
    mu = np.full(3, 1 / 3)
    g = mu @ G.mean(0)
    r = sim.noise_intensity(G, g, lam, mu)
    assert r["r_RLW"] == pytest.approx(r["r_FW"] + r["r_extra"] + r["cross"])


def test_draw_weights_from_registry():
    from mtlkit.weighting import get

    W = sim.draw_weights(get("EW"), 4, 5)
    np.testing.assert_allclose(W, 0.25)
    np.testing.assert_allclose(sim.bank_sampler(W)(np.random.default_rng(0), 3), 0.25)


# -------------------------------------------------------------- hypergradient
def test_lr_hypergradient_matches_finite_differences():
    rng = np.random.default_rng(7)
    A = rng.standard_normal((4, 4))
    A = A @ A.T + np.eye(4)
    f = lambda th: float(0.5 * th @ A @ th + np.sin(th).sum())
    grad = lambda th: A @ th + np.cos(th)
    th = rng.standard_normal(4)
    for eta in (0.01, 0.1):
        assert hg.lr_hypergradient(grad, th, eta) == pytest.approx(
            hg.lr_hypergradient_fd(f, grad, th, eta), rel=1e-5, abs=1e-7)


def test_hypergradient_descent_beta_zero_is_gd():
    f = lambda th: float(th @ th)
    grad = lambda th: 2 * th
    tr = hg.hypergradient_descent(f, grad, np.ones(2), 0.1, 0.0, 5)
    np.testing.assert_allclose(tr.theta, 0.8 ** 5 * np.ones(2))
    assert np.all(tr.eta == 0.1)
    with pytest.raises(ValueError, match="beta"):
        hg.hypergradient_descent(f, grad, np.ones(2), 0.1, -1.0, 5)


def test_draw_weights_rlw_matches_combine():
    from mtlkit.weighting import get

    W = sim.draw_weights(get("RLW", dist="dirichlet", seed=3), 3, 4)
    strat = get("RLW", dist="dirichlet", seed=3)
    import torch

    rows = np.stack([strat.combine(torch.ones(3, dtype=torch.float64))[1].numpy()
                     for _ in range(4)])
    np.testing.assert_allclose(W, rows)
    np.testing.assert_allclose(W.sum(1), 1.0)


def test_theorem2_constants_and_bounded_noise():
    rho, beta = B.rlw_thm2_constants(0.1, 1.0, 1.0, 0.01)
    assert rho == pytest.approx(0.19) and beta == pytest.approx(0.01 * 1e-4 * 1.21)
    assert B.rlw_thm2_constants(0.1, 1.0, 1.0, 0.01, corrected=True)[1] == pytest.approx(1.21e-4)
    assert B.rlw_thm2_radius(0.1, 1.0, 1.0, 0.01, 0.1) == pytest.approx(2 * beta / (rho * 0.1))
    with pytest.raises(ValueError, match="rho"):
        B.rlw_thm2_constants(3.0, 1.0, 1.0, 0.01)
    prob = sim.BoundedNoiseQuadratic(c=1.0, r=0.04, d=3)
    g = prob.stoch_grads(np.zeros((5, 3)), np.random.default_rng(0))
    np.testing.assert_allclose((g ** 2).sum(axis=(1, 2)), 0.04)


# ------------------------------------------------------------------ real runs
def test_real_run_helpers_on_synthetic_tensors():
    import torch

    from mtlkit.theory import real_runs as rr
    from mtlkit.weighting import get

    g = torch.Generator().manual_seed(0)
    E = torch.randn(10, 4, generator=g)
    x = torch.tensor([[1, 2, 0], [3, 0, 0]])
    feats, _ = rr.mean_embedding_features(list(zip(x, torch.tensor([0, 1]))), E)
    torch.testing.assert_close(feats[0], (E[1] + E[2]) / 2)
    torch.testing.assert_close(feats[1], E[3])
    data = {t: (torch.randn(40, 4, generator=g), torch.randint(0, 2, (40,), generator=g))
            for t in ("a", "b")}
    model = rr.mlp_hps(4, ["a", "b"], {"a": 2, "b": 2}, hidden=8)
    df = rr.track_loss_gaps(model, get("EW"), {"train": data, "test": data}, epochs=2, batch=8,
                            train_split="train")
    assert len(df) == 3 * 2 * 2 and df["err"].between(0, 1).all()
    G, full = rr.gradient_noise(model, data, batch=8, n_batches=3, weights=np.eye(2))
    params = model.shared_parameters()
    for i, t in enumerate(("a", "b")):  # independent check of the full per-task gradient
        loss = torch.nn.functional.cross_entropy(model(data[t][0], [t])[t], data[t][1])
        ref = torch.cat([gr.reshape(-1) for gr in torch.autograd.grad(loss, params)])
        np.testing.assert_allclose(full[i], ref.double().numpy(), rtol=1e-5, atol=1e-7)
    assert G.shape == (3, 2, full.shape[1])


def test_track_loss_gaps_trains_metaweighting_on_the_query_split():
    """A bi-level strategy chooses its weights on the query split (issue 17: the §6.7 gap
    under MetaWeighting): the weights move from 1/T, the query batches reach the strategy,
    and a run without a query split is refused with a message saying so."""
    import torch

    from mtlkit.theory import real_runs as rr
    from mtlkit.weighting import get

    g = torch.Generator().manual_seed(0)

    def part(n):
        return {t: (torch.randn(n, 4, generator=g), torch.randint(0, 2, (n,), generator=g))
                for t in ("a", "b")}

    splits = {"support": part(40), "query": part(16), "test": part(30)}
    model = rr.mlp_hps(4, ["a", "b"], {"a": 2, "b": 2}, hidden=8)
    strat = get("MetaWeighting", alpha=50.0, inner="adam")
    df = rr.track_loss_gaps(model, strat, splits, epochs=3, batch=8, lr=1e-2)
    assert len(df) == 4 * 2 * 3 and df["err"].between(0, 1).all()
    w = df[df["epoch"] == 3].groupby("task")["weight"].first()
    assert abs(w.sum() - 1) < 1e-5 and (w - 0.5).abs().max() > 1e-4  # learnt, valid
    assert df[df["epoch"] == 0]["weight"].isna().all()
    ew = rr.track_loss_gaps(rr.mlp_hps(4, ["a", "b"], {"a": 2, "b": 2}, hidden=8), get("EW"),
                            splits, epochs=1, batch=8)
    assert (ew[ew["epoch"] == 1]["weight"] == 0.5).all()
    with pytest.raises(ValueError, match="query"):
        rr.track_loss_gaps(model, get("MetaWeighting"), {"support": splits["support"]},
                           epochs=1, batch=8)


def test_track_loss_gaps_pairs_bilevel_and_loss_based_runs():
    """MetaWeighting with alpha = 0 keeps w = 1, i.e. EW's update: with the query batches drawn
    from their own generator the two runs see the same training batches, so their support,
    query and test losses agree (a paired comparison of the two strategies)."""
    import torch

    from mtlkit.theory import real_runs as rr
    from mtlkit.weighting import get

    g = torch.Generator().manual_seed(1)

    def part(n):
        return {t: (torch.randn(n, 4, generator=g), torch.randint(0, 2, (n,), generator=g))
                for t in ("a", "b")}

    splits = {"support": part(40), "query": part(16), "test": part(30)}
    runs = [rr.track_loss_gaps(rr.mlp_hps(4, ["a", "b"], {"a": 2, "b": 2}, hidden=8, seed=3),
                               strat, splits, epochs=2, batch=8, lr=1e-2, seed=5)
            for strat in (get("EW"), get("MetaWeighting", alpha=0.0, inner="adam"))]
    np.testing.assert_allclose(runs[0]["ce"], runs[1]["ce"], rtol=1e-5, atol=1e-6)
