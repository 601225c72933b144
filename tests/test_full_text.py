"""The ``full`` branch of notebooks 50, 52, 53 and 54 on tiny releases in exactly the layout
``data_scripts/`` writes (tests/fixtures: the Amazon ``unprocessed.tar.gz`` and
``20news-bydate.tar.gz`` shrunk, run through the real scripts), through the batch runner
as a user would run it.

Only the sizes are shrunk by parameters (few filters, one or two epochs, two seeds, small
batches); the paper's loaders, GloVe read from ``DATA_DIR/glove`` (a tiny 300-d file in the
GloVe text format), the transformer loaded by local path (the embedded MiniLM standing in
for BERT-base, fine-tuned whole as App. C does), the learning-rate search and every cell of
the notebooks are the real ones.  The 14-task Amazon layout runs through notebook 54 (cheap:
one method); the others run on 20 Newsgroups to stay within CI's budget.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from support import fx, run_full

from mtlkit import results

SMALL = ["-p", "SEEDS", "[0, 1]", "-p", "DEVICE", "cpu", "-p", "EVAL_EVERY", "1"]
CNN = ["-p", "FILTERS", "4", "-p", "BATCH_SIZE", "4", "-p", "EPOCHS", "2"]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MTLKIT_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """Amazon and 20 Newsgroups prepared by their data_scripts, and a 300-d GloVe text file
    under ``glove/`` (where ``full`` looks when GLOVE_PATH is empty)."""
    root = tmp_path_factory.mktemp("data")
    fx.make_amazon(root)
    fx.make_newsgroups(root)
    words = ["the", "item", "is", "great", "awful", "buy", "return", "again", "would", "body",
             "number", "sturdy", "weak", "quoted", ",", "&"]
    rng = np.random.default_rng(0)
    (root / "glove").mkdir()
    with open(root / "glove" / "glove.6B.300d.txt", "w", encoding="utf-8") as f:
        for w in words:
            f.write(w + " " + " ".join(f"{v:.4f}" for v in rng.normal(size=300)) + "\n")
    return root


def _run(notebook: str, root: Path, out: Path, *params: str) -> tuple[Path, dict, list]:
    run = run_full(notebook, out, "-p", "DATA_DIR", str(root), *SMALL, *params)
    return (run, json.loads((run / "metrics.json").read_text()),
            json.loads((run / "claims.json").read_text()))


def test_50_full_on_the_prepared_layout(tmp_path, data_root):
    run, metrics, claims = _run("50_benchmark_text_classification.ipynb", data_root,
                                tmp_path / "out", *CNN, "-p", "DATASETS", "[newsgroups]",
                                "-p", "LR_GRID", "[0.001, 0.005]", "-p", "EXTRAS", "[AutoLambda]")
    rec = results.read_records(run / "records.csv")
    assert set(rec["dataset"]) == {"newsgroups"}
    assert set(rec["seed"]) == {0, 1}
    arch = rec.groupby("method")["architecture"].first()
    assert arch["AdvMTL"] == "SharedPrivate" and arch["EW"] == "HPS"
    assert metrics["settings"]["glove_path"].endswith("glove/glove.6B.300d.txt")
    assert metrics["settings"]["num_filters"] == "4" and metrics["settings"]["epochs"] == "2"
    assert set(metrics["chosen_lr"]["newsgroups"].values()) <= {0.001, 0.005}
    assert any(c.get("kind") == "finding" and "Fig 3" in c["source"] for c in claims)
    for f in ("fig3_newsgroups.png", "fig9_weights_newsgroups.png", "hypergradient_steps.png"):
        assert (run / "figures" / f).exists(), f


def test_52_full_on_the_prepared_layout(tmp_path, data_root):
    run, metrics, claims = _run("52_metaweighting_query_ratio_and_step_size.ipynb", data_root,
                                tmp_path / "out", *CNN, "-p", "DATASETS", "[newsgroups]",
                                "-p", "RHOS", "[0.1, 0.3]", "-p", "ALPHAS", "[0.5]",
                                "-p", "ACTING_FACTORS", "[1.0]")
    assert (run / "figures" / "fig4_newsgroups.png").exists()
    assert (run / "figures" / "fig5_newsgroups.png").exists()
    assert metrics["rhos"] == [0.1, 0.3]
    assert any("§6.5" in c.get("source", "") for c in claims)


def test_53_full_on_the_prepared_layout(tmp_path, data_root):
    from mtlkit.encoders.transformer import minilm_dir

    run, metrics, claims = _run("53_benchmark_transformer_encoder.ipynb", data_root,
                                tmp_path / "out", "-p", "MODEL", str(minilm_dir()),
                                "-p", "DATASETS", "[newsgroups]", "-p", "EPOCHS", "1",
                                "-p", "BATCH_SIZE", "4", "-p", "MAX_LENGTH", "16",
                                "-p", "LR_GRID", "[2e-05]", "-p", "EXTRAS", "[RLW]")
    rec = results.read_records(run / "records.csv")
    assert set(rec["dataset"]) == {"newsgroups"}
    assert {"Tchebycheff", "MetaWeighting"} <= set(rec["method"])
    assert not {"AdvMTL", "TchebycheffAdv"} & set(rec["method"])
    assert metrics["settings"]["train_layers"] == "0"  # App. C: every layer fine-tuned
    assert metrics["settings"]["model"] == str(minilm_dir())
    assert (run / "figures" / "fig11_newsgroups.png").exists()


def test_54_full_on_the_prepared_layout(tmp_path, data_root):
    run, metrics, claims = _run("54_train_query_test_loss_gap.ipynb", data_root,
                                tmp_path / "out", *CNN)
    rec = results.read_records(run / "records.csv")
    assert set(rec["dataset"]) == {"amazon_sentiment", "newsgroups"}
    assert {"support", "query", "test"} <= set(rec["split"])
    for f in ("fig1_newsgroups.png", "fig6_amazon_sentiment.png", "fig7_newsgroups.png"):
        assert (run / "figures" / f).exists(), f
    assert sum(c.get("kind") == "finding" for c in claims) == 6
