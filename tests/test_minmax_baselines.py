"""The baselines of metaweighting.txt §6.2: Tchebycheff (brute-force max and
min-max), BanditMTL (closed form of the variance-regularised max, a QP), AdvMTL
and the shared-private model (gradient-reversal sign by autograd, the
orthogonality penalty by hand)."""

from __future__ import annotations

import itertools
import warnings

import cvxpy as cp
import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch import nn

from mtlkit import weighting as W
from mtlkit.arch import HPS
from mtlkit.arch.shared_private import SharedPrivate, grad_reverse, orthogonality
from mtlkit.engine import GradEngine, make_engine
from mtlkit.weighting.banditmtl import mirror_ascent_step, variance_regularised_p

floats = st.floats(0.0, 5.0, allow_nan=False)


# -------------------------------------------------------------- Tchebycheff
@settings(max_examples=30, deadline=None)
@given(st.lists(floats, min_size=2, max_size=6), st.data())
def test_tchebycheff_weight_is_the_brute_force_max(losses, data):
    t = len(losses)
    pref = data.draw(st.lists(st.floats(0.1, 3.0), min_size=t, max_size=t))
    z = data.draw(st.lists(st.floats(-1.0, 0.0), min_size=t, max_size=t))
    s = W.get("Tchebycheff", preference=pref, ideal=z)
    _, w = s.combine(torch.tensor(losses, dtype=torch.float64))
    scores = [p * (loss - zz) for p, loss, zz in zip(pref, losses, z)]
    best = max(range(t), key=lambda i: (scores[i], -i))  # first maximiser
    assert w[best] == pytest.approx(pref[best]) and (w != 0).sum() == 1


def test_tchebycheff_min_max_matches_grid_search():
    """Three 1-d quadratics L_t = (theta - c_t)^2 + b_t: subgradient descent on the
    Tchebycheff scalarisation reaches the grid-search min over theta of max_t pi_t L_t."""
    c, b = torch.tensor([-1.0, 0.5, 2.0]), torch.tensor([0.0, 0.3, 0.1])
    pref = [1.0, 2.0, 0.5]
    grid = torch.linspace(-3, 3, 600_001)
    ref = (torch.tensor(pref)[:, None] * ((grid[None] - c[:, None]) ** 2 + b[:, None])) \
        .max(0).values.min().item()
    s = W.get("Tchebycheff", preference=pref)
    theta = torch.tensor(0.0)
    for k in range(1, 20001):
        losses = (theta - c) ** 2 + b
        grads = (2 * (theta - c))[:, None]
        d, _ = s.combine(losses, grads)
        theta = theta - 0.5 / k ** 0.75 * d[0]
    val = (torch.tensor(pref) * ((theta - c) ** 2 + b)).max().item()
    assert abs(val - ref) < 2e-3, (val, ref)


def test_tchebycheff_normalize_and_errors():
    s = W.get("Tchebycheff", normalize=True)
    _, w = s.combine(torch.tensor([10.0, 1.0]))  # first losses become the scale: a tie
    assert torch.allclose(w, torch.tensor([0.1, 0.0]))
    _, w = s.combine(torch.tensor([5.0, 0.9]))  # relative progress 0.5 vs 0.9: task 2
    assert w[1] > 0 and w[0] == 0
    with pytest.raises(ValueError, match="preference"):
        W.get("Tchebycheff", preference=[1.0, -1.0])
    with pytest.raises(ValueError, match="2 preferences for 3 tasks"):
        W.get("Tchebycheff", preference=[1.0, 1.0]).combine(torch.ones(3))


# ---------------------------------------------------------------- BanditMTL
def qp_bandit(losses: np.ndarray, rho: float) -> tuple[np.ndarray, float]:
    """max_p F(p) by a QP solver, put exactly on the simplex: its value is <= F*."""
    t = losses.size
    p = cp.Variable(t)
    obj = losses @ p - rho * t / 2 * cp.sum_squares(p - 1.0 / t)
    cp.Problem(cp.Maximize(obj), [p >= 0, cp.sum(p) == 1]).solve(solver="CLARABEL")
    x = np.clip(p.value, 0, None)
    x = x / x.sum()
    return x, bandit_objective(x, losses, rho)


def bandit_objective(p: np.ndarray, losses: np.ndarray, rho: float) -> float:
    """F(p) = p^T L - (rho T / 2) ||p - 1/T||^2."""
    t = losses.size
    return float(p @ losses - rho * t / 2 * ((p - 1 / t) ** 2).sum())


def test_banditmtl_hand_worked_step():
    """L = (1, 2, 3), p0 = 1/3, rho = 1, lr = 0.5: grad_p F = L (p0 is uniform),
    p1 = softmax(log(1/3) + 0.5 L) = softmax(0.5, 1, 1.5)."""
    s = W.get("BanditMTL", rho=1.0, lr=0.5)
    _, w = s.combine(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    e = np.exp([0.5, 1.0, 1.5])
    assert np.allclose(w.numpy(), e / e.sum(), atol=1e-12)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.floats(0.0, 3.0), min_size=2, max_size=5), st.floats(0.3, 5.0))
