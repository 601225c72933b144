"""The gradient engine against the reference per-task gradients, in every mode."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mtlkit import weighting as W
from mtlkit.arch import HPS
from mtlkit.arch.base import MTLModel
from mtlkit.engine import GradEngine, per_task_grads
from mtlkit.weighting.base import PARAM, REP, Weighting

TASKS = ("a", "b", "c")


class Spy(Weighting):
    """EW that keeps a copy of what the engine gave it (not registered)."""

    name = "Spy"
    modes = (PARAM, REP)
    is_reweighting = False

    def __init__(self, direction: torch.Tensor | None = None) -> None:
        super().__init__()
        self.direction = direction
        self.seen: torch.Tensor | None = None

    def combine(self, losses, grads=None):
        t = self._check(losses, grads)
        self.seen = grads.clone()
        w = torch.full((t,), 1.0 / t, dtype=grads.dtype)
        d = w @ grads if self.direction is None else self.direction.to(grads.dtype)
        return d, w


def hps(norm: bool = False) -> HPS:
    torch.manual_seed(0)
    layers = [nn.Linear(4, 6)] + ([nn.BatchNorm1d(6)] if norm else []) + \
        [nn.Tanh(), nn.Linear(6, 5), nn.Tanh()]
    model = HPS(nn.Sequential(*layers), {t: nn.Linear(5, 2) for t in TASKS}).double()
    return model


def batch(n: int = 10, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g, dtype=torch.float64)
    y = {t: torch.randn(n, 2, generator=g, dtype=torch.float64) for t in TASKS}
    return x, y


CRIT = {t: nn.functional.mse_loss for t in TASKS}


def reference_losses(model, x, y):
    if isinstance(x, dict):
        return torch.stack([CRIT[t](model(x[t])[t], y[t]) for t in TASKS])
    out = model(x)
    return torch.stack([CRIT[t](out[t], y[t]) for t in TASKS])


@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("homogeneous", [False, True])
@pytest.mark.parametrize("norm", [False, True])
def test_param_mode_matrix_equals_reference(batched, homogeneous, norm):
    model = hps(norm)
    x, y = batch()
    if homogeneous:  # one batch per task (dict inputs)
        x = {t: torch.randn(7, 4, generator=torch.Generator().manual_seed(i), dtype=x.dtype)
             for i, t in enumerate(TASKS)}
        y = {t: torch.randn(7, 2, generator=torch.Generator().manual_seed(9 + i),
                            dtype=x[t].dtype) for i, t in enumerate(TASKS)}
    spy = Spy()
    eng = GradEngine(model, spy, "param", batched=batched)
    eng.step(x, y, CRIT)
    ref = per_task_grads(reference_losses(model, x, y), model.shared_parameters())
    torch.testing.assert_close(spy.seen, ref, rtol=1e-10, atol=1e-12)
    # shared parameters receive d = mean of the rows; heads their own loss gradient
    torch.testing.assert_close(torch.cat([p.grad.reshape(-1) for p in model.shared_parameters()]),
                               ref.mean(0))
    check_heads(model, x, y)


def check_heads(model, x, y):
    losses = reference_losses(model, x, y)
    for i, t in enumerate(TASKS):
        own = model.task_parameters(t)
        ref = torch.autograd.grad(losses[i], own, retain_graph=True)
        for p, r in zip(own, ref):
            torch.testing.assert_close(p.grad, r)


def test_batched_and_loop_agree_and_vmap_fallback_is_clean(monkeypatch):
    model = hps(norm=True)
    x, y = batch()
    spy = Spy()
    eng = GradEngine(model, spy, "param", batched=True)

    def broken(*a, **k):
        if k.get("is_grads_batched"):
            raise RuntimeError("no batching rule")
        return real(*a, **k)

    real = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", broken)
    with pytest.warns(RuntimeWarning, match="loop"):
        eng.step(x, y, CRIT)
    assert eng.batched is False
    monkeypatch.undo()
    ref = per_task_grads(reference_losses(model, x, y), model.shared_parameters())
    torch.testing.assert_close(spy.seen, ref)


def test_rep_mode_backpropagates_the_direction_through_the_representation():
    model = hps()
    x, y = batch()
    d = torch.randn(10 * 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    spy = Spy(direction=d)
    GradEngine(model, spy, "rep").step(x, y, CRIT)
    rep = model.encode(x)
    # G rows are dL_t/dr
    losses = torch.stack([CRIT[t](model.decode(rep, t), y[t]) for t in TASKS])
    torch.testing.assert_close(spy.seen, per_task_grads(losses, [rep]))
    # the encoder received (dr/dtheta)^T d, i.e. r.backward(d)
    ref = torch.autograd.grad(rep, model.shared_parameters(), grad_outputs=d.view_as(rep),
                              retain_graph=True)
    for p, r in zip(model.shared_parameters(), ref):
        torch.testing.assert_close(p.grad, r)
    check_heads(model, x, y)


@pytest.mark.parametrize("mode", ["param", "rep"])
def test_library_strategy_direction_reaches_the_encoder(mode):
    model = hps()
    x, y = batch()
    strat = W.get("MGDA")
    GradEngine(model, strat, mode).step(x, y, CRIT)
    got = torch.cat([p.grad.reshape(-1) for p in model.shared_parameters()])
    losses = reference_losses(model, x, y)
    if mode == "param":
        g = per_task_grads(losses, model.shared_parameters())
        strat.reset()
        d, _ = strat.combine(losses.detach(), g)
        torch.testing.assert_close(got, d)
    else:
        rep = model.encode(x)
        l2 = torch.stack([CRIT[t](model.decode(rep, t), y[t]) for t in TASKS])
        strat.reset()
        d, _ = strat.combine(l2.detach(), per_task_grads(l2, [rep]))
        ref = torch.autograd.grad(rep, model.shared_parameters(), grad_outputs=d.view_as(rep))
        torch.testing.assert_close(got, torch.cat([r.reshape(-1) for r in ref]))


class PerTaskRep(MTLModel):
    """Each task reads its own representation (no single shared one)."""

    shared_rep = False

    def __init__(self):
        super().__init__(TASKS)
        self.enc = nn.Linear(4, 5)
        self.heads = nn.ModuleDict({t: nn.Linear(5, 2) for t in TASKS})

    def encode(self, x):
        r = torch.tanh(self.enc(x))
        return {t: r * (i + 1) for i, t in enumerate(TASKS)}

    def decode(self, rep, task):
        return self.heads[task](rep)

    def task_parameters(self, task):
        return list(self.heads[task].parameters())


def test_invalid_combinations_raise_at_construction():
    model = hps()
    with pytest.raises(ValueError, match="supports gradient modes"):
        GradEngine(model, W.get("MGDA"), "losses")
    with pytest.raises(ValueError, match="unknown gradient mode"):
        GradEngine(model, W.get("MGDA"), "grads")
    with pytest.raises(ValueError, match="batched"):
        GradEngine(model, W.get("MGDA"), "param", batched="yes")
    with pytest.raises(ValueError, match="shared representation"):
        GradEngine(PerTaskRep().double(), W.get("GradDrop"), "rep")
    # a loss-only strategy asked for gradients trains through the loss path
    assert GradEngine(model, W.get("EW"), "rep").mode == "losses"


def test_per_task_representations_in_param_mode_match_reference():
    model = PerTaskRep().double()
    x, y = batch()
    spy = Spy()
    GradEngine(model, spy, "param").step(x, y, CRIT)
    ref = per_task_grads(reference_losses(model, x, y), model.shared_parameters())
    torch.testing.assert_close(spy.seen, ref)


@pytest.mark.parametrize("name,mode", [("MGDA", "param"), ("MGDA", "rep"), ("IMTL", "param"),
                                       ("GradDrop", "rep"), ("EW", "losses")])
def test_a_step_reads_nothing_on_the_host(name, mode, monkeypatch):
    """No .item()/.cpu()/.tolist()/.numpy() anywhere in a step (the GPU would sync)."""
    model = hps()
    x, y = batch()
    kw = {"solver": "exact"} if name == "MGDA" else {}
    eng = GradEngine(model, W.get(name, **kw), mode)

    def boom(*a, **k):
        raise AssertionError("host read during a step")

    for attr in ("item", "cpu", "tolist", "numpy"):
        monkeypatch.setattr(torch.Tensor, attr, boom)
    eng.step(x, y, CRIT)


# ------------------------------------------------------- the factory and the two engines
def test_make_engine_picks_by_the_strategys_needs():
    from mtlkit import grads
    from mtlkit.engine import BilevelEngine, make_engine

    model = hps()
    assert type(make_engine(model, W.get("MGDA"), "rep")) is GradEngine
    bi = make_engine(model, W.get("MetaWeighting", eta=0.1))
    assert type(bi) is BilevelEngine and bi.mode == PARAM
    # the earlier spelling, mtlkit.grads.GradEngine, picks the same way
    assert type(grads.GradEngine(model, W.get("MetaWeighting", eta=0.1))) is BilevelEngine
    assert type(grads.GradEngine(model, W.get("EW"))) is GradEngine
    with pytest.raises(ValueError, match="bi-level.*make_engine"):
        GradEngine(model, W.get("MetaWeighting"))
    with pytest.raises(ValueError, match="not bi-level"):
        BilevelEngine(model, W.get("EW"))
    with pytest.raises(ValueError, match="batched"):
        make_engine(model, W.get("MetaWeighting"), batched="yes")


def test_the_bilevel_engine_owns_its_rows_which_come_from_the_model():
    """A row is [shared | task a | task b | task c] (MTLModel.row_parameters); the layout
    lives on the engine and nothing is stored on the strategy or the model."""
    from mtlkit.engine import make_engine

    model = hps()
    strat = W.get("MetaWeighting", eta=0.1)
    before = (set(vars(strat)), set(vars(model)))
    eng = make_engine(model, strat)
    rows = model.row_parameters()
    assert [id(p) for p in rows] == [id(p) for p in model.shared_parameters()
                                     + model.all_task_parameters()]
    lay = eng.layout
    assert [id(p) for p in lay.params] == [id(p) for p in rows]
    assert lay.numel == sum(p.numel() for p in rows)
    starts = [lay.blocks[t][0] for t in model.tasks]
    assert starts[0] == lay.n_shared and lay.blocks[TASKS[-1]][1] == lay.numel
    x, y = batch()
    eng.step(x, y, CRIT, query=(x, y))
    assert (set(vars(strat)), set(vars(model))) == before
    # the support rows the strategy kept: row t = dL_t over the whole row (0 on other heads)
    ref = per_task_grads(reference_losses(model, x, y), rows)
    torch.testing.assert_close(strat.state_dict()["prev_grads"], ref)
