"""The text benchmark protocol (``mtlkit.protocols.metaweighting_text*``): each method on
the architecture it is defined on, the settings, the learning-rate search on validation,
the hypergradient step diagnosis, the cached transformer, the loss-gap probe and the
verdict helpers, each against an independent computation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from torch import nn

from mtlkit import results
from mtlkit import weighting as W
from mtlkit.arch import HPS, SharedPrivate
from mtlkit.data.base import MTLData, TaskSpec
from mtlkit.data.common import ArrayDataset
from mtlkit.protocols import metaweighting_text as P
from mtlkit.protocols import metaweighting_text_diagnosis as Dg
from mtlkit.protocols import metaweighting_text_gap as G
from mtlkit.protocols import metaweighting_text_models as M
from mtlkit.protocols import metaweighting_text_verdicts as V
from mtlkit.trainer import TrainConfig, Trainer, split_support_query
from mtlkit.weighting.metaweighting import project_simplex

TASKS = ("a", "b", "c")


class Enc(nn.Module):
    """A small encoder with the ``out_features`` attribute the protocol expects."""

    def __init__(self, seed: int, d_in: int = 6, d: int = 5) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(d_in, d), nn.Tanh(), nn.Dropout(0.2))
        self.out_features = d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def data(n: int = 40, seed: int = 0, name: str = "toy") -> MTLData:
    g = torch.Generator().manual_seed(seed)
    parts = {}
    for split, m in (("train", n), ("val", 20), ("test", 20)):
        parts[split] = {}
        for i, t in enumerate(TASKS):
            x = torch.randn(m, 6, generator=g)
            y = ((x[:, 0] + 0.5 * i * x[:, 1]) > 0).long()
            parts[split][t] = ArrayDataset(x, y)
    return MTLData(name, [TaskSpec(t, "classification", 2) for t in TASKS], True,
                   parts["train"], parts["val"], parts["test"])


def factories(d: MTLData) -> dict:
    return {a: M.model_factory(a, d, Enc) for a in M.ARCHS}


def cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 2, "batch_size": 8, "lr": 1e-2, "progress": False,
                          "select": "acc", **kw})


# ------------------------------------------------------------ method -> architecture
@pytest.mark.parametrize("spec,arch", [("AdvMTL", "SharedPrivate"),
                                       ("TchebycheffAdv", "SharedPrivate"), ("EW", "HPS"),
                                       ("Tchebycheff", "HPS"), ("MetaWeighting(alpha: 0.5)",
                                                                "HPS"), ("MGDA@param", "HPS")])
def test_required_arch(spec, arch):
    assert M.required_arch(spec) == arch


def test_a_mismatch_is_refused_both_ways():
    d = data()
    hps, sp = factories(d)["HPS"](0), factories(d)["SharedPrivate"](0)
    assert isinstance(hps, HPS) and isinstance(sp, SharedPrivate)
    with pytest.raises(ValueError, match="shared-private"):
        M.check_model(P.Row("AdvMTL", "AdvMTL", "paper").method(), hps)
    with pytest.raises(ValueError, match="hard parameter sharing"):
        M.check_model(P.Row("EW", "EW", "paper").method(), sp)
    M.check_model("TchebycheffAdv", sp)
    M.check_model("EW", hps)
    # a factory table that hands out HPS for every architecture cannot train AdvMTL
    with pytest.raises(ValueError, match="shared-private"):
        M.checked_factory("AdvMTL", {"HPS": factories(d)["HPS"],
                                     "SharedPrivate": factories(d)["HPS"]})(0)
    with pytest.raises(ValueError, match="no SharedPrivate factory"):
        M.checked_factory("AdvMTL", {"HPS": factories(d)["HPS"]})


def test_rows_train_their_architecture(tmp_path):
    d = data()
    rows = [P.Row("EW", "EW", "paper"), P.Row("AdvMTL", "AdvMTL", "paper")]
    grid = P.run_rows(rows, [0], d, factories(d), cfg(epochs=1), tmp_path, log=None)
    arch = grid.records.groupby("method")["architecture"].first().to_dict()
    assert arch == {"EW": "HPS", "AdvMTL": "SharedPrivate"}
    assert all(r.startswith("toy/") for r in grid.records["run_id"])


def test_shared_private_parts():
    d = data()
    m = factories(d)["SharedPrivate"](3)
    shared = {id(p) for p in m.shared_parameters()}
    own = {id(p) for t in TASKS for p in m.task_parameters(t)}
    assert shared and own and not shared & own
    assert {id(p) for p in m.shared.parameters()} == shared
    # private encoders are distinct modules with distinct initialisations
    w = [m.private[t].net[0].weight for t in TASKS]
    assert not torch.equal(w[0], w[1])


def test_paper_rows():
    p = P.problem_of("topics")
    cnn = [r.label for r in P.paper_rows(p)]
    bert = [r.label for r in P.paper_rows(p, "transformer")]
    assert cnn == ["STL", "EW", "UW", "GradNorm", "MGDA", "AdvMTL", "TchebycheffAdv",
                   "BanditMTL", "MetaWeighting"]
    assert "AdvMTL" not in bert and "TchebycheffAdv" not in bert and "Tchebycheff" in bert
    mw = P.paper_rows(p)[-1]
    assert not mw.search and mw.method().hparams["alpha"] == 0.5
    assert P.paper_rows(P.problem_of("sentiment"))[-1].method().hparams["alpha"] == 0.1
    act = P.acting_row(mw, 123.0)
    assert act.method().hparams["alpha"] == 123.0 and "acting" in act.label and not act.search
    assert [r.label for r in P.extra_rows(["all"], exclude=["Tchebycheff"])][:2] == \
        ["RLW", "AutoLambda"]
    with pytest.raises(ValueError, match="unknown extra"):
        P.extra_rows(["Nope"])


# ------------------------------------------------------------ settings
def test_settings_full_is_app_b(tmp_path):
    s = P.settings("full", str(tmp_path))
    assert (s.epochs, s.batch_size, s.lr, s.num_filters, s.kernel_sizes, s.query_ratio) == \
        (3000, 256, 1e-3, 100, (3, 5, 7), 0.1)
    assert s.lr_grid == P.LR_GRID and len(s.seeds) == 10 and s.glove_dim == 300
    assert s.glove_path.endswith("glove/glove.840B.300d.txt")
    assert (s.alpha_sentiment, s.alpha_topics) == (0.1, 0.5)
    t = P.transformer_settings("full")
    assert (t.lr, t.batch_size, t.max_length, t.epochs, t.train_layers, t.model) == \
        (2e-5, 32, 256, 50, 0, "bert-base-uncased")


def test_settings_parameters():
    s = P.settings("teach", seeds=[5], epochs=0, lr=0.0, extras=[])
    assert s.seeds == (5, 6, 7) and s.epochs == P.PROFILE_SETTINGS["teach"]["epochs"]
    assert P.settings("teach", seeds=[1, 4]).seeds == (1, 4)
    with pytest.raises(ValueError, match="overlap"):
        P.settings("teach", seeds=[1000, 1001])
    with pytest.raises(ValueError, match="unknown setting"):
        P.settings("teach", nope=1)
    with pytest.raises(ValueError, match="not one of"):
        P.settings("teach", datasets=["cifar"])
    assert P.transformer_settings("teach", train_layers=0).train_layers == 0
    assert P.transformer_settings("teach", train_layers=None).train_layers == 1
    assert P.settings("teach", alpha_topics=7.0).problem("topics").alpha == 7.0


def test_glove_vectors_path(tmp_path):
    f = tmp_path / "g.txt"
    f.write_text("the 0.5 -1 2\ncat 1 1 1\n")
    g = M.glove_vectors(str(f), 3)
    assert g.dim == 3 and np.allclose(g["the"], [0.5, -1, 2])
    with pytest.raises(FileNotFoundError, match="GLOVE_PATH"):
        M.glove_vectors(str(tmp_path / "missing.txt"), 300)


# ------------------------------------------------------------ lr search
def test_lr_search_selects_on_validation_with_the_runs_lr(tmp_path):
    d = data()
    rows = [P.Row("UW", "UW", "paper"), P.Row("EW", "EW", "paper"),
            P.metaweighting_row(0.5)]
    grid = (1e-3, 3e-2)
    sr = P.lr_search(rows, grid, [1000], d, factories(d), cfg(), tmp_path, log=None)
    # MetaWeighting is not searched; UW's own "lr" (1e-4) must not be read as the run's lr
    assert set(sr.chosen) == {"UW", "EW"} and set(sr.chosen.values()) <= set(grid)
    rec = sr.records
    val = rec[(rec["split"] == "val") & (rec["metric"] == "acc") & rec["selected"]]
    for row in ("UW", "EW"):
        means = {lr: val[(val["method"] == row) & (val["lr"] == lr)]["value"].mean()
                 for lr in grid}
        assert means[sr.chosen[row]] == max(means.values())
    assert set(sr.scores["n_runs"]) == {1}


def test_lr_search_with_one_lr_trains_nothing(tmp_path):
    d = data()
    sr = P.lr_search([P.Row("EW", "EW", "paper")], [2e-3], [1000], d, factories(d), cfg(),
                     tmp_path, log=None)
    assert sr.chosen == {"EW": 2e-3} and not list(tmp_path.iterdir())


# ------------------------------------------------------------ the step diagnosis
def test_only_the_centred_direction_moves_w_on_the_simplex():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        w = project_simplex(torch.rand(5, generator=g, dtype=torch.float64) * 3, 5.0)
        dc = torch.randn(5, generator=g, dtype=torch.float64)
        a = project_simplex(w - 0.3 * dc, 5.0)
        b = project_simplex(w - 0.3 * Dg.acting_part(dc, "simplex"), 5.0)
        assert torch.allclose(a, b, atol=1e-12)
        # non-expansive: one step moves w by at most alpha ||e||
        assert (a - w).norm() <= 0.3 * Dg.acting_part(dc, "simplex").norm() + 1e-12


def probe_run(alpha: float, tmp_path, epochs: int = 2):
    d = data()
    m = P.metaweighting_row(alpha).method()
    return Dg.probe_run(m, d, M.checked_factory(m, factories(d)), cfg(epochs=epochs, lr=1e-2),
                        0, tmp_path / f"a{alpha}")


def test_probe_records_the_strategy_and_the_bound_holds(tmp_path):
    diag, res = probe_run(0.5, tmp_path)
    f = diag.frame
    steps = res.steps
    assert len(f) == len(steps) - 1  # the first step has no hypergradient
    # the weights the probe saw are the ones the trainer logged
    w_log = steps[[f"weight/{t}" for t in TASKS]].to_numpy()[1:]
    assert np.allclose(f[[f"w/{i}" for i in range(3)]].to_numpy(), w_log, atol=1e-6)
    assert diag.eta_over_T == pytest.approx(1e-2 / 3)
    assert diag.moved <= diag.bound + 1e-12 and diag.bound == pytest.approx(
        f["step_norm"].sum() / 3)
    # |D| / (eta/T) is the inner product of gradients: check one against the strategy's D
    assert diag.inner_product == pytest.approx(float(f["D_abs_median"].median()) * 3 / 1e-2)


def test_acting_alpha_reaches_the_radius(tmp_path):
    diag, _ = probe_run(0.5, tmp_path)
    a = Dg.acting_alpha(diag, digits=6)
    per_unit = diag.frame["acting_norm"].sum()
    assert a * per_unit / diag.T == pytest.approx(math.sqrt(1 - 1 / 3), rel=1e-5)
    # at that alpha the weights really move far more than at the paper's
    diag_act, _ = probe_run(a, tmp_path)
    assert diag_act.moved > 100 * diag.moved


def test_probe_refuses_a_non_hypergradient_strategy(tmp_path):
    d = data()
    with pytest.raises(ValueError, match="hypergradient"):
        Dg.probe_run(P.Row("EW", "EW", "paper").method(), d, factories(d)["HPS"], cfg(), 0,
                     tmp_path)


def test_moved_weights():
    steps = pd.DataFrame({"step": [1, 2, 3], "weight/a": [0.5, 0.52, 0.49],
                          "weight/b": [0.5, 0.48, 0.51]})
    assert Dg.moved_weights(steps) == pytest.approx(0.02)


# ------------------------------------------------------------ transformer
def test_top_layers_equal_the_whole_model():
    from mtlkit.encoders.transformer import load_pretrained

    bert, tok = load_pretrained(None)
    bert.eval()
    texts = ["the flu season is here", "a short one", "markets rally as rates fall again"]
    ids = tok(texts, padding="max_length", truncation=True, max_length=16, return_tensors="pt")
    with torch.no_grad():
        whole = bert(**ids).last_hidden_state[:, 0]
        n = len(bert.encoder.layer)
        for k in (1, 2):
            top = M.TopLayers(bert, k).eval()
            packed = M.bottom_states(bert, tok, texts, n - k, 16)
            assert packed.shape == (3, 16, bert.config.hidden_size + 1)
            assert torch.allclose(top(packed), whole, atol=1e-5)
        # cls_layer is the last layer's first position
        h = bert(**ids, output_hidden_states=True).hidden_states[n - 1]
        ext = (1.0 - ids["attention_mask"][:, None, None, :].float()) * torch.finfo(h.dtype).min
        full = bert.encoder.layer[-1](h, attention_mask=ext)
        full = full[0] if isinstance(full, tuple) else full
        assert torch.allclose(M.cls_layer(bert.encoder.layer[-1], h, ext), full[:, 0],
                              atol=1e-5)
    with pytest.raises(ValueError, match="layers"):
        M.TopLayers(bert, n + 1)


# ------------------------------------------------------------ loss gap
def test_support_loss_is_the_eval_loss_and_leaves_training_alone(tmp_path):
    d = data(n=30)
    c = cfg(epochs=3, query_ratio=0.2)
    probe = G.SupportLoss()
    tr = Trainer(factories(d)["HPS"](0), W.get("EW"), d, c, callbacks=[probe],
                 run_dir=tmp_path / "with")
    res = tr.fit()
    plain = Trainer(factories(d)["HPS"](0), W.get("EW"), d, c, run_dir=tmp_path / "plain").fit()
    # the probe draws no random numbers: the training trajectories are identical
    assert np.array_equal(res.steps["loss/a"], plain.steps["loss/a"])
    last = {r["task"]: r["value"] for r in probe.rows if r["epoch"] == 3}
    model = tr.model.eval()
    with torch.no_grad():
        for i, t in enumerate(TASKS):
            s, _ = split_support_query(d.train[t], 0.2, 0 + i)  # the trainer's split
            x = torch.stack([s[j][0] for j in range(len(s))])
            y = torch.stack([s[j][1] for j in range(len(s))])
            want = nn.functional.cross_entropy(model(x, [t])[t], y).item()
            assert last[t] == pytest.approx(want, rel=1e-5)
    rec = G.with_support(res.records, probe)
    assert set(rec["split"]) >= {"support", "query", "test"}
    gaps = G.gap_table(rec)
    assert np.allclose(gaps["train_gap"], (gaps["support"] - gaps["test"]).abs())
    assert np.allclose(gaps["query_gap"], (gaps["query"] - gaps["test"]).abs())
    with pytest.raises(ValueError, match="query split"):
        G.run_with_gap(d, factories(d)["HPS"], cfg(), 0, tmp_path / "noq")


def test_figure_epochs_and_rank_agreement():
    assert G.figure_epochs(list(range(50, 3001, 50)), 3000) == [500, 1000, 1500]
    assert G.figure_epochs([1, 2, 3, 4, 5, 6], 6) == [1, 2, 3]
    gaps = pd.DataFrame({"dataset": "x", "seed": 0, "epoch": 1, "task": list("abcd"),
                         "support": [1, 2, 3, 4], "query": [4, 3, 2, 1], "test": [4, 3, 2, 1.5]})
    r = G.rank_agreement(gaps).iloc[0]
    assert r["tau_train"] == pytest.approx(stats.kendalltau([1, 2, 3, 4], [4, 3, 2, 1.5])[0])
    assert r["tau_query"] == pytest.approx(1.0)


# ------------------------------------------------------------ tables and verdicts
def fake_records(values: dict[str, dict[str, list[float]]]) -> pd.DataFrame:
    """Selected test accuracy records: {method: {task: [value per seed]}}."""
    rows = []
    for m, per_task in values.items():
        for t, vs in per_task.items():
            for seed, v in enumerate(vs):
                rows.append({"run_id": f"{m}-s{seed}", "dataset": "x", "architecture": "HPS",
                             "method": m, "hparams": "{}", "seed": seed, "task": t,
                             "metric": "acc", "value": v, "split": "test", "epoch": 1,
                             "wall_time": 1.0, "device": "cpu", "selected": True})
    return pd.DataFrame(rows)[results.RECORD_COLUMNS]


def test_selected_records_keeps_the_selected_epoch_of_the_asked_splits_and_metrics():
    rec = fake_records({"A": {"t1": [0.5, 0.6]}})
    rec = pd.concat([rec, rec.assign(split="val"), rec.assign(split="train"),
                     rec.assign(metric="loss"), rec.assign(selected=False, epoch=2)],
                    ignore_index=True)
    out = P.selected_records(rec)
    assert len(out) == 4 and out["selected"].all() and (out["epoch"] == 1).all()
    assert set(out["split"]) == {"val", "test"} and set(out["metric"]) == {"acc"}
    both = P.selected_records(rec, splits=("test",), metrics=("acc", "loss"))
    assert len(both) == 4 and set(both["metric"]) == {"acc", "loss"}


def test_summary_table_against_scipy():
    rec = fake_records({"A": {"t1": [0.5, 0.6, 0.7], "t2": [0.1, 0.2, 0.6]}})
    long = results.summary_long(rec)
    avg = long[long["task"] == "average"].iloc[0]
    per_run = np.array([0.3, 0.4, 0.65])
    half = stats.t.ppf(0.975, 2) * per_run.std(ddof=1) / math.sqrt(3)
    assert avg["mean"] == pytest.approx(per_run.mean()) and avg["hi"] == pytest.approx(
        per_run.mean() + half)
    table = results.summary_table(rec)
    assert list(table.columns) == ["t1", "t2", "average"]
    assert table.loc["A", "t1"].startswith("0.600 ± 0.100 [")


def test_versus_and_beats_all():
    base = [0.50, 0.52, 0.48, 0.51, 0.49]
    up = [v + 0.1 for v in base]
    rec = fake_records({"MW": {"t1": up, "t2": up, "t3": base},
                        "EW": {"t1": base, "t2": base, "t3": base},
                        "UW": {"t1": base, "t2": [v - 0.2 for v in base], "t3": up}})
    vs = V.versus(rec, "MW", ["EW", "UW"])
    out = vs.set_index(["task", "baseline"])["outcome"]
    assert out["t1", "EW"] == "better" and out["t3", "UW"] == "worse"
    assert out["t3", "EW"] == "indistinguishable"
    ok, words = V.beats_all(vs)
    assert ok is False and "2 of 3" in words  # t3 is lost to UW
    assert V.beats_all(vs, share=2 / 3)[0] is True
    ok, _ = V.beats_all_on_average(vs)
    assert ok is None or ok is True


def test_sweep_verdicts():
    seeds = range(6)
    noise = [0.0, 0.01, -0.01, 0.005, -0.005, 0.0]
    peak = pd.DataFrame([{"level": lv, "seed": s, "value": m + noise[s]}
                         for lv, m in ((0.05, 0.5), (0.1, 0.6), (0.3, 0.55))
                         for s in seeds])
    assert V.interior_peak(peak)[0] is True
    mono = peak.assign(value=peak["level"] + pd.Series(noise * 3).to_numpy() * 0)
    assert V.interior_peak(mono)[0] is False
    sl = V.slopes(peak)
    x = np.array([0.05, 0.1, 0.3])
    assert sl[0] == pytest.approx(np.polyfit(x, [0.5, 0.6, 0.55], 1)[0])
    flat = peak.assign(value=0.6 + peak["seed"].map(dict(enumerate(noise))))
    assert V.insensitive(flat, [0.05, 0.1, 0.3], 0.01)[0] is True
    assert V.insensitive(peak, [0.05, 0.1], 0.01)[0] is False


def test_weights_frame_thins():
    steps = pd.DataFrame({"step": range(1, 1001), "weight/a": np.linspace(0, 1, 1000)})

    class G_:
        def steps(self):
            return {"MW": steps}
    wf = P.weights_frame(G_(), "x", ["MW", "absent"], max_points=100)
    assert len(wf) == 100 and list(wf.columns[:3]) == ["dataset", "method", "step"]


def test_relative_orth_weight_puts_the_penalty_at_a_share_of_the_task_loss():
    from torch.utils.data import DataLoader

    d = data()
    gamma = M.relative_orth_weight(d, Enc, relative=0.01, batch_size=8, seed=2)
    model = M.model_factory("SharedPrivate", d, Enc, adv_weight=0.0, orth_weight=gamma)(2).eval()
    with torch.no_grad():
        ce, orth = [], 0.0
        for t in TASKS:
            x, y = next(iter(DataLoader(d.train[t], batch_size=8)))
            ce.append(nn.functional.cross_entropy(model(x, [t])[t], y).item())
            s, p = model.shared(x), model.private[t](x)
            orth += float(((s.T @ p) ** 2).sum())
    assert gamma * orth == pytest.approx(0.01 * np.mean(ce), rel=1e-4)
    m = M.model_factory("SharedPrivate", d, Enc, adv_weight=0.3, orth_weight=gamma)(0)
    assert (m.adv_weight, m.orth_weight) == (0.3, gamma)


def test_fixed_lr_row():
    r = P.fixed_lr_row("EW", 1e-3)
    assert not r.search and r.method().name == "EW" and r.group == "extra" and "0.001" in r.label
