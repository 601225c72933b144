"""The RLW classification protocols (notebooks 56-59): the stand-in data, the method rows
and settings, the ResNet-18 weight mapping, the XTREME tokenisation and encoder, and the
verdict helpers, each checked against an independent computation."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from support import fx

from mtlkit import experiments, results
from mtlkit.data import digit_tasks as dt
from mtlkit.protocols import rlw_classification as proto
from mtlkit.protocols import rlw_findings as fnd
from mtlkit.protocols import rlw_multilingual as mtl


# ----------------------------------------------------------------------------- stand-ins
def _attributes_by_hand(a: int, b: int) -> dict[str, bool]:
    """The 40 attributes of one digit pair, written out independently of the module."""
    out = {}
    for side, d in (("l", a), ("r", b)):
        for k in range(10):
            out[f"{side}_is{k}"] = d == k
        out[f"{side}_even"] = d in (0, 2, 4, 6, 8)
        out[f"{side}_large"] = d in (5, 6, 7, 8, 9)
        out[f"{side}_prime"] = d in (2, 3, 5, 7)
        out[f"{side}_loop"] = d in (0, 6, 8, 9)
        out[f"{side}_straight"] = d in (1, 4, 7)
    out.update({"same": a == b, "l_greater": a > b, "sum_ge10": a + b > 9,
                "sum_even": (a + b) % 2 == 0, "both_even": a % 2 == 0 and b % 2 == 0,
                "both_large": min(a, b) >= 5, "any_zero": 0 in (a, b),
                "adjacent": abs(a - b) == 1, "sum_is9": a + b == 9, "prod_ge20": a * b >= 20})
    return out


def test_attribute_table_matches_definitions_for_every_pair():
    a, b = np.meshgrid(np.arange(10), np.arange(10), indexing="ij")
    table = dt.attribute_table(a.ravel(), b.ravel())
    assert table.shape == (100, 40) and len(set(dt.ATTRIBUTES)) == 40
    for row, (x, y) in zip(table, zip(a.ravel(), b.ravel())):
        want = _attributes_by_hand(int(x), int(y))
        assert [want[n] for n in dt.ATTRIBUTES] == row.astype(bool).tolist(), (x, y)
    # over uniform pairs the positive rate of l_is3 is 1/10 and of both_even 1/4
    assert table[:, dt.ATTRIBUTES.index("l_is3")].mean() == pytest.approx(0.1)
    assert table[:, dt.ATTRIBUTES.index("both_even")].mean() == pytest.approx(0.25)


def test_attribute_table_rejects_bad_digits():
    with pytest.raises(ValueError, match="0..9"):
        dt.attribute_table(np.array([10]), np.array([1]))
    with pytest.raises(ValueError, match="equal"):
        dt.attribute_table(np.array([1, 2]), np.array([1]))


def test_digit_attributes_labels_follow_the_canvas_digits():
    from mtlkit.data.multimnist import load_multimnist

    d = dt.load_digit_attributes(n_train=60, n_val=20, n_test=20, seed=3, cache=False)
    pairs = load_multimnist(n_train=60, n_val=20, n_test=20, seed=3, cache=False)
    assert len(d.tasks) == 40 and not d.homogeneous and "CelebA" in d.stands_in_for
    assert all(s.kind == "classification" and s.num_classes == 2 for s in d.tasks)
    x, y = d.test[7]
    px, py = pairs.test[7]
    assert torch.equal(x, px)
    want = _attributes_by_hand(int(py["left"]), int(py["right"]))
    assert {t: bool(v) for t, v in y.items()} == want
    with pytest.raises(ValueError, match="unknown attribute"):
        dt.load_digit_attributes(n_train=10, n_val=10, n_test=10, tasks=["smile"])


def test_render_domains():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(5, 28, 28)).astype(np.uint8)
    assert np.array_equal(dt.render("clean", x, rng), x)
    assert np.array_equal(dt.render("inverted", x, rng), 255 - x)
    const = np.full((2, 28, 28), 77, dtype=np.uint8)
    assert np.array_equal(dt.render("lowres", const, rng), const)  # a constant image survives
    # lowres keeps each 4x4 block's mean up to the smoothing of the upsampling
    low = dt.render("lowres", x, rng).astype(float)
    assert abs(low.mean() - x.mean()) < 2.0
    bg = np.full((3, 28, 28), 200, dtype=np.uint8)
    tex = dt.render("textured", x, rng, textures=bg)
    assert np.array_equal(tex, np.maximum(x, 120))  # max(digit, 0.6 * 200)
    with pytest.raises(ValueError, match="textures"):
        dt.render("textured", x, rng)
    with pytest.raises(ValueError, match="unknown domain"):
        dt.render("sketch", x, rng)


def _digest(a: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(a).tobytes()).hexdigest()


def test_digit_domains_sizes_splits_and_disjoint_images():
    d = dt.load_digit_domains("office_home", scale=0.05, seed=1)
    paper = dt.DOMAIN_SIZES["office_home"]
    sz = d.sizes()
    for t in d.task_names:
        n = sum(sz[s][t] for s in ("train", "val", "test"))
        assert n == round(0.05 * paper[t])
        assert sz["train"][t] == round(0.6 * n) and sz["train"][t] + sz["val"][t] == round(0.8 * n)
    assert d.homogeneous and [s.num_classes for s in d.tasks] == [10] * 4

    def images(domain):
        return [(255 * d.split(s)[domain].x[i, 0]).round().to(torch.uint8).numpy()
                for s in ("train", "val", "test") for i in range(len(d.split(s)[domain]))]

    clean = {_digest(a) for a in images("clean")}
    inverted = {_digest(255 - a) for a in images("inverted")}
    assert len(clean) > 100 and not clean & inverted  # no MNIST image is in two domains
    again = dt.load_digit_domains("office_home", scale=0.05, seed=1)
    assert torch.equal(again.train["lowres"].x, d.train["lowres"].x)


def test_digit_domains_n_images_and_errors():
    d = dt.load_digit_domains("office31", n_images=600)
    total = sum(sum(d.sizes()[s].values()) for s in ("train", "val", "test"))
    assert abs(total - 600) <= 3
    assert d.meta["paper_domain"]["lowres"] == "dslr"
    with pytest.raises(ValueError, match="variant"):
        dt.load_digit_domains("visda")
    with pytest.raises(ValueError, match="n_images"):
        dt.load_digit_domains(n_images=0)


# ----------------------------------------------------------------------------- settings
def test_table_rows_are_the_papers_fifteen():
    rows = proto.table_rows()
    assert len(rows) == 15 and rows[0] == "EW" and rows[-6:] == list(proto.RLW6)
    assert [proto.paper_label(r) for r in rows] == list(proto.PAPER_TABLE9)
    rep = proto.table_rows("rep")
    assert "MGDA-UB" in rep and "PCGrad@rep" in rep and "GradDrop" in rep and "UW" in rep
    assert [proto.paper_label(r) for r in rep] == list(proto.PAPER_TABLE9)
    parsed = {m.label: m for m in (experiments.parse_method(r) for r in rep)}
    assert parsed["PCGrad@rep"].mode == "rep" and parsed["MGDA-UB"].mode == "rep"
    assert parsed["RLW-bernoulli"].hparams == {"dist": "bernoulli"}
    with pytest.raises(ValueError):
        proto.table_rows("param")


def test_multi_input_problems_run_graddrop_on_the_parameters(tmp_path):
    """On a multi-input problem (one representation per domain's batch) GradDrop in its own
    representation mode is refused by the engine, so every Office and XTREME row list runs
    it as ``GradDrop@param`` (the old rows named plain ``GradDrop`` and failed mid-grid)."""
    assert proto.table_rows(per_task_inputs=True)[6] == "GradDrop@param"
    assert proto.table_rows("rep", per_task_inputs=True)[6] == "GradDrop@param"
    assert proto.table_rows()[6] == "GradDrop"  # a single input: its representation mode
    rows = [proto.setting("office", p).methods for p in ("teach", "paper-cpu", "full")]
    rows.append(mtl.setting("full").methods)
    assert all("GradDrop@param" in r and "GradDrop" not in r for r in rows)
    s = proto.setting("office", "smoke", epochs=1, n_images=200, batch_size=8)
    data = proto.load_data("digit_domains_office31", s)
    make = proto.model_factory(data)
    cfg = proto.train_config(s, "cpu", full=False)
    with pytest.raises(ValueError, match="not a reweighting"):
        experiments.run_one("GradDrop", data, make, cfg, 0, tmp_path / "rep")
    run = experiments.run_one("GradDrop@param", data, make, cfg, 0, tmp_path / "param")
    assert run.finite and run.method == "GradDrop@param"


def test_run_seeds_and_settings():
    assert proto.run_seeds([4], 3) == [4, 5, 6]
    assert proto.run_seeds([9, 2], 5) == [9, 2]
    with pytest.raises(ValueError):
        proto.run_seeds([0], 0)
    full = proto.setting("celeba", "full")
    assert full.datasets == ("celeba",) and full.batch_size == 512 and full.lr == 1e-3
    assert full.image_size == 64 and full.n_seeds >= 5 and len(full.methods) == 15
    office = proto.setting("office", "full")
    assert office.batch_size == 64 and office.image_size == 224 and office.n_seeds >= 5
    s = proto.setting("celeba", "teach", epochs=7, methods=["EW"], n_train=0)
    assert s.epochs == 7 and s.methods == ("EW",) and s.n_train == proto.setting(
        "celeba", "teach").n_train
    for problem, profiles in proto.SETTINGS.items():
        assert profiles["smoke"].n_seeds == 1 and all(
            p.n_seeds >= 3 for k, p in profiles.items() if k != "smoke"), problem
    with pytest.raises(ValueError, match="unknown setting"):
        proto.setting("celeba", "teach", colour=1)
    x = mtl.setting("full")
    assert x.lr == 2e-5 and x.weight_decay == 1e-8 and x.batch_size == 32
    assert x.problems == ("pi", "pos") and x.n_seeds >= 5
    with pytest.raises(ValueError, match="unknown problem"):
        mtl.setting("full", problems=["qa"])


def test_paper_tables_are_transcribed_consistently():
    """Each table's average column is the mean of its task columns (to the paper's
    rounding), which a mistyped cell would break."""
    for name, t in proto.PAPER_TABLE10.items():
        assert (t.iloc[:, :-1].mean(axis=1) - t["Avg"]).abs().max() < 0.011, name
    for name, t in mtl.PAPER_TABLES.items():
        t = t.dropna()
        assert (t.iloc[:, :-1].mean(axis=1) - t["Avg"]).abs().max() < 0.011, name
    assert max(proto.PAPER_TABLE9, key=proto.PAPER_TABLE9.get) == "IMTL"


# ----------------------------------------------------------------------------- models
def test_resnet_weights_file_gives_torchvision_features(tmp_path):
    import torchvision

    torch.manual_seed(3)
    net = torchvision.models.resnet18(weights=None).eval()
    for m in net.modules():  # non-trivial batch-norm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    path = tmp_path / "resnet18.pth"
    torch.save(net.state_dict(), path)
    enc = proto.resnet18(str(path)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        h = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        want = net.layer4(net.layer3(net.layer2(net.layer1(h))))
        assert torch.allclose(enc(x), want, atol=1e-5)
    with pytest.raises(FileNotFoundError, match="not a file"):
        proto.resnet18(str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match="not a torchvision ResNet"):
        proto.resnet_state_to_stages({"head.weight": torch.zeros(1)})


def test_model_factory_shapes():
    d = dt.load_digit_attributes(n_train=16, n_val=8, n_test=8)
    m = proto.model_factory(d)(0)
    out = m(torch.stack([d.train[i][0] for i in range(3)]))
    assert len(out) == 40 and all(tuple(v.shape) == (3, 2) for v in out.values())
    o = dt.load_digit_domains("office31", scale=0.05)
    m = proto.model_factory(o)(1)
    y = m(o.train["dslr" if "dslr" in o.task_names else "lowres"].x[:2], ["lowres"])
    assert tuple(y["lowres"].shape) == (2, 10)
    # the same seed gives the same model, another seed another one
    a, b, c = (proto.model_factory(o)(s) for s in (5, 5, 6))
    pa, pb, pc = (torch.cat([p.flatten() for p in m.parameters()]) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)


def test_normalize_uses_imagenet_statistics():
    x = torch.rand(1, 3, 4, 4)
    y = proto.Normalize()(x)
    assert torch.allclose(y[0, 1], (x[0, 1] - 0.456) / 0.224)


# ----------------------------------------------------------------------------- multilingual
@pytest.fixture(scope="module")
def minilm():
    from mtlkit.encoders.transformer import minilm_dir

    return str(minilm_dir())


def test_tokenize_tags_sit_on_first_subwords(minilm):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(minilm, local_files_only=True)
    words = ["The", "unbelievably", "tall", "giraffes"]
    pieces = [tok.tokenize(w) for w in words]
    assert max(len(p) for p in pieces) > 1  # a word that splits, or the test is vacuous
    x, y = mtl.tokenize_split([words, ["ok"]], [[3, 1, 4, 1], [2]], tok, 32, tagging=True)
    assert x.shape[:2] == (2, 2) and x.dtype == torch.int32
    firsts, pos = [], 1  # after [CLS]
    for p in pieces:
        firsts.append(pos)
        pos += len(p)
    want = torch.full((x.shape[2],), -1)
    want[firsts] = torch.tensor([3, 1, 4, 1])
    assert torch.equal(y[0], want)
    assert y[1].tolist()[:3] == [-1, 2, -1] and (y[1, 3:] == -1).all()


def test_tokenize_pairs_have_segment_ids(minilm):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(minilm, local_files_only=True)
    x, y = mtl.tokenize_split([("a cat sat", "on a mat"), ("yes", "no")], [1, 0], tok, 16,
                              tagging=False)
    assert y.tolist() == [1, 0]
    ids, types = x[0, 0], x[0, 1]
    sep = (ids == tok.sep_token_id).nonzero().flatten().tolist()
    assert len(sep) == 2 and (types[:sep[0] + 1] == 0).all() and (
        types[sep[0] + 1:sep[1] + 1] == 1).all()
    single, _ = mtl.tokenize_split(["just one"], [0], tok, 16, tagging=False)
    assert (single[0, 1] == 0).all()


def test_pair_encoder_trims_padding_without_changing_outputs(minilm):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(minilm, local_files_only=True)
    x, _ = mtl.tokenize_split([("a short one", "and"), ("a much longer sentence here", "b")],
                              [0, 1], tok, 24, tagging=False)
    x = torch.cat([x, torch.zeros(2, 2, 6, dtype=x.dtype)], dim=2)  # extra all-pad columns
    for pooling in ("cls", "mean"):
        enc = mtl.PairEncoder(minilm, pooling=pooling).eval()
        ids, types = x[:, 0].long(), x[:, 1].long()
        mask = (ids != enc.pad_id).long()
        with torch.no_grad():
            h = enc.model(input_ids=ids, attention_mask=mask,
                          token_type_ids=types).last_hidden_state
            want = h[:, 0] if pooling == "cls" else (h * mask[..., None]).sum(1) / mask.sum(
                1, keepdim=True)
            assert torch.allclose(enc(x), want, atol=1e-5)
    enc = mtl.PairEncoder(minilm, tokens=True).eval()
    with torch.no_grad():
        out = enc(x)
    n = int((x[:, 0] != enc.pad_id).sum(1).max())
    assert out.shape == (2, x.shape[2], enc.out_features) and (out[:, n:] == 0).all()


def test_stand_in_problem_and_split_sizes():
    s = mtl.setting("smoke")
    d = mtl.load_problem("sentiment", s)
    assert d.task_names == list(mtl.STAND_IN_DOMAINS) and "XTREME" in d.stands_in_for
    sizes = mtl.split_sizes(d)
    sz = d.sizes()
    t = d.task_names[0]
    assert sizes[t] == f"{sz['train'][t]}+{sz['val'][t]}+{sz['test'][t]}"


def test_table11_counts_the_prepared_files(tmp_path):
    fx.make_xtreme(tmp_path)
    table = mtl.table11(tmp_path)
    assert list(table.index) == ["en", "zh", "de", "es", "te", "vi"]
    for problem, langs in (("pos", ["en", "zh", "te", "vi"]), ("pi", ["en", "zh", "de", "es"])):
        for lang in langs:
            n = [len((tmp_path / "xtreme" / problem / lang / f"{s}.jsonl").read_text()
                     .splitlines()) for s in ("train", "dev", "test")]
            assert table.loc[lang, problem] == "+".join(map(str, n))
    assert table.loc["te", "pi"] == "-" and table.loc["de", "pos"] == "-"
    assert (mtl.table11(tmp_path / "nothing")["ner"] == "not prepared").all()


# ----------------------------------------------------------------------------- verdicts
def _records(values: dict[str, list[float]], tasks=("a", "b"), offsets=(0.0, 0.0)):
    """Tidy records per run: method m, seed s has val/test accuracy values[m][s] + the
    task's offset at the selected epoch 2, and 0.5 at epoch 1."""
    for m, vs in values.items():
        for s, v in enumerate(vs):
            rows = [{"task": t, "metric": "acc", "split": split, "epoch": epoch,
                     "value": (v + off) if epoch == 2 else 0.5}
                    for epoch in (1, 2) for t, off in zip(tasks, offsets)
                    for split in ("val", "test")]
            yield results.make_records(pd.DataFrame(rows), run_id=f"{m}-s{s}", dataset="d",
                                       architecture="HPS", method=m, hparams={}, seed=s,
                                       device="cpu", wall_time=1.0, chosen_epoch=2)


