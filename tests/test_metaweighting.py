"""MetaWeighting and Auto-lambda: hypergradients against autograd through an
unrolled inner step, Frank-Wolfe against an exact QP, the direction of the w
update on hand-worked problems, and the engine's bi-level step."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.func import functional_call

from mtlkit import weighting as W
from mtlkit.arch import HPS
from mtlkit.grads import GradEngine
from mtlkit.weighting.metaweighting import (
    common_direction,
    hypergradient_matrix,
    min_norm_weights,
    project_simplex,
)

TASKS = ("a", "b", "c")
CRIT = {t: nn.functional.mse_loss for t in TASKS}


def tiny(dtype=torch.float64, seed=0) -> HPS:
    torch.manual_seed(seed)
    enc = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 5), nn.Tanh())
    return HPS(enc, {t: nn.Linear(5, 1) for t in TASKS}).to(dtype)


def batches(dtype=torch.float64, seed=1):
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(8, 4, generator=g, dtype=dtype)
    ys = {t: torch.randn(8, 1, generator=g, dtype=dtype) for t in TASKS}
    xq = torch.randn(6, 4, generator=g, dtype=dtype)
    yq = {t: torch.randn(6, 1, generator=g, dtype=dtype) for t in TASKS}
    return xs, ys, xq, yq


def stacked(model, params, x, y):
    out = functional_call(model, params, (x,))
    return torch.stack([CRIT[t](out[t], y[t]) for t in TASKS])


def unrolled_jacobian(model, theta0, w0, xs, ys, xq, yq, update):
    """dL^q_t(theta^k(w))/dw by autograd, theta^k = update(theta0, grad of sum w_j/T L^s_j)."""
    w = w0.clone().requires_grad_(True)
    p0 = {k: v.clone().requires_grad_(True) for k, v in theta0.items()}
    tot = (w / len(TASKS) * stacked(model, p0, xs, ys)).sum()
    grads = torch.autograd.grad(tot, list(p0.values()), create_graph=True)
    p1 = {k: update(k, v, g) for (k, v), g in zip(p0.items(), grads)}
    lq = stacked(model, p1, xq, yq)
    return torch.stack([torch.autograd.grad(lq[i], w, retain_graph=True)[0]
                        for i in range(len(TASKS))])


def two_engine_steps(strat, opt_factory, w0):
    model = tiny()
    xs, ys, xq, yq = batches()
    eng = GradEngine(model, strat)
    opt = opt_factory(model.parameters())
    strat.attach(model, opt)
    opt.zero_grad()
    eng.step(xs, ys, CRIT, query=(xq, yq))  # warm-up step (Adam state exists afterwards)
    opt.step()
    theta0 = {k: v.detach().clone() for k, v in model.named_parameters()}
    strat.w = w0.clone()
    opt.zero_grad()
    eng.step(xs, ys, CRIT, query=(xq, yq))  # keeps G^s(theta0), steps with w0
    state = {p: {k: (v.clone() if torch.is_tensor(v) else v) for k, v in s.items()}
             for p, s in opt.state.items()}
    opt.step()
    opt.zero_grad()
    eng.step(xs, ys, CRIT, query=(xq, yq))  # D from G^q(theta1) and G^s(theta0)
    return model, theta0, state, (xs, ys, xq, yq)


W0 = torch.tensor([0.6, 1.5, 0.9], dtype=torch.float64)


def test_hypergradient_equals_autograd_through_sgd_step():
    eta = 0.05
    strat = W.get("MetaWeighting", alpha=0.0, constraint="none")
    model, theta0, _, (xs, ys, xq, yq) = two_engine_steps(
        strat, lambda p: torch.optim.SGD(p, lr=eta), W0)
    ref = unrolled_jacobian(model, theta0, W0, xs, ys, xq, yq, lambda k, v, g: v - eta * g)
    rel = ((strat.hypergrad - ref).norm() / ref.norm()).item()
    assert rel <= 1e-8, rel
    # heads matter: head t only enters D[t, t], dropping heads changes the diagonal only
    assert ref.abs().min() > 0


def test_hypergradient_equals_autograd_through_linearised_adam_step():
    """inner="adam_fixed_v" (v held fixed) is the linearised Adam step; inner="adam" is
    the exact one (tests below)."""
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    strat = W.get("MetaWeighting", alpha=0.0, constraint="none", inner="adam_fixed_v")
    model, theta0, state, (xs, ys, xq, yq) = two_engine_steps(
        strat, lambda p: torch.optim.Adam(p, lr=lr, betas=(b1, b2), eps=eps), W0)
    after = {k: v.detach().clone() for k, v in model.named_parameters()}  # theta1
    params = dict(model.named_parameters())
    opt_state = {k: state[p] for k, p in params.items()}  # Adam's state before the step

    def adam(k, v, g):
        s = opt_state[k]
        step = float(s["step"]) + 1
        m = b1 * s["exp_avg"] + (1 - b1) * g
        vk = b2 * s["exp_avg_sq"] + (1 - b2) * g.detach() ** 2  # no w-dependence through v
        denom = (vk / (1 - b2 ** step)).sqrt() + eps
        return v - lr / (1 - b1 ** step) * m / denom

    ref = unrolled_jacobian(model, theta0, W0, xs, ys, xq, yq, adam)
    rel = ((strat.hypergrad - ref).norm() / ref.norm()).item()
    assert rel <= 1e-8, rel
    # the linearised step reproduces the step Adam actually took
    p0 = {k: v.clone().requires_grad_(True) for k, v in theta0.items()}
    tot = (W0 / 3 * stacked(model, p0, xs, ys)).sum()
    grads = torch.autograd.grad(tot, list(p0.values()))
    for (k, v), g in zip(theta0.items(), grads):
        assert torch.allclose(adam(k, v, g), after[k], rtol=1e-10, atol=1e-12)


def test_sgd_and_adam_hypergradients_differ():
    sgd = W.get("MetaWeighting", alpha=0.0, inner="sgd")
    ada = W.get("MetaWeighting", alpha=0.0, inner="adam")
    two_engine_steps(sgd, lambda p: torch.optim.Adam(p, lr=0.01), W0)
    two_engine_steps(ada, lambda p: torch.optim.Adam(p, lr=0.01), W0)
    cos = torch.nn.functional.cosine_similarity(sgd.hypergrad.flatten(),
                                                ada.hypergrad.flatten(), dim=0)
    assert cos < 0.999


# ------------------------------------------------------------ Frank-Wolfe
def qp_min_norm(b: np.ndarray) -> np.ndarray:
    lam = cp.Variable(b.shape[0])
    r = np.linalg.cholesky(b + 1e-12 * np.eye(b.shape[0]))
    prob = cp.Problem(cp.Minimize(cp.sum_squares(r.T @ lam)), [lam >= 0, cp.sum(lam) == 1])
    prob.solve(solver="CLARABEL")
    x = np.clip(lam.value, 0, None)
    return x / x.sum()  # on the simplex exactly, so its objective is a feasible value


def fw_curvature(b: np.ndarray) -> float:
    """Jaggi's (2013) curvature constant of f(lam) = lam^T B lam on the simplex:
    C_f = sup 2/g^2 (f(y) - f(x) - grad f(x).(y - x)) = sup_{x, s} 2 (s - x)^T B (s - x)
    = 2 max_ij (B_ii + B_jj - 2 B_ij) (a convex quadratic peaks at a vertex of the
    difference set, e_i - e_j)."""
    diag = np.diag(b)
    return float(2 * (diag[:, None] + diag[None, :] - 2 * b).max())


def check_frank_wolfe_bounds(lam: np.ndarray, b: np.ndarray, ref: np.ndarray, iters: int,
                             tol: float) -> None:
    """What Frank-Wolfe provably meets after ``iters`` iterations (B normalised, as the
    solver sees it; ``ref`` an exactly optimal lam* checked by KKT):

    * primal: h = f(lam) - f* <= 2 C_f / (iters + 2) (Jaggi 2013, Thm. 1, line search),
      or <= 2 tol if the relative duality-gap rule stopped it earlier;
    * certificate: h <= g(lam) = max_s grad f(lam).(lam - s) = 2 (f(lam) - min_i (B lam)_i);
    * gap from the primal (smoothness: f* <= f(lam) - gamma g + gamma^2 C_f / 2 for every
      gamma in [0, 1]): g <= sqrt(2 C_f h) while h <= C_f / 2;
    * distance: f(lam) - f* >= 2 (B lam*).(lam - lam*) + lmin(B) ||lam - lam*||^2 and the
      first term is >= -2 delta, delta the KKT residual of lam*.
    """
    assert abs(lam.sum() - 1) < 1e-10 and lam.min() >= 0
    cf, eps = fw_curvature(b), 1e-12
    f, f_star = lam @ b @ lam, ref @ b @ ref
    h = f - f_star
    assert h <= max(2 * cf / (iters + 2), 2 * tol) + eps, (h, cf, iters)
    gap = 2 * (f - (b @ lam).min())
    assert -eps <= h <= gap + eps
    assert gap <= np.sqrt(2 * cf * max(h, 0.0)) + 1e-7
    delta = max(0.0, f_star - (b @ ref).min())
    lmin = np.linalg.eigvalsh(b).min()
    if lmin > 0:
        assert ((lam - ref) ** 2).sum() <= (max(h, 0.0) + 2 * delta + eps) / lmin


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 6))
@example(8244, 4)  # Frank-Wolfe still 3e-5 (relative) off after 5000 iterations
def test_frank_wolfe_matches_qp_and_kkt(seed, t):
    rng = np.random.default_rng(seed)
    d = torch.tensor(rng.normal(size=(t, t + 1)) + rng.normal(size=t + 1), dtype=torch.float64)
    b = (d @ d.T).numpy()
    ref = qp_min_norm(b)  # an independent solver, exactly feasible: obj_ref >= f*
    obj_ref = ref @ b @ ref
    scale = max(1.0, np.diag(b).max())
    # the exact solvers (the default "auto" is Wolfe's active set on the CPU): as good as
    # the QP and exact KKT, so lam* below is optimal up to round-off
    for solver in ("auto", "exact", "active"):
        lam = min_norm_weights(d, solver=solver).numpy()
        obj = lam @ b @ lam
        grad = b @ lam
        on = lam > 1e-9
        assert obj <= obj_ref + 1e-9 * scale
        assert np.all(np.abs(grad[on] - obj) <= 1e-8 * scale)
        assert np.all(grad[~on] >= obj - 1e-8 * scale)
    bn = b / np.diag(b).max()  # the scale min_norm_weights solves at
    lam_star = min_norm_weights(d, solver="active").numpy()
    # Frank-Wolfe (Algorithm 2) converges sublinearly when lambda* is on a face and not
    # at a vertex, hence solver="auto" by default: check the bounds it provably meets,
    # at the authors' 250 iterations and run long
    for iters, tol in ((250, 1e-8), (5000, 1e-15)):
        lam = min_norm_weights(d, iters=iters, tol=tol, solver="fw").numpy()
        check_frank_wolfe_bounds(lam, bn, lam_star, iters, tol)


def test_min_norm_is_scale_invariant():
    d = torch.tensor([[1.0, 2.0, 0.0], [0.0, -1.0, 1.0], [2.0, 0.0, -1.0]], dtype=torch.float64)
    assert torch.allclose(min_norm_weights(d), min_norm_weights(1e-6 * d), atol=1e-9)


# --------------------------------------------------- direction of the update
def test_hand_worked_update():
    """g^s_1=(1,0), g^s_2=(-1,1), g^q_1=(1,0), g^q_2=(0,1), eta/T = c:
    D = c[[-1, 1], [0, -1]]; raising w_2 worsens task 1's query loss (D[0,1] > 0).
    min-norm: lambda = (0.4, 0.6), d_c = c(-0.4, -0.2); sum: d_c = c(-1, 0)."""
    gs = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
    gq = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    eta, alpha = 0.2, 0.5
    c = eta / 2
    d = hypergradient_matrix(gq, gs, c)
    assert torch.allclose(d, c * torch.tensor([[-1.0, 1.0], [0.0, -1.0]], dtype=torch.float64))
    dc, lam = common_direction(d, "minnorm")  # Frank-Wolfe, Algorithm 2
    assert torch.allclose(common_direction(d, "minnorm", solver="exact")[1], lam, atol=1e-9)
    assert torch.allclose(lam, torch.tensor([0.4, 0.6], dtype=torch.float64), atol=1e-12)
    assert torch.allclose(dc, c * torch.tensor([-0.4, -0.2], dtype=torch.float64))
    dsum, _ = common_direction(d, "sum")
    assert torch.allclose(dsum, d.sum(0))
    # through the functional API: first call keeps G^s, second pairs it with G^q
    mw = W.get("MetaWeighting", alpha=alpha, eta=eta, constraint="none")
    losses = torch.ones(2, dtype=torch.float64)
    mw.combine(losses, gs, query_losses=losses, query_grads=gq)
    mw.combine(losses, gs, query_losses=losses, query_grads=gq)
    assert torch.allclose(mw.w, 1 + alpha * c * torch.tensor([0.4, 0.2], dtype=torch.float64))
    # the simplex rule keeps the sum (= T) and the difference w_1 - w_2 (= 0.2 alpha c)
    ms = W.get("MetaWeighting", alpha=alpha, eta=eta)
    for _ in range(2):
        ms.combine(losses, gs, query_losses=losses, query_grads=gq)
    assert abs(ms.w.sum().item() - 2) < 1e-12
    assert abs((ms.w[0] - ms.w[1]).item() - 0.2 * alpha * c) < 1e-12


def test_poisoned_support_task_loses_weight():
    """Task b's support labels contradict its query labels: raising w_b worsens every
    query loss, so the derivation predicts w_b falls and w_a rises."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = HPS(nn.Linear(3, 1, bias=False), {"a": nn.Identity(), "b": nn.Identity()})
    theta = torch.randn(3, 1, generator=g)
    strat = W.get("MetaWeighting", alpha=20.0)
    eng = GradEngine(model, strat)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    strat.attach(model, opt)
    crit = {t: nn.functional.mse_loss for t in "ab"}
    for _ in range(30):
        x, xq = torch.randn(16, 3, generator=g), torch.randn(16, 3, generator=g)
        y = {"a": x @ theta, "b": -(x @ theta)}
        yq = {"a": xq @ theta, "b": xq @ theta}
        opt.zero_grad()
        eng.step({"a": x, "b": x}, y, crit, query=({"a": xq, "b": xq}, yq))
        opt.step()
    assert strat.w[1] < 1.0 < strat.w[0]
    assert abs(strat.w.sum().item() - 2) < 1e-5


