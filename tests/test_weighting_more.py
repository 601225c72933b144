"""The strategies added for issue 14 (STCH, ExcessMTL, FairGrad, MoCo, MoDo, SDMGrad, DualProj,
ConFIG), each checked against an independent computation: autograd through the definition,
a QP solved by cvxpy, the defining equations, or a hand-written loop of the paper's algorithm.
(TorchJD's implementations are compared in tests/test_conformance_torchjd.py.)"""

from __future__ import annotations

import warnings

import cvxpy as cp
import numpy as np
import pytest
import torch

from mtlkit import weighting as W
from mtlkit.weighting._solvers import project_simplex

F64 = torch.float64
NEW = ["STCH", "ExcessMTL", "FairGrad", "MoCo", "MoDo", "SDMGrad", "DualProj", "ConFIG", "MOML",
       "FORUM"]


def problem(seed: int, t: int = 3, p: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(t, generator=gen, dtype=F64) + 0.2, torch.randn(t, p, generator=gen,
                                                                      dtype=F64)


def simplex_projection_qp(v: np.ndarray) -> np.ndarray:
    x = cp.Variable(len(v))
    cp.Problem(cp.Minimize(cp.sum_squares(x - v)), [x >= 0, cp.sum(x) == 1]).solve(
        solver=cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    return x.value


@pytest.mark.parametrize("seed", range(20))
def test_project_simplex_is_the_qp_solution(seed):
    v = torch.randn(5, generator=torch.Generator().manual_seed(seed), dtype=F64) * 3
    assert np.allclose(project_simplex(v).numpy(), simplex_projection_qp(v.numpy()), atol=1e-7)


def test_every_new_strategy_is_registered():
    assert set(NEW) <= set(W.names())


# ----------------------------------------------------------------------------- STCH
@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("mu", [0.1, 1.0, 10.0])
def test_stch_weights_are_the_gradient_of_the_scalarisation(seed, mu):
    losses, _ = problem(seed)
    pi, z = torch.tensor([1.0, 2.0, 0.5], dtype=F64), torch.tensor([0.1, 0.0, 0.05], dtype=F64)
    L = losses.clone().requires_grad_(True)
    (mu * torch.log(torch.exp(pi * (L - z) / mu).sum())).backward()  # Eq. 9, by autograd
    _, w = W.get("STCH", mu=mu, preference=pi.tolist(), ideal=z.tolist()).combine(losses)
    assert torch.allclose(w, L.grad, rtol=1e-10)


def test_stch_limits_are_tchebycheff_and_the_mean():
    losses = torch.tensor([0.3, 0.9, 0.5], dtype=F64)
    _, small = W.get("STCH", mu=1e-3).combine(losses)
    _, tch = W.get("Tchebycheff").combine(losses)
    assert torch.allclose(small, tch, atol=1e-12)
    _, big = W.get("STCH", mu=1e6).combine(losses)
    assert torch.allclose(big, torch.full((3,), 1 / 3, dtype=F64), atol=1e-6)


def test_stch_log_mode_warmup_then_nadir():
    s = W.get("STCH", mu=0.5, warmup=2)
    l1, l2 = torch.tensor([1.0, 4.0], dtype=F64), torch.tensor([3.0, 2.0], dtype=F64)
    for L in (l1, l2):  # warm-up: the mean of log L_t
        _, w = s.combine(L)
        assert torch.allclose(w, 1 / (2 * L))
    nadir = (l1 + l2) / 2
    L = torch.tensor([1.5, 2.5], dtype=F64).requires_grad_(True)
    (0.5 * torch.logsumexp(torch.log(L / nadir) / 0.5, 0)).backward()
    _, w = s.combine(L.detach())
    assert torch.allclose(w, L.grad, rtol=1e-9)


# ------------------------------------------------------------------------ ExcessMTL
def test_excess_mtl_hand_written_algorithm():
    eta, steps = 0.3, 4
    s = W.get("ExcessMTL", robust_step_size=eta)
    sq, alpha, e0 = None, np.full(3, 1 / 3), None
    for k in range(steps):
        _, g = problem(10 + k)
        d, w = s.combine(torch.ones(3, dtype=F64), g)
        gn = g.numpy()
        sq = gn**2 if sq is None else sq + gn**2
        e = (gn**2 / np.sqrt(sq + 1e-7)).sum(1)  # Eqs. 6-7
        if e0 is None:
            e0 = e
        else:
            alpha = alpha * np.exp(eta * e / e0)  # Eq. 9
            alpha = alpha / alpha.sum()
        assert np.allclose(w.numpy(), alpha, rtol=1e-10)
        assert np.allclose(d.numpy(), alpha @ gn)


# ------------------------------------------------------------------------- FairGrad
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 5.0])
def test_fairgrad_solves_its_optimality_condition(seed, alpha):
    losses, g = problem(seed)
    _, w = W.get("FairGrad", alpha=alpha).combine(losses, g)
    m, w = (g @ g.T).numpy(), w.numpy()
    assert np.all(w > 0)
    assert np.allclose(m @ w, w ** (-1 / alpha), rtol=1e-6)  # Eq. 4


