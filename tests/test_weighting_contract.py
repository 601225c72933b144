"""The contract of every registered strategy used directly as a library
(``weighting.get(name).combine(losses, grads)``), in every way it can be called:

* finite input, random or degenerate (zero, parallel, opposite, huge, tiny gradients;
  zero, tiny and huge losses) gives finite weights summing as documented, and a
  direction in the gradients' dtype, equal to G^T w for a reweighting (so finite
  wherever G^T w is within the dtype's range);
* a NaN or inf in any one loss or gradient row (query ones too) raises
  :class:`~mtlkit.weighting.base.NonFiniteError` naming that task, and the refused
  call leaves the strategy's state as it was;
* float16 and bfloat16 work: the weights are those of the same (rounded) values in
  float32, the direction has the gradients' dtype;
* any other dtype raises :class:`~mtlkit.weighting.base.UnsupportedDtypeError`.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mtlkit import weighting as W
from mtlkit.weighting.base import LOSSES, NonFiniteError, UnsupportedDtypeError

#: every registered strategy with its defaults, plus the variants whose code paths differ
#: (IMTL's three methods, MGDA's Frank-Wolfe and normalisation, Auto-lambda's min-norm);
#: the bi-level ones get eta (no optimiser is attached)
VARIANTS = [(n, {"eta": 0.1} if n in ("MetaWeighting", "AutoLambda") else {}) for n in W.names()]
VARIANTS += [("IMTL", {"method": "grad"}), ("IMTL", {"method": "loss"}),
             ("MGDA", {"solver": "fw", "normalization": "loss+"}),
             ("MetaWeighting", {"eta": 0.1, "reduce": "sum", "constraint": "none"}),
             ("AutoLambda", {"eta": 0.1, "reduce": "minnorm"})]
#: (variant, with gradients): a strategy that works from the losses is also called without
CASES = [pytest.param(n, hp, g, id=f"{n}{''.join(f'-{v}' for v in hp.values())}-"
                      f"{'grads' if g else 'losses'}")
         for n, hp in VARIANTS for g in (True, False)
         if g or LOSSES in W.get(n, **hp).modes]
#: documented sums of the returned weights (T = number of tasks)
SUMS = {"EW": 1, "AdvMTL": 1, "STL": 1, "RLW": 1, "BanditMTL": 1, "MGDA": 1, "FAMO": 1,
        "Tchebycheff": 1, "TchebycheffAdv": 1, "DWA": "T", "GradNorm": "T"}
GRADS = ("random", "zero", "one-zero-row", "parallel", "opposite", "huge", "tiny")
LOSS_VALUES = st.one_of(st.just(0.0), st.just(1e-30), st.just(1e30), st.floats(1e-3, 1e3))
STEPS = 3


def documented_sum(name: str, hp: dict, t: int) -> float | None:
    if name == "IMTL" and hp.get("method") == "grad":
        return 1.0  # alpha_1 = 1 - sum_{t>=2} alpha_t
    if name == "MetaWeighting" and hp.get("constraint", "simplex") == "simplex":
        return 1.0  # w on {sum = T w0}, weights w / T
    s = SUMS.get(name)
    return float(t) if s == "T" else s


def gradients(kind: str, t: int, p: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    g = torch.randn(t, p, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    signs = torch.tensor([(-1.0) ** k for k in range(t)], dtype=torch.float64)[:, None]
    ramp = torch.arange(1.0, t + 1, dtype=torch.float64)[:, None]
    out = {"random": g, "zero": torch.zeros_like(g), "parallel": g[:1] * ramp,
           "opposite": g[:1] * signs, "huge": 1e15 * g, "tiny": 1e-20 * g,
           "one-zero-row": torch.cat([torch.zeros_like(g[:1]), g[1:]])}[kind]
    return out.to(dtype)


def problem(t: int, p: int, seed: int, kind: str, dtype, losses: list[list[float]] | None = None):
    """STEPS calls' (losses, grads, query_losses, query_grads)."""
    gen = torch.Generator().manual_seed(seed + 1)
    calls = []
    for k in range(STEPS):
        lo = torch.tensor(losses[k], dtype=torch.float64) if losses else \
            0.1 + 2 * torch.rand(t, generator=gen, dtype=torch.float64)
        calls.append((lo.to(dtype), gradients(kind, t, p, seed + k, dtype),
                      (0.1 + 2 * torch.rand(t, generator=gen, dtype=torch.float64)).to(dtype),
                      gradients("random", t, p, seed + 100 + k, dtype)))
    return calls