def records_of(values, **kw) -> pd.DataFrame:
    return pd.concat(list(_records(values, **kw)), ignore_index=True)


def test_with_average_and_summary_table():
    rec = records_of({"EW": [0.8, 0.82, 0.81], "RLW-normal": [0.9, 0.91, 0.92]},
                     offsets=(0.0, 0.1))
    avg = fnd.with_average(rec, "acc")
    one = avg[(avg["run_id"] == "EW-s1") & (avg["split"] == "test") & (avg["epoch"] == 2)]
    assert one[one["task"] == "avg"]["value"].item() == pytest.approx(0.82 + 0.05)
    assert len(avg) == len(rec) + 6 * 2 * 2  # one average per run, split and epoch
    table = fnd.summary_table(avg, ["EW", "RLW-normal"], ["a", "b"], "acc")
    assert table.loc["RLW-normal", "Avg"] == pytest.approx(100 * (0.91 + 0.05))
    ci = results.ci95([0.85, 0.87, 0.86])
    assert table.loc["EW", "±95% CI"] == pytest.approx(100 * ci)
    assert table.loc["EW", "seeds"] == 3
    small = fnd.compact(avg)
    assert set(small["split"]) == {"val", "test"} and (
        small["selected"] | (small["task"] == "avg")).all()
    with pytest.raises(ValueError, match="no 'f1'"):
        fnd.with_average(rec, "f1")