# -------------------------------------------------------- validity of w
@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-5, 5), min_size=1, max_size=7), st.floats(0.5, 10))
def test_simplex_projection_matches_qp(v, total):
    v = torch.tensor(v, dtype=torch.float64)
    w = project_simplex(v, total)
    x = cp.Variable(v.numel())
    cp.Problem(cp.Minimize(cp.sum_squares(x - v.numpy())), [x >= 0, cp.sum(x) == total]
               ).solve(solver="CLARABEL")
    assert w.min() >= 0 and abs(w.sum().item() - total) < 1e-9
    vv, ww = v.numpy(), w.numpy()
    assert ((ww - vv) ** 2).sum() <= ((x.value - vv) ** 2).sum() + 1e-6  # as good as the QP
    # KKT: w = max(v - theta, 0) for one scalar theta
    on = ww > 0
    theta = (vv - ww)[on]
    assert np.ptp(theta) < 1e-9 and np.all(vv[~on] <= theta[0] + 1e-9)


def test_simplex_projection_of_huge_entries():
    """The largest entry stays active however large |v| is (a float32 v of -2e13 absorbed
    the total, left no active entry and indexed css[-1])."""
    for dtype in (torch.float32, torch.float64):
        w = project_simplex(torch.tensor([-2.1e13], dtype=dtype), 1.0)
        assert w.tolist() == [1.0]
        w = project_simplex(torch.tensor([-1e13, -1e13 - 3e6, 5e12], dtype=dtype), 2.0)
        assert w.tolist() == [0.0, 0.0, 2.0]