def call(s: W.Weighting, with_grads: bool, lo, g, ql, qg):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Nash-MTL warns once on Pareto-stationary gradients
        if s.needs_query:
            return s.combine(lo, g, query_losses=ql, query_grads=qg)
        return s.combine(lo, g if with_grads else None)


def run(name, hp, with_grads, calls):
    s = W.get(name, **hp)
    return [call(s, with_grads, *c) for c in calls]


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bitwise equal, NaN included (an out-of-range direction may be inf - inf)."""
    return torch.equal(torch.nan_to_num(a, nan=7.0), torch.nan_to_num(b, nan=7.0)) \
        and torch.equal(a.isnan(), b.isnan())


def check_output(name, hp, s_is_reweighting, d, w, lo, g, t):
    assert w.shape == (t,) and torch.isfinite(w).all(), (name, w)
    total = documented_sum(name, hp, t)
    if total is not None:
        assert abs(float(w.double().sum()) - total) <= 1e-5 * total, (name, w)
    if g is None:
        assert d is None
        return
    assert d.shape == g.shape[1:] and d.dtype == g.dtype, name
    info = torch.finfo(g.dtype)
    if s_is_reweighting:  # d = G^T w up to rounding (relative, or below the normal range)
        ref = w.double() @ g.double()
        scale = w.double().abs() @ g.double().abs()
        err = (d.double() - ref).abs()
        fits = ref.abs() <= info.max / 2  # else d may round to inf, as it should
        bound = 4 * max(info.eps, torch.finfo(w.dtype).eps) * scale + info.smallest_normal
        assert (torch.isfinite(d) | ~fits).all() and (err <= bound)[fits].all(), name
    else:
        assert torch.isfinite(d).all(), name


# ------------------------------------------------------------------ finite input
@pytest.mark.parametrize("name,hp,with_grads", CASES)
@settings(max_examples=8, deadline=None)
@given(t=st.integers(1, 4), p=st.integers(1, 6), seed=st.integers(0, 10_000),
       kind=st.sampled_from(GRADS), dtype=st.sampled_from([torch.float32, torch.float64]),
       data=st.data())
def test_finite_input_gives_finite_output(name, hp, with_grads, t, p, seed, kind, dtype, data):
    losses = [data.draw(st.lists(LOSS_VALUES, min_size=t, max_size=t)) for _ in range(STEPS)]
    calls = problem(t, p, seed, kind, dtype, losses)
    outs = run(name, hp, with_grads, calls)
    rew = W.get(name, **hp).is_reweighting
    for (d, w), (lo, g, _, _) in zip(outs, calls):
        check_output(name, hp, rew, d, w, lo, g if with_grads else None, t)
    for (d, w), (d2, w2) in zip(outs, run(name, hp, with_grads, calls)):  # deterministic
        assert torch.equal(w, w2) and (d is None or same(d, d2))


# -------------------------------------------------------------- non-finite input
@pytest.mark.parametrize("name,hp,with_grads", CASES)
@settings(max_examples=8, deadline=None)
@given(t=st.integers(1, 4), p=st.integers(1, 6), seed=st.integers(0, 10_000),
       bad=st.sampled_from([float("nan"), float("inf"), -float("inf")]),
       dtype=st.sampled_from([torch.float16, torch.bfloat16, torch.float32, torch.float64]),
       at_step=st.integers(0, STEPS - 1), data=st.data())
def test_non_finite_input_raises_naming_the_task(name, hp, with_grads, t, p, seed, bad, dtype,
                                                 at_step, data):
    s = W.get(name, **hp)
    kinds = ["loss"] + (["gradient"] if with_grads else [])
    kinds += ["query loss", "query gradient"] if s.needs_query else []
    kind = data.draw(st.sampled_from(kinds))
    task = data.draw(st.integers(0, t - 1))
    calls = problem(t, p, seed, "random", dtype)
    lo, g, ql, qg = (x.clone() for x in calls[at_step])
    target = {"loss": lo, "gradient": g, "query loss": ql, "query gradient": qg}[kind]
    if target.dim() == 1:
        target[task] = bad
    else:
        target[task, data.draw(st.integers(0, p - 1))] = bad
    for c in calls[:at_step]:
        call(s, with_grads, *c)
    with pytest.raises(NonFiniteError) as err:
        call(s, with_grads, lo, g, ql, qg)
    e = err.value
    assert isinstance(e, FloatingPointError) and isinstance(e, ValueError)
    assert e.strategy == s.name and e.where == {kind: [task]} and e.tasks == [task]
    assert s.name in str(e) and f"{kind}{'' if 'loss' in kind else ' row'} of task {task}" \
        in str(e)
    # the refused call changed nothing: the rest of the run is the uninterrupted one
    rest = [call(s, with_grads, *c) for c in calls[at_step:]]
    ref = run(name, hp, with_grads, calls)[at_step:]
    for (d, w), (d2, w2) in zip(rest, ref):
        assert torch.equal(w, w2) and (d is None or torch.equal(d, d2))


# -------------------------------------------------------------- low precision
@pytest.mark.parametrize("name,hp,with_grads", CASES)
@settings(max_examples=6, deadline=None)
@given(t=st.integers(1, 4), p=st.integers(1, 6), seed=st.integers(0, 10_000),
       kind=st.sampled_from(["random", "zero", "one-zero-row", "parallel", "opposite"]),
       scale=st.sampled_from([1e-2, 1.0, 1e2]),
       dtype=st.sampled_from([torch.float16, torch.bfloat16]))
def test_half_precision_gives_the_float32_weights(name, hp, with_grads, t, p, seed, kind, scale,
                                                  dtype):
    """Weights in float32, equal to those of the same rounded values given in float32
    (GradDrop: a mask may flip where sum_t |g_t| rounds differently; checked as above)."""
    calls = [(lo, g * scale, ql, qg) for lo, g, ql, qg in problem(t, p, seed, kind, dtype)]
    outs = run(name, hp, with_grads, calls)
    up = [tuple(x.float() for x in c) for c in calls]
    rew = W.get(name, **hp).is_reweighting
    for (d, w), (lo, g, _, _) in zip(outs, calls):
        assert w.dtype == torch.float32
        check_output(name, hp, rew, d, w, lo, g if with_grads else None, t)
    if name != "GradDrop":
        for (_, w), (_, w32) in zip(outs, run(name, hp, with_grads, up)):
            torch.testing.assert_close(w, w32, rtol=1e-5, atol=1e-6)


def test_variants_cover_every_registered_strategy():
    assert {n for n, _ in VARIANTS} == set(W.names())


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.complex64])
def test_other_dtypes_are_refused_clearly(dtype):
    for name, hp in VARIANTS:
        s = W.get(name, **hp)
        kw = {"query_losses": torch.ones(2), "query_grads": torch.ones(2, 3)} \
            if s.needs_query else {}
        with pytest.raises(UnsupportedDtypeError, match=f"{s.name}: the losses are .*float16"):
            s.combine(torch.ones(2, dtype=dtype), torch.ones(2, 3), **kw)
        with pytest.raises(UnsupportedDtypeError, match="the gradients are"):
            s.combine(torch.ones(2), torch.ones(2, 3, dtype=dtype), **kw)


def test_half_precision_faults_found():
    """What float16 input did before the weights' math moved to float32: FAMO returned
    NaN weights (eps = 1e-8 is 0 in float16), GLS and DWA raised a raw overflow error,
    a Gram matrix of gradients with norm^2 > 65504 was inf (MGDA's weights then came
    from garbage), and GradNorm's weights never moved (1 + 1e-4 is 1 in float16)."""
    lo = torch.tensor([0.5, 2.0, 0.0], dtype=torch.float16)
    for name in ("FAMO", "GLS", "DWA"):
        s = W.get(name)
        for _ in range(3):
            _, w = s.combine(lo)
        assert torch.isfinite(w).all(), name
    g = (30 * torch.randn(3, 1000, generator=torch.Generator().manual_seed(0))).half()
    _, w = W.get("MGDA").combine(lo + 1, g)
    _, ref = W.get("MGDA").combine((lo + 1).double(), g.double())
    torch.testing.assert_close(w.double(), ref, rtol=1e-5, atol=1e-6)
    s, ref = W.get("GradNorm"), W.get("GradNorm")
    for _ in range(3):
        _, w = s.combine(lo + 1, g)
        _, w32 = ref.combine((lo + 1).float(), g.float())
    assert (w != 1).any()
    torch.testing.assert_close(w, w32)


