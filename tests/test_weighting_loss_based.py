"""Independent checks of the loss-based strategies: UW, GradNorm, DWA, FAMO, GLS.

Each update is compared with a hand-worked number or with autograd on the
strategy's own objective written out here from the paper, never with the
library's own helper.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import mtlkit.weighting as W
from mtlkit.weighting._learnable import adam_update

OURS = ("UW", "GradNorm", "DWA", "RLW", "FAMO", "GLS")




@pytest.fixture(autouse=True)
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


# ----------------------------------------------------------------------- UW
def test_uw_sgd_step_equals_autograd_of_objective():
    uw = W.get("UW", lr=0.1, optimizer="sgd", init=0.3)
    s = torch.full((3,), 0.3, requires_grad=True)
    for L in (torch.tensor([0.5, 2.0, 7.0]), torch.tensor([1.5, 0.2, 3.0])):
        _, w = uw.combine(L)
        assert torch.allclose(w, torch.exp(-s.detach()))  # weights used = exp(-s) before the step
        obj = (torch.exp(-s) * L + s).sum()  # Kendall, common form
        (gs,) = torch.autograd.grad(obj, s)
        with torch.no_grad():
            s -= 0.1 * gs
        assert torch.allclose(uw.s, s.detach(), atol=1e-12)


def test_uw_hand_step():
    # s=0, L=(2, 0.5): dJ/ds = 1 - L = (-1, 0.5); SGD lr 0.1 -> s = (0.1, -0.05)
    uw = W.get("UW", lr=0.1, optimizer="sgd")
    uw.combine(torch.tensor([2.0, 0.5]))
    assert torch.allclose(uw.s, torch.tensor([0.1, -0.05]))


def test_uw_adam_matches_torch_adam():
    uw = W.get("UW", lr=0.01)
    s = torch.zeros(2, requires_grad=True)
    opt = torch.optim.Adam([s], lr=0.01)
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        L = torch.rand(2, generator=gen) * 3
        uw.combine(L)
        opt.zero_grad()
        (torch.exp(-s) * L + s).sum().backward()
        opt.step()
    assert torch.allclose(uw.s, s.detach(), atol=1e-10)


@pytest.mark.parametrize("optimizer,lr,steps", [("sgd", 0.2, 600), ("adam", 0.02, 1500)])
def test_uw_optimum_is_log_loss(optimizer, lr, steps):
    L = torch.tensor([0.5, 2.0, 7.0])
    uw = W.get("UW", lr=lr, optimizer=optimizer)
    for _ in range(steps):
        uw.combine(L)
    assert torch.allclose(uw.s, torch.log(L), atol=2e-3)  # s* = log L, w* = 1/L


def test_adam_update_matches_torch_with_weight_decay():
    p = torch.tensor([0.3, -1.0, 2.0], requires_grad=True)
    opt = torch.optim.Adam([p], lr=0.05, weight_decay=0.1)
    q, state = p.detach().clone(), {}
    gen = torch.Generator().manual_seed(1)
    for _ in range(10):
        g = torch.randn(3, generator=gen)
        p.grad = g.clone()
        opt.step()
        q, state = adam_update(q, g, state, 0.05, weight_decay=0.1)
    assert torch.allclose(p.detach(), q, atol=1e-10)


# ----------------------------------------------------------------- GradNorm
def test_gradnorm_hand_first_step():
    # norms (5, 1); first call: r = 1, target = mean(w n) = 3; sign(w n - 3) = (+, -)
    # grad = (5, -1); SGD lr 0.1: w = (0.5, 1.1); renormalised to sum 2: (0.625, 1.375)
    G = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    gn = W.get("GradNorm", alpha=1.5, lr=0.1, optimizer="sgd")
    d, w = gn.combine(torch.tensor([2.0, 1.0]), G)
    assert torch.allclose(w, torch.ones(2)) and torch.allclose(d, G.sum(0))
    assert torch.allclose(gn.w, torch.tensor([0.625, 1.375]))


def test_gradnorm_update_equals_autograd_on_its_loss():
    gen = torch.Generator().manual_seed(3)
    G0 = torch.randn(3, 6, generator=gen)
    L0 = torch.tensor([2.0, 1.0, 4.0])
    gn = W.get("GradNorm", alpha=1.5, lr=0.05, optimizer="sgd")
    gn.combine(L0, G0)
    for L in (torch.tensor([1.0, 0.9, 3.0]), torch.tensor([0.5, 0.8, 2.5])):
        G = torch.randn(3, 6, generator=gen)
        w = gn.w.clone().requires_grad_(True)
        n = torch.tensor([math.hypot(*row.tolist()) for row in G])
        ratio = (L / L0).tolist()
        r = torch.tensor([x / (sum(ratio) / 3) for x in ratio])
        target = ((w * n).mean() * r ** 1.5).detach()  # treated as a constant (Chen et al.)
        loss = (w * n - target).abs().sum()
        (gw,) = torch.autograd.grad(loss, w)
        new = (w.detach() - 0.05 * gw).clamp_min(1e-8)
        expected = 3 * new / new.sum()
        d, used = gn.combine(L, G)
        assert torch.allclose(used, w.detach()) and torch.allclose(d, G.T @ w.detach())
        assert torch.allclose(gn.w, expected, atol=1e-12)
        assert math.isclose(float(gn.w.sum()), 3.0, rel_tol=1e-12)


def test_gradnorm_last_numel_uses_only_the_last_columns_for_norms():
    gen = torch.Generator().manual_seed(4)
    A, B = torch.randn(3, 5, generator=gen), torch.randn(3, 2, generator=gen)
    full = W.get("GradNorm", lr=0.1, optimizer="sgd", last_numel=2)
    only_b = W.get("GradNorm", lr=0.1, optimizer="sgd")
    for L in (torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.5, 1.9, 2.0])):
        d, w = full.combine(L, torch.cat([A, B], 1))
        _, w_b = only_b.combine(L, B)
        assert torch.allclose(w, w_b) and torch.allclose(d, torch.cat([A, B], 1).T @ w)
    assert torch.allclose(full.w, only_b.w) and not torch.allclose(full.w, torch.ones(3))
    with pytest.raises(ValueError, match="only 7 columns"):
        W.get("GradNorm", last_numel=8).combine(torch.ones(3), torch.cat([A, B], 1))


def test_gradnorm_needs_grads():
    with pytest.raises(ValueError, match="needs per-task gradients"):
        W.get("GradNorm").combine(torch.ones(2), None)


# ---------------------------------------------------------------------- DWA
def test_dwa_hand_numbers_per_iteration():
    dwa = W.get("DWA", temperature=2.0)
    L1, L2, L3 = torch.tensor([1.0, 2.0]), torch.tensor([0.5, 1.8]), torch.tensor([0.4, 1.0])
    assert torch.allclose(dwa.combine(L1)[1], torch.ones(2))
    assert torch.allclose(dwa.combine(L2)[1], torch.ones(2))
    e1, e2 = math.exp(0.5 / 2), math.exp(0.9 / 2)  # r = (0.5/1, 1.8/2)
    hand = torch.tensor([2 * e1 / (e1 + e2), 2 * e2 / (e1 + e2)])
    assert torch.allclose(dwa.combine(L3)[1], hand)
    e1, e2 = math.exp(0.8 / 2), math.exp((1.0 / 1.8) / 2)  # r = (0.4/0.5, 1.0/1.8)
    hand = torch.tensor([2 * e1 / (e1 + e2), 2 * e2 / (e1 + e2)])
    assert torch.allclose(dwa.combine(L3)[1], hand)


def test_dwa_period_averages_calls():
    dwa = W.get("DWA", temperature=1.0, period=2)
    seq = [[1.0, 1.0], [3.0, 1.0], [1.0, 1.0], [1.0, 3.0]]  # period means (2,1), (1,2)
    for L in seq:
        assert torch.allclose(dwa.combine(torch.tensor(L))[1], torch.ones(2))
    r = torch.tensor([0.5, 2.0])
    expected = 2 * torch.exp(r) / torch.exp(r).sum()
    for _ in range(2):  # same weights for both calls of the third period
        assert torch.allclose(dwa.combine(torch.tensor([9.0, 9.0]))[1], expected)
    assert not torch.allclose(dwa.combine(torch.tensor([1.0, 1.0]))[1], expected)


# --------------------------------------------------------------------- FAMO
def test_famo_hand_computation_sgd():
    famo = W.get("FAMO", lr=0.5, gamma=0.1, optimizer="sgd", eps=1e-12)
    _, w = famo.combine(torch.tensor([1.0, 4.0]))
    assert torch.allclose(w, torch.tensor([0.8, 0.2]))  # z=(1/2,1/2): (1/2/1, 1/2/4) normalised
    # delta = log(prev) - log(curr) = (log 2, log(8/7)); J^T v = z (v - z.v)
    v = torch.tensor([math.log(2.0), math.log(4.0 / 3.5)])
    g = 0.5 * (v - v.mean())
    xi = -0.5 * (g + 0.1 * torch.zeros(2))
    _, w = famo.combine(torch.tensor([0.5, 3.5]))
    assert torch.allclose(famo.logits, xi, atol=1e-10)
    z = torch.softmax(xi, 0)
    q = z / torch.tensor([0.5, 3.5])
    assert torch.allclose(w, q / q.sum(), atol=1e-10)
    # third call: weight decay now acts on the non-zero logits
    L3 = torch.tensor([0.45, 2.0])
    xi_var = xi.clone().requires_grad_(True)
    obj = (torch.softmax(xi_var, 0) * (torch.log(torch.tensor([0.5, 3.5])) - torch.log(L3))).sum()
    (gxi,) = torch.autograd.grad(obj, xi_var)
    famo.combine(L3)
    assert torch.allclose(famo.logits, xi - 0.5 * (gxi + 0.1 * xi), atol=1e-10)


def test_famo_adam_matches_torch_adam():
    famo = W.get("FAMO")  # Adam(lr=0.025, weight_decay=1e-3), the paper's Algorithm 2
    xi = torch.zeros(3, requires_grad=True)
    opt = torch.optim.Adam([xi], lr=0.025, weight_decay=1e-3)
    gen = torch.Generator().manual_seed(5)
    prev = torch.rand(3, generator=gen) + 0.5
    famo.combine(prev)
    for _ in range(15):
        curr = prev * (0.7 + 0.5 * torch.rand(3, generator=gen))
        opt.zero_grad()
        obj = (torch.softmax(xi, 0) * (torch.log(prev + 1e-8) - torch.log(curr + 1e-8))).sum()
        obj.backward()
        opt.step()
        famo.combine(curr)
        prev = curr
    assert torch.allclose(famo.logits, xi.detach(), atol=1e-9)


def test_famo_weights_are_the_gradient_of_its_surrogate():
    # sum_t w_t L_t has the same gradient in L as sum_t z_t log L_t / c with c = sum z/L fixed
    famo = W.get("FAMO", eps=1e-12)
    famo.logits = torch.tensor([0.3, -0.2, 0.5])
    famo.num_tasks = 3
    L = torch.tensor([0.7, 2.0, 0.1], requires_grad=True)
    z = torch.softmax(famo.logits, 0)
    c = (z / L).sum().detach()
    (gL,) = torch.autograd.grad((z * torch.log(L)).sum() / c, L)
    _, w = famo.combine(L.detach())
    assert torch.allclose(w, gL)


# ---------------------------------------------------------------------- GLS
def test_gls_weights_reproduce_autograd_of_geometric_mean():
    gen = torch.Generator().manual_seed(7)
    A, b = torch.randn(3, 4, 5, generator=gen), torch.randn(3, 4, generator=gen)
    theta = torch.randn(5, generator=gen, requires_grad=True)
    losses = ((A @ theta - b) ** 2).mean(dim=1)
    G = torch.stack([torch.autograd.grad(losses[t], theta, retain_graph=True)[0]
                     for t in range(3)])
    geo = losses.prod() ** (1 / 3)
    (expected,) = torch.autograd.grad(geo, theta)
    d, w = W.get("GLS").combine(losses.detach(), G)
    assert torch.allclose(d, expected, atol=1e-10)
    assert torch.allclose(w, geo.detach() / (3 * losses.detach()))


def test_gls_scale_invariance():
    L = torch.tensor([0.2, 3.0, 1.5])
    w1 = W.get("GLS").combine(L)[1]
    w2 = W.get("GLS").combine(L * torch.tensor([1.0, 10.0, 1.0]))[1]
    # scaling task 2 by 10 scales its weight by 10^(1/3)/10 and the others by 10^(1/3)
    c = 10 ** (1 / 3)
    assert torch.allclose(w2, w1 * torch.tensor([c, c / 10, c]))


# --------------------------------------------------------------- properties
LOSS_VALUES = st.one_of(st.just(0.0), st.just(1e-30), st.just(1e30),
                        st.floats(1e-3, 1e3))


def _run(name, seq, grads):
    s = W.get(name, seed=0) if name == "RLW" else W.get(name)
    return [s.combine(torch.tensor(L, dtype=grads.dtype), grads) for L in seq]


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(OURS), t=st.integers(2, 4), data=st.data(),
       gkind=st.sampled_from(["random", "zero", "huge", "parallel", "opposite"]),
       dtype=st.sampled_from([torch.float32, torch.float64]))
def test_finite_and_deterministic(name, t, data, gkind, dtype):
    seq = [data.draw(st.lists(LOSS_VALUES, min_size=t, max_size=t)) for _ in range(4)]
    g = torch.randn(t, 5, generator=torch.Generator().manual_seed(0), dtype=dtype)
    signs = torch.tensor([(-1.0) ** i for i in range(t)], dtype=dtype)
    grads = {"random": g, "zero": torch.zeros(t, 5, dtype=dtype), "huge": 1e15 * g,
             "parallel": g[:1].repeat(t, 1) * torch.arange(1.0, t + 1, dtype=dtype)[:, None],
             "opposite": g[:1] * signs[:, None]}[gkind]
    out1, out2 = _run(name, seq, grads), _run(name, seq, grads)
    for (d1, w1), (d2, w2) in zip(out1, out2):
        assert torch.isfinite(w1).all() and (w1 >= 0).all()
        assert torch.isfinite(d1).all()
        assert torch.equal(w1, w2) and torch.equal(d1, d2)


def test_gls_stays_finite_at_extreme_losses():
    """A zero loss next to two of 1e30 with gradients of 1e15 in float32 (found by the
    property test above): the clamp to [eps, 1/eps] keeps the direction finite, and
    inside that range the weights are still exactly L_GLS / (T L_t)."""
    g = 1e15 * torch.randn(3, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float32)
    d, w = W.get("GLS").combine(torch.tensor([0.0, 1e30, 1e30], dtype=torch.float32), g)
    assert torch.isfinite(d).all() and torch.isfinite(w).all()
    L = torch.tensor([0.5, 2.0, 8.0], dtype=torch.float64)
    _, w = W.get("GLS").combine(L, None)
    torch.testing.assert_close(w, L.prod() ** (1 / 3) / (3 * L), rtol=1e-12, atol=0)


# ------------------------------------------------------------ state round trip
@pytest.mark.parametrize("name,hp", [("UW", {"lr": 0.05}), ("GradNorm", {"lr": 0.05}),
                                     ("DWA", {"period": 2}), ("FAMO", {}), ("GLS", {}),
                                     ("RLW", {"dist": "dirichlet", "seed": 3})])
def test_state_dict_round_trip_gives_identical_next_weights(name, hp):
    gen = torch.Generator().manual_seed(11)
    seq = [(torch.rand(3, generator=gen) + 0.1, torch.randn(3, 4, generator=gen))
           for _ in range(8)]
    a = W.get(name, **hp)
    for L, G in seq[:5]:
        a.combine(L, G)
    state = a.state_dict()
    cont = [a.combine(L, G)[1] for L, G in seq[5:]]  # a runs on; the saved state must not move
    b = W.get(name, **hp)
    b.load_state_dict(state)
    for (L, G), wa in zip(seq[5:], cont):
        assert torch.equal(b.combine(L, G)[1], wa)


def test_reset_forgets_state():
    for name in ("UW", "DWA", "FAMO"):
        s = W.get(name)
        first = s.combine(torch.tensor([1.0, 2.0]))[1]
        for _ in range(3):
            s.combine(torch.rand(2) + 0.1)
        s.reset()
        assert torch.equal(s.combine(torch.tensor([1.0, 2.0]))[1], first)


# ------------------------------------------------------------------- errors
@pytest.mark.parametrize("name,hp,msg", [
    ("UW", {"lr": -1.0}, "lr must be a positive"),
    ("UW", {"optimizer": "rmsprop"}, "optimizer must be one of"),
    ("GradNorm", {"alpha": -0.5}, "alpha must be"),
    ("GradNorm", {"last_numel": -1}, "last_numel must be"),
    ("DWA", {"temperature": 0.0}, "temperature must be"),
    ("DWA", {"period": 0}, "period must be a positive integer"),
    ("FAMO", {"eps": 0.0}, "eps must be > 0"),
    ("FAMO", {"gamma": -1.0}, "gamma must be"),
    ("GLS", {"eps": -1.0}, "eps must be a number in"),
])
def test_bad_hyperparameters_raise_clearly(name, hp, msg):
    with pytest.raises(ValueError, match=msg):
        W.get(name, **hp)


def test_modes_and_names():
    assert W.get("GradNorm").modes == ("param", "rep")
    for name in ("UW", "DWA", "RLW", "FAMO", "GLS"):
        assert W.get(name).modes == ("losses",)
