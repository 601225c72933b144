"""Metrics and losses against hand-worked cases, torchmetrics, and rlw.md's own tables."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_f1_score,
    multiclass_jaccard_index,
)

from mtlkit import losses, metrics
from mtlkit.data.base import TaskSpec

# --------------------------------------------------------- classification


def test_accuracy_and_macro_f1_hand_worked():
    pred = torch.tensor([0, 1, 1, 2])
    target = torch.tensor([0, 1, 2, 2])
    assert metrics.accuracy(pred, target) == pytest.approx(0.75)
    # F1: class 0 = 1, class 1 = 2/(2+1) = 2/3, class 2 = 2/(2+1) = 2/3
    assert metrics.macro_f1(pred, target, 3) == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)


def test_f1_ignores_classes_never_seen():
    pred, target = torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1])
    # class 2 never occurs: F1 over classes {0, 1} = (2/3 + 2/3) / 2
    assert metrics.macro_f1(pred, target, 3) == pytest.approx(2 / 3)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 6))
def test_confusion_metrics_match_torchmetrics(seed, c):
    g = torch.Generator().manual_seed(seed)
    target = torch.cat([torch.arange(c), torch.randint(0, c, (60,), generator=g)])
    pred = torch.cat([torch.arange(c), torch.randint(0, c, (60,), generator=g)])
    acc = multiclass_accuracy(pred, target, num_classes=c, average="micro")
    f1 = multiclass_f1_score(pred, target, num_classes=c, average="macro")
    assert metrics.accuracy(pred, target) == pytest.approx(float(acc), abs=1e-6)
    assert metrics.macro_f1(pred, target, c) == pytest.approx(float(f1), abs=1e-6)


def test_streaming_equals_one_shot_and_uses_logits():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 4, generator=g)
    y = torch.randint(0, 4, (50,), generator=g)
    m = metrics.metric_for(TaskSpec("t", "classification", 4))
    for i in range(0, 50, 7):
        m.update(logits[i:i + 7], y[i:i + 7])
    res = m.compute()
    assert res["acc"] == pytest.approx(metrics.accuracy(logits.argmax(1), y))
    assert res["f1"] == pytest.approx(metrics.macro_f1(logits.argmax(1), y, 4))
    m.reset()
    assert math.isnan(m.compute()["acc"])


def test_tagging_token_level_ignores_padding():
    # (N=1, L=4, C=3) logits; last token is padding (-1) and wrong: must not count
    pred_labels = torch.tensor([[0, 1, 2, 0]])
    logits = F.one_hot(pred_labels, 3).float()
    y = torch.tensor([[0, 1, 1, -1]])
    m = metrics.metric_for(TaskSpec("pos", "tagging", 3, ignore_index=-1))
    m.update(logits, y)
    res = m.compute()
    assert res["acc"] == pytest.approx(2 / 3)
    # class 0: F1 1; class 1: tp 1, fn 1 -> 2/3; class 2: fp 1 -> 0
    assert res["f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)


def test_multilabel_metric_hand_worked():
    logits = torch.tensor([[1.0, -1.0], [1.0, 1.0]])
    y = torch.tensor([[1, 0], [0, 1]])
    m = metrics.metric_for(TaskSpec("attrs", "multilabel", 2))
    m.update(logits, y)
    res = m.compute()
    assert res["acc"] == pytest.approx(3 / 4)
    # label 0: tp 1 fp 1 -> 2/3; label 1: tp 1 -> 1
    assert res["f1"] == pytest.approx((2 / 3 + 1) / 2)


# ------------------------------------------------------------ segmentation


def test_miou_and_pixel_accuracy_hand_worked_with_void():
    target = torch.tensor([[0, 0, 1, 255]])
    pred = torch.tensor([[0, 1, 1, 0]])
    # void pixel skipped; class 0: tp 1, union 2 -> 1/2; class 1: tp 1, union 2 -> 1/2
    assert metrics.miou(pred, target, 2, ignore_index=255) == pytest.approx(0.5)
    cm = metrics.confusion_matrix(pred, target, 2, ignore_index=255)
    assert metrics.accuracy_from_cm(cm) == pytest.approx(2 / 3)


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 10_000))
def test_miou_matches_torchmetrics(seed):
    g = torch.Generator().manual_seed(seed)
    c = 4
    target = torch.randint(0, c, (2, 6, 6), generator=g)
    target[0, 0, :] = torch.arange(6) % c  # every class occurs
    target[1, 2, :3] = -1  # void
    logits = torch.randn(2, c, 6, 6, generator=g)
    m = metrics.metric_for(TaskSpec("seg", "segmentation", c, ignore_index=-1))
    m.update(logits[:1], target[:1])
    m.update(logits[1:], target[1:])
    ref = multiclass_jaccard_index(logits.argmax(1), target, num_classes=c, average="macro",
                                   ignore_index=-1)
    assert m.compute()["miou"] == pytest.approx(float(ref), abs=1e-6)


# ------------------------------------------------------------ depth, normals


def test_depth_errors_hand_worked_skip_invalid():
    target = torch.tensor([[[[2.0, 4.0], [0.0, float("nan")]]]])
    pred = torch.tensor([[[[3.0, 3.0], [9.0, 9.0]]]])
    m = metrics.DepthMetric()
    m.update(pred, target)
    res = m.compute()
    assert res["abs_err"] == pytest.approx(1.0)  # (1 + 1) / 2
    assert res["rel_err"] == pytest.approx((1 / 2 + 1 / 4) / 2)
    assert float(losses.depth_loss(pred, target)) == pytest.approx(1.0)


def _normals(vectors):
    """(1, 3, 1, k) tensor from k 3-vectors."""
    return torch.tensor(vectors, dtype=torch.float32).T.reshape(1, 3, 1, -1)


def test_normal_angles_hand_worked():
    c20, s20 = math.cos(math.radians(20)), math.sin(math.radians(20))
    gt = _normals([[0, 0, 1], [0, 0, 1], [0, 0, 1], [0, 0, 0]])
    pred = _normals([[0, 0, 2], [1, 0, 1], [s20, 0, c20], [1, 0, 0]])  # 0, 45, 20 deg, void
    m = metrics.NormalMetric()
    m.update(pred[..., :2], gt[..., :2])
    m.update(pred[..., 2:], gt[..., 2:])
    res = m.compute()
    assert res["mean_angle"] == pytest.approx(65 / 3, abs=1e-4)
    assert res["median_angle"] == pytest.approx(20.0, abs=1e-4)
    assert res["within_11.25"] == pytest.approx(1 / 3)
    assert res["within_22.5"] == pytest.approx(2 / 3)
    assert res["within_30"] == pytest.approx(2 / 3)
    expect = (0 + (1 - math.cos(math.radians(45))) + (1 - c20)) / 3
    assert float(losses.normals_loss(pred, gt)) == pytest.approx(expect, abs=1e-6)


# ------------------------------------------------------------------ losses


def test_segmentation_and_tagging_losses_skip_ignore_index():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 3, 1, 4, generator=g)
    y = torch.tensor([[[0, 2, -1, 1]]])
    crit = losses.criterion_for(TaskSpec("seg", "segmentation", 3, ignore_index=-1))
    keep = y.reshape(-1) != -1
    flat = logits.permute(0, 2, 3, 1).reshape(-1, 3)
    manual = -F.log_softmax(flat[keep], 1).gather(1, y.reshape(-1)[keep, None]).mean()
    assert float(crit(logits, y)) == pytest.approx(float(manual), abs=1e-6)
    tag = losses.criterion_for(TaskSpec("pos", "tagging", 3, ignore_index=-1))
    assert float(tag(flat[None], y.reshape(1, -1))) == pytest.approx(float(manual), abs=1e-6)
    all_void = torch.full_like(y, -1)
    assert float(crit(logits, all_void)) == 0.0


def test_regression_and_multilabel_losses():
    out, y = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 4.0])
    assert float(losses.regression_loss(out, y)) == pytest.approx((1 + 4) / 2)
    z = torch.tensor([[0.0]])
    assert float(losses.multilabel_loss(z, torch.tensor([[1]]))) == pytest.approx(math.log(2))


def test_unknown_kind_and_missing_classes_raise():
    spec = TaskSpec("x", "classification", None)
    with pytest.raises(ValueError, match="num_classes"):
        metrics.metric_for(spec)
    with pytest.raises(ValueError, match="kind"):
        TaskSpec("x", "ranking")


# ------------------------------------------------------------------ Δp, Δt

# rlw.md Table 1 (NYUv2): mIoU, PixAcc, AbsErr, RelErr, Mean, Median, 11.25, 22.5, 30
NAMES = ["miou", "pix_acc", "abs_err", "rel_err", "mean_angle", "median_angle",
         "within_11.25", "within_22.5", "within_30"]
TASKS = {"seg": NAMES[:2], "depth": NAMES[2:4], "normal": NAMES[4:]}
HIB = {n: metrics.HIGHER_IS_BETTER[n] for n in NAMES}
EW = [53.91, 75.56, 0.3840, 0.1567, 23.6338, 17.2451, 34.94, 60.65, 71.81]
TABLE1 = {  # method: (row, printed Δp)
    "RLW (Normal)": ([54.19, 75.98, 0.3789, 0.1570, 23.1984, 16.7944, 35.71, 61.74, 72.77], 1.02),
    "MGDA": ([53.66, 75.37, 0.3864, 0.1610, 23.4757, 16.9912, 35.44, 61.17, 72.16], -0.35),
    "GradVac": ([53.52, 75.43, 0.3840, 0.1559, 23.2892, 16.8601, 35.67, 61.53, 72.46], 0.48),
    "RLW (cB)": ([54.32, 75.78, 0.3779, 0.1533, 23.2101, 16.9354, 35.41, 61.44, 72.58], 1.29),
}


@pytest.mark.parametrize("method", sorted(TABLE1))
def test_delta_p_reproduces_rlw_table1(method):
    row, printed = TABLE1[method]
    got = metrics.delta_p(dict(zip(NAMES, row)), dict(zip(NAMES, EW)), HIB, TASKS)
    assert got == pytest.approx(printed, abs=0.006)
    as_printed = metrics.delta_p_printed(dict(zip(NAMES, row)), dict(zip(NAMES, EW)), HIB, TASKS)
    assert as_printed == pytest.approx(-printed, abs=0.006)  # the printed sign is flipped


def test_delta_p_hand_worked():
    # task a: acc 0.8 vs 0.5 -> +60%; task b: err 1.5 vs 2 -> +25% and acc 0.4 vs 0.5 -> -20%
    m = {"acc_a": 0.8, "err_b": 1.5, "acc_b": 0.4}
    b = {"acc_a": 0.5, "err_b": 2.0, "acc_b": 0.5}
    hib = {"acc_a": True, "err_b": False, "acc_b": True}
    tasks = {"a": ["acc_a"], "b": ["err_b", "acc_b"]}
    assert metrics.delta_p(m, b, hib, tasks) == pytest.approx(100 * (0.6 + (0.25 - 0.2) / 2) / 2)
    assert metrics.delta_p(b, b, hib, tasks) == 0.0
    with pytest.raises(ValueError, match="missing"):
        metrics.delta_p({"acc_a": 1.0}, b, hib, tasks)
    with pytest.raises(ValueError, match="divides"):
        metrics.delta_p(m, {**b, "acc_a": 0.0}, hib, tasks)


def test_delta_t():
    assert metrics.delta_t(3.0, 2.0) == pytest.approx(1.5)
    with pytest.raises(ValueError):
        metrics.delta_t(1.0, 0.0)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(0.1, 10.0), min_size=3, max_size=3),
       st.lists(st.floats(0.1, 10.0), min_size=3, max_size=3), st.floats(0.1, 100.0),
       st.floats(0.01, 1.0))
def test_delta_p_properties(m, b, scale, bump):
    names = ["acc", "err", "f1"]
    hib = {"acc": True, "err": False, "f1": True}
    tasks = {"one": ["acc", "err"], "two": ["f1"]}
    M, B = dict(zip(names, m)), dict(zip(names, b))
    dp = metrics.delta_p(M, B, hib, tasks)
    scaled = metrics.delta_p({k: scale * v for k, v in M.items()},
                             {k: scale * v for k, v in B.items()}, hib, tasks)
    assert scaled == pytest.approx(dp, rel=1e-9, abs=1e-9)  # unit-free
    better_acc = metrics.delta_p({**M, "acc": M["acc"] + bump}, B, hib, tasks)
    lower_err = metrics.delta_p({**M, "err": M["err"] - bump}, B, hib, tasks)
    assert better_acc > dp and lower_err > dp  # improving any metric raises Δp
    # each task counts once, whatever its number of metrics: "two" alone moves Δp by half
    assert metrics.delta_p({**M, "f1": B["f1"] * 1.1}, B, hib, tasks) == pytest.approx(
        metrics.delta_p({**M, "f1": B["f1"]}, B, hib, tasks) + 100 * 0.1 / 2)
