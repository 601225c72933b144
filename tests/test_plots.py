"""Figures: each returns a labelled Figure in the Okabe-Ito palette and saves a PNG."""

from __future__ import annotations

import os

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex

from mtlkit import plots, results


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def records(methods=("EW", "MGDA"), seeds=3, epochs=3, query=True) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    out = []
    for m in methods:
        for s in range(seeds):
            rows = []
            for e in range(1, epochs + 1):
                for t in ("a", "b"):
                    for split in ("train", "val", "test") + (("query",) if query else ()):
                        rows.append({"task": t, "metric": "loss", "split": split, "epoch": e,
                                     "value": float(rng.uniform(0.1, 1.0))})
                    rows.append({"task": t, "metric": "acc", "split": "test", "epoch": e,
                                 "value": float(rng.uniform(0.5, 0.9))})
            out.append(results.make_records(
                pd.DataFrame(rows), run_id=f"{m}-{s}", dataset="toy", architecture="HPS",
                method=m, hparams={"alpha": [0.1, 0.5, 0.1][s]}, seed=s, device="cpu",
                wall_time=1.0, chosen_epoch=epochs))
    return pd.concat(out, ignore_index=True)


def steps(n=20) -> pd.DataFrame:
    w = np.linspace(0.2, 0.8, n)
    return pd.DataFrame({"step": np.arange(1, n + 1), "weight/a": w, "weight/b": 1 - w})


def _labelled(fig):
    ax = fig.axes[0]
    return ax.get_xlabel() and (ax.get_ylabel() or fig.axes[0].get_ylabel())


def test_headless_backend_is_agg():
    if os.environ.get("DISPLAY") or os.environ.get("MPLBACKEND"):
        pytest.skip("a display or an explicit backend is configured")
    assert matplotlib.get_backend().lower() == "agg"


def test_palette_is_okabe_ito():
    assert plots.palette(9)[0] == plots.palette(9)[8] == "#E69F00"
    assert len(set(plots.OKABE_ITO)) == 8


def test_accuracy_clusters_one_point_per_run(tmp_path):
    fig = plots.accuracy_clusters(records(), save=tmp_path / "f" / "clusters.png")
    assert (tmp_path / "f" / "clusters.png").stat().st_size > 1000
    ax = fig.axes[0]
    assert ax.get_xlabel() == "task" and ax.get_ylabel() == "test acc"
    pts = [c for c in ax.collections]
    assert sum(len(c.get_offsets()) for c in pts) == 2 * 2 * 3  # methods x tasks x seeds
    colours = {to_hex(c.get_facecolor()[0]).upper() for c in pts}
    assert colours == {plots.OKABE_ITO[0], plots.OKABE_ITO[1]}


def test_weight_evolution_and_smoothing(tmp_path):
    fig = plots.weight_evolution({"EW": steps(), "UW": steps()}, smooth=3,
                                 save=tmp_path / "w.png")
    assert len(fig.axes) == 2 and _labelled(fig)
    y = fig.axes[0].lines[0].get_ydata()
    assert y[5] == pytest.approx(np.mean(steps()["weight/a"][3:6]))
    with pytest.raises(ValueError, match="weight"):
        plots.weight_evolution(pd.DataFrame({"step": [1]}))


def test_loss_gap_bars_match_records(tmp_path):
    recs = records(methods=("EW",), seeds=1)
    fig = plots.loss_gap(recs, epochs=[1, 3], save=tmp_path / "gap.png")
    assert len(fig.axes) == 2 and fig.axes[0].get_ylabel() == "loss"
    bars = fig.axes[1].patches  # 3 splits x 2 tasks at epoch 3
    want = recs[(recs["metric"] == "loss") & (recs["epoch"] == 3) & (recs["task"] == "a")
                & (recs["split"] == "train")]["value"].iloc[0]
    assert len(bars) == 6 and bars[0].get_height() == pytest.approx(want)
    no_q = plots.loss_gap(records(methods=("EW",), seeds=1, query=False))
    assert len(no_q.axes[0].patches) == 2 * 2  # query skipped