def test_constraints_keep_w_valid():
    gs = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
    gq = -10 * gs  # huge steps that would push a weight negative
    losses = torch.ones(2, dtype=torch.float64)
    out = {}
    for rule in ("simplex", "clamp", "none"):
        s = W.get("MetaWeighting", alpha=100.0, eta=1.0, constraint=rule)
        for _ in range(3):
            s.combine(losses, gs, query_losses=losses, query_grads=gq)
        out[rule] = s.w
    assert out["none"].min() < 0
    assert out["clamp"].min() >= 0 and out["simplex"].min() >= 0
    assert abs(out["simplex"].sum().item() - 2) < 1e-12


# --------------------------------------------------------------- Auto-lambda
def test_autolambda_is_the_column_sum_on_training_batches():
    rng = torch.Generator().manual_seed(3)
    g_prev, g_now = torch.randn(3, 7, generator=rng), torch.randn(3, 7, generator=rng)
    losses = torch.ones(3)
    al = W.get("AutoLambda", alpha=1.0, eta=0.3, constraint="none")
    al.combine(losses, g_prev)
    _, w = al.combine(losses, g_now)
    d = -(0.3 / 3) * (g_now @ g_prev.T)
    assert torch.allclose(al.w, 1 - d.sum(0), atol=1e-6)
    assert torch.allclose(w, al.w / 3)
    assert not W.get("AutoLambda").needs_query and W.get("MetaWeighting").needs_query