@pytest.mark.parametrize("seed", range(4))
def test_fairgrad_alpha_one_is_nash_mtl(seed):
    losses, g = problem(seed)
    _, w = W.get("FairGrad", alpha=1.0).combine(losses, g)
    _, a = W.get("Nash-MTL").combine(losses, g)
    assert torch.allclose(w, a, rtol=1e-5)


def test_fairgrad_alpha_zero_is_the_mean_and_stationary_points_are_refused():
    losses, g = problem(0)
    _, w = W.get("FairGrad", alpha=0.0).combine(losses, g)
    assert torch.allclose(w, torch.full((3,), 1 / 3, dtype=F64))
    s = W.get("FairGrad")
    opp = torch.stack([g[0], -2.5 * g[0]])
    with pytest.warns(UserWarning, match="no solution"):
        _, w = s.combine(torch.ones(2, dtype=F64), opp)
    assert s.solver_failures == 1 and torch.allclose(w, torch.full((2,), 0.5, dtype=F64))


# ------------------------------------------------------------------ MoCo, MoDo, SDMGrad
@pytest.mark.parametrize("normalize", [False, True])
def test_moco_hand_written_algorithm(normalize):
    beta, bs, gamma, gs, rho = 0.5, 0.5, 0.1, 0.5, 0.01
    s = W.get("MoCo", beta=beta, beta_sigma=bs, gamma=gamma, gamma_sigma=gs, rho=rho,
              normalize=normalize)
    y, lam = np.zeros((3, 6)), np.full(3, 1 / 3)
    for k in range(1, 5):
        losses, g = problem(20 + k)
        d, w = s.combine(losses, g)
        h = g.numpy()
        if normalize:
            h = h / (np.linalg.norm(h, axis=1, keepdims=True) + 1e-8) * losses.numpy()[:, None]
        b, c = beta / k**bs, gamma / k**gs
        y = y - b * (y - h)  # Algorithm 1, tracking
        lam = simplex_projection_qp(lam - c * (y @ y.T + rho * np.eye(3)) @ lam)
        assert np.allclose(d.numpy(), lam @ y, atol=1e-7)
    assert not s.is_reweighting


def test_modo_hand_written_algorithm():
    gamma, rho = 0.05, 0.1
    s = W.get("MoDo", gamma=gamma, rho=rho)
    lam = np.full(3, 1 / 3)
    for k in range(4):
        losses, g = problem(30 + k)
        d, w = s.combine(losses, g)
        m = (g @ g.T).numpy()
        lam = simplex_projection_qp(lam - gamma * (m @ lam + rho * lam))  # Eq. 2.9
        assert np.allclose(w.numpy(), lam, atol=1e-7)
        assert torch.allclose(d, w @ g)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("lamda", [0.0, 0.3, 2.0])