def test_loss_curves_delta_p_bars_and_sweep(tmp_path):
    fig = plots.loss_curves(records(methods=("EW",), seeds=1), save=tmp_path / "c.png")
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 4
    fig = plots.delta_p_bars({"MGDA": -0.35, "RLW": 1.02}, save=tmp_path / "dp.png")
    bars = fig.axes[0].patches
    assert [b.get_width() for b in bars] == [-0.35, 1.02]
    assert to_hex(bars[0].get_facecolor()).upper() == plots.OKABE_ITO[5]
    assert "Δp" in fig.axes[0].get_xlabel()
    fig = plots.sweep_boxplot(records(), "alpha", save=tmp_path / "sweep.png")
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["0.1", "0.5"]
    assert fig.axes[0].get_xlabel() == "alpha"
    with pytest.raises(ValueError, match="hyper-parameter"):
        plots.sweep_boxplot(records(), "beta")
    for name in ("c", "dp", "sweep"):
        assert (tmp_path / f"{name}.png").exists()


# --- toy problems (issue 17)
def _toy():
    xs = np.linspace(-1, 1, 5)
    xx, yy = np.meshgrid(xs, xs)
    f = np.stack([xx ** 2, yy ** 2])
    front = np.array([[0.0, 0.0], [0.1, 0.1]])
    path = np.array([[1.0, 1.0], [0.5, 0.4], [0.1, 0.0]])
    return (xx, yy, f), front, path


def test_toy_panel_draws_front_path_start_and_end():
    grid, front, path = _toy()
    fig, ax = plt.subplots()
    plots.toy_panel(ax, grid, front, [path, path[::-1]], title="EW")
    assert ax.get_title() == "EW" and ax.get_xlabel() == "$x_1$"
    lines = ax.get_lines()
    assert len(lines) == 1 + 2 * 3  # the front, then per path: line, start, end
    assert np.array_equal(lines[0].get_xydata(), front)
    assert np.array_equal(lines[1].get_xydata(), path)
    assert lines[2].get_marker() == "o" and tuple(lines[2].get_xydata()[0]) == (1.0, 1.0)
    assert lines[3].get_marker() == "*" and tuple(lines[3].get_xydata()[0]) == (0.1, 0.0)
    assert to_hex(lines[1].get_color()).upper() == plots.OKABE_ITO[4]
    assert ax.collections  # the contours of L1 + L2


def test_toy_trajectories_one_panel_per_method(tmp_path):
    grid, front, path = _toy()
    fig = plots.toy_trajectories({m: [path] for m in "ABCDE"}, grid, front,
                                 save=tmp_path / "toy.png")
    assert (tmp_path / "toy.png").stat().st_size > 1000
    assert len(fig.axes) == 6  # 2 rows x 3 columns for 5 methods
    assert [ax.get_title() for ax in fig.axes[:5]] == list("ABCDE")
    assert not fig.axes[5].axison  # the unused panel is hidden
    assert len(plots.toy_trajectories({"EW": [path]}, grid, front).axes) == 1
    with pytest.raises(ValueError, match="no paths"):
        plots.toy_trajectories({}, grid, front)


def test_toy_notebooks_draw_through_plots():
    """The toy-plotting block (contours of L1 + L2, the front, the paths) lives in mtlkit.plots;
    no notebook draws the toy's contours itself (issue 17: it was copied into six)."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "notebooks"
    copied = []
    for path in sorted(root.glob("[12][0-3]_*.ipynb")):
        code = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"]
                         if c["cell_type"] == "code")
        if "f.sum(0), levels=30" in code or "fgrid.sum(0), levels=30" in code:
            copied.append(path.name)
    assert not copied, f"these notebooks draw the toy themselves; use plots.toy_panel: {copied}"