def test_metaweighting_reduce_sum_equals_autolambda_given_same_val_grads():
    rng = torch.Generator().manual_seed(4)
    gs, gq = torch.randn(3, 5, generator=rng), torch.randn(3, 5, generator=rng)
    losses = torch.ones(3)
    mw = W.get("MetaWeighting", alpha=1.0, eta=0.1, reduce="sum", constraint="clamp")
    al = W.get("AutoLambda", alpha=1.0, eta=0.1)
    for s, val in ((mw, gq), (al, gq)):
        s.combine(losses, gs, query_losses=losses, query_grads=gs) if s is mw else \
            s.combine(losses, gs)
        s.combine(losses, val, query_losses=losses, query_grads=val) if s is mw else \
            s.combine(losses, val)
    assert torch.allclose(mw.w, al.w)


# ------------------------------------------------------------- engine step
@pytest.mark.parametrize("name,kw", [("MetaWeighting", {}), ("MetaWeighting", {"inner": "adam"}),
                                     ("AutoLambda", {})])
def test_engine_step_moves_every_parameter(name, kw):
    model = tiny(torch.float32)
    xs, ys, xq, yq = batches(torch.float32)
    strat = W.get(name, **kw)
    eng = GradEngine(model, strat)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    strat.attach(model, opt)
    before = [p.detach().clone() for p in model.parameters()]
    for _ in range(3):
        opt.zero_grad()
        res = eng.step(xs, ys, CRIT, query=(xq, yq) if strat.needs_query else None)
        opt.step()
    assert all(not torch.equal(b, a.detach()) for b, a in zip(before, model.parameters()))
    assert res.weights.shape == (3,) and torch.isfinite(res.weights).all()
    assert not torch.equal(strat.w, torch.ones(3))  # w was learnt
    if strat.needs_query:
        assert res.query_losses is not None and res.query_losses.shape == (3,)