def test_all_better_comparable_and_baselines():
    ew = [0.80, 0.81, 0.79, 0.80, 0.82]
    noise = [0.001, -0.002, 0.0015, 0.0, -0.001]
    rec = fnd.with_average(records_of({
        "EW": ew,
        "RLW-a": [e + 0.05 + n for e, n in zip(ew, noise)],
        "RLW-b": [e + n for e, n in zip(ew, [0.004, -0.004, 0.002, -0.003, 0.001])],
        "GradVac": [e - 0.05 + n for e, n in zip(ew, noise)]}), "acc")
    f = fnd.all_better(rec, ["RLW-a"], "EW", "avg", "acc", "c", "s")
    assert f.supported is True and "better" in f.detail
    assert fnd.all_better(rec, ["RLW-a", "RLW-b"], "EW", "avg", "acc", "c", "s").supported is None
    assert fnd.all_better(rec, ["GradVac"], "EW", "avg", "acc", "c", "s").supported is False
    assert fnd.all_comparable(rec, ["RLW-b"], "EW", "avg", "acc", 0.01, "c", "s").supported
    assert fnd.all_comparable(rec, ["RLW-a"], "EW", "avg", "acc", 0.01, "c",
                              "s").supported is False
    v = fnd.versus_baselines(rec, ["RLW-a", "RLW-b"], ["GradVac"], "avg", "acc", 0.01, "c", "s",
                             how="better_than_most")
    assert v.supported is True
    pooled = fnd.pooled(rec, ["RLW-a", "RLW-b"], "avg", "acc")
    assert pooled.iloc[0] == pytest.approx(ew[0] + (0.05 + noise[0] + 0.004) / 2)
    assert fnd.is_weakest(rec, "GradVac", ["RLW-a", "RLW-b"], "avg", "acc", "c",
                          "s").supported is True
    assert fnd.is_best(rec, "RLW-a", ["EW", "RLW-b", "GradVac"], "avg", "acc", "c",
                       "s").supported is True
    assert fnd.is_best(rec, "RLW-b", ["EW", "RLW-a"], "avg", "acc", "c", "s").supported is False
    with pytest.raises(ValueError, match="how"):
        fnd.versus_baselines(rec, ["RLW-a"], ["EW"], "avg", "acc", 0.01, "c", "s", how="most")


