"""Architectures x weightings x gradient modes, and each architecture's own claims."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import mtlkit.weighting as W
from mtlkit.arch.base import check_partition, count_parameters
from mtlkit.arch.cross_stitch import CrossStitch, CrossStitchUnit, mixing_matrix
from mtlkit.arch.hps import HPS
from mtlkit.arch.mmoe import MMoE
from mtlkit.arch.mtan import MTAN
from mtlkit.arch.nddr import NDDR, NDDRLayer
from mtlkit.encoders.vision import LinearHead, Stages, conv_stages
from mtlkit.engine import GradEngine
from mtlkit.weighting.base import PARAM, REP, Weighting, weighted_direction

TASKS = ("a", "b", "c")
ARCHS = ("HPS", "CrossStitch", "NDDR", "MTAN", "MMoE")


def make(arch: str, seed: int = 0, **kw) -> nn.Module:
    torch.manual_seed(seed)
    heads = {t: LinearHead(8, 3) for t in TASKS}
    if arch == "MMoE":
        return MMoE(36, heads, num_experts=3, expert_hidden=(12,), expert_out=8, **kw)
    if arch in ("CrossStitch", "NDDR"):  # independently initialised columns
        cls = CrossStitch if arch == "CrossStitch" else NDDR
        return cls(lambda: conv_stages(1, (4, 8)), heads, **kw)
    if arch == "MTAN":  # a 1-channel bottleneck (4 // 4) would make its BN scale redundant
        kw.setdefault("att_reduction", 2)
    cls = {"HPS": HPS, "MTAN": MTAN}[arch]
    return cls(conv_stages(1, (4, 8)), heads, **kw)


def batch(seed: int = 1, n: int = 8):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 6, 6, generator=g)
    y = {t: torch.randint(0, 3, (n,), generator=g) for t in TASKS}
    return x, y, {t: F.cross_entropy for t in TASKS}


class _InverseNorm(Weighting):
    """Test-only reweighting: w_t proportional to 1 / ||g_t|| (d = G^T w)."""

    name = "_test_inverse_norm"
    modes = (PARAM, REP)
    is_reweighting = True

    def combine(self, losses, grads=None):
        self._check(losses, grads)
        w = 1.0 / grads.norm(dim=1).clamp_min(1e-12)
        w = w / w.sum()
        return weighted_direction(w, grads), w


class _SignAgree(Weighting):
    """Test-only non-reweighting: sum of the gradients where all their signs agree."""

    name = "_test_sign_agree"
    modes = (PARAM, REP)
    is_reweighting = False

    def combine(self, losses, grads=None):
        t = self._check(losses, grads)
        agree = (torch.sign(grads) == torch.sign(grads[0])).all(0)
        return grads.sum(0) * agree, torch.ones(t, dtype=losses.dtype)


def gradient_strategy() -> Weighting:
    """MGDA from the registry when another module provides it, else a local reweighting."""
    return W.get("MGDA") if "MGDA" in W.names() else _InverseNorm()


def non_reweightings() -> list[Weighting]:
    out: list[Weighting] = [_SignAgree()]
    for n in W.names():
        w = W.get(n)
        if REP in w.modes and not w.is_reweighting and not w.needs_query:
            out.append(w)
    return out


# ------------------------------------------------------------ train step
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("strategy", ["EW", "grad"])
@pytest.mark.parametrize("mode", ["losses", "param", "rep"])
def test_one_step_moves_every_parameter(arch, strategy, mode):
    model = make(arch)
    check_partition(model)
    shared, own = model.shared_parameters(), model.all_task_parameters()
    assert {id(p) for p in shared} | {id(p) for p in own} == {id(p) for p in model.parameters()}
    w = W.get("EW") if strategy == "EW" else gradient_strategy()
    if strategy == "grad" and mode == "losses":
        with pytest.raises(ValueError, match="modes"):
            GradEngine(model, w, mode)
        return
    engine = GradEngine(model, w, mode)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y, crit = batch()
    opt.zero_grad(set_to_none=True)
    res = engine.step(x, y, crit)
    opt.step()
    assert torch.isfinite(res.losses).all() and res.weights.shape == (len(TASKS),)
    still = [n for n, p in model.named_parameters() if torch.equal(p.detach(), before[n])]
    assert not still, f"{arch}/{w.name}/{engine.mode}: parameters that did not move: {still}"


@pytest.mark.parametrize("arch", ["CrossStitch", "NDDR", "MTAN", "MMoE"])
def test_non_reweighting_in_rep_mode_with_per_task_reps_raises(arch):
    model = make(arch)
    assert model.shared_rep is False
    for w in non_reweightings():
        with pytest.raises(ValueError, match="mode='param'"):
            GradEngine(model, w, "rep")
        GradEngine(model, w, "param")  # the suggested fix works


def test_non_reweighting_in_rep_mode_works_with_hps():
    model = make("HPS")
    engine = GradEngine(model, _SignAgree(), "rep")
    x, y, crit = batch()
    engine.step(x, y, crit)
    assert all(p.grad is not None for p in model.shared_parameters())


# ------------------------------------------------- what is shared, really
@pytest.mark.parametrize("arch", ARCHS)
def test_partition_matches_which_losses_reach_which_parameters(arch):
    """theta_t is reached by L_t only; theta_sh by every loss (with a non-identity
    cross-stitch init, so that every column feeds every task)."""
    kw = {"alpha_self": 0.9, "alpha_other": 0.1} if arch == "CrossStitch" else {}
    model = make(arch, **kw)
    x, y, crit = batch()
    out = model(x)
    losses = [crit[t](out[t], y[t]) for t in TASKS]
    shared = model.shared_parameters()
    for i, t in enumerate(TASKS):
        params = shared + model.all_task_parameters()
        gs = torch.autograd.grad(losses[i], params, retain_graph=True, allow_unused=True)
        g = dict(zip(map(id, params), gs))
        for p in shared:
            assert g[id(p)] is not None and g[id(p)].abs().sum() > 0
        for s in TASKS:
            for p in model.task_parameters(s):
                reached = g[id(p)] is not None and g[id(p)].abs().sum() > 0
                assert reached == (s == t), f"{arch}: L_{t} vs parameters of task {s}"


def test_parameter_counts_of_columns():
    hps, cs, nddr = make("HPS"), make("CrossStitch"), make("NDDR")
    backbone = count_parameters(hps.shared_parameters())
    top = count_parameters(list(conv_stages(1, (4, 8)).stages[-1].parameters()))
    heads = count_parameters(hps.all_task_parameters())
    T, C = len(TASKS), 4
    assert count_parameters(list(cs.parameters())) == T * backbone + heads + T * T
    nddr_layer = T * (T * C * C + 2 * C)  # T 1x1 convs TC -> C and T BatchNorms
    assert count_parameters(list(nddr.parameters())) == T * backbone + heads + nddr_layer
    assert count_parameters(cs.shared_parameters()) == T * (backbone - top) + T * T
    with pytest.raises(TypeError, match="function that builds"):
        CrossStitch(3, {"a": LinearHead(8, 2)})


# -------------------------------------------------------- cross-stitch
def test_cross_stitch_starts_as_identity_mix():
    model = make("CrossStitch")
    for unit in model.units:
        assert torch.equal(unit.alpha.detach(), torch.eye(len(TASKS)))
    model.eval()
    x = batch()[0]
    rep = model.encode(x)
    for t in TASKS:  # each task's features come from its own column only
        own = model.columns[t].stages[0](x)
        torch.testing.assert_close(rep[t], own)


def test_cross_stitch_misra_init_and_mixing():
    unit = CrossStitchUnit(2, alpha_self=0.9, alpha_other=0.1)
    torch.testing.assert_close(unit.alpha.detach(), torch.tensor([[0.9, 0.1], [0.1, 0.9]]))
    xa, xb = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    ya, yb = unit([xa, xb])
    torch.testing.assert_close(ya, 0.9 * xa + 0.1 * xb)
    torch.testing.assert_close(yb, 0.1 * xa + 0.9 * xb)
    m = mixing_matrix(3, 0.9, 0.1)
    torch.testing.assert_close(m.sum(1), torch.ones(3))
    cw = CrossStitchUnit(2, channels=3, alpha_self=0.9, alpha_other=0.1)
    with torch.no_grad():
        cw.alpha[0, 1, 2] = 0.5  # channel 2 of task a takes more of task b
    za, _ = cw([xa, xb])
    torch.testing.assert_close(za[:, :2], ya[:, :2])
    torch.testing.assert_close(za[:, 2], 0.9 * xa[:, 2] + 0.5 * xb[:, 2])


def test_columns_copied_or_built_per_task():
    heads = {t: LinearHead(8, 3) for t in TASKS}
    copied = CrossStitch(conv_stages(1, (4, 8)), heads)
    built = CrossStitch(lambda: conv_stages(1, (4, 8)), heads)
    for m, same in ((copied, True), (built, False)):
        a, b = (list(m.columns[t].parameters()) for t in TASKS[:2])
        assert all(x is not y for x, y in zip(a, b))  # never the same tensors
        assert torch.equal(a[0], b[0]) == same


def test_copied_columns_stall_the_batchnorm_scale_below_nddr_at_first_step():
    """Identical columns + BN(diagonal mix) is invariant to the scale of the stage
    below, so that stage's BatchNorm weight gets no gradient until the columns differ."""
    from mtlkit.encoders.vision import SmallCNN

    torch.manual_seed(0)
    model = NDDR(SmallCNN(1, (8, 16, 32)), {t: LinearHead(32, 10) for t in TASKS[:2]})
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 1, 36, 36, generator=g)
    y = {t: torch.randint(0, 10, (8,), generator=g) for t in TASKS[:2]}
    gamma = model.columns["a"].stages[1][1].weight  # BN of stage 2, below the last NDDR layer
    conv = model.columns["a"].stages[1][0].weight
    opt = torch.optim.SGD(model.parameters(), lr=0.5)

    def grads():
        opt.zero_grad()
        out = model(x)
        sum(F.cross_entropy(out[t], y[t]) for t in y).backward()
        return gamma.grad.abs().max().item(), conv.grad.abs().max().item()

    g_gamma, g_conv = grads()
    assert g_gamma < 1e-5 * g_conv
    opt.step()
    g_gamma, g_conv = grads()
    assert g_gamma > 1e-3 * g_conv