@pytest.mark.parametrize("inner", ["sgd", "adam"])
def test_engine_run_equals_a_functional_replay(inner):
    """The engine's zero-copy bookkeeping (two alternating support buffers kept by
    reference, the query buffer scaled in place) against the plain functional API
    on reference per-task gradients, over several steps: same w, same direction."""
    from mtlkit.bilevel import row_parameters
    from mtlkit.grads import per_task_grads

    def run(use_engine: bool):
        model = tiny()
        xs, ys, xq, yq = batches()
        strat = W.get("MetaWeighting", alpha=2.0, inner=inner)
        opt = torch.optim.Adam(model.parameters(), lr=0.05)
        strat.attach(model, opt)
        eng, rows, ws = GradEngine(model, strat), row_parameters(model), []
        for _ in range(4):
            opt.zero_grad()
            if use_engine:
                eng.step(xs, ys, CRIT, query=(xq, yq))
            else:
                ls, lq = stacked(model, dict(model.named_parameters()), xs, ys), \
                    stacked(model, dict(model.named_parameters()), xq, yq)
                gs, gq = per_task_grads(ls, rows), per_task_grads(lq, rows)
                d, _ = strat.combine(ls.detach(), gs, query_losses=lq.detach(), query_grads=gq)
                for p, g in zip(rows, torch.split(d, [p.numel() for p in rows])):
                    p.grad = g.view_as(p).clone()
            ws.append(strat.w.clone())
            opt.step()
        return torch.stack(ws), [p.detach().clone() for p in model.parameters()]

    (w_eng, p_eng), (w_ref, p_ref) = run(True), run(False)
    assert not torch.allclose(w_ref[-1], w_ref[0])  # w moved, so the pairing mattered
    torch.testing.assert_close(w_eng, w_ref, rtol=1e-10, atol=1e-12)
    for a, b in zip(p_eng, p_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_a_lent_buffer_is_never_written():
    """After combine(..., owned=True) the strategy holds the caller's buffer; a later
    plain call must copy into a buffer of its own, not into the lent one."""
    strat = W.get("MetaWeighting", eta=0.1)
    losses = torch.ones(3, dtype=torch.float64)
    lent = torch.randn(3, 4, dtype=torch.float64)
    kept = lent.clone()
    strat.combine(losses, lent, query_losses=losses, query_grads=torch.randn(3, 4,
                  dtype=torch.float64), owned=True)
    other = torch.randn(3, 4, dtype=torch.float64)
    strat.combine(losses, other, query_losses=losses, query_grads=torch.randn(3, 4,
                  dtype=torch.float64))
    assert torch.equal(lent, kept) and torch.equal(strat._prev, other)


def test_heads_get_the_weighted_support_gradient():
    model = tiny()
    xs, ys, xq, yq = batches()
    strat = W.get("MetaWeighting")
    strat.w = W0.clone()
    strat.num_tasks = 3
    eng = GradEngine(model, strat)
    eng.step(xs, ys, CRIT, query=(xq, yq))
    out = model(xs)
    for i, t in enumerate(TASKS):
        head = model.task_parameters(t)
        ref = torch.autograd.grad(CRIT[t](out[t], ys[t]), head, retain_graph=True)
        for p, r in zip(head, ref):
            assert torch.allclose(p.grad, W0[i] / 3 * r)


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("kw,msg", [({"alpha": -1}, "alpha"), ({"reduce": "mean"}, "reduce"),
                                    ({"inner": "rmsprop"}, "inner"),
                                    ({"constraint": "box"}, "constraint"),
                                    ({"eta": 0.0}, "eta"), ({"init": 0}, "init"),
                                    ({"solver": "qp"}, "solver"), ({"fw_iters": 0}, "fw_iters")])
def test_bad_hyperparameters_raise(kw, msg):
    with pytest.raises(ValueError, match=msg):
        W.get("MetaWeighting", **kw)


def test_clear_errors():
    mw = W.get("MetaWeighting", eta=0.1)
    with pytest.raises(ValueError, match="query_grads"):
        mw.combine(torch.ones(2), torch.ones(2, 3))
    model = tiny(torch.float32)
    with pytest.raises(ValueError, match="Adam"):
        W.get("MetaWeighting", inner="adam").attach(model, torch.optim.SGD(model.parameters(),
                                                                           lr=0.1))
    eng = GradEngine(model, W.get("MetaWeighting"))
    xs, ys, _, _ = batches(torch.float32)
    with pytest.raises(ValueError, match="query"):
        eng.step(xs, ys, CRIT)
    with pytest.raises(ValueError, match="eta"):  # no optimiser, no eta
        s = W.get("MetaWeighting")
        for _ in range(2):
            s.combine(torch.ones(2), torch.ones(2, 3), query_losses=torch.ones(2),
                      query_grads=torch.ones(2, 3))


def test_state_dict_round_trip_keeps_w():
    gs, gq = torch.randn(3, 4), torch.randn(3, 4)
    losses = torch.ones(3)
    a = W.get("MetaWeighting", alpha=5.0, eta=0.5)
    for _ in range(3):
        a.combine(losses, gs, query_losses=losses, query_grads=gq)
    b = W.get("MetaWeighting", alpha=5.0, eta=0.5)
    b.load_state_dict(a.state_dict())
    _, wa = a.combine(losses, gs, query_losses=losses, query_grads=gq)
    _, wb = b.combine(losses, gs, query_losses=losses, query_grads=gq)
    assert torch.allclose(wb, b.w / 3) and not torch.allclose(a.w, torch.ones(3))
    assert b.hparams() == a.hparams()


@pytest.mark.parametrize("name", ["MetaWeighting", "AutoLambda"])
def test_resume_keeps_previous_support_gradients(name):
    """A strategy restored from state_dict gives the same next weights, which
    needs the previous step's support gradients (the hypergradient uses them)."""
    g = torch.Generator().manual_seed(0)
    needs_query = W.base._REGISTRY[name].needs_query

    def call(s):
        losses = torch.rand(3, generator=g, dtype=torch.float64)
        grads = torch.randn(3, 8, generator=g, dtype=torch.float64)
        query = torch.randn(3, 8, generator=g, dtype=torch.float64)
        return s.combine(losses, grads, query_grads=query) if needs_query else \
            s.combine(losses, grads)

    a, b = W.get(name, eta=0.1), W.get(name, eta=0.1)
    for _ in range(2):
        call(a)
    b.load_state_dict(a.state_dict())
    state = g.get_state()
    wa = call(a)[1]
    g.set_state(state)
    wb = call(b)[1]
    assert not torch.allclose(wa, torch.full_like(wa, 1 / 3))
    assert torch.allclose(wa, wb)


# ------------------------------------------- the exact Adam hypergradient (issue 17)
def adam_run(inner: str, steps: int, lr=0.02, betas=(0.9, 0.999), eps=1e-8, amsgrad=False,
             weight_decay=0.0):
    """Train ``steps`` Adam steps with MetaWeighting(alpha=0, w = 1) and return, for the
    last one (step k = steps), the library's D (read at call k + 1) and what is needed to
    recompute it: theta^{k-1}, Adam's state before step k, and the batches."""
    model = tiny()
    xs, ys, xq, yq = batches()
    strat = W.get("MetaWeighting", alpha=0.0, constraint="none", inner=inner)
    eng = GradEngine(model, strat)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=betas, eps=eps, amsgrad=amsgrad,
                           weight_decay=weight_decay)
    strat.attach(model, opt)
    for k in range(1, steps + 1):
        if k == steps:
            theta = {n: v.detach().clone() for n, v in model.named_parameters()}
            state = {n: {key: (v.clone() if torch.is_tensor(v) else v)
                         for key, v in opt.state.get(p, {}).items()}
                     for n, p in model.named_parameters()}
        opt.zero_grad()
        eng.step(xs, ys, CRIT, query=(xq, yq))
        opt.step()
    after = {n: v.detach().clone() for n, v in model.named_parameters()}
    opt.zero_grad()
    eng.step(xs, ys, CRIT, query=(xq, yq))  # pairs G^q(theta^k) with G^s(theta^{k-1})
    return strat.hypergrad, model, theta, state, after, (xs, ys, xq, yq)


