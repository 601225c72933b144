"""MGDA, PCGrad, GradDrop, IMTL, GradVac: their math against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize
from torch import nn

from mtlkit import weighting as W
from mtlkit.arch import HPS
from mtlkit.engine import GradEngine
from mtlkit.weighting.graddrop import graddrop_direction, reproducing_weights, sign_purity
from mtlkit.weighting.gradvac import vaccine_coefficient

MINE = ["MGDA", "PCGrad", "GradDrop", "IMTL", "GradVac"]


def rand_g(t, p, seed=0, dtype=torch.float64):
    return torch.randn(t, p, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def cos(a, b):
    return float(a @ b / (a.norm() * b.norm()))


# ---------------------------------------------------------------------- MGDA
def slsqp_min_norm(m: np.ndarray) -> np.ndarray:
    t = m.shape[0]
    r = minimize(lambda x: x @ m @ x, np.full(t, 1 / t), jac=lambda x: 2 * m @ x,
                 method="SLSQP", bounds=[(0, 1)] * t,
                 constraints=({"type": "eq", "fun": lambda x: x.sum() - 1},),
                 options={"ftol": 1e-15, "maxiter": 1000})
    return r.x


@pytest.mark.parametrize("normalization", ["none", "l2", "loss", "loss+"])
def test_mgda_weights_match_independent_qp(normalization):
    for seed in range(5):
        g = rand_g(4, 9, seed)
        losses = torch.rand(4, generator=torch.Generator().manual_seed(seed), dtype=g.dtype) + 0.1
        d, w = W.get("MGDA", normalization=normalization).combine(losses, g)
        norms = g.norm(dim=1)
        n = {"none": torch.ones(4, dtype=g.dtype), "l2": norms, "loss": losses,
             "loss+": losses * norms}[normalization]
        gn = (g / n[:, None]).numpy()
        m = gn @ gn.T
        ref = slsqp_min_norm(m)
        assert float(w.numpy() @ m @ w.numpy()) <= float(ref @ m @ ref) + 1e-10
        # KKT on the simplex: (M w)_k >= w^T M w, equality on the support
        mw, f = m @ w.numpy(), w.numpy() @ m @ w.numpy()
        assert mw.min() >= f - 1e-9 and np.abs(mw[w.numpy() > 1e-8] - f).max() < 1e-9
        torch.testing.assert_close(d, w @ g)  # the weights are applied to the raw gradients


def test_mgda_two_task_closed_form():
    g = torch.tensor([[1.0, 0.0], [0.5, 1.0]], dtype=torch.float64)
    _, w = W.get("MGDA", solver="fw").combine(torch.ones(2, dtype=g.dtype), g)
    # gamma = (g2.g2 - g1.g2) / ||g1 - g2||^2 = (1.25 - 0.5) / 1.25 = 0.6
    torch.testing.assert_close(w, torch.tensor([0.6, 0.4], dtype=g.dtype))


def test_mgda_direction_is_common_descent():
    for seed in range(10):
        g = rand_g(3, 5, seed)
        d, _ = W.get("MGDA").combine(torch.ones(3, dtype=g.dtype), g)
        assert (g @ d >= d @ d - 1e-9).all() and d.norm() > 0


def test_mgda_bad_hparams():
    with pytest.raises(ValueError, match="normalization"):
        W.get("MGDA", normalization="l1")
    with pytest.raises(ValueError, match="solver"):
        W.get("MGDA", solver="cvx")


# -------------------------------------------------------------------- PCGrad
def test_pcgrad_hand_computed_projection():
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
    d, w = W.get("PCGrad").combine(torch.ones(2, dtype=g.dtype), g)
    # g1.g2 = -1:  g1' = g1 + g2 / 2 = (0.5, 0.5);  g2' = g2 + g1 = (0, 1)
    torch.testing.assert_close(d, torch.tensor([0.5, 1.5], dtype=g.dtype))
    torch.testing.assert_close(w, torch.tensor([2.0, 1.5], dtype=g.dtype))


def test_pcgrad_no_conflict_left_for_two_tasks():
    for seed in range(20):
        g = rand_g(2, 6, seed)
        s = W.get("PCGrad")
        _, w = s.combine(torch.ones(2, dtype=g.dtype), g)
        # rebuild g_i^PC by hand: only a conflicting pair is projected
        dot = float(g[0] @ g[1])
        p0 = g[0] - min(dot, 0) / float(g[1] @ g[1]) * g[1]
        p1 = g[1] - min(dot, 0) / float(g[0] @ g[0]) * g[0]
        torch.testing.assert_close(w @ g, p0 + p1)
        assert float(p0 @ g[1]) >= -1e-12 and float(p1 @ g[0]) >= -1e-12


def test_pcgrad_no_conflict_is_ew_sum():
    g = torch.tensor([[1.0, 0.2], [0.3, 1.0], [0.5, 0.5]], dtype=torch.float64)
    d, w = W.get("PCGrad").combine(torch.ones(3, dtype=g.dtype), g)
    torch.testing.assert_close(w, torch.ones(3, dtype=g.dtype))


def test_pcgrad_order_is_seeded():
    g = rand_g(4, 3, 7)
    ds = [W.get("PCGrad", seed=s).combine(torch.ones(4, dtype=g.dtype), g)[0] for s in (0, 0, 1)]
    torch.testing.assert_close(ds[0], ds[1], rtol=0, atol=0)


# ------------------------------------------------------------------ GradDrop
def test_graddrop_hand_case():
    g = torch.tensor([[1.0, -2.0, 3.0], [-1.0, -1.0, 1.0]])
    torch.testing.assert_close(sign_purity(g), torch.tensor([0.5, 0.0, 1.0]))
    u = torch.tensor([0.3, 0.5, 0.9])
    # col 0: P = .5 > .3 keeps the positive (1);  col 1: P = 0 < .5 keeps negatives (-3);
    # col 2: P = 1 > .9 keeps positives (4)
    torch.testing.assert_close(graddrop_direction(g, u), torch.tensor([1.0, -3.0, 4.0]))
    torch.testing.assert_close(graddrop_direction(g, u, leak=0.5), torch.tensor([0.5, -3.0, 4.0]))
    torch.testing.assert_close(graddrop_direction(g, u, leak=1.0), g.sum(0))


@pytest.mark.parametrize("leak", [0.0, 0.3])
def test_graddrop_equals_the_papers_explicit_masks(leak):
    """Chen et al. Eqs. 1-3 with explicit T x P masks M_t against the two-pass form."""
    for seed in range(5):
        g = rand_g(4, 200, seed)
        g[:, :20] = g[:1, :20] * torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=g.dtype)[:, None]  # pure
        u = torch.rand(200, generator=torch.Generator().manual_seed(seed), dtype=g.dtype)
        purity = sign_purity(g)
        masks = ((purity > u) & (g > 0)) | ((purity < u) & (g < 0))
        ref = ((leak + (1 - leak) * masks.to(g.dtype)) * g).sum(0)
        torch.testing.assert_close(graddrop_direction(g, u, leak), ref, rtol=1e-12, atol=1e-12)


def test_graddrop_class_uses_its_seeded_uniforms():
    g = rand_g(3, 50, 1, torch.float32)
    d, w = W.get("GradDrop", seed=5).combine(torch.ones(3), g)
    u = torch.rand(50, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(d, graddrop_direction(g, u))
    torch.testing.assert_close(w, reproducing_weights(g, d))


def test_reproducing_weights_recover_a_combination():
    g = rand_g(3, 10, 2)
    w = torch.tensor([0.2, -1.0, 3.0], dtype=g.dtype)
    torch.testing.assert_close(reproducing_weights(g, w @ g), w, atol=1e-6, rtol=0)


# ---------------------------------------------------------------------- IMTL
@pytest.mark.parametrize("t", [2, 3, 5])
def test_imtl_g_equal_projections_on_unit_gradients(t):
    for seed in range(5):
        g = rand_g(t, 12, seed)
        d, w = W.get("IMTL", method="grad").combine(torch.ones(t, dtype=g.dtype), g)
        proj = (g / g.norm(dim=1, keepdim=True)) @ d
        torch.testing.assert_close(proj, proj[0].expand(t), atol=1e-9, rtol=1e-9)
        assert abs(float(w.sum()) - 1) < 1e-9  # alpha sums to one
        torch.testing.assert_close(d, w @ g)


def test_imtl_hybrid_equal_projections_and_loss_scale_step():
    g = rand_g(3, 8, 4)
    losses = torch.tensor([2.0, 0.5, 1.0], dtype=g.dtype)
    s = W.get("IMTL", method="hybrid", lr=0.1)
    s.combine(losses, g)  # first step: s = 0, then s <- -lr (e^0 L - 1)
    torch.testing.assert_close(s.s, torch.tensor([-0.1, 0.05, 0.0], dtype=torch.float64))
    d, w = s.combine(losses, g)
    proj = (g / g.norm(dim=1, keepdim=True)) @ d
    torch.testing.assert_close(proj, proj[0].expand(3))
    # weights = alpha * e^s, alpha summing to one
    scale = torch.tensor([-0.1, 0.05, 0.0], dtype=torch.float64).exp()
    assert abs(float((w / scale).sum()) - 1) < 1e-9


def test_imtl_loss_is_loss_only_with_exp_scales():
    s = W.get("IMTL", method="loss", lr=0.5)
    assert s.modes == ("losses",) and not s.needs_grads
    _, w = s.combine(torch.tensor([3.0, 1.0]))
    torch.testing.assert_close(w, torch.ones(2))
    _, w = s.combine(torch.tensor([3.0, 1.0]))
    torch.testing.assert_close(w, torch.tensor([math.exp(-1.0), 1.0]))
    with pytest.raises(ValueError, match="method"):
        W.get("IMTL", method="both")


# ------------------------------------------------------------------- GradVac
def test_vaccine_coefficient_reaches_target():
    f64 = torch.float64
    gi, gj = torch.tensor([1.0, 0.0], dtype=f64), torch.tensor([0.0, 2.0], dtype=f64)
    for target in (0.0, 0.3, 0.9):
        a = vaccine_coefficient(torch.tensor(0.0, dtype=f64), torch.tensor(target, dtype=f64),
                                gi.norm(), gj.norm())
        assert abs(cos(gi + a * gj, gj) - target) < 1e-12


def test_gradvac_post_update_cosine_reaches_goal():
    for seed in range(10):
        g = rand_g(2, 5, seed)
        s = W.get("GradVac", beta=0.25)
        s.combine(torch.ones(2, dtype=g.dtype), g)  # sets goals phi = beta * rho
        goal = s.phi.clone()
        g2 = rand_g(2, 5, seed + 100)
        rho = cos(g2[0], g2[1])
        _, w = s.combine(torch.ones(2, dtype=g.dtype), g2)
        # d = (1 + a21) g1 + (1 + a12) g2 with g1' = g1 + a12 g2, g2' = g2 + a21 g1
        a12, a21 = float(w[1] - 1), float(w[0] - 1)
        if rho < float(goal[0, 1]):
            assert abs(cos(g2[0] + a12 * g2[1], g2[1]) - float(goal[0, 1])) < 1e-9
            assert abs(cos(g2[1] + a21 * g2[0], g2[0]) - float(goal[1, 0])) < 1e-9
        else:
            assert a12 == 0 and a21 == 0
        torch.testing.assert_close(s.phi[0, 1], 0.75 * goal[0, 1] + 0.25 * rho)


def test_gradvac_state_round_trip_resumes_identically():
    gs = [rand_g(3, 6, k) for k in range(6)]
    one = W.get("GradVac", beta=0.1)
    for g in gs[:3]:
        one.combine(torch.ones(3, dtype=g.dtype), g)
    saved = one.state_dict()
    two = W.get("GradVac", beta=0.1)
    two.load_state_dict(saved)
    for g in gs[3:]:
        torch.testing.assert_close(one.combine(torch.ones(3, dtype=g.dtype), g)[0],
                                   two.combine(torch.ones(3, dtype=g.dtype), g)[0])


# ------------------------------------------------------------ properties
@settings(max_examples=20, deadline=None)
@given(name=st.sampled_from(MINE), t=st.integers(1, 4), p=st.integers(1, 6),
       seed=st.integers(0, 1000), kind=st.sampled_from(["random", "zero", "parallel", "opposite"]))
def test_finite_and_deterministic(name, t, p, seed, kind):
    g = rand_g(t, p, seed, torch.float32)
    if kind == "zero":
        g = torch.zeros_like(g)
    elif kind == "parallel":
        g = g[:1] * torch.arange(1, t + 1, dtype=g.dtype)[:, None]
    elif kind == "opposite":
        g = g[:1] * torch.tensor([(-1.0) ** k for k in range(t)])[:, None]
    losses = torch.rand(t, generator=torch.Generator().manual_seed(seed))
    outs = []
    for _ in range(2):
        s = W.get(name)
        outs.append([s.combine(losses, g) for _ in range(2)])
    for (d, w), (d2, w2) in zip(outs[0], outs[1]):
        assert torch.isfinite(d).all() and torch.isfinite(w).all()
        assert torch.equal(d, d2) and torch.equal(w, w2)


# ------------------------------------------------------- training on HPS
def tiny_hps():
    torch.manual_seed(0)
    enc = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh())
    return HPS(enc, {t: nn.Linear(8, 1) for t in ("a", "b")})


@pytest.mark.parametrize("name,hp", [("MGDA", {"normalization": "loss+"}),
                                     ("MGDA", {"solver": "fw"}),
                                     ("IMTL", {"method": "grad"}), ("IMTL", {"method": "loss"}),
                                     ("GradDrop", {"leak": 0.2}), ("PCGrad", {}),
                                     ("GradVac", {})])
@pytest.mark.parametrize("mode", ["param", "rep"])
def test_training_step_moves_every_shared_parameter(name, hp, mode):
    model = tiny_hps()
    engine = GradEngine(model, W.get(name, **hp), mode)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(12, 4, generator=g)
    y = {t: torch.randn(12, 1, generator=g) for t in model.tasks}
    crit = {t: nn.functional.mse_loss for t in model.tasks}
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    opt.zero_grad()
    engine.step(x, y, crit)
    opt.step()
    assert all(not torch.equal(b, a) for b, a in zip(before, model.parameters()))