def test_one_seed_is_never_a_verdict():
    rec = fnd.with_average(records_of({"EW": [0.5], "RLW-a": [0.9]}), "acc")
    assert fnd.all_better(rec, ["RLW-a"], "EW", "avg", "acc", "c", "s").supported is None


def test_comparable_three_ways():
    from mtlkit.verdicts import Comparison

    def c(lo, hi):
        return Comparison("a", "b", "m", 3, 3, (lo + hi) / 2, lo, hi, True)

    assert fnd.comparable(c(-0.5, 0.5), 1.0) is True
    assert fnd.comparable(c(1.5, 2.0), 1.0) is False
    assert fnd.comparable(c(0.5, 2.0), 1.0) is None
    assert fnd.comparable(c(-math.inf, math.inf), 1.0) is None


def test_same_cost_on_replicates():
    t = pd.DataFrame({"EW": [1.0, 1.02, 0.98, 1.01], "RLW-a": [1.01, 1.0, 0.99, 1.02],
                      "PCGrad": [2.0, 2.1, 1.9, 2.05]})
    assert fnd.same_cost(t, ["RLW-a"], "EW", 0.1, "c", "s").supported is True
    f = fnd.same_cost(t, ["RLW-a", "PCGrad"], "EW", 0.1, "c", "s")
    # medians 2.025 / 1.005 = 2.01
    assert f.supported is False and "PCGrad ×2.01" in f.detail and "replicates" in f.detail