def test_column_models_need_two_stages_and_channels():
    one = Stages([nn.Conv2d(1, 4, 3)], [4])
    with pytest.raises(ValueError, match=">= 2 stages"):
        CrossStitch(one, {"a": LinearHead(4, 2)})
    with pytest.raises(ValueError, match="channels"):
        NDDR([nn.Conv2d(1, 4, 3), nn.Conv2d(4, 4, 3)], {"a": LinearHead(4, 2)})
    m = NDDR([nn.Conv2d(1, 4, 3), nn.Conv2d(4, 4, 3)], {"a": LinearHead(4, 2),
                                                          "b": LinearHead(4, 2)}, channels=[4, 4])
    assert set(m(torch.randn(2, 1, 8, 8))) == {"a", "b"}


# ---------------------------------------------------------------- NDDR
def test_nddr_starts_as_diagonal_init():
    model = make("NDDR")
    T = len(TASKS)
    for layer in model.units:
        eye = torch.eye(layer.channels)
        for t in range(T):
            blocks = layer.blocks(t)
            for s in range(T):
                expect = 0.9 * eye if s == t else 0.1 / (T - 1) * eye
                torch.testing.assert_close(blocks[s], expect)
        for bn in layer.bns:
            assert torch.equal(bn.weight, torch.ones_like(bn.weight))
            assert torch.equal(bn.bias, torch.zeros_like(bn.bias))


