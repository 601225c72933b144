"""Tidy records, aggregation over seeds, and the RLW Table 1 layout."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mtlkit import results

TASKS = {"seg": ["miou", "pix_acc"], "depth": ["abs_err", "rel_err"]}


def run_records(run_id: str, method: str, seed: int, values: dict[tuple[str, str], float],
                wall_time: float = 1.0, epochs: int = 2, chosen: int = 2) -> pd.DataFrame:
    """Records of one run: the given test/val values at every epoch (+ epoch offset)."""
    rows = []
    for e in range(1, epochs + 1):
        for (task, metric), v in values.items():
            for split in ("val", "test"):
                rows.append({"task": task, "metric": metric, "split": split, "epoch": e,
                             "value": v if e == chosen else v * 0.5})
    return results.make_records(pd.DataFrame(rows), run_id=run_id, dataset="toy",
                                architecture="HPS", method=method, hparams={"lr": 0.1},
                                seed=seed, device="cpu", wall_time=wall_time,
                                chosen_epoch=chosen)


def table1_records() -> pd.DataFrame:
    """rlw.md Table 1's EW, MGDA and RLW (Normal) rows (segmentation and depth only)."""
    rows = {"EW": [53.91, 75.56, 0.3840, 0.1567], "MGDA": [53.66, 75.37, 0.3864, 0.1610],
            "RLW": [54.19, 75.98, 0.3789, 0.1570]}
    times = {"EW": 1.0, "MGDA": 2.64, "RLW": 1.0}
    keys = [(t, m) for t, ms in TASKS.items() for m in ms]
    return pd.concat([run_records(f"{m}-0", m, 0, dict(zip(keys, v)), times[m])
                      for m, v in rows.items()], ignore_index=True)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_records_append_across_runs_and_refuse_duplicates(tmp_path, suffix):
    path = tmp_path / f"all{suffix}"
    a = run_records("a", "EW", 0, {("seg", "miou"): 0.5})
    b = run_records("b", "EW", 1, {("seg", "miou"): 0.6})
    results.write_records(a, path)
    results.write_records(b, path)
    back = results.read_records(path)
    assert list(back.columns) == results.RECORD_COLUMNS
    assert len(back) == len(a) + len(b) and set(back["run_id"]) == {"a", "b"}
    assert json.loads(back["hparams"].iloc[0]) == {"lr": 0.1}
    with pytest.raises(ValueError, match="never overwrites"):
        results.write_records(a, path)
    with pytest.raises(FileExistsError):
        results.write_records(b.assign(run_id="c"), path, append=False)
    assert len(results.read_records(path)) == len(a) + len(b)


def test_aggregate_mean_std_ci_over_seeds():
    vals = [0.5, 0.7, 0.65, 0.55]
    recs = pd.concat([run_records(f"r{i}", "EW", i, {("seg", "miou"): v})
                      for i, v in enumerate(vals)], ignore_index=True)
    agg = results.aggregate(recs)
    assert len(agg) == 1
    row = agg.iloc[0]
    assert row["n"] == 4 and row["mean"] == pytest.approx(np.mean(vals))
    assert row["std"] == pytest.approx(np.std(vals, ddof=1))
    lo, hi = stats.t.interval(0.95, 3, loc=np.mean(vals), scale=stats.sem(vals))
    assert row["ci95"] == pytest.approx((hi - lo) / 2)
    assert np.isnan(results.ci95([1.0]))


def test_only_selected_epoch_counts():
    recs = run_records("r", "EW", 0, {("seg", "miou"): 0.8}, chosen=1)
    assert results.final(recs)["value"].tolist() == [0.8]


def test_paper_table_reproduces_rlw_delta_p_and_bolds_by_direction():
    table = results.paper_table(table1_records(), metrics=TASKS, methods=["EW", "MGDA", "RLW"])
    # hand computation on these four columns: mean over tasks of the signed relative changes
    ew = np.array([53.91, 75.56, 0.3840, 0.1567])
    sign = np.array([1, 1, -1, -1])
    for m, row in {"MGDA": [53.66, 75.37, 0.3864, 0.1610],
                   "RLW": [54.19, 75.98, 0.3789, 0.1570]}.items():
        rel = sign * (np.array(row) - ew) / ew
        expect = 100 * (rel[:2].mean() + rel[2:].mean()) / 2
        assert table.loc[m, ("Δp", "↑")] == pytest.approx(expect)
    assert table.loc["EW", ("Δp", "↑")] == 0.0
    assert table.loc["MGDA", ("Δt", "↓")] == pytest.approx(2.64)
    mask = results.best_mask(table)
    assert mask.loc["RLW", ("seg", "miou")] and mask.loc["RLW", ("depth", "abs_err")]
    assert mask.loc["EW", ("depth", "rel_err")]  # lower is better: 0.1567 is the best
    assert mask.loc["EW", ("Δt", "↓")] and mask.loc["RLW", ("Δt", "↓")]  # tie: both bold
    md = results.to_markdown(table)
    assert "| RLW | **54.1900** |" in md and md.count("\n") == 4
    assert "font-weight: bold" in results.to_html(table)


def test_paper_table_errors():
    with pytest.raises(ValueError, match="baseline"):
        results.paper_table(table1_records(), baseline="STL")
    with pytest.raises(ValueError, match="no records"):
        results.paper_table(table1_records(), metrics={"seg": ["acc"]})


def test_merge_single_task_keeps_each_runs_own_task():
    keys = {("seg", "miou"): 0.5, ("depth", "abs_err"): 0.3}
    a = run_records("stl-seg", "STL", 0, keys, wall_time=2.0)
    b = run_records("stl-depth", "STL", 0, {k: v + 0.1 for k, v in keys.items()}, wall_time=3.0)
    merged = results.merge_single_task({"seg": a, "depth": b})
    fin = results.final(merged).set_index("task")
    assert fin.loc["seg", "value"] == 0.5 and fin.loc["depth", "value"] == pytest.approx(0.4)
    assert set(merged["run_id"]) == {"stl-seg", "stl-depth"}
    assert (merged["wall_time"] == 5.0).all() and (merged["method"] == "STL").all()
    with pytest.raises(ValueError, match="no records"):
        results.merge_single_task({"normal": a})


def test_rerunning_notebook_01_rewrites_its_records_instead_of_appending(tmp_path):
    """Notebook 01 executed twice into the same --out (smoke): its records.csv holds the
    second run's records once, not both runs' (it doubled on every re-run)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    nb = root / "notebooks" / "01_the_mtl_problem.ipynb"
    cmd = [sys.executable, "-m", "mtlkit.nbrun", str(nb), "--profile", "smoke", "--out",
           str(tmp_path), "--force", "--no-progress"]
    tables = []
    for _ in range(2):
        subprocess.run(cmd, check=True, cwd=root, capture_output=True)
        (path,) = [p for p in tmp_path.rglob("records.csv") if "train" not in p.parts]
        tables.append(results.read_records(path))
    first, second = tables
    assert len(second) == len(first) > 0
    # nbrun runs each attempt in a fresh folder and swaps it in on success, so the second
    # run's trainer folders start empty and reuse the first run's names
    assert set(first["run_id"]) == set(second["run_id"])
    cols = [c for c in first.columns if c not in ("run_id", "wall_time")]
    pd.testing.assert_frame_equal(first[cols], second[cols])  # CPU smoke runs are exact