def test_curves_auc_and_convergence_claims():
    rows = []
    for m, speed in (("EW", 1.0), ("RLW-n", 1.0), ("RLW-cb", 0.4)):
        for s in range(4):
            for e in range(1, 6):
                v = 0.9 - 0.4 * math.exp(-speed * e) + 0.002 * ((s * 7 + e) % 3 - 1)
                rows.append({"method": m, "seed": s, "task": "avg", "metric": "acc",
                             "split": "val", "epoch": e, "value": v})
    rec = pd.DataFrame(rows)
    cur = fnd.curves(rec, ["EW", "RLW-n", "RLW-cb"], "acc")
    ew1 = rec[(rec["method"] == "EW") & (rec["epoch"] == 1)]["value"]
    row = cur[(cur["method"] == "EW") & (cur["epoch"] == 1)].iloc[0]
    assert row["mean"] == pytest.approx(ew1.mean()) and row["n"] == 4
    assert row["hi"] - row["mean"] == pytest.approx(results.ci95(ew1.to_numpy()))
    auc = fnd.auc(rec, "EW", "acc", epochs=2)
    first = rec[(rec["method"] == "EW") & (rec["seed"] == 0) & (rec["epoch"] <= 2)]["value"]
    assert auc[0] == pytest.approx(first.mean())
    assert fnd.auc_claim(rec, ["RLW-n"], "EW", "acc", "c", "s", "same", 0.01).supported is True
    assert fnd.auc_claim(rec, ["RLW-cb"], "EW", "acc", "c", "s", "slower", 0.01).supported
    assert fnd.auc_claim(rec, ["RLW-n"], "EW", "acc", "c", "s", "slower",
                         0.01).supported is False
    with pytest.raises(ValueError, match="expect"):
        fnd.auc_claim(rec, ["RLW-n"], "EW", "acc", "c", "s", "faster", 0.01)