def test_huge_finite_rows_are_not_refused():
    """The check sums each row: a sum that overflows from finite entries (3e38 in float32,
    1e308 in float64) is told apart from a NaN or inf entry."""
    for big, dtype in ((3e38, torch.float32), (1e308, torch.float64)):
        g = torch.full((3, 4), big, dtype=dtype)
        d, w = W.get("EW").combine(torch.ones(3, dtype=dtype), g)
        assert torch.equal(w, torch.full((3,), 1 / 3, dtype=dtype))
        g[2, 1] = -float("inf")
        with pytest.raises(NonFiniteError, match="gradient row of task 2"):
            W.get("EW").combine(torch.ones(3, dtype=dtype), g)


# ------------------------------------------- one entry point, one context, one base for Gram
def strategy_classes() -> list[type]:
    return [W.base._REGISTRY[n] for n in W.names()]


def test_combine_is_the_one_entry_point_every_strategy_implements_combine_underscore():
    """Strategies implement ``_combine`` (with a declared return type) and inherit the
    validating ``combine``; none validates by hand."""
    for cls in strategy_classes():
        assert cls.combine is W.Weighting.combine, cls.name
        impl = next(c for c in cls.__mro__ if "_combine" in vars(c))
        assert impl is not W.Weighting, cls.name
        assert inspect.signature(vars(impl)["_combine"]).return_annotation == "Combined"
        assert "self._check(" not in inspect.getsource(sys.modules[cls.__module__]), cls.name


