"""Unit tests for the notebook helpers (mtlkit.nb)."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch

import mtlkit.nb as nb


@pytest.fixture
def ns(tmp_path):
    """A notebook namespace as the parameters cell leaves it."""
    return {"PROFILE": "smoke", "SEEDS": [3], "DEVICE": "cpu", "OUT_DIR": str(tmp_path / "out"),
            "LR": 0.1, "np": np, "__name__": "__main__"}


@pytest.fixture(autouse=True)
def _restore_state():
    state, claims = dict(nb._STATE), list(nb._CLAIMS)
    precision = torch.get_float32_matmul_precision()
    yield
    nb._STATE.clear()
    nb._STATE.update(state)
    nb._CLAIMS[:] = claims
    torch.set_float32_matmul_precision(precision)


# ------------------------------------------------------------------- setup
def test_setup_resolves_profile_device_seed_and_out_dir(ns, tmp_path, capsys):
    cfg = nb.setup(ns)
    assert cfg.profile == "smoke" and cfg.device == torch.device("cpu")
    assert cfg.seeds == [3] and cfg.seed == 3
    assert cfg.out_dir == tmp_path / "out" and cfg.out_dir.is_dir()
    assert cfg.lr == 0.1 and cfg.params == {k: ns[k] for k in
                                            ("PROFILE", "SEEDS", "DEVICE", "OUT_DIR", "LR")}
    assert nb.out_dir() == cfg.out_dir
    printed = capsys.readouterr().out
    assert "Resolved configuration" in printed and "PROFILE" in printed and "cpu" in printed
    assert torch.get_float32_matmul_precision() == "highest"
    with pytest.raises(AttributeError, match="no parameter 'nope'"):
        cfg.nope  # noqa: B018


def test_setup_seeds_everything(ns):
    nb.setup(ns, quiet=True)
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    nb.setup(ns, quiet=True)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a
    nb.setup({**ns, "SEEDS": [4]}, quiet=True)
    assert random.random() != a[0]


def test_pick_and_path(ns):
    cfg = nb.setup(ns, quiet=True)
    assert cfg.pick(smoke=1, teach=2, full=3) == 1
    assert nb.setup({**ns, "PROFILE": "teach"}, quiet=True).pick(1, 2) == 2
    assert nb.setup({**ns, "PROFILE": "full"}, quiet=True).pick(1, 2) == 2
    assert nb.setup({**ns, "PROFILE": "full"}, quiet=True).pick(1, 2, 3) == 3
    paper = nb.setup({**ns, "PROFILE": "paper-cpu"}, quiet=True)
    assert paper.pick(1, 2, 3) == 2 and paper.pick(1, 2, 3, paper_cpu=4) == 4
    p = cfg.path("figures", "a", "x.png")
    assert p == cfg.out_dir / "figures" / "a" / "x.png" and p.parent.is_dir()


@pytest.mark.parametrize("key, value, words", [
    ("PROFILE", "huge", ["PROFILE='huge'", "smoke", "teach", "paper-cpu", "full"]),
    ("DEVICE", "gpu", ["DEVICE='gpu'", "auto", "cpu"]),
    ("SEEDS", [], ["SEEDS", "non-empty list of integers"]),
    ("SEEDS", "0", ["SEEDS", "list of integers"]),
    ("SEEDS", [1.5], ["SEEDS", "list of integers"]),
    ("SEEDS", [True], ["SEEDS", "list of integers"]),
])
def test_bad_values_raise_setup_error_with_help(ns, key, value, words):
    with pytest.raises(nb.SetupError) as e:
        nb.setup({**ns, key: value}, quiet=True)
    for w in words:
        assert w in str(e.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_cuda_raises(ns):
    with pytest.raises(nb.SetupError, match="CUDA is not available"):
        nb.setup({**ns, "DEVICE": "cuda"}, quiet=True)


def test_single_int_seed_is_accepted(ns):
    assert nb.setup({**ns, "SEEDS": 7}, quiet=True).seeds == [7]


# ------------------------------------------------------------------ claims
def test_claim_records_and_writes_claims_json(ns, capsys):
    cfg = nb.setup(ns, quiet=True)
    assert nb.claim("one plus one", 1 + 1 == 2, "2 == 2") is True
    assert "✓ one plus one: holds — 2 == 2" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="claim 'wrong'"):
        nb.claim("wrong", np.bool_(False), "counted")
    assert "✗ wrong: fails" in capsys.readouterr().out
    saved = json.loads((cfg.out_dir / "claims.json").read_text())
    assert [c["verdict"] for c in saved] == ["holds", "fails"]
    assert [c["claim"] for c in nb.claims()] == ["one plus one", "wrong"]
    table = nb.claims_table()
    assert list(table.columns) == ["claim", "verdict", "detail"] and len(table) == 2


def test_claim_expect_false_semantics(ns, capsys):
    nb.setup(ns, quiet=True)
    # a paper claim that fails as written: the counterexample must really be one
    assert nb.claim("Theorem as written", False, "T=2 counterexample", expect=False) is False
    assert "✓ Theorem as written: fails as written (shown)" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="expected false"):
        nb.claim("not a counterexample", True, expect=False)
    assert [c["verdict"] for c in nb.claims()] == ["fails as written (shown)",
                                                   "unexpectedly holds"]


def test_setup_clears_previous_claims(ns):
    cfg = nb.setup(ns, quiet=True)
    nb.claim("a", True)
    assert (cfg.out_dir / "claims.json").exists()
    nb.setup(ns, quiet=True)
    assert nb.claims() == [] and not (cfg.out_dir / "claims.json").exists()


# ---------------------------------------------------------------- exercises
@pytest.mark.parametrize("answer, expected, ok", [
    (0.5, 0.5 + 1e-9, True),
    ([1.0, 2.0], np.array([1.0, 2.0]), True),
    (torch.tensor([1.0, 2.0]), [1.0, 2.0], True),
    (0.5, 0.6, False),
    (None, 1.0, False),
    (..., 1.0, False),
    ([1.0, 2.0], [1.0, 2.0, 3.0], False),
    ("MGDA", "MGDA", True),
    ("mgda", "MGDA", False),
    (True, True, True),
])
def test_check_prints_and_never_raises(answer, expected, ok, capsys):
    assert nb.check(answer, expected, tol=1e-6) is ok
    out = capsys.readouterr().out
    assert out.startswith("✓" if ok else "✗")


def test_check_does_not_reveal_the_expected_value_unless_asked(capsys):
    assert nb.check(0.125, 0.734, name="w") is False
    out = capsys.readouterr().out
    assert "0.734" not in out and "off by up to 0.609" in out
    nb.check([1.0], [1.0, 2.0])
    assert "shape (1,), expected shape (2,)" in capsys.readouterr().out
    nb.check(None, 0.734)
    assert "not answered yet" in capsys.readouterr().out
    nb.check(0.125, 0.734, reveal=True)
    assert "expected 0.734" in capsys.readouterr().out


def test_check_survives_an_uncomparable_answer(capsys):
    class Weird:
        def __array__(self, *a, **k):
            raise RuntimeError("no")

        def __eq__(self, other):
            raise RuntimeError("no")

    assert nb.check(Weird(), 1.0) is False
    assert "✗" in capsys.readouterr().out


# ------------------------------------------------------------------ metrics
def test_save_metrics_merges_and_makes_json_safe(ns):
    cfg = nb.setup(ns, quiet=True)
    nb.save_metrics({"a": 1, "arr": np.arange(3), "t": torch.tensor(2.5)})
    path = nb.save_metrics({"b": {"c": float("nan")}, "a": 2})
    assert path == cfg.out_dir / "metrics.json"
    data = json.loads(path.read_text())
    assert data == {"a": 2, "arr": [0, 1, 2], "t": 2.5, "b": {"c": "nan"}}
    other = nb.save_metrics({"x": math.inf}, out_dir=cfg.out_dir / "sub")
    assert json.loads(other.read_text()) == {"x": "inf"}


def test_out_dir_before_setup_raises():
    nb._STATE["out_dir"] = None
    with pytest.raises(RuntimeError, match="setup"):
        nb.out_dir()


def test_default_out_dir_is_runs_interactive_profile_notebook(ns, tmp_path):
    """An interactive run never writes into a folder that nbrun fills (runs/<profile>/...)."""
    ns = {**ns, "OUT_DIR": "", "__session__": str(tmp_path / "notebooks" / "07_demo.ipynb")}
    cfg = nb.setup(ns, quiet=True)
    try:
        assert cfg.out_dir.parts[-4:] == ("runs", "interactive", "smoke", "07_demo")
    finally:
        for p in (cfg.out_dir, cfg.out_dir.parent, cfg.out_dir.parent.parent):
            if p.is_dir() and not any(p.iterdir()):
                p.rmdir()


def test_widgets_are_inert_only_when_switched_off(ns, monkeypatch):
    """Whatever ran before in this process (make test sets MTLKIT_WIDGETS=off), setup with
    widgets on gives ipywidgets' own interact back, and with them off an inert one."""
    import ipywidgets
    from ipywidgets.widgets import interaction

    assert nb.widgets_enabled({}) and nb.widgets_enabled({"MTLKIT_WIDGETS": "on"})
    assert not nb.widgets_enabled({"MTLKIT_WIDGETS": "off"})
    calls = []
    monkeypatch.delenv("MTLKIT_WIDGETS", raising=False)
    for mod in (ipywidgets, ipywidgets.widgets, interaction):  # restored after the test
        for name in ("interact", "interact_manual"):
            monkeypatch.setattr(mod, name, getattr(mod, name))

    def record(x):
        calls.append(x)

    nb.setup(ns, quiet=True)
    ipywidgets.interact(record, x=1)  # live: ipywidgets calls it at once
    assert calls == [1]
    monkeypatch.setenv("MTLKIT_WIDGETS", "off")
    nb.setup(ns, quiet=True)
    assert ipywidgets.interact(record, x=2) is record and calls == [1]
    deco = ipywidgets.interact_manual(x=3)
    assert deco(len) is len and calls == [1]