def test_sdmgrad_inner_solve_reaches_the_qp_solution(seed, lamda):
    """Run long enough, the inner solve finds argmin_{w in simplex} ||G^T (w + lamda/T)||^2,
    solved here by cvxpy; d = (G^T w + lamda g0) / (1 + lamda)."""
    losses, g = problem(seed, t=4, p=6)
    d, weights = W.get("SDMGrad", lamda=lamda, lr=0.2, iters=4000).combine(losses, g)
    x = cp.Variable(4)
    gn = g.numpy()
    cp.Problem(cp.Minimize(cp.sum_squares(gn.T @ (x + lamda / 4))),
               [x >= 0, cp.sum(x) == 1]).solve(solver=cp.CLARABEL)
    ref = (gn.T @ x.value + lamda * gn.mean(0)) / (1 + lamda)
    assert np.allclose(d.numpy(), ref, atol=1e-4 * np.abs(gn).max())
    assert np.isclose(weights.sum().item(), 1.0)


# --------------------------------------------------------------------- DualProj, ConFIG
@pytest.mark.parametrize("seed", range(5))
def test_dualproj_is_the_projection_of_the_mean_onto_the_dual_cone(seed):
    losses, g = problem(seed, t=3, p=6)
    gn = g.numpy()
    y = cp.Variable(6)
    cp.Problem(cp.Minimize(cp.sum_squares(y - gn.mean(0))), [gn @ y >= 0]).solve(
        solver=cp.CLARABEL)
    d, w = W.get("DualProj", norm_eps=0.0).combine(losses, g)
    assert np.allclose(d.numpy(), y.value, atol=1e-6)
    assert np.all(gn @ d.numpy() >= -1e-9) and torch.allclose(w @ g, d)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("t", [2, 3, 5])
def test_config_equal_projections_and_length(seed, t):
    """Eq. 2: u_t . d equal for all t (unit gradients linearly independent: T <= P), and
    ||d|| = sum_t g_t . d / ||d||."""
    losses, g = problem(seed, t=t, p=7)
    d, w = W.get("ConFIG").combine(losses, g)
    u = g / g.norm(dim=1, keepdim=True)
    p = u @ d
    assert torch.allclose(p, p[0].expand_as(p), rtol=1e-8) and p[0] > 0
    assert torch.isclose(d.norm(), (g @ d).sum() / d.norm(), rtol=1e-10)
    assert torch.allclose(w @ g, d)


def test_config_exactly_opposite_gradients_give_zero():
    _, g = problem(3)
    d, _ = W.get("ConFIG").combine(torch.ones(2, dtype=F64), torch.stack([g[0], -3 * g[0]]))
    assert torch.count_nonzero(d) == 0


@pytest.mark.parametrize("name", NEW)
def test_state_roundtrip(name):
    hp = {"warmup": 1} if name == "STCH" else {}
    a, b = W.get(name, **hp), W.get(name, **hp)

    def call(s, seed):
        losses, g = problem(seed)
        q = {"query_losses": losses, "query_grads": 0.5 * g} if s.needs_query else {}
        if s.inner_plan(losses.numel()) is not None:
            q["inner_losses"] = 0.9 * losses
        return s.combine(losses, g, **q)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        call(a, 40)
        call(a, 41)
        b.load_state_dict(a.state_dict())
        da, wa = call(a, 42)
        db, wb = call(b, 42)
    assert torch.allclose(da, db) and torch.allclose(wa, wb)