def test_a_new_strategy_gets_validation_without_asking():
    calls = []

    class Mean(W.Weighting):
        name = "_test_mean"

        def _combine(self, losses, grads):
            calls.append(losses)
            w = torch.full_like(losses, 1 / losses.numel())
            return None, w

    s = Mean()
    with pytest.raises(NonFiniteError, match="_test_mean"):
        s.combine(torch.tensor([1.0, float("nan")]))
    with pytest.raises(UnsupportedDtypeError):
        s.combine(torch.tensor([1, 2]))
    assert calls == [] and s.num_tasks is None  # refused before any state changed
    assert torch.equal(s.combine(torch.ones(4))[1], torch.full((4,), 0.25))
    with pytest.raises(TypeError, match="takes no query batch"):
        s.combine(torch.ones(4), None, W.QueryContext(torch.ones(4)))


def test_the_query_context_and_its_keyword_spelling_agree():
    g = torch.Generator().manual_seed(0)
    seq = [(torch.rand(3, generator=g, dtype=torch.float64),
            torch.randn(3, 5, generator=g, dtype=torch.float64),
            torch.rand(3, generator=g, dtype=torch.float64),
            torch.randn(3, 5, generator=g, dtype=torch.float64)) for _ in range(3)]
    a, b = W.get("MetaWeighting", eta=0.1, alpha=10.0), W.get("MetaWeighting", eta=0.1, alpha=10.0)
    for lo, gs, ql, qg in seq:
        da, wa = a.combine(lo, gs, W.QueryContext(ql, qg))
        db, wb = b.combine(lo, gs, query_losses=ql, query_grads=qg)
        assert torch.equal(da, db) and torch.equal(wa, wb)
    assert not torch.allclose(wa, torch.full_like(wa, 1 / 3))
    bad = seq[0][2].clone()
    bad[1] = float("inf")
    with pytest.raises(NonFiniteError, match="query loss"):
        a.combine(seq[0][0], seq[0][1], W.QueryContext(bad, seq[0][3]))
    with pytest.raises(dataclasses.FrozenInstanceError):
        W.QueryContext().owned = True