@example([0.0, 1.995996], 1.0)  # p*_1 = 1.001e-3: 3000 steps of size 0.5 leave it 2e-5 off
def test_banditmtl_fixed_point_is_the_variance_regularised_max(losses, rho):
    """Mirror ascent with step 1/L converges to max_p F, at the rates it provably meets.

    F is L-smooth relative to the entropy with L = rho T / 2 (for v = q - p,
    (rho T / 2) ||v||_2^2 <= (rho T / 4) ||v||_1^2 <= L KL(q||p) by Pinsker), and
    mu_k-strongly concave relative to it at p_k with mu_k = L min_i p_k,i
    (KL(q||p) <= chi^2(q||p) <= ||q - p||_2^2 / min_i p_i).  So (Lu, Freund & Nesterov
    2018, Thm. 3.1 and its proof) KL(p*||p_K) <= log T prod_k (1 - min_i p_k,i),
    F* - F(p_K) <= L min(KL(p*||p_(K-1)), log T / K), and, F being (rho T)-strongly
    concave, ||p_K - p*||_2^2 <= 2 (F* - F(p_K)) / (rho T).
    """
    L = torch.tensor(losses, dtype=torch.float64)
    t, iters = L.numel(), 3000
    lip = rho * t / 2
    p = torch.full_like(L, 1 / t)
    kl = np.log(t)  # KL(p*||p_0) <= log T for p_0 uniform
    for _ in range(iters):
        kl_prev = kl
        kl *= 1 - float(p.min())
        p = mirror_ascent_step(p, L, rho, lr=1 / lip)
    f_gap = lip * min(kl_prev, np.log(t) / iters)
    val = bandit_objective(p.numpy(), L.numpy(), rho)
    p_ref, val_ref = qp_bandit(L.numpy(), rho)  # val_ref <= F*
    assert val_ref - 1e-7 <= val + f_gap + 1e-12 and val <= val_ref + 1e-7
    interior = variance_regularised_p(L, rho)
    if interior.min() >= 0:  # KKT with no active bound: p* and F* in closed form
        best = (L.mean() + L.var(unbiased=False) / (2 * rho)).item()
        assert best == pytest.approx(bandit_objective(interior.numpy(), L.numpy(), rho),
                                     abs=1e-12)
        assert best == pytest.approx(val_ref, abs=1e-7)
        assert val <= best + 1e-12 and best - val <= f_gap + 1e-12
        dist = float((p - interior).norm())
        assert dist <= np.sqrt(2 * f_gap / (rho * t)) + 1e-12
        assert dist <= np.sqrt(2 * kl) + 1e-12  # Pinsker: ||.||_2 <= ||.||_1 <= sqrt(2 KL)
        # and p* is a fixed point of the step (grad F(p*) = mean(L) 1, a constant)
        torch.testing.assert_close(mirror_ascent_step(interior, L, rho, 0.5 / rho), interior,
                                   rtol=0, atol=1e-12)
    else:
        dist = np.linalg.norm(p.numpy() - p_ref)  # both near p*: the triangle inequality
        assert dist <= np.sqrt(2 * f_gap / (rho * t)) + np.sqrt(2e-7 / (rho * t)) + 1e-12


def test_banditmtl_limits():
    L = torch.tensor([0.2, 1.0, 3.0])
    big = W.get("BanditMTL", rho=1e6, lr=1e-6)
    for _ in range(10):
        _, w = big.combine(L)
    assert torch.allclose(w, torch.full((3,), 1 / 3), atol=1e-5)  # rho -> inf: EW
    small = W.get("BanditMTL", rho=1e-3, lr=1.0)
    for _ in range(50):
        _, w = small.combine(L)
    assert w.argmax() == 2 and w[2] > 0.99  # rho -> 0: the worst task
    with pytest.raises(ValueError, match="rho"):
        W.get("BanditMTL", rho=0)


# ------------------------------------------------ shared-private, AdvMTL
def sp_model(adv=0.05, orth=0.01, seed=0) -> SharedPrivate:
    torch.manual_seed(seed)
    tasks = ("a", "b", "c")
    return SharedPrivate(
        nn.Sequential(nn.Linear(4, 3), nn.Tanh()),
        {t: nn.Sequential(nn.Linear(4, 2), nn.Tanh()) for t in tasks},
        {t: nn.Linear(5, 2) for t in tasks}, shared_dim=3, adv_weight=adv, orth_weight=orth)


