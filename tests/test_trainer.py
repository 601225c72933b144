"""The trainer: determinism, exact resumption, selection on validation only,
support/query split, no overwriting, clipping, both data layouts."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from mtlkit import weighting
from mtlkit.arch.hps import HPS
from mtlkit.data.base import MTLData, TaskSpec
from mtlkit.trainer import Interrupted, Stream, TrainConfig, Trainer, split_support_query
from mtlkit.trainer import _fresh_dir as fresh_dir


def homogeneous(n=(48, 32), seed=0, test_noise=False) -> MTLData:
    """Two small classification tasks, each with its own inputs."""
    g = torch.Generator().manual_seed(seed)
    tasks = [TaskSpec("a", "classification", 3), TaskSpec("b", "classification", 2)]

    def ds(m, task):
        x = torch.randn(m, 5, generator=g)
        y = (x[:, 0] > 0).long() + (x[:, 1] > 1).long() if task == "a" else (x[:, 2] > 0).long()
        return TensorDataset(x, y)

    splits = {s: {"a": ds(n[0], "a"), "b": ds(n[1], "b")} for s in ("train", "val", "test")}
    if test_noise:  # scramble test labels: selection must not notice
        for t, k in (("a", 3), ("b", 2)):
            x, _ = splits["test"][t].tensors
            splits["test"][t] = TensorDataset(x, torch.randint(0, k, (len(x),), generator=g))
    return MTLData("toy", tasks, True, splits["train"], splits["val"], splits["test"])


class _Hetero(Dataset):
    def __init__(self, x, ya, yb):
        self.x, self.ya, self.yb = x, ya, yb

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], {"cls": self.ya[i], "reg": self.yb[i]}


def heterogeneous(n=40, seed=0) -> MTLData:
    """One input, two labels: classification and regression."""
    g = torch.Generator().manual_seed(seed)

    def ds():
        x = torch.randn(n, 5, generator=g)
        return _Hetero(x, (x[:, 0] > 0).long(), x[:, 1:3].sum(1, keepdim=True))

    tasks = [TaskSpec("cls", "classification", 2), TaskSpec("reg", "regression")]
    return MTLData("hetero", tasks, False, ds(), ds(), ds())


def model_for(tasks: dict[str, int], seed=0, dropout=0.0) -> HPS:
    torch.manual_seed(seed)
    enc = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Dropout(dropout))
    return HPS(enc, {t: nn.Linear(16, k) for t, k in tasks.items()})


TOY = {"a": 3, "b": 2}


def fit(tmp_path, name="run", data=None, method="EW", model_seed=0, **kw):
    data = data or homogeneous()
    model = model_for(TOY, model_seed, kw.pop("dropout", 0.0))
    kw = {"epochs": 3, "batch_size": 16, "progress": False, **kw}
    return Trainer(model, weighting.get(method), data, run_dir=tmp_path / name, **kw)


def test_ew_learns_and_writes_tidy_records(tmp_path):
    res = fit(tmp_path, epochs=6, lr=0.02).fit()
    train = res.records[(res.records["split"] == "train") & (res.records["metric"] == "loss")]
    first, last = train[train["epoch"] == 1]["value"], train[train["epoch"] == 6]["value"]
    assert (last.to_numpy() < first.to_numpy()).all()
    assert set(res.records["split"]) == {"train", "val", "test"}
    w = res.records[res.records["metric"] == "weight"]["value"]
    assert w.sub(0.5).abs().max() < 1e-7
    on_disk = pd.read_csv(res.run_dir / "records.csv")
    assert len(on_disk) == len(res.records)
    assert {"loss/a", "weight/b", "lr"} <= set(res.steps.columns)
    # homogeneous epoch = one pass over the largest task: ceil(48 / 16) steps
    assert len(res.steps) == 6 * 3


def test_selection_uses_validation_only(tmp_path):
    a = fit(tmp_path, "clean", epochs=5, lr=0.05).fit()
    b = fit(tmp_path, "noisy", data=homogeneous(test_noise=True), epochs=5, lr=0.05).fit()
    assert a.chosen_epoch == b.chosen_epoch
    val = a.records[(a.records["split"] == "val") & (a.records["metric"] == "loss")]
    mean_val = val.groupby("epoch")["value"].mean()
    assert a.chosen_epoch == int(mean_val.idxmin())
    test = a.records[(a.records["split"] == "test") & (a.records["epoch"] == a.chosen_epoch)]
    assert a.test["a"]["acc"] == pytest.approx(
        float(test[(test["task"] == "a") & (test["metric"] == "acc")]["value"].iloc[0]))
    assert a.records[a.records["selected"]]["epoch"].eq(a.chosen_epoch).all()


def test_same_seed_same_run_and_no_overwrite(tmp_path):
    r1 = fit(tmp_path, "same", method="RLW", dropout=0.2).fit()
    r2 = fit(tmp_path, "same", method="RLW", dropout=0.2).fit()
    assert r2.run_dir.name == "same-1" and r1.run_dir.name == "same"
    (tmp_path / "same-2").mkdir()
    (tmp_path / "same-2" / "notes.txt").write_text("someone else's")
    assert fresh_dir(tmp_path / "same").name == "same-3"
    pd.testing.assert_frame_equal(r1.steps, r2.steps)
    r3 = fit(tmp_path, "other", method="RLW", dropout=0.2, seed=1).fit()
    assert not r1.steps["loss/a"].equals(r3.steps["loss/a"])  # other batches


@pytest.mark.parametrize("method", ["RLW", "UW", "MetaWeighting"])  # random, learnt, bi-level
def test_resume_after_crash_matches_uninterrupted(tmp_path, method):
    kw = dict(method=method, dropout=0.3, epochs=4, checkpoint_every=5, scheduler="step",
              step_size=2, lr=0.01)
    full = fit(tmp_path, "full", **kw).fit()

    def crash(trainer, step, losses, weights):
        if step == 7:
            raise Interrupted("simulated crash")

    tr = fit(tmp_path, "crashed", **kw)
    tr.callbacks.append(crash)
    with pytest.raises(Interrupted):
        tr.fit()
    assert torch.load(tmp_path / "crashed" / "checkpoint.pt", weights_only=False)["step"] == 5
    # a fresh process would build a differently initialised model: resuming restores it
    resumed = fit(tmp_path, "crashed", model_seed=123, **kw).fit(resume=True)
    assert resumed.run_dir == tmp_path / "crashed"
    pd.testing.assert_frame_equal(full.steps, resumed.steps)
    assert resumed.chosen_epoch == full.chosen_epoch
    assert resumed.test == full.test
    cols = ["task", "metric", "value", "split", "epoch", "selected"]
    pd.testing.assert_frame_equal(full.records[cols], resumed.records[cols])


def test_resume_refuses_changed_config(tmp_path):
    fit(tmp_path, "r", epochs=1).fit()
    with pytest.raises(ValueError, match="configuration changed"):
        fit(tmp_path, "r", epochs=1, lr=0.5).fit(resume=True)


def test_stream_resumes_at_the_same_batch():
    ds = TensorDataset(torch.arange(10))
    s = Stream(ds, 4, seed=3, key=0)
    seen = [next(s)[0].tolist() for _ in range(5)]  # crosses a pass boundary (3 per pass)
    assert sorted(sum(seen[:3], [])) == list(range(10))
    s2 = Stream(ds, 4, seed=3, key=0)
    s2.load({"passes": 0, "used": 2})
    assert [next(s2)[0].tolist() for _ in range(3)] == seen[2:]


def test_support_query_split_is_disjoint_and_deterministic(tmp_path):
    ds = TensorDataset(torch.arange(50))
    s1, q1 = split_support_query(ds, 0.1, seed=0)
    s2, q2 = split_support_query(ds, 0.1, seed=0)
    assert q1.indices == q2.indices and len(q1) == 5 and len(s1) == 45
    assert not set(q1.indices) & set(s1.indices)
    res = fit(tmp_path, query_ratio=0.25).fit()
    q = res.records[res.records["split"] == "query"]
    assert set(q["task"]) == {"a", "b"} and (q["metric"] == "loss").all()


def test_needs_query_defaults_to_ten_percent_and_trains(tmp_path):
    tr = fit(tmp_path, method="MetaWeighting", epochs=2)
    assert tr.query_ratio == pytest.approx(0.1)
    assert fit(tmp_path, "ew").query_ratio == 0.0
    res = tr.fit()
    assert any(c.startswith("query_loss/") for c in res.steps.columns)
    w = res.steps[["weight/a", "weight/b"]].to_numpy()
    assert (w[1:] != w[:1]).any()  # the bi-level strategy moved its weights


@pytest.mark.parametrize("method", ["MGDA", "UW"])
def test_gradient_and_loss_strategies_share_the_loop(tmp_path, method):
    res = fit(tmp_path, method=method, epochs=1).fit()
    assert torch.isfinite(torch.tensor(res.steps["loss/a"].to_numpy())).all()


def test_heterogeneous_data_with_sgd_cosine_and_clipping(tmp_path):
    data = heterogeneous()
    model = model_for({"cls": 2, "reg": 1})
    res = Trainer(model, weighting.get("EW"), data, run_dir=tmp_path / "h", epochs=3,
                  batch_size=8, optimizer="sgd", scheduler="cosine", clip_grad=1.0,
                  progress=False, query_ratio=0.2).fit()
    assert set(res.test) == {"cls", "reg"}
    assert {"acc", "f1", "loss"} <= set(res.test["cls"]) and "mse" in res.test["reg"]
    assert len(res.steps) == 3 * 4  # 32 support examples / 8 per batch
    lrs = res.steps.groupby("epoch")["lr"].first().to_numpy()
    assert lrs[0] > lrs[1] > lrs[2]  # cosine decay per epoch


def test_clipping_bounds_the_update(tmp_path):
    model = model_for(TOY)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    cfg = TrainConfig(epochs=1, steps_per_epoch=1, batch_size=16, optimizer="sgd", lr=1.0,
                      momentum=0.0, clip_grad=1e-3, progress=False)
    Trainer(model, weighting.get("EW"), homogeneous(), cfg, run_dir=tmp_path / "c").fit()
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    step = float((after - before).norm())
    assert 0 < step <= 1e-3 + 1e-7


def test_bad_input_raises_clearly(tmp_path):
    with pytest.raises(ValueError, match="optimizer"):
        fit(tmp_path, optimizer="lbfgs")
    with pytest.raises(ValueError, match="unknown TrainConfig"):
        fit(tmp_path, learning_rate=0.1)
    with pytest.raises(ValueError, match="select"):
        fit(tmp_path, select="bleu")
    with pytest.raises(ValueError, match="differ"):
        Trainer(model_for({"b": 2, "a": 3}), weighting.get("EW"), homogeneous())


@pytest.mark.parametrize("method", ["EW", "Nash-MTL", "UPGrad"])
def test_a_diverged_run_stops_with_a_clear_message(tmp_path, method):
    """A loss that turns NaN at the third step stops the run with FloatingPointError (not a
    LinAlgError from a strategy's solver), and the message says what to do."""
    calls = {"n": 0}

    def nan_after_two(out, y):
        calls["n"] += 1
        loss = nn.functional.cross_entropy(out, y)
        return loss * float("nan") if calls["n"] > 4 else loss  # 2 tasks x 2 steps

    tr = fit(tmp_path, method=method, epochs=2)
    tr.criteria = {t: nan_after_two for t in TOY}
    with pytest.raises(FloatingPointError, match="diverged at step 3.*learning rate"):
        tr.fit()


class _NanGrad(torch.autograd.Function):
    """The identity whose backward returns NaN: a finite loss with a NaN gradient."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return g * float("nan")


@pytest.mark.parametrize("method", ["EW", "UW", "MGDA", "PCGrad"])
def test_a_nonfinite_gradient_stops_the_run_at_its_step(tmp_path, method):
    """Task a's loss stays finite, but its gradient is NaN at the third step: the run stops
    at step 3 naming the gradient and the task, before the update is applied (the old
    trainer applied it and blamed the loss of step 4)."""
    calls = {"n": 0}

    def nan_grad_at_three(out, y):
        calls["n"] += 1
        return nn.functional.cross_entropy(_NanGrad.apply(out) if calls["n"] == 3 else out, y)

    tr = fit(tmp_path, method=method, epochs=2)
    tr.criteria = {"a": nan_grad_at_three, "b": nn.functional.cross_entropy}
    with pytest.raises(FloatingPointError) as err:
        tr.fit()
    msg = str(err.value)
    assert "diverged at step 3:" in msg and "learning rate" in msg
    assert "gradient is not finite" in msg and "heads of tasks ['a']" in msg
    assert "loss of" not in msg
    assert all(torch.isfinite(p).all() for p in tr.model.parameters())  # not applied


def test_a_strategy_refusing_nonfinite_input_is_reported_with_the_step(tmp_path):
    """When the strategy itself raises on a non-finite loss (naming the task), the trainer's
    error keeps that message and adds the step."""
    from mtlkit.weighting.ew import EW

    class Strict(EW):
        calls = 0

        def combine(self, losses, grads=None):
            Strict.calls += 1
            if Strict.calls == 3:
                raise FloatingPointError("EW: the loss of task 'b' is not finite (nan)")
            return super().combine(losses, grads)

    tr = Trainer(model_for(TOY), Strict(), homogeneous(), run_dir=tmp_path / "s", epochs=2,
                 batch_size=16, progress=False)
    with pytest.raises(FloatingPointError,
                       match=r"diverged at step 3: EW: the loss of task 'b' is not finite.*"
                             "learning rate"):
        tr.fit()


def test_amp_and_channels_last_fall_back_on_cpu_with_a_warning(tmp_path):
    with pytest.warns(UserWarning, match="CUDA only"):
        tr = fit(tmp_path, amp="bf16", channels_last=True, epochs=1)
    assert tr.amp_dtype is None and not tr.channels_last
    res = tr.fit()
    assert res.meta["amp"] == "None"
    with pytest.raises(ValueError, match="amp"):
        fit(tmp_path, amp="fp8")


def test_finished_run_resumes_to_the_same_result_and_progress_may_change(tmp_path):
    first = fit(tmp_path, "done", epochs=2).fit()
    again = fit(tmp_path, "done", epochs=2, progress=True).fit(resume=True)
    assert again.run_dir == first.run_dir and again.test == first.test
    pd.testing.assert_frame_equal(first.steps, again.steps)


def test_dense_heterogeneous_tasks_segmentation_depth_normals(tmp_path):
    from mtlkit.data.scenes import load_scenes

    data = load_scenes(n_train=12, n_val=6, n_test=6, height=12, width=16, cache=False)
    torch.manual_seed(0)
    enc = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
    heads = {"segmentation": nn.Conv2d(8, data.tasks[0].num_classes, 1),
             "depth": nn.Conv2d(8, 1, 1), "normals": nn.Conv2d(8, 3, 1)}
    res = Trainer(HPS(enc, heads), weighting.get("MGDA"), data, run_dir=tmp_path / "d",
                  epochs=2, batch_size=4, progress=False).fit()
    assert {"miou", "pix_acc"} <= set(res.test["segmentation"])
    assert {"abs_err", "rel_err"} <= set(res.test["depth"])
    assert {"mean_angle", "median_angle", "within_11.25"} <= set(res.test["normals"])
    assert 0 <= res.test["normals"]["mean_angle"] <= 180
    assert 0 <= res.test["segmentation"]["miou"] <= 1
