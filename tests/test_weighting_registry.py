"""Every registered strategy: registry errors, and one training step in every mode it supports."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from mtlkit import weighting as W
from mtlkit.arch import HPS, SharedPrivate
from mtlkit.engine import GradEngine
from mtlkit.weighting.base import LOSSES, MODES


def test_names_lists_the_zoo():
    names = W.names()
    for expected in ["EW", "STL", "CAGrad", "Nash-MTL", "Aligned-MTL", "DB-MTL", "UPGrad"]:
        assert expected in names


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match="choose one of: .*EW"):
        W.get("NoSuchMethod")


def test_lookup_is_case_insensitive():
    assert W.get("ew").name == "EW"


def tiny_model(seed: int = 0) -> HPS:
    torch.manual_seed(seed)
    enc = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 6), nn.Tanh())
    return HPS(enc, {t: nn.Linear(6, 1) for t in ("a", "b", "c")})


def sp_model(seed: int = 0) -> SharedPrivate:
    """The shared-private model, for the methods defined on it (AdvMTL, TchebycheffAdv)."""
    torch.manual_seed(seed)
    tasks = ("a", "b", "c")
    return SharedPrivate(nn.Sequential(nn.Linear(4, 6), nn.Tanh()),
                         {t: nn.Sequential(nn.Linear(4, 2), nn.Tanh()) for t in tasks},
                         {t: nn.Linear(8, 1) for t in tasks}, shared_dim=6)


def cases():
    for name in W.names():
        cls = W.base._REGISTRY[name]
        if cls.needs_query:
            continue  # bi-level strategies are tested with a query batch in their own tests
        modes = MODES if LOSSES in cls.modes else cls.modes
        for mode in modes:
            yield pytest.param(name, mode, id=f"{name}-{mode}")


@pytest.mark.parametrize("name,mode", list(cases()))
def test_one_step_moves_every_shared_parameter(name, mode):
    strategy = W.get(name)
    model = sp_model() if strategy.arch == "SharedPrivate" else tiny_model()
    engine = GradEngine(model, strategy, mode)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 4, generator=g)
    y = {t: torch.randn(16, 1, generator=g) for t in model.tasks}
    crit = {t: nn.functional.mse_loss for t in model.tasks}
    before = [p.detach().clone() for p in model.shared_parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    strategy.attach(model, opt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(2):  # some strategies start from a warm-up step
            opt.zero_grad()
            res = engine.step(x, y, crit)
            opt.step()
    assert torch.isfinite(res.weights).all() and res.weights.shape == (3,)
    after = model.shared_parameters()
    moved = [not torch.equal(b, a.detach()) for b, a in zip(before, after)]
    assert all(moved), f"{name} in {mode} mode left a shared parameter unchanged"


@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_non_finite_gradients_raise_a_clear_error(bad):
    """A diverged step (a NaN or inf gradient row) is refused by every strategy, with a
    NonFiniteError (a FloatingPointError, which the trainer re-raises naming the step)
    that names the strategy and the task: no solver error, no finite-looking weights
    (before, Tchebycheff, GLS, FAMO and others returned weights)."""
    g = torch.ones(3, 5, dtype=torch.float64)
    g[1, 2] = float(bad)
    for name in W.names():
        s = W.get(name, eta=0.1) if name in ("MetaWeighting", "AutoLambda") else W.get(name)
        ones = torch.ones(3, 5, dtype=torch.float64)
        kw = {"query_losses": ones[:, 0], "query_grads": ones} if s.needs_query else {}
        with pytest.raises(FloatingPointError, match=f"^{name} got non-finite .*gradient row "
                                                     "of task 1") as err:
            s.combine(torch.ones(3, dtype=torch.float64), g, **kw)
        assert err.value.tasks == [1], name
