"""Checkpoints never lose or mix runs, and loading one never runs code.

Each test here reproduces a fault of the trainer before ``mtlkit.checkpoints``:
a second run overwriting the first run's checkpoint, a resume accepting another
run's checkpoint, raw tracebacks (or a silent restart) on a damaged file, and an
unpickler that ran whatever a file asked for.
"""

from __future__ import annotations

import os
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from test_trainer import TOY, fit, homogeneous, model_for
from torch import nn

from mtlkit import checkpoints as C
from mtlkit import weighting
from mtlkit.arch.hps import HPS
from mtlkit.data.base import MTLData
from mtlkit.trainer import Interrupted, Trainer


def crash_at(step):
    def cb(trainer, s, losses, weights):
        if s == step:
            raise Interrupted("simulated crash")
    return cb


def crashed(tmp_path, name="run", at=5, **kw):
    """A run that saved checkpoints every 2 steps and crashed at step ``at``."""
    tr = fit(tmp_path, name, checkpoint_every=2, **kw)
    tr.callbacks.append(crash_at(at))
    with pytest.raises(Interrupted):
        tr.fit()
    return tmp_path / name


# ------------------------------------------------------------------ no overwriting
def test_a_second_run_in_the_same_run_dir_keeps_the_first_runs_checkpoint(tmp_path):
    first = fit(tmp_path, "same", seed=0).fit()
    second = fit(tmp_path, "same", seed=1).fit()
    assert second.run_dir == tmp_path / "same-1"
    assert (second.run_dir / C.LAST).exists()
    # each folder still resumes to its own run: the first checkpoint was not replaced
    again = fit(tmp_path, "same", seed=0).fit(resume=True)
    assert again.run_dir == first.run_dir
    pd.testing.assert_frame_equal(again.steps, first.steps)


# ------------------------------------------------------------------ identity
def other_data(**kw) -> MTLData:
    """The toy data with the same sizes but other examples."""
    return homogeneous(seed=1, **kw)


def wider_model(seed=0) -> HPS:
    torch.manual_seed(seed)
    enc = nn.Sequential(nn.Linear(5, 24), nn.ReLU())
    return HPS(enc, {t: nn.Linear(24, k) for t, k in TOY.items()})


CHANGES = {  # what differs -> (Trainer keyword changes, a key the message must name)
    "strategy": (dict(method="UW"), "strategy.name"),
    "hyper-parameters": (dict(method="RLW", strategy_hp={"dist": "uniform"}),
                         "strategy.hparams.dist"),
    "model shapes": (dict(model=wider_model), "model.parameters"),
    "data content": (dict(data=other_data()), "data.fingerprint"),
    "data sizes": (dict(data=homogeneous(n=(40, 32))), "data.sizes"),
    "settings": (dict(lr=0.5), "config.lr"),
}


def build(tmp_path, name, method="RLW", strategy_hp=None, model=None, data=None, **kw):
    w = weighting.get(method, **(strategy_hp or {}))
    m = model(0) if model else model_for(TOY)
    cfg = {"epochs": 2, "batch_size": 16, "progress": False, "checkpoint_every": 2, **kw}
    return Trainer(m, w, data or homogeneous(), run_dir=tmp_path / name, **cfg)


@pytest.mark.parametrize("change", list(CHANGES))
def test_resume_refuses_a_checkpoint_of_another_run(tmp_path, change):
    build(tmp_path, "r").fit()
    kw, key = CHANGES[change]
    with pytest.raises(ValueError, match="configuration changed") as err:
        build(tmp_path, "r", **kw).fit(resume=True)
    msg = str(err.value)
    assert key in msg and "saved" in msg and "now" in msg and "resume=False" in msg
    assert str(tmp_path / "r" / C.LAST) in msg


def test_progress_workers_and_checkpoint_period_may_change_on_resume(tmp_path):
    first = build(tmp_path, "r").fit()
    again = build(tmp_path, "r", progress=True, checkpoint_every=3).fit(resume=True)
    assert again.run_dir == first.run_dir


# ------------------------------------------------------------------ what a run keeps
@pytest.mark.parametrize("keep, left", [("all", {C.LAST, C.PREV, C.BEST}), ("best", {C.BEST}),
                                        ("none", set())])
def test_a_finished_run_keeps_the_model_files_it_was_told_to(tmp_path, keep, left):
    done = fit(tmp_path, "r", keep_files=keep, checkpoint_every=2).fit()
    assert {p.name for p in done.run_dir.glob("*.pt")} == left
    assert {"records.csv", "steps.csv", "summary.json"} <= {p.name for p in
                                                            done.run_dir.iterdir()}


def test_keep_files_changes_no_result_and_may_differ_on_resume(tmp_path):
    kept = fit(tmp_path, "all").fit()
    lean = fit(tmp_path, "none", keep_files="none").fit()
    pd.testing.assert_frame_equal(lean.steps, kept.steps)
    crashed(tmp_path, "c", at=3, keep_files="none")
    again = fit(tmp_path, "c", keep_files="all", checkpoint_every=2).fit(resume=True)
    pd.testing.assert_frame_equal(again.steps, kept.steps)


