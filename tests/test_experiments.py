"""mtlkit.experiments: method specs, STL as T merged runs, seeds, grids."""

from __future__ import annotations

import functools
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from mtlkit import experiments as E
from mtlkit import results
from mtlkit.arch.hps import HPS
from mtlkit.data.base import MTLData, TaskSpec
from mtlkit.trainer import TrainConfig


def _data(n: int = 48) -> MTLData:
    g = torch.Generator().manual_seed(0)
    tasks = ["a", "b"]
    w = torch.randn(2, 6, generator=g)

    def split(k: int) -> dict[str, TensorDataset]:
        out = {}
        for i, t in enumerate(tasks):
            x = torch.randn(k, 6, generator=g)
            out[t] = TensorDataset(x, (x @ w[i] > 0).long())
        return out

    return MTLData("toy", [TaskSpec(t, "classification", 2) for t in tasks], True,
                   split(n), split(16), split(16))


def _model(seed: int) -> HPS:
    torch.manual_seed(seed)
    return HPS(nn.Sequential(nn.Linear(6, 8), nn.ReLU()),
               {t: nn.Linear(8, 2) for t in ("a", "b")})


CFG = TrainConfig(epochs=2, batch_size=16, progress=False, select="acc")


def test_parse_aliases_and_general_form():
    m = E.parse_method("RLW-dirichlet")
    assert (m.name, m.hparams, m.mode) == ("RLW", {"dist": "dirichlet"}, "auto")
    assert E.parse_method("MGDA-UB").mode == "rep"
    m = E.parse_method("GradNorm(alpha: 0.5, optimizer: sgd)@param")
    assert (m.name, m.hparams, m.mode) == ("GradNorm", {"alpha": 0.5, "optimizer": "sgd"},
                                           "param")
    assert m.label == "GradNorm(alpha: 0.5, optimizer: sgd)@param"
    assert "=" not in "".join(E.ALIASES)  # labels fit a papermill parameter line


@pytest.mark.parametrize("bad", ["NoSuchMethod", "EW(alpha)", "(x)", "RLW(dist: nope)"])
def test_bad_specs_raise_or_fail_to_build(bad):
    with pytest.raises(ValueError):
        E.parse_method(bad).build()


def test_available_skips_unknown_with_reason():
    ok, skipped = E.available(["EW", "Frobnicate", "UW"])
    assert [m.label for m in ok] == ["EW", "UW"]
    assert len(skipped) == 1 and "Frobnicate" in skipped[0] and "registered" in skipped[0]


def test_seed_goes_to_strategies_that_take_one():
    m = E.parse_method("RLW-normal")
    w0, w1 = m.build(0), m.build(1)
    assert (w0.seed, w1.seed) == (0, 1)
    draw = [w.combine(torch.ones(3))[1] for w in (w0, w1)]
    assert not torch.allclose(draw[0], draw[1])  # seeds change the random weights
    assert E.parse_method("RLW(dist: normal, seed: 7)").build(3).seed == 7  # spec wins
    assert E.parse_method("EW").build(5).name == "EW"  # no seed parameter: nothing passed


def test_stl_is_t_runs_merged_with_summed_time(tmp_path):
    run = E.run_one("STL", _data(), _model, CFG, seed=0, run_dir=tmp_path)
    rec = run.records
    assert set(rec["method"]) == {"STL"} and rec["run_id"].nunique() == 2
    # each task's rows come from the run that trained that task alone
    for t in ("a", "b"):
        assert set(rec[rec["task"] == t]["run_id"]) == {f"STL-{t}-s0"}
    per_run = [pd.read_csv(tmp_path / f"STL-{t}-s0" / "records.csv")["wall_time"].iloc[0]
               for t in ("a", "b")]
    assert math.isclose(run.epoch_time, sum(per_run), rel_tol=1e-9)
    assert run.steps is None and run.finite


