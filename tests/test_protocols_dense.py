"""mtlkit.protocols.rlw_dense(_claims): the RLW paper's dense-prediction protocol.

Checked against independent computations: the paper's settings as §5.2 prints them, the
architecture rule (rep-mode strategies need one shared representation), maxF / RMSE /
the L1 normal loss against NumPy, Δp per seed against the formula, re-selection on the
test split, the convergence gap, the architecture-vs-weighting statistics on designs with
known effects, and the verdict rules on samples with known intervals.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from mtlkit import results
from mtlkit.data.scenes import load_scenes, pascal_targets
from mtlkit.protocols import rlw_dense as P
from mtlkit.protocols import rlw_dense_claims as C


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MTLKIT_CACHE", str(tmp_path / "cache"))


def _tiny(dataset: str = "nyuv2", **kw) -> P.Plan:
    return P.plan("smoke", dataset, **{"n_train": 8, "size": [16, 24], **kw})


# ---------------------------------------------------------------------- settings
def test_full_plans_are_the_papers_settings():
    nyu = P.plan("full", "nyuv2")
    assert (nyu.size, nyu.batch_size, nyu.lr, nyu.weight_decay, nyu.backbone) == (
        (288, 384), 8, 1e-4, 1e-5, "resnet50")
    assert (nyu.source, nyu.n_seeds, nyu.epochs, nyu.rates) == ("real", 5, 200, (12, 24, 36))
    city = P.plan("full", "cityscapes")
    assert (city.size, city.batch_size, city.backbone) == ((128, 256), 64, "resnet50")
    pas = P.plan("full", "pascal_context")
    assert (pas.size, pas.batch_size, pas.lr, pas.weight_decay, pas.backbone) == (
        (512, 512), 12, 1e-4, 1e-4, "resnet18")
    assert pas.setting.normal_loss == "l1" and nyu.setting.normal_loss == "cosine"
    assert P.plan("teach", "nyuv2").source == "scenes"
    assert P.plan("full", "nyuv2", "scenes").n_test == 654


def test_plan_overrides_and_bad_values():
    p = P.plan("teach", "nyuv2", epochs=7, size=[32, 40], lr=0.0, backbone="")
    assert (p.epochs, p.size, p.lr, p.backbone) == (7, (32, 40), 1e-3, "small")
    with pytest.raises(ValueError, match="DATASET"):
        P.plan("teach", "kitti")
    with pytest.raises(ValueError, match="IMAGE_SIZE"):
        P.plan("full", "nyuv2", size=[144, 192])
    with pytest.raises(ValueError, match="BACKBONE"):
        P.plan("full", "nyuv2", backbone="vgg16")
    with pytest.raises(ValueError, match="DATA"):
        P.plan("teach", "nyuv2", "imagenet")


def test_paper_numbers_as_printed():
    t1 = P.PAPER_DELTA_P[("nyuv2", "HPS")]
    assert len(t1) == 15 and t1["EW"] == 0
    assert (t1["MGDA"], t1["RLW-normal"], t1["RLW-constrained_bernoulli"]) == (-0.35, 1.02, 1.29)
    assert P.PAPER_DELTA_P[("nyuv2", "NDDR")]["IMTL"] == 2.00
    assert P.PAPER_DELTA_P[("cityscapes", "HPS")]["PCGrad"] == 2.79
    assert P.PAPER_DELTA_P[("pascal_context", "HPS")]["GradNorm"] == -1.94
    assert P.PAPER_DELTA_T["MGDA"] == 2.64 and P.PAPER_DELTA_T["RLW-uniform"] == 1.0


# ----------------------------------------------------------- architecture rule
@pytest.mark.parametrize("arch", ["MTAN", "cross-stitch", "NDDR"])
@pytest.mark.parametrize("spec", ["MGDA-UB", "GradDrop", "PCGrad@rep", "IMTL@rep"])
def test_rep_mode_without_a_shared_representation_is_refused(arch, spec):
    with pytest.raises(P.ArchitectureMismatch, match="one shared representation"):
        P.check_method(spec, arch)


@pytest.mark.parametrize("arch", list(P.ARCHS))
@pytest.mark.parametrize("spec", ["EW", "RLW-normal", "MGDA", "GradDrop@param", "UW@rep"])
def test_losses_and_param_modes_work_everywhere(arch, spec):
    assert P.check_method(spec, arch).label == spec


def test_hps_takes_rep_mode():
    assert P.check_method("MGDA-UB", "HPS").mode == "rep"


def test_mismatch_stops_a_grid_before_training(tmp_path):
    p = _tiny()
    data = P.load_data(p)
    with pytest.raises(P.ArchitectureMismatch):
        P.train_grid([P.parse_method("EW"), P.parse_method("MGDA-UB")], [0], data,
                     P.model_factory("MTAN", data, p), p.train_config("cpu"), tmp_path,
                     arch="MTAN", log=None)
    assert not (tmp_path / "train").exists()  # nothing trained, not even EW


def test_default_rows_per_architecture():
    hps, notes = P.methods_for("HPS")
    assert [m.label for m in hps] == list(P.TABLE_METHODS) and not notes
    mtan, notes = P.methods_for("mtan")
    labels = [m.label for m in mtan]
    assert "MGDA-UB" not in labels and "GradDrop@param" in labels and len(labels) == 15
    assert len(notes) == 2
    with pytest.raises(P.ArchitectureMismatch):
        P.methods_for("NDDR-CNN", ["EW", "MGDA-UB"])
    ok, notes = P.methods_for("HPS", ["EW", "NoSuchMethod"])
    assert [m.label for m in ok] == ["EW"] and "NoSuchMethod" in notes[0]
    with pytest.raises(ValueError, match="ARCH"):
        P.arch_name("transformer")


# ----------------------------------------------------------------------- models
@pytest.mark.parametrize("arch", list(P.ARCHS))
def test_every_architecture_outputs_every_task(arch):
    p = _tiny("pascal_context")
    data = P.load_data(p)
    model = P.build_model(arch, data.tasks, p, seed=0)
    assert model.shared_rep == (arch == "HPS")
    x, _ = data.train[0]
    out = model.eval()(x[None])
    assert {t: tuple(v.shape) for t, v in out.items()} == {
        "segmentation": (1, 7, 16, 24), "human_parts": (1, 7, 16, 24),
        "saliency": (1, 2, 16, 24), "normals": (1, 3, 16, 24)}
    torch.testing.assert_close(out["normals"].norm(dim=1), torch.ones(1, 16, 24))


def test_random_columns_are_independent():
    p = _tiny()
    m = P.build_model("cross-stitch", load_scenes(n_train=2, n_val=1, n_test=1, cache=False,
                                                  height=16, width=24).tasks, p, seed=0)
    w = [m.columns[t].stages[0][0].weight for t in m.tasks]
    assert not torch.equal(w[0], w[1])
    again = P.build_model("cross-stitch", load_scenes(n_train=2, n_val=1, n_test=1,
                                                      cache=False, height=16, width=24).tasks,
                          p, seed=0)
    assert torch.equal(again.columns[m.tasks[0]].stages[0][0].weight, w[0])  # seeded


def test_pretrained_weights_from_a_file(tmp_path):
    import torchvision

    ref = torchvision.models.resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    p = P.plan("full", "pascal_context", size=[32, 32], head_channels=8,
               pretrained=str(tmp_path / "r18.pth"))
    enc = P._backbone(p)
    torch.testing.assert_close(enc.stages[0][0].weight, ref.conv1.weight)
    torch.testing.assert_close(enc.stages[3][1].conv2.weight, ref.layer4[1].conv2.weight)
    torch.testing.assert_close(enc.stages[0][4][0].bn1.running_var, ref.layer1[0].bn1.running_var)
    assert enc.stages[2][0].conv2.dilation == (2, 2)  # dilated after loading
    wrong = torchvision.models.resnet34(weights=None)
    torch.save(wrong.state_dict(), tmp_path / "r34.pth")
    with pytest.raises(ValueError, match="not a torchvision ResNet"):
        P._backbone(P.plan("full", "pascal_context", pretrained=str(tmp_path / "r34.pth")))
    with pytest.raises(FileNotFoundError):
        P._backbone(P.plan("full", "pascal_context", pretrained=str(tmp_path / "none.pth")))


# ------------------------------------------------------------- losses, metrics
def test_l1_normal_loss_against_numpy():
    g = torch.Generator().manual_seed(1)
    out = torch.nn.functional.normalize(torch.randn(2, 3, 4, 5, generator=g), dim=1)
    y = torch.nn.functional.normalize(torch.randn(2, 3, 4, 5, generator=g), dim=1)
    y[0, :, 0, 0] = 0  # a pixel without a normal
    o, t = out.numpy(), y.numpy()
    valid = np.abs(t).sum(1) > 0
    want = np.abs(o - t).sum(1)[valid].mean()
    assert math.isclose(float(P.l1_normals_loss(out, y)), want, rel_tol=1e-6)


def test_maxf_against_numpy():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 2, 6, 7, generator=g)
    y = torch.randint(0, 2, (3, 6, 7), generator=g)
    y[0, 0] = -1
    m = P.SaliencyMaxF()
    m.update(logits[:2], y[:2])
    m.update(logits[2:], y[2:])  # pooled over batches
    prob = torch.softmax(logits, 1)[:, 1].numpy()
    t, keep = y.numpy(), y.numpy() >= 0
    best = 0.0
    for thr in np.linspace(0.2, 0.9, 15):
        pred = prob[keep] > thr
        fg = t[keep] == 1
        tp, fp, fn = (pred & fg).sum(), (pred & ~fg).sum(), (~pred & fg).sum()
        prec, rec = tp / max(tp + fp, 1e-12), tp / max(tp + fn, 1e-12)
        f = 1.3 * prec * rec / max(0.3 * prec + rec, 1e-12)
        best = max(best, f)
    assert math.isclose(m.compute()["maxf"], best, rel_tol=1e-9)


def test_normal_rmse_against_numpy():
    g = torch.Generator().manual_seed(3)
    out, y = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    m = P.NormalRMSE()
    m.update(out, y)
    o = out.numpy() / np.linalg.norm(out.numpy(), axis=1, keepdims=True)
    t = y.numpy() / np.linalg.norm(y.numpy(), axis=1, keepdims=True)
    ang = np.degrees(np.arccos(np.clip((o * t).sum(1), -1, 1)))
    assert math.isclose(m.compute()["rmse_angle"], float(np.sqrt((ang ** 2).mean())),
                        rel_tol=1e-6)


def test_pascal_stand_in_targets_follow_the_render():
    d = load_scenes(n_train=6, n_val=1, n_test=1, height=20, width=28, cache=False,
                    variant="pascal_context")
    assert d.task_names == ["segmentation", "human_parts", "saliency", "normals"]
    assert "PASCAL-Context" in d.stands_in_for
    for i in range(len(d.train)):
        _, y = d.train[i]
        seg, parts, sal, n = y["segmentation"], y["human_parts"], y["saliency"], y["normals"]
        assert torch.equal(sal, ((seg >= 3) & (seg <= 6)).long())
        on_obj = (seg >= 4) & (seg <= 6)
        assert torch.equal(parts == 0, ~on_obj)
        kind = (parts[on_obj] - 1) // 2
        assert torch.equal(kind, seg[on_obj] - 4)
        side = (parts[on_obj] - 1) % 2
        assert torch.equal(side == 0, n[1][on_obj] > 0.5)  # top faces point up
    direct = pascal_targets(torch.tensor([[[4, 0]]]), torch.tensor([[[[0.0, 0]], [[0.9, 0]],
                                                                      [[0.1, 1]]]]))
    assert direct["human_parts"].tolist() == [[[1, 0]]]
    with pytest.raises(ValueError, match="variant"):
        load_scenes(variant="kitti", cache=False)


# ---------------------------------------------------------------- Δp per seed
def _records(values: dict, metrics=("miou", "abs_err"), split="test", epoch=1,
             selected=True) -> pd.DataFrame:
    """values: {(method, seed): (miou, abs_err)} -> tidy records on task 'seg'/'dep'."""
    rows = []
    for (m, s), vals in values.items():
        for task, metric, v in zip(("seg", "dep"), metrics, vals):
            rows.append({"run_id": f"{m}-{s}", "dataset": "d", "architecture": "HPS",
                         "method": m, "hparams": "{}", "seed": s, "task": task,
                         "metric": metric, "value": v, "split": split, "epoch": epoch,
                         "wall_time": 1.0, "device": "cpu", "selected": selected})
    return pd.DataFrame(rows)[results.RECORD_COLUMNS]


def test_per_seed_delta_p_is_paired_by_seed():
    rec = _records({("EW", 0): (0.5, 2.0), ("EW", 1): (0.4, 1.0),
                    ("RLW", 0): (0.55, 1.8), ("RLW", 1): (0.4, 1.1)})
    dp = C.per_seed_delta_p(rec, {"seg": ["miou"], "dep": ["abs_err"]})
    want0 = 100 * ((0.55 - 0.5) / 0.5 + -(1.8 - 2.0) / 2.0) / 2
    want1 = 100 * (0 + -(1.1 - 1.0) / 1.0) / 2
    assert dp.loc[0, "RLW"] == pytest.approx(want0) and dp.loc[1, "RLW"] == pytest.approx(want1)
    assert (dp["EW"] == 0).all()
    zero = _records({("EW", 0): (0.0, 1.0), ("RLW", 0): (0.1, 1.0)})
    assert math.isnan(C.per_seed_delta_p(zero, {"seg": ["miou"], "dep": ["abs_err"]})
                      .loc[0, "RLW"])


def test_paper_table_leaves_out_a_zero_baseline_column():
    rec = _records({("EW", 0): (0.0, 2.0), ("RLW", 0): (0.1, 1.0)})
    table, notes = C.paper_table(rec, {"seg": ["miou"], "dep": ["abs_err"]})
    assert ("seg", "miou") not in table.columns and "seg/miou" in notes[0]
    assert table.loc["RLW", ("Δp", "↑")] == pytest.approx(50.0)


def test_reselect_chooses_on_the_test_loss():
    rows = []
    for epoch, (val_loss, test_loss) in enumerate([(1.0, 3.0), (2.0, 1.0)], start=1):
        for split, loss in (("val", val_loss), ("test", test_loss)):
            rows.append({"run_id": "r", "dataset": "d", "architecture": "HPS", "method": "EW",
                         "hparams": "{}", "seed": 0, "task": "t", "metric": "loss",
                         "value": loss, "split": split, "epoch": epoch, "wall_time": 1.0,
                         "device": "cpu", "selected": epoch == 1})
    rec = pd.DataFrame(rows)
    out = C.reselect(rec, "test")
    assert set(out[out["selected"]]["epoch"]) == {2}
    assert set(rec[rec["selected"]]["epoch"]) == {1}  # the input is not modified


def test_slim_records_keep_what_the_shipped_tables_and_fig1_read(tmp_path):
    parts = []
    for epoch in (1, 2, 3):
        for split in ("train", "val", "test"):
            parts.append(_records({("EW", 0): (0.123456789 * epoch, 2.0), ("RLW", 0): (0.2, 1.0)},
                                  split=split, epoch=epoch, selected=epoch == 2))
    rec = pd.concat(parts, ignore_index=True).assign(hparams='{"lr": 0.001}')
    slim = C.slim_records(rec, {"seg": "miou"})
    sel = slim[slim["selected"]]
    # the selected epoch on test and val, every metric; no training rows
    assert set(zip(sel["split"], sel["task"])) == {(s, t) for s in ("test", "val")
                                                   for t in ("seg", "dep")}
    assert set(sel["epoch"]) == {2} and "train" not in set(slim["split"])
    # the other epochs: validation values of the Fig. 1 metric only
    rest = slim[~slim["selected"]]
    assert set(zip(rest["split"], rest["task"], rest["epoch"])) == {("val", "seg", 1),
                                                                    ("val", "seg", 3)}
    # hparams on test rows only; values to 6 significant digits; the tables are unchanged
    assert (slim["hparams"] == "").eq(slim["split"] != "test").all()
    assert set(slim["value"]) == {0.123457, 0.246914, 0.370370, 0.2, 2.0, 1.0}  # 6 digits
    path = tmp_path / "records.csv"
    slim.to_csv(path, index=False)
    back = results.read_records(path)
    metrics = {"seg": ["miou"], "dep": ["abs_err"]}
    pd.testing.assert_frame_equal(C.per_seed_delta_p(back, metrics),
                                  C.per_seed_delta_p(rec, metrics), rtol=1e-5)


def test_convergence_gap_of_a_uniformly_better_curve():
    parts = []
    for epoch in (1, 2, 3):
        base = 0.2 * epoch
        parts.append(_records({("EW", 0): (base, 1.0), ("RLW", 0): (1.1 * base, 1.0),
                               ("EW", 1): (base, 1.0), ("RLW", 1): (1.1 * base, 1.0)},
                              split="val", epoch=epoch, selected=False))
    gap = C.convergence_gap(pd.concat(parts), {"seg": ["miou"], "dep": ["abs_err"]})
    assert gap["RLW"].tolist() == pytest.approx([5.0, 5.0])  # +10% on one of two tasks


# ----------------------------------------------------- architecture vs weighting
def _design(arch_eff, w_eff, seeds=(0, 1, 2), noise=0.0):
    rng = np.random.default_rng(0)
    rows = [{"seed": s, "architecture": a, "method": w,
             "value": ea + ew + s + noise * rng.standard_normal()}
            for s in seeds for a, ea in arch_eff.items() for w, ew in w_eff.items()]
    return pd.DataFrame(rows)


def test_effects_recover_known_spreads():
    arch = {"HPS": 0.0, "MTAN": 2.0, "cs": 4.0}
    weights = {"EW": 0.0, "UW": 0.5, "RLW": 1.0, "MGDA": -0.5}
    d = _design(arch, weights)
    eff = C.effects(d)
    assert eff["architecture"].tolist() == pytest.approx([np.std([0, 2, 4], ddof=1)] * 3)
    assert eff["weighting"].tolist() == pytest.approx([np.std([0, 0.5, 1, -0.5], ddof=1)] * 3)
    eta = C.eta_squared(d)
    assert sum(eta.values()) == pytest.approx(1.0)
    assert eta["interaction"] == pytest.approx(0.0, abs=1e-12)
    v, detail = C.claim_arch_matters_more(eff, eta)
    assert v is True and "share of variance" in detail  # the same gap at every seed
    noisy = C.effects(_design(arch, weights, seeds=range(6), noise=0.1))
    assert C.claim_arch_matters_more(noisy)[0] is True
    flipped = C.effects(_design({"HPS": 0.0, "MTAN": 0.1}, {"EW": 0.0, "RLW": 3.0},
                                seeds=range(6), noise=0.1))
    assert C.claim_arch_matters_more(flipped)[0] is False
    gains = C.arch_gains(d)
    assert gains["MTAN"].tolist() == pytest.approx([2.0] * 3)


def test_scores_by_cell_is_against_hps_ew_of_the_same_seed():
    a = _records({("EW", 0): (0.5, 1.0), ("RLW", 0): (0.6, 1.0)})
    b = _records({("EW", 0): (0.55, 1.0)}).assign(architecture="MTAN")
    s = C.scores_by_cell(pd.concat([a, b]), {"seg": ["miou"], "dep": ["abs_err"]})
    got = s.set_index(["architecture", "method"])["value"]
    assert got[("HPS", "RLW")] == pytest.approx(10.0)  # (0.6 - 0.5)/0.5 / 2 tasks
    assert got[("MTAN", "EW")] == pytest.approx(5.0)


# ---------------------------------------------------------------- verdict rules
def _dp(**cols):
    return pd.DataFrame(cols, index=range(len(next(iter(cols.values())))))


def test_comparable_and_outperforms_rules():
    tight = _dp(EW=[0.0] * 5, **{"RLW-normal": [0.3, 0.35, 0.25, 0.3, 0.32]})
    assert C.claim_comparable(tight, ["RLW-normal"])[0] is True
    assert C.claim_outperforms(tight, ["RLW-normal"])[0] is True
    worse = _dp(**{"RLW-normal": [-3.0, -3.1, -2.9, -3.05, -2.95]})
    assert C.claim_comparable(worse, ["RLW-normal"])[0] is False
    assert C.claim_outperforms(worse, ["RLW-normal"])[0] is False
    wide = _dp(**{"RLW-normal": [-4.0, 3.0, -2.0, 5.0, 0.5]})
    assert C.claim_comparable(wide, ["RLW-normal"])[0] is None
    assert C.claim_outperforms(wide, ["RLW-normal"])[0] is None


def test_bernoulli_rule():
    worse = _dp(**{"RLW-bernoulli": [-1.0, -1.2, -0.9], "RLW-constrained_bernoulli":
                   [-1.1, -0.8, -1.0], "RLW-normal": [0.5, 0.4, 0.6], "RLW-uniform":
                   [0.2, 0.3, 0.1]})
    assert C.claim_bernoulli_worse(worse)[0] is True
    assert C.claim_bernoulli_worse(-worse)[0] is False
    assert C.claim_bernoulli_worse(worse[["RLW-normal"]])[0] is None


def test_same_time_rule():
    same = pd.DataFrame({"EW": [1.0] * 4, "RLW-normal": [1.01, 0.99, 1.02, 1.0],
                         "MGDA": [2.1, 2.0, 2.2, 2.05]})
    v, detail = C.claim_same_time(same)
    assert v is True and "MGDA ×2.09" in detail
    slow = same.assign(**{"RLW-normal": [1.5, 1.6, 1.55, 1.52]})
    assert C.claim_same_time(slow)[0] is False
    assert C.claim_same_time(same.iloc[:1])[0] is None
    ratios = C.time_ratios(pd.DataFrame({"EW": [2.0, 4.0], "RLW-normal": [3.0, 4.0]}))
    assert ratios["RLW-normal"].tolist() == [1.5, 1.0]


def test_convergence_rule():
    close = _dp(**{m: [0.1, -0.1, 0.05, 0.0] for m in C.FIG1})
    assert C.claim_same_convergence(close)[0] is True
    behind = close.assign(**{"RLW-constrained_bernoulli": [-5.0, -5.2, -4.8, -5.1]})
    assert C.claim_same_convergence(behind)[0] is False


# ------------------------------------------------------------------------ runner
def test_a_diverged_run_is_listed_and_the_grid_goes_on(tmp_path):
    p = _tiny(epochs=1)
    data = P.load_data(p)
    crit = P.criteria(data, p)
    crit["depth"] = lambda out, y: out.sum() * float("nan")
    grid = P.train_grid([P.parse_method("EW"), P.parse_method("RLW-normal")], [0, 1], data,
                        P.model_factory("HPS", data, p), p.train_config("cpu"), tmp_path,
                        arch="HPS", crit=crit, log=None)
    assert grid.runs == [] and len(grid.failed) == 4
    assert all("diverged" in f for f in grid.failed)


def test_a_dense_grid_keeps_no_model_files_by_default(tmp_path):
    p = _tiny("pascal_context", epochs=1)
    data = P.load_data(p)
    P.train_grid([P.parse_method("EW")], [0], data, P.model_factory("HPS", data, p),
                 p.train_config("cpu"), tmp_path, arch="HPS", crit=P.criteria(data, p),
                 extras=p.setting.extras, log=None)
    (run,) = (tmp_path / "train").iterdir()
    assert (run / "summary.json").exists() and not list(run.glob("*.pt"))


def test_extras_are_recorded_at_the_selected_epoch(tmp_path):
    from mtlkit.checkpoints import load_weights

    p = _tiny("pascal_context", epochs=2)
    data = P.load_data(p)
    make = P.model_factory("HPS", data, p)
    grid = P.train_grid([P.parse_method("EW")], [0], data, make,
                        replace(p.train_config("cpu"), keep_files="best"), tmp_path, arch="HPS",
                        crit=P.criteria(data, p), extras=p.setting.extras, log=None)
    rec = grid.records
    chosen = int(rec[rec["selected"]]["epoch"].iloc[0])
    ex = rec[rec["metric"].isin(["maxf", "rmse_angle"])]
    assert set(zip(ex["task"], ex["metric"], ex["split"])) == {
        ("saliency", "maxf", "val"), ("saliency", "maxf", "test"),
        ("normals", "rmse_angle", "val"), ("normals", "rmse_angle", "test")}
    assert ex["selected"].all() and set(ex["epoch"]) == {chosen}
    assert (ex["architecture"] == "HPS").all() and (ex["method"] == "EW").all()
    model = make(0)
    run_dir = next((tmp_path / "train").iterdir())
    model.load_state_dict(load_weights(run_dir / "best_model.pt"))
    model.eval()
    xs = torch.stack([data.test[i][0] for i in range(len(data.test))])
    ys = torch.stack([data.test[i][1]["normals"] for i in range(len(data.test))])
    with torch.no_grad():
        n = model(xs)["normals"]
    m = P.NormalRMSE()
    m.update(n, ys)
    got = ex[(ex["metric"] == "rmse_angle") & (ex["split"] == "test")]["value"].item()
    assert got == pytest.approx(m.compute()["rmse_angle"], rel=1e-5)
    table, _ = C.paper_table(rec, p.setting.metrics)
    assert ("saliency", "maxf") in table.columns


@pytest.mark.parametrize("spelling, name", [("Cross_Stitch", "cross-stitch"),
                                             ("cross stitch", "cross-stitch"),
                                             ("NDDR_CNN", "NDDR"), ("DMTL", "HPS"),
                                             ("mtan", "MTAN")])
def test_architecture_names_follow_the_registry_rule(spelling, name):
    assert P.arch_name(spelling) == name


def test_gpu_step_cost_script_runs_on_a_cpu(tmp_path):
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "dense_step_costs.py"
    spec = importlib.util.spec_from_file_location("dense_step_costs", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "steps"
    assert mod.main(["--device", "cpu", "--backbone", "small", "--size", "16", "24",
                     "--batch", "2", "--arch", "HPS", "MTAN", "--methods", "EW", "RLW-normal",
                     "--replicates", "2", "--steps", "1", "--warmup", "0",
                     "--out", str(out)]) == 0
    table = pd.read_csv(out.with_suffix(".csv"))
    assert set(zip(table["architecture"], table["method"])) == {
        (a, m) for a in ("HPS", "MTAN") for m in ("EW", "RLW-normal", "EW()")}
    ew = table[table["method"] == "EW"]
    assert (ew["dt_step"] == 1.0).all() and table["peak_MiB"].isna().all()  # no CUDA here
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["machine"]["gpu"] is None and info["command"].startswith("python benchmarks")
    if not torch.cuda.is_available():  # a clear refusal, not a crash
        assert mod.main(["--device", "cuda", "--out", str(tmp_path / "x")]) == 2


# ----------------------------------------------------------------------- figures
def test_dense_figures_are_returned_and_saved(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from mtlkit import plots

    summary = pd.DataFrame({"mean": [0.0, 1.5], "ci95": [0.0, 0.4]}, index=["EW", "RLW"])
    curve = pd.DataFrame({"method": ["EW", "EW"], "epoch": [1, 2], "mean": [0.1, 0.2],
                          "ci95": [0.01, 0.02]})
    matrix = pd.DataFrame([[0.0, 1.0], [2.0, -1.0]], index=["HPS", "MTAN"],
                          columns=["EW", "RLW"])
    made = {"a.png": plots.seed_intervals({"run": summary}, reference={"RLW": 1.0},
                                          save=tmp_path / "a.png"),
            "b.png": plots.metric_curves({"miou": curve}, save=tmp_path / "b.png"),
            "c.png": plots.effect_heatmap(matrix, save=tmp_path / "c.png")}
    for name, fig in made.items():
        assert isinstance(fig, Figure) and (tmp_path / name).stat().st_size > 0, name