def test_nddr_layer_is_the_paper_mix_before_batchnorm():
    layer = NDDRLayer(2, 3, alpha=0.9, beta=0.1).eval()  # running stats: mean 0, var 1
    xa, xb = torch.randn(4, 3, 5, 5), torch.randn(4, 3, 5, 5)
    ya, yb = layer([xa, xb])
    s = (1 + layer.bns[0].eps) ** -0.5
    torch.testing.assert_close(ya, s * (0.9 * xa + 0.1 * xb))
    torch.testing.assert_close(yb, s * (0.1 * xa + 0.9 * xb))
    v = layer([torch.randn(4, 3), torch.randn(4, 3)])  # vector features work too
    assert v[0].shape == (4, 3)
    with pytest.raises(ValueError, match=">= 0"):
        NDDR(conv_stages(1, (4, 8)), {"a": LinearHead(8, 2)}, alpha=-1.0)


# ---------------------------------------------------------------- MTAN
@pytest.mark.parametrize("scale", [0.01, 1.0, 100.0])
def test_mtan_masks_in_open_unit_interval(scale):
    model = make("MTAN")
    x = batch()[0] * scale
    for train in (True, False):
        model.train(train)
        rep = model.encode(x)
        feats = [x]
        for stage in model.backbone.stages:
            feats.append(stage(feats[-1]))
        for t in TASKS:
            masks = model.last_masks[t]
            assert len(masks) == len(model.backbone.stages)
            for m, f in zip(masks, feats[1:]):
                assert m.shape == f.shape
                assert m.min() > 0 and m.max() < 1
            torch.testing.assert_close(rep[t], masks[-1] * feats[-1])


