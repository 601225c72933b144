"""The ``full`` branch of notebooks 51 and 55 on tiny releases in exactly the layout
``data_scripts/`` writes (tests/fixtures: shapes, dtypes, file names and splits as the real
NYUv2, Cityscapes and PASCAL-Context), through the batch runner as a user would run it.

Only the sizes are shrunk by parameters (a small encoder, one epoch, two seeds, a few
timing steps); the data path, the loaders, the paper's losses and metrics, validation
doubling as test, and every cell of the notebooks are the real ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from support import fx, run_full

from mtlkit import results

SMALL = ["-p", "BACKBONE", "small", "-p", "HEAD_CHANNELS", "8", "-p", "EPOCHS", "1",
         "-p", "BATCH_SIZE", "2", "-p", "TIMING_REPLICATES", "2", "-p", "TIMING_STEPS", "1",
         "-p", "DEVICE", "cpu"]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MTLKIT_CACHE", str(tmp_path / "cache"))


def _run(notebook: str, root: Path, out: Path, *params: str) -> tuple[dict, pd.DataFrame]:
    run = run_full(notebook, out, "-p", "DATA_DIR", str(root), *SMALL, *params)
    return (json.loads((run / "metrics.json").read_text()),
            results.read_records(run / "records.csv"))


@pytest.mark.parametrize("dataset, extra", [
    ("nyuv2", ["-p", "METHODS", "[EW, RLW-normal, MGDA-UB]"]),
    ("cityscapes", ["-p", "METHODS", "[EW, RLW-bernoulli]"]),
    ("pascal_context", ["-p", "METHODS", "[EW, RLW-dirichlet]", "-p", "IMAGE_SIZE", "[16, 16]"]),
])
def test_51_full_on_the_prepared_layout(tmp_path, dataset, extra):
    maker = {"nyuv2": fx.make_nyuv2, "cityscapes": fx.make_cityscapes,
             "pascal_context": fx.make_pascal}[dataset]
    data_root = tmp_path / "data"
    maker(data_root)
    metrics, rec = _run("51_benchmark_dense_prediction.ipynb", data_root, tmp_path / "out",
                        "-p", "DATASET", dataset, "-p", "N_SEEDS", "2", *extra)
    assert metrics["data"] == f"{dataset} (the paper's data)"
    assert "IS the test split" in metrics["selection"]  # validation doubles as test
    assert set(rec["dataset"]) == {dataset} and set(rec["seed"]) == {0, 1}
    assert set(rec["architecture"]) == {"HPS"}
    fin = results.final(rec)
    wanted = {(t, m) for t, ms in {
        "nyuv2": {"segmentation": ["miou"], "depth": ["abs_err"], "normals": ["within_30"]},
        "cityscapes": {"segmentation": ["pix_acc"], "depth": ["rel_err"]},
        "pascal_context": {"human_parts": ["miou"], "saliency": ["maxf"],
                           "normals": ["rmse_angle"]}}[dataset].items() for m in ms}
    assert wanted <= set(zip(fin["task"], fin["metric"]))
    # val and test are the same images: the same numbers at the selected epoch
    val = results.final(rec, "val").set_index(["run_id", "task", "metric"])["value"]
    test = fin.set_index(["run_id", "task", "metric"])["value"]
    pd.testing.assert_series_equal(val.sort_index(), test.sort_index(), check_names=False)
    assert metrics["paper_delta_p"]["EW"] == 0.0


def test_55_full_on_the_prepared_layout(tmp_path):
    data_root = tmp_path / "data"
    fx.make_nyuv2(data_root)
    metrics, rec = _run("55_benchmark_architectures.ipynb", data_root, tmp_path / "out",
                        "-p", "METHODS", "[EW, RLW-normal]", "-p", "N_SEEDS", "1")
    assert set(rec["architecture"]) == {"HPS", "MTAN", "cross-stitch", "NDDR"}
    assert set(rec["method"]) == {"EW", "RLW-normal"} and set(rec["seed"]) == {0}
    assert metrics["data"] == "nyuv2 (the paper's data)"
    assert set(metrics["delta_p_vs_hps_ew"]) == {"HPS", "MTAN", "cross-stitch", "NDDR"}
    assert metrics["delta_p_vs_hps_ew"]["HPS"]["EW"] == 0.0