# ----------------------------------------------------------------------------- MOML
def test_moml_step_is_mgda_of_autograd_hypergradients():
    """Linear query losses L^q_t(theta) = a_t . theta after one inner step
    theta' = theta - eta sum_j softmax(beta)_j g^s_j: autograd through this definition gives
    d L^q_t / d beta; normalised rows, min-norm point by cvxpy, one Adam step on beta."""
    eta, lr, t = 0.3, 1e-2, 3
    gen = torch.Generator().manual_seed(5)
    gs, a = torch.randn(t, 6, generator=gen, dtype=F64), torch.randn(t, 6, generator=gen,
                                                                     dtype=F64)
    theta0 = torch.randn(6, generator=gen, dtype=F64)
    beta = torch.zeros(t, dtype=F64, requires_grad=True)
    theta1 = theta0 - eta * torch.softmax(beta, 0) @ gs
    h = torch.stack([torch.autograd.grad(a[i] @ theta1, beta, retain_graph=True)[0]
                     for i in range(t)])
    h = (h / h.norm(dim=1, keepdim=True)).numpy()
    lam = cp.Variable(t)
    cp.Problem(cp.Minimize(cp.sum_squares(h.T @ lam)), [lam >= 0, cp.sum(lam) == 1]).solve(
        solver=cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    g = torch.tensor(lam.value @ h)
    beta1 = -lr * g / (g.abs() + 1e-8)  # Adam's first step: m_hat / sqrt(v_hat) = sign(g)
    s = W.get("MOML", outer_lr=lr)
    ones = torch.ones(t, dtype=F64)
    _, w0 = s.combine(ones, gs, query_losses=ones, query_grads=torch.zeros_like(a))
    assert torch.allclose(w0, torch.full((t,), 1 / t, dtype=F64))  # first call: records
    d, w1 = s.combine(ones, gs, query_losses=ones, query_grads=a.clone())
    assert torch.allclose(s.beta, beta1, atol=1e-7)
    assert torch.allclose(w1, torch.softmax(beta1, 0), atol=1e-9) and torch.allclose(d, w1 @ gs)


def test_moml_trains_in_the_bilevel_engine():
    import torch.nn.functional as F_
    from torch import nn

    from mtlkit.arch import HPS
    from mtlkit.engine import make_engine

    torch.manual_seed(0)
    model = HPS(nn.Sequential(nn.Linear(5, 8), nn.ReLU()), {k: nn.Linear(8, 1) for k in "ab"})
    strategy = W.get("MOML", outer_lr=0.1)
    engine = make_engine(model, strategy, "param")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    strategy.attach(model, opt)
    crit = {k: F_.mse_loss for k in "ab"}
    for _ in range(4):
        x, qx = torch.randn(16, 5), torch.randn(16, 5)
        y = {k: torch.randn(16, 1) for k in "ab"}
        qy = {k: torch.randn(16, 1) for k in "ab"}
        opt.zero_grad(set_to_none=True)
        res = engine.step(x, y, crit, query=(qx, qy))
        opt.step()
    assert torch.isclose(res.weights.sum(), torch.tensor(1.0)) and strategy.beta is not None
    assert not torch.allclose(res.weights, torch.full((2,), 0.5))


def test_project_simplex_of_huge_entries_keeps_the_largest():
    """1 - 1e27 rounds to -1e27: without the shift by max(v) the projection was all zeros."""
    for v in ([-1e27], [-1e27, -1e27 - 1e12], [3e30, -2e30]):
        w = project_simplex(torch.tensor(v, dtype=F64))
        assert float(w.sum()) == pytest.approx(1.0) and float(w[0]) > 0


# ---------------------------------------------------------------------------- FORUM
def test_forum_step_is_the_qp_on_explicit_vectors():
    """Build a_t = (0, g^q_t / ||g^q_t||) and b = (J (L - L^K), G^s^T softmax(beta)) in
    R^{T+P}, solve min ||sum mu_t a_t + nu b||^2 - phi ||b||^2 nu (mu in the simplex,
    nu >= max(0, pi^T mu)) with cvxpy on the vectors, and compare the step."""
    t, p, phi, lr = 3, 5, 0.5, 1e-2
    gen = torch.Generator().manual_seed(11)
    gs, gq = (torch.randn(t, p, generator=gen, dtype=F64) for _ in range(2))
    losses = torch.rand(t, generator=gen, dtype=F64) + 1.0
    inner = losses - torch.tensor([0.9, 0.1, 0.5], dtype=F64)
    lam = torch.full((t,), 1 / t, dtype=F64)
    jac = torch.diag(lam) - torch.outer(lam, lam)
    b = torch.cat([jac @ (losses - inner), lam @ gs]).numpy()
    a = torch.cat([torch.zeros(t, t, dtype=F64), gq / gq.norm(dim=1, keepdim=True)], 1).numpy()
    pi = phi - a @ b / (b @ b + 1e-8)
    x = cp.Variable(t + 1)
    vec = a.T @ x[:t] + b * x[t]
    cp.Problem(cp.Minimize(cp.sum_squares(vec) - phi * (b @ b + 1e-8) * x[t]),
               [x >= 0, cp.sum(x[:t]) == 1, x[t] >= pi @ x[:t]]).solve(
        solver=cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    mu = x.value[:t]
    nu = max(pi @ mu, 0.0)
    step = mu @ a + nu * b  # the direction on z = (beta, omega)
    s = W.get("FORUM", phi=phi, outer_lr=lr)
    d, w = s.combine(losses, gs, query_losses=losses, query_grads=gq, inner_losses=inner)
    assert np.allclose(s.mu.numpy(), mu, atol=1e-6)
    assert np.allclose(d.numpy(), step[t:], atol=1e-6)
    assert np.allclose(w.numpy(), nu * lam.numpy(), atol=1e-6)
    g = torch.tensor(step[:t])  # Adam's first step on beta: -lr sign(g)
    assert torch.allclose(s.beta, -lr * g / (g.abs() + 1e-8), atol=1e-6)


def test_forum_needs_its_inner_losses():
    _, g = problem(0)
    with pytest.raises(ValueError, match="inner steps"):
        W.get("FORUM").combine(torch.ones(3, dtype=F64), g, query_losses=torch.ones(3, dtype=F64),
                               query_grads=g.clone())


def test_inner_losses_run_sgd_on_a_copy():
    """The engine's inner steps, by hand on a linear model: theta <- theta - lr grad of
    sum_t w_t L_t, K times; the model itself is untouched."""
    from torch import nn

    from mtlkit.arch import HPS
    from mtlkit.engine.bilevel import inner_losses
    from mtlkit.weighting.base import InnerPlan

    torch.manual_seed(0)
    model = HPS(nn.Linear(4, 3), {k: nn.Linear(3, 1) for k in "ab"})
    x, y = torch.randn(8, 4), {k: torch.randn(8, 1) for k in "ab"}
    crit = {k: torch.nn.functional.mse_loss for k in "ab"}
    before = [p.detach().clone() for p in model.parameters()]
    w, lr, k = torch.tensor([0.3, 0.7]), 0.05, 3
    got = inner_losses(model, x, y, crit, InnerPlan(w, lr, k))
    params = [p.detach().clone().requires_grad_(True) for p in model.parameters()]

    def losses_of(ps):
        enc_w, enc_b, a_w, a_b, b_w, b_b = ps
        r = x @ enc_w.T + enc_b
        return torch.stack([crit["a"](r @ a_w.T + a_b, y["a"]), crit["b"](r @ b_w.T + b_b, y["b"])])

    for _ in range(k):
        gr = torch.autograd.grad((w * losses_of(params)).sum(), params)
        params = [(p - lr * g).detach().requires_grad_(True) for p, g in zip(params, gr)]
    assert torch.allclose(got, losses_of(params).detach(), atol=1e-6)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))


def test_forum_trains_in_the_bilevel_engine():
    import torch.nn.functional as F_
    from torch import nn

    from mtlkit.arch import HPS
    from mtlkit.engine import make_engine

    torch.manual_seed(0)
    model = HPS(nn.Sequential(nn.Linear(5, 8), nn.ReLU()), {k: nn.Linear(8, 1) for k in "ab"})
    strategy = W.get("FORUM", outer_lr=0.05, inner_steps=2)
    engine = make_engine(model, strategy, "param")
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    strategy.attach(model, opt)
    crit = {k: F_.mse_loss for k in "ab"}
    first = None
    for _ in range(20):
        x, qx = torch.randn(32, 5), torch.randn(32, 5)
        y = {"a": x[:, :1] * 2, "b": x[:, 1:2] - x[:, 2:3]}
        qy = {"a": qx[:, :1] * 2, "b": qx[:, 1:2] - qx[:, 2:3]}
        opt.zero_grad(set_to_none=True)
        res = engine.step(x, y, crit, query=(qx, qy))
        opt.step()
        first = float(res.query_losses.sum()) if first is None else first
    assert float(res.query_losses.sum()) < first and strategy.mu is not None