def true_adam_step(state, lr, betas, eps, amsgrad=False, weight_decay=0.0):
    """Adam's update as a function of the gradient, both moments depending on it."""
    b1, b2 = betas

    def step(name, v, g):
        s = state[name]
        k = float(s.get("step", 0)) + 1
        g = g + weight_decay * v.detach()
        m = b1 * s.get("exp_avg", torch.zeros_like(v)) + (1 - b1) * g
        sq = b2 * s.get("exp_avg_sq", torch.zeros_like(v)) + (1 - b2) * g ** 2
        if amsgrad:
            sq = torch.maximum(s.get("max_exp_avg_sq", torch.zeros_like(v)), sq)
        return v - lr / (1 - b1 ** k) * m / ((sq / (1 - b2 ** k)).sqrt() + eps)
    return step


@pytest.mark.parametrize("steps", [1, 2, 5])
def test_adam_hypergradient_is_exact(steps):
    """inner="adam" equals autograd through the real Adam step (v depends on w too) at
    Adam's first, second and fifth step; the functional step reproduces torch's."""
    lr, betas, eps = 0.02, (0.9, 0.999), 1e-8
    d_lib, model, theta, state, after, (xs, ys, xq, yq) = adam_run("adam", steps, lr)
    step = true_adam_step(state, lr, betas, eps)
    ref = unrolled_jacobian(model, theta, torch.ones(3, dtype=torch.float64), xs, ys, xq, yq,
                            step)
    rel = ((d_lib - ref).norm() / ref.norm()).item()
    assert rel <= 1e-7, rel
    p0 = {k: v.clone().requires_grad_(True) for k, v in theta.items()}
    grads = torch.autograd.grad((stacked(model, p0, xs, ys) / 3).sum(), list(p0.values()))
    for (k, v), g in zip(theta.items(), grads):
        torch.testing.assert_close(step(k, v, g), after[k], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kw", [{"amsgrad": True}, {"weight_decay": 0.1}])
def test_adam_hypergradient_is_exact_with_amsgrad_and_l2(kw):
    lr, betas, eps = 0.02, (0.9, 0.999), 1e-8
    d_lib, model, theta, state, _, (xs, ys, xq, yq) = adam_run("adam", 4, lr, **kw)
    ref = unrolled_jacobian(model, theta, torch.ones(3, dtype=torch.float64), xs, ys, xq, yq,
                            true_adam_step(state, lr, betas, eps, **kw))
    assert ((d_lib - ref).norm() / ref.norm()).item() <= 1e-7


def test_adam_hypergradient_matches_finite_differences_of_torch_adam():
    """Independent of any formula: step torch.optim.Adam itself from the same state with
    w +- h e_j and difference the query losses."""
    lr, h = 0.02, 1e-6
    d_lib, model, theta, state, _, (xs, ys, xq, yq) = adam_run("adam", 3, lr)

    def query_after(w):
        m = tiny()
        m.load_state_dict(theta)
        opt = torch.optim.Adam(m.parameters(), lr=lr)
        for n, p in m.named_parameters():
            opt.state[p] = {k: (v.clone() if torch.is_tensor(v) else v)
                            for k, v in state[n].items()}
        loss = (w / 3 * stacked(m, dict(m.named_parameters()), xs, ys)).sum()
        loss.backward()
        opt.step()
        with torch.no_grad():
            return stacked(m, dict(m.named_parameters()), xq, yq)

    fd = torch.stack([(query_after(1 + h * e) - query_after(1 - h * e)) / (2 * h)
                      for e in torch.eye(3, dtype=torch.float64)], dim=1)
    assert ((fd - d_lib).norm() / fd.norm()).item() < 1e-5


def test_fixed_v_adam_hypergradient_is_far_off_at_adams_first_step():
    """At step 1 Adam's step is lr sign(g) (up to eps): the true hypergradient is ~0,
    while holding v fixed gives one of the size of a normalised gradient step."""
    exact, *_ = adam_run("adam", 1)
    fixed, *_ = adam_run("adam_fixed_v", 1)
    assert exact.norm() < 1e-3 * fixed.norm()


def test_adam_resume_keeps_the_exact_hypergradient():
    """state_dict carries Adam's previous first moment: a strategy restored mid-run
    computes the uninterrupted run's next D."""
    d_ref, *_ = adam_run("adam", 3)
    model = tiny()
    xs, ys, xq, yq = batches()
    a = W.get("MetaWeighting", alpha=0.0, constraint="none", inner="adam")
    eng = GradEngine(model, a)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    a.attach(model, opt)
    for _ in range(3):
        opt.zero_grad()
        eng.step(xs, ys, CRIT, query=(xq, yq))
        opt.step()
    b = W.get("MetaWeighting", alpha=0.0, constraint="none", inner="adam")
    b.load_state_dict(a.state_dict())
    eng_b = GradEngine(model, b)
    b.attach(model, opt)
    opt.zero_grad()
    eng_b.step(xs, ys, CRIT, query=(xq, yq))
    torch.testing.assert_close(b.hypergrad, d_ref, rtol=1e-10, atol=1e-14)