def test_grid_records_table_and_ew_delta_zero(tmp_path):
    grid = E.run_grid(["EW", "RLW-dirichlet", "NotAMethod"], [0, 1], _data(), _model, CFG,
                      tmp_path, records_file=tmp_path / "records.csv", log=None)
    assert len(grid.runs) == 4 and len(grid.skipped) == 1
    assert all(r.finite for r in grid.runs)
    rec = results.read_records(tmp_path / "records.csv")
    assert rec["run_id"].nunique() == 4 and set(rec["method"]) == {"EW", "RLW-dirichlet"}
    table = results.paper_table(rec, baseline="EW", metrics={"a": ["acc"], "b": ["acc"]})
    assert table.loc["EW", ("Δp", "↑")] == pytest.approx(0.0, abs=1e-12)
    assert table.loc["EW", ("Δt", "↓")] == pytest.approx(1.0)
    # the table mean equals the mean over seeds of each run's selected test accuracy
    fin = results.final(rec)
    want = fin[(fin["method"] == "RLW-dirichlet") & (fin["task"] == "a")
               & (fin["metric"] == "acc")]["value"].mean()
    assert table.loc["RLW-dirichlet", ("a", "acc")] == pytest.approx(want)
    steps = grid.steps()
    assert set(steps) == {"EW", "RLW-dirichlet"}
    w = steps["RLW-dirichlet"][["weight/a", "weight/b"]].to_numpy()
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-6)  # softmax of Dirichlet draws
    assert (w > 0).all() and not np.allclose(w, 0.5)


def test_finite_flag_detects_nan():
    df = pd.DataFrame({"step": [1, 2], "loss/a": [1.0, float("nan")], "weight/a": [1.0, 1.0]})
    assert not E._finite(df)
    assert E._finite(df.fillna(0.5))


def test_warmup_run_is_not_recorded(tmp_path):
    grid = E.run_grid(["UW"], [0], _data(), _model, CFG, tmp_path, warmup_steps=2, log=None)
    assert [r.method for r in grid.runs] == ["UW"]
    assert set(grid.records["method"]) == {"UW"}
    warm = pd.read_csv(next((tmp_path / "warmup").glob("EW-s0*/steps.csv")))
    assert len(warm) == 2  # exactly the warm-up steps, in their own folder


def test_step_times_interleaved_and_stl_costs_more():
    t = E.step_times(["EW", "STL", "MetaWeighting"], _data(), _model, CFG, rounds=2, steps=3,
                     warmup=1)
    assert list(t.index) == ["EW", "STL", "MetaWeighting"]
    assert (t > 0).all() and t.map(math.isfinite).all()
    assert t["STL"] > t["EW"]  # T single-task steps against one shared step
    with pytest.raises(ValueError):
        E.step_times(["EW"], _data(), _model, CFG, rounds=0)


def test_step_times_uses_the_configured_optimizer(monkeypatch):
    """step_times times the trainer's own step: SGD when the config says SGD (it used to
    build Adam whatever the config said)."""
    calls = {"Adam": 0, "SGD": 0}
    for name in calls:
        cls = getattr(torch.optim, name)
        monkeypatch.setattr(cls, "step", lambda self, closure=None, _n=name: calls.__setitem__(
            _n, calls[_n] + 1))
    sgd = TrainConfig(epochs=1, batch_size=16, progress=False, optimizer="sgd", lr=0.1)
    E.step_times(["EW", "UW"], _data(), _model, sgd, rounds=1, steps=2, warmup=1)
    assert calls == {"Adam": 0, "SGD": 2 * 3}  # 2 methods x (1 warm-up + 2 timed) steps
    # (UW's log-variances take their own functional Adam step inside combine)


def test_a_method_builds_its_strategy_once(monkeypatch):
    from mtlkit.weighting.ew import EW
    from mtlkit.weighting.rlw import RLW

    built = []

    def counted(init):
        @functools.wraps(init)  # keeps the signature the registry checks
        def wrapper(self, *a, **k):
            built.append(type(self).__name__)
            init(self, *a, **k)
        return wrapper

    for cls in (RLW, EW):
        monkeypatch.setattr(cls, "__init__", counted(cls.__init__))
    assert E.parse_method("RLW-normal").build(3).seed == 3
    assert E.parse_method("EW").build(3).name == "EW"
    assert built == ["RLW", "EW"]