def test_mtan_attention_width():
    full = MTAN(conv_stages(1, (4, 8)), {"a": LinearHead(8, 2)}, att_reduction=1)
    slim = MTAN(conv_stages(1, (4, 8)), {"a": LinearHead(8, 2)}, att_reduction=4)
    # stage 1: 4 -> h -> 4, stage 2: 16 -> h -> 8 (convs) + BN (2h + 2c) per stage
    def att(h1, h2):
        return 4 * h1 + h1 * 4 + 2 * h1 + 8 + 16 * h2 + h2 * 8 + 2 * h2 + 16
    assert count_parameters(full.task_parameters("a")) - 18 == att(4, 8)
    assert count_parameters(slim.task_parameters("a")) - 18 == att(1, 2)
    with pytest.raises(ValueError, match="att_reduction"):
        MTAN(conv_stages(1, (4, 8)), {"a": LinearHead(8, 2)}, att_reduction=0)


def test_mtan_rejects_vector_stages():
    stages = Stages([nn.Flatten(), nn.Linear(36, 8)], [36, 8])
    model = MTAN(stages, {"a": LinearHead(8, 2)})
    with pytest.raises(ValueError, match="B, C, H, W"):
        model(torch.randn(2, 1, 6, 6))


# ---------------------------------------------------------------- MMoE
def test_mmoe_is_gate_weighted_sum_of_experts():
    model = make("MMoE")
    x = batch()[0]
    rep = model.encode(x)
    xf = x.flatten(1)
    experts = torch.stack([e(xf) for e in model.experts], 1)
    for t in TASKS:
        g = torch.softmax(model.gates[t](xf), -1)
        torch.testing.assert_close(model.last_gates[t].sum(-1), torch.ones(len(x)))
        torch.testing.assert_close(rep[t], (g.unsqueeze(-1) * experts).sum(1))
    with pytest.raises(ValueError, match="input features"):
        model.encode(torch.randn(2, 5))


# ----------------------------------------------------------------- HPS
def test_hps_with_linear_heads_and_errors():
    model = HPS.with_linear_heads(conv_stages(1, (4, 8)), 8, {"a": 10, "b": 1})
    out = model(batch()[0])
    assert out["a"].shape == (8, 10) and out["b"].shape == (8, 1)
    with pytest.raises(TypeError, match="not modules"):
        HPS(nn.Linear(2, 2), {"a": "head"})


# ------------------------------------------------------ property tests
@settings(max_examples=15, deadline=None)
@given(T=st.integers(2, 4), C=st.integers(1, 5), seed=st.integers(0, 10_000),
       channelwise=st.booleans())
def test_cross_stitch_unit_is_the_linear_mix(T, C, seed, channelwise):
    g = torch.Generator().manual_seed(seed)
    unit = CrossStitchUnit(T, channels=C if channelwise else None)
    with torch.no_grad():
        unit.alpha.copy_(torch.randn(unit.alpha.shape, generator=g))
    xs = [torch.randn(2, C, 3, 3, generator=g) for _ in range(T)]
    ys = unit(xs)
    for t in range(T):
        ref = torch.zeros_like(xs[0])
        for s in range(T):
            a = unit.alpha[t, s]
            ref += (a.view(1, C, 1, 1) if channelwise else a) * xs[s]
        torch.testing.assert_close(ys[t], ref.detach())


@settings(max_examples=15, deadline=None)
@given(T=st.integers(2, 4), C=st.integers(1, 5), seed=st.integers(0, 10_000))
def test_nddr_layer_is_blockwise_linear_before_batchnorm(T, C, seed):
    g = torch.Generator().manual_seed(seed)
    layer = NDDRLayer(T, C).eval()
    with torch.no_grad():
        for conv in layer.convs:
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=g))
    xs = [torch.randn(3, C, 2, 2, generator=g) for _ in range(T)]
    ys = layer(xs)
    scale = (1 + layer.bns[0].eps) ** -0.5
    for t in range(T):
        B = layer.blocks(t)  # (T, C, C)
        ref = sum(torch.einsum("oc,bchw->bohw", B[s], xs[s]) for s in range(T))
        torch.testing.assert_close(ys[t], scale * ref.detach(), atol=1e-5, rtol=1e-5)