def test_step_time_replicates_columns_follow_the_methods():
    d = dt.load_digit_domains("office31", scale=0.03)
    make = proto.model_factory(d)
    from mtlkit.trainer import TrainConfig

    t = fnd.step_time_replicates(["EW", "RLW-normal"], d, make, TrainConfig(batch_size=4),
                                 replicates=2, steps=1, warmup=0)
    assert list(t.columns) == ["EW", "RLW-normal"] and len(t) == 2 and (t > 0).all().all()


def test_run_grid_lean_prunes_model_files(tmp_path):
    from mtlkit.trainer import TrainConfig

    d = dt.load_digit_domains("office31", scale=0.03)
    g = fnd.run_grid_lean(["EW", "NoSuchMethod"], [0, 1], d, proto.model_factory(d),
                          TrainConfig(epochs=1, batch_size=8, progress=False), tmp_path,
                          log=None)
    assert [(r.method, r.seed) for r in g.runs] == [("EW", 0), ("EW", 1)]
    assert len(g.skipped) == 1 and "NoSuchMethod" in g.skipped[0]
    run_dirs = sorted((tmp_path / "train").iterdir())
    assert len(run_dirs) == 2 and not list((tmp_path / "train").rglob("*.pt"))
    assert all((p / "summary.json").exists() for p in run_dirs)
    assert json.loads((run_dirs[0] / "summary.json").read_text())["method"] == "EW"