def test_resuming_a_pruned_finished_run_says_why_it_cannot(tmp_path):
    fit(tmp_path, "r", keep_files="best").fit()
    with pytest.raises(C.NothingToResume, match=r"finished.*keep_files.*resume=False"):
        fit(tmp_path, "r", keep_files="best").fit(resume=True)


def test_resuming_prev_when_only_one_checkpoint_was_saved_offers_the_last(tmp_path):
    fit(tmp_path, "r").fit()  # checkpoint_every=0: one save, at the end
    with pytest.raises(C.NothingToResume, match=r"only one checkpoint.*resume=True") as err:
        fit(tmp_path, "r").fit(resume="prev")
    assert "before its first checkpoint" not in str(err.value)


def test_keep_files_must_be_a_known_choice(tmp_path):
    with pytest.raises(ValueError, match=r"keep_files='some'.*'all', 'best', 'none'"):
        fit(tmp_path, "r", keep_files="some")


# ------------------------------------------------------------------ damaged files
def _damage(path, how):
    data = path.read_bytes()
    path.write_bytes({"empty": b"", "truncated": data[: len(data) // 2],
                      "garbage": os.urandom(len(data)),
                      "text": b"not a checkpoint\n"}[how])


@pytest.mark.parametrize("how", ["empty", "truncated", "garbage", "text"])
def test_a_damaged_checkpoint_names_the_file_and_the_choices(tmp_path, how):
    run = crashed(tmp_path)  # saved at steps 2 and 4
    _damage(run / C.LAST, how)
    with pytest.raises(C.CheckpointDamaged) as err:
        fit(tmp_path, "run", checkpoint_every=2).fit(resume=True)
    msg = str(err.value)
    assert str(run / C.LAST) in msg and "damaged" in msg
    assert "resume='prev'" in msg and "step 2" in msg and "resume=False" in msg


def test_resume_from_the_previous_checkpoint_is_exact(tmp_path):
    full = fit(tmp_path, "full", checkpoint_every=2, dropout=0.3, method="RLW").fit()
    run = crashed(tmp_path, dropout=0.3, method="RLW")
    _damage(run / C.LAST, "truncated")
    resumed = fit(tmp_path, "run", checkpoint_every=2, dropout=0.3,
                  method="RLW").fit(resume="prev")
    assert resumed.run_dir == run
    pd.testing.assert_frame_equal(full.steps, resumed.steps)
    assert resumed.test == full.test
    # the damaged file was replaced by a good one, and the previous one is good too
    assert C.load(run / C.LAST)["step"] == len(full.steps)
    assert C.load(run / C.PREV)["step"] < len(full.steps)


def test_every_checkpoint_damaged_says_start_afresh(tmp_path):
    run = crashed(tmp_path)
    _damage(run / C.LAST, "garbage")
    _damage(run / C.PREV, "empty")
    with pytest.raises(C.CheckpointDamaged, match="No intact checkpoint is left.*resume=False"):
        fit(tmp_path, "run", checkpoint_every=2).fit(resume=True)
    with pytest.raises(C.CheckpointDamaged, match="checkpoint.prev.pt is damaged: it is empty"):
        fit(tmp_path, "run", checkpoint_every=2).fit(resume="prev")
    fresh = fit(tmp_path, "run", checkpoint_every=2).fit(resume=False)
    assert fresh.run_dir == tmp_path / "run-1"  # the damaged run is left as it was


def test_a_kill_during_the_first_save_is_not_a_silent_restart(tmp_path, monkeypatch):
    real_save = torch.save

    def killed(obj, f, *a, **k):  # writes half a file, then the process "dies"
        real_save(obj, f, *a, **k)
        if hasattr(f, "truncate"):
            f.truncate(100)
        else:
            with open(f, "r+b") as fh:
                fh.truncate(100)
        raise Interrupted("killed while saving")

    monkeypatch.setattr(torch, "save", killed)
    with pytest.raises(Interrupted):
        fit(tmp_path, "run", checkpoint_every=2).fit()
    monkeypatch.setattr(torch, "save", real_save)
    assert (tmp_path / "run" / "checkpoint.pt.tmp").exists()
    with pytest.raises(C.NothingToResume, match=r"checkpoint.pt.tmp.*resume=False"):
        fit(tmp_path, "run", checkpoint_every=2).fit(resume=True)
    assert not (tmp_path / "run-1").exists()


def test_a_run_without_checkpoint_is_not_silently_restarted(tmp_path):
    run = crashed(tmp_path, at=1)  # stopped before its first checkpoint
    assert not (run / C.LAST).exists()
    with pytest.raises(C.NothingToResume, match="before its first checkpoint"):
        fit(tmp_path, "run").fit(resume=True)
    # an absent or empty folder has nothing to lose: resume starts there
    assert fit(tmp_path, "new", epochs=1).fit(resume=True).run_dir == tmp_path / "new"


def test_saves_keep_the_previous_checkpoint_and_leave_no_temporary_file(tmp_path):
    run = crashed(tmp_path, at=7)  # saved at 2, 4, 6
    assert C.load(run / C.LAST)["step"] == 6 and C.load(run / C.PREV)["step"] == 4
    assert not list(run.glob("*.tmp"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_resume_on_cuda_is_exact(tmp_path):
    kw = dict(method="RLW", dropout=0.3, device="cuda")
    full = fit(tmp_path, "full", checkpoint_every=2, **kw).fit()
    crashed(tmp_path, **kw)
    resumed = fit(tmp_path, "run", checkpoint_every=2, **kw).fit(resume=True)
    pd.testing.assert_frame_equal(full.steps, resumed.steps)


# ------------------------------------------------------------------ loading never runs code
class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_resume_refuses_a_checkpoint_that_would_run_code(tmp_path, writer):
    run = crashed(tmp_path)
    marker = tmp_path / "pwned"
    payload = {"step": _Evil(marker), "config": {}, "format": C.FORMAT}
    with open(run / C.LAST, "wb") as f:
        pickle.dump(payload, f) if writer == "pickle" else torch.save(payload, f)
    with pytest.raises(C.CheckpointError) as err:
        fit(tmp_path, "run", checkpoint_every=2).fit(resume=True)
    assert not marker.exists()
    msg = str(err.value)
    assert str(run / C.LAST) in msg and "resume=False" in msg
    if writer == "torch.save":
        assert isinstance(err.value, C.CheckpointUnsafe) and "system" in msg
    with pytest.raises(C.CheckpointError):
        C.load_weights(run / C.LAST)
    assert not marker.exists()


def test_best_model_loads_safely_into_the_model(tmp_path):
    res = fit(tmp_path, "b", epochs=2).fit()
    state = C.load_weights(res.run_dir / "best_model.pt")
    model = model_for(TOY, seed=99)
    model.load_state_dict(state)
    assert torch.load(res.run_dir / "best_model.pt", weights_only=True).keys() == state.keys()


def test_saving_refuses_what_a_safe_load_could_not_read(tmp_path):
    with pytest.raises(TypeError, match=r"x.pt: weighting.bad is a set"):
        C.save({"weighting": {"bad": {1, 2}}}, tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


def test_numpy_values_round_trip_exactly(tmp_path):
    rng = np.random.get_state()
    obj = {"rng": rng, "alpha": np.array([[0.5, 2.0]], dtype=np.float64),
           "s": np.float32(1.5), "i": np.int64(3), "empty": np.zeros((0, 2), dtype=np.uint8),
           "t": (1, (2, 3), None), "x": torch.arange(3)}
    C.save(obj, tmp_path / "x.pt")
    back = C.load(tmp_path / "x.pt")
    assert back["rng"][0] == rng[0] and np.array_equal(back["rng"][1], rng[1])
    assert back["rng"][1].dtype == np.uint32 and back["rng"][2:] == rng[2:]
    assert np.array_equal(back["alpha"], obj["alpha"]) and back["alpha"].dtype == np.float64
    assert back["s"] == np.float32(1.5) and type(back["s"]) is np.float32
    assert type(back["i"]) is np.int64 and back["empty"].shape == (0, 2)
    assert back["t"] == (1, (2, 3), None) and torch.equal(back["x"], obj["x"])


# ------------------------------------------------------------------ every strategy
def _strategy_cases():
    out = []
    for name in weighting.names():
        hp = {"task": 0} if name == "STL" else {}
        if weighting.get(name).arch:  # AdvMTL, TchebycheffAdv on this HPS model: opt in
            hp["allow_without_discriminator"] = True
        mode = "param" if name == "GradDrop" else "auto"  # per-task reps: param mode
        out.append(pytest.param(name, hp, mode, id=name))
    return out


@pytest.mark.parametrize("name,hp,mode", _strategy_cases())
def test_every_strategy_checkpoints_safely_and_resumes_exactly(tmp_path, name, hp, mode):
    def run(run_name, crash=None, resume=False, model_seed=0):
        tr = Trainer(model_for(TOY, model_seed, 0.2), weighting.get(name, **hp), homogeneous(),
                     run_dir=tmp_path / run_name, epochs=2, steps_per_epoch=3, batch_size=8,
                     checkpoint_every=2, mode=mode, progress=False, scheduler="step",
                     step_size=1)
        if crash:
            tr.callbacks.append(crash_at(crash))
        return tr.fit(resume=resume)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = run("full")
        with pytest.raises(Interrupted):
            run("crashed", crash=5)
        torch.load(tmp_path / "crashed" / C.LAST, weights_only=True)  # the safe loader reads it
        resumed = run("crashed", resume=True, model_seed=7)
    pd.testing.assert_frame_equal(full.steps, resumed.steps)
    assert resumed.test == full.test


def test_a_state_dict_keeps_its_type_and_metadata(tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    sd = model.state_dict()
    C.save({"model": sd, "rng": np.random.get_state()}, tmp_path / "x.pt")
    back = C.load(tmp_path / "x.pt")["model"]
    assert type(back) is type(sd) and back._metadata == sd._metadata
    assert all(torch.equal(back[k], v) for k, v in sd.items())