def test_loading_a_state_keeps_the_constructor_settings():
    """Only state is restored: a state saved by a strategy built with other
    hyper-parameters does not change them (before, load_state_dict set every saved
    attribute, alpha and the IMTL method's modes included)."""
    losses, gs, gq = torch.ones(3), torch.randn(3, 4), torch.randn(3, 4)
    a = W.get("MetaWeighting", alpha=1.0, eta=0.5, constraint="none")
    for _ in range(3):
        a.combine(losses, gs, query_losses=losses, query_grads=gq)
    b = W.get("MetaWeighting", alpha=5.0, eta=0.1)
    b.load_state_dict(a.state_dict())
    assert b.hparams() == W.get("MetaWeighting", alpha=5.0, eta=0.1).hparams()
    assert torch.equal(b.w, a.w)  # the state did arrive
    grad_imtl, loss_imtl = W.get("IMTL", method="grad"), W.get("IMTL", method="loss")
    grad_imtl.load_state_dict(loss_imtl.state_dict())
    assert grad_imtl.method == "grad" and grad_imtl.modes == ("param", "rep")


GRAM_BASED = ("MGDA", "PCGrad", "IMTL", "GradVac", "CAGrad", "Nash-MTL", "UPGrad", "Aligned-MTL")


@pytest.mark.parametrize("name", GRAM_BASED)
def test_gram_strategies_compute_the_gram_matrix_once(name, monkeypatch):
    import mtlkit.weighting.base as base

    calls = []
    real = base.gram64
    monkeypatch.setattr(base, "gram64", lambda g: calls.append(1) or real(g))
    s = W.get(name)
    assert isinstance(s, W.GramWeighting) and s.is_reweighting
    g = torch.randn(3, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    lo = torch.rand(3, dtype=torch.float64) + 0.5
    d, w = s.combine(lo, g)
    assert len(calls) == 1
    torch.testing.assert_close(d, g.T @ w.to(g.dtype))


def test_nash_mtl_skips_the_gram_matrix_between_updates(monkeypatch):
    import mtlkit.weighting.base as base

    calls = []
    real = base.gram64
    monkeypatch.setattr(base, "gram64", lambda g: calls.append(1) or real(g))
    s = W.get("Nash-MTL", update_every=3)
    g = torch.randn(3, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ws = [s.combine(torch.ones(3, dtype=torch.float64), g)[1] for _ in range(4)]
    assert len(calls) == 2 and all(torch.equal(ws[0], w) for w in ws[:3])


def test_the_loader_imports_strategy_modules_only():
    """Every public module of mtlkit.weighting but ``base`` defines a registered strategy;
    the shared pieces (solvers, the learnable-weight optimiser) are private modules."""
    import pkgutil

    public = [m.name for m in pkgutil.iter_modules(W.__path__) if W.base.is_strategy_module(m.name)]
    homes = {cls.__module__.rsplit(".", 1)[1] for cls in strategy_classes()}
    assert set(public) == homes
    assert "min_norm" not in public and W.min_norm.solve_min_norm is not None
    from mtlkit.weighting import _learnable

    assert W.OPTIMIZERS is _learnable.OPTIMIZERS