def test_gradient_reversal_sign_by_autograd():
    x = torch.randn(5, 3, requires_grad=True)
    v = torch.randn(5, 3)
    (gx,) = torch.autograd.grad((grad_reverse(x, 0.7) * v).sum(), x)
    assert torch.allclose(gx, -0.7 * v)
    # in the model: the discriminator descends on lambda CE, the shared encoder ascends
    model = sp_model(adv=0.3, orth=0.0)
    xs = {t: torch.randn(6, 4) for t in model.tasks}
    for t in model.tasks:
        model.rep_for(model.encode(xs[t]), t)
    aux = model.auxiliary_loss()
    enc, disc = model.shared_parameters(), list(model.discriminator.parameters())
    g_aux = torch.autograd.grad(aux, enc + disc)
    s = torch.cat([model.shared(xs[t]) for t in model.tasks])
    y = torch.arange(3).repeat_interleave(6)
    ce = nn.functional.cross_entropy(model.discriminator(s), y)
    g_ce = torch.autograd.grad(ce, enc + disc)
    n = len(enc)
    for ga, gc in zip(g_aux[:n], g_ce[:n]):
        assert torch.allclose(ga, -0.3 * gc, atol=1e-7)
    for ga, gc in zip(g_aux[n:], g_ce[n:]):
        assert torch.allclose(ga, 0.3 * gc, atol=1e-7)


def test_orthogonality_penalty_by_hand():
    g = torch.Generator().manual_seed(0)
    s, p = torch.randn(4, 3, generator=g), torch.randn(4, 2, generator=g)
    by_hand = sum(sum(s[n, i] * p[n, j] for n in range(4)) ** 2
                  for i, j in itertools.product(range(3), range(2)))
    assert torch.allclose(orthogonality(s, p), by_hand)
    assert orthogonality(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0], ])) == 0
    model = sp_model(adv=0.0, orth=0.5)
    xs = {t: torch.randn(6, 4) for t in model.tasks}
    for t in model.tasks:
        model.rep_for(model.encode(xs[t]), t)
    ref = sum(orthogonality(model.shared(xs[t]), model.private[t](xs[t])) for t in model.tasks)
    assert torch.allclose(model.auxiliary_loss(), 0.5 * ref)


def test_private_encoder_runs_only_for_its_task():
    model = sp_model()
    calls = []
    for t in model.tasks:
        model.private[t].register_forward_hook(lambda m, i, o, t=t: calls.append(t))
    rep = model.encode(torch.randn(3, 4))
    model.rep_for(rep, "b")
    model.rep_for(rep, "b")
    assert calls == ["b"]


@pytest.mark.parametrize("name", ["AdvMTL", "TchebycheffAdv", "EW"])
def test_engine_trains_every_part_of_the_shared_private_model(name):
    model = sp_model()
    strat = W.get(name)
    eng = GradEngine(model, strat)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    strat.attach(model, opt)
    g = torch.Generator().manual_seed(2)
    xs = {t: torch.randn(8, 4, generator=g) for t in model.tasks}
    ys = {t: torch.randint(0, 2, (8,), generator=g) for t in model.tasks}
    crit = {t: nn.functional.cross_entropy for t in model.tasks}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for _ in range(3):  # Tchebycheff trains one task per step
        opt.zero_grad()
        eng.step(xs, ys, crit)
        opt.step()
    moved = {n: not torch.equal(before[n], p.detach()) for n, p in model.named_parameters()}
    assert all(moved[n] for n in moved if n.startswith(("shared", "discriminator"))), moved
    assert model.last_adv is not None and model.last_orth is not None


def test_adversarial_strategies_refuse_a_model_without_shared_private():
    """A method/architecture mismatch is an error (issue 15), at attach and at engine
    construction, naming the architecture to build; opting in only warns (before, it
    only warned, and trained the weighting alone)."""
    hps = HPS(nn.Linear(2, 2), {"a": nn.Linear(2, 1)})
    for name in ("AdvMTL", "TchebycheffAdv"):
        with pytest.raises(ValueError, match=r"defined on mtlkit\.arch\.SharedPrivate.*HPS.*"
                                             r"allow_without_discriminator=True"):
            W.get(name).attach(hps, None)
        with pytest.raises(ValueError, match="SharedPrivate"):
            make_engine(hps, W.get(name))
        with pytest.raises(ValueError, match="SharedPrivate"):
            GradEngine(hps, W.get(name))
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            W.get(name, allow_without_discriminator=True).attach(hps, None)
            make_engine(hps, W.get(name, allow_without_discriminator=True))
        assert any("SharedPrivate" in str(r.message) for r in rec)
        W.get(name).attach(sp_model(), None)  # the right architecture: silent
        with pytest.raises(ValueError, match="True or False"):
            W.get(name, allow_without_discriminator="yes")
    _, w = W.get("AdvMTL").combine(torch.ones(4))
    assert torch.allclose(w, torch.full((4,), 0.25))
    with pytest.raises(ValueError, match="adv_weight"):
        sp_model(adv=-1.0)
