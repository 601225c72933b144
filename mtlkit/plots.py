"""Figures of the papers, drawn from tidy records (:mod:`mtlkit.results`) and
per-step logs (``RunResult.steps``).

=============================== ===============================================
function                        figure
=============================== ===============================================
:func:`accuracy_clusters`       ``metaweighting.txt`` Figs 2-3: per-task
                                accuracy of every run, one cluster per method
:func:`weight_evolution`        Figs 8-9: task weights over training steps
:func:`loss_gap`                Figs 1, 6-7: training vs query vs test loss
                                per task at chosen epochs
:func:`loss_curves`             the same losses against epochs
:func:`delta_p_bars`            Δp of each method (``rlw.md`` §5.3)
:func:`sweep_boxplot`           Figs 4-5: task-average metric over runs for
                                each value of one hyper-parameter
=============================== ===============================================

Every function labels its axes, uses the Okabe-Ito colour-blind-safe palette,
returns the Figure, and saves a PNG when given ``save=path``.  Headless
processes (no display, no Jupyter kernel) use the Agg backend.  Used in
``notebooks/01_the_mtl_problem.ipynb``.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

if not os.environ.get("DISPLAY") and not os.environ.get("MPLBACKEND") \
        and "ipykernel" not in sys.modules:
    matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

#: Okabe & Ito (2008) colour-blind-safe palette
OKABE_ITO = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7",
             "#000000"]


def palette(n: int) -> list[str]:
    """n colours from the Okabe-Ito palette (cycled beyond 8)."""
    return [OKABE_ITO[i % len(OKABE_ITO)] for i in range(n)]


def _finish(fig: Figure, save: str | Path | None) -> Figure:
    fig.tight_layout()
    if save:
        path = Path(save)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def _need(df: pd.DataFrame, what: str) -> None:
    if df.empty:
        raise ValueError(f"no records for {what}")


def _selected(records: pd.DataFrame, split: str, metric: str) -> pd.DataFrame:
    df = records[(records["split"] == split) & (records["metric"] == metric)
                 & records["selected"].astype(bool)]
    _need(df, f"split={split!r}, metric={metric!r} at the selected epochs")
    return df


def accuracy_clusters(records: pd.DataFrame, metric: str = "acc", split: str = "test",
                      methods: Sequence[str] | None = None, save: str | Path | None = None
                      ) -> Figure:
    """One column per task; inside it, one coloured cluster of points per
    method, one point per run (``metaweighting.txt`` Figs 2-3)."""
    df = _selected(records, split, metric)
    methods = list(methods or dict.fromkeys(df["method"]))
    tasks = list(dict.fromkeys(df["task"]))
    colours = palette(len(methods))
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(tasks) + 2), 3.6))
    rng = np.random.default_rng(0)  # jitter only; does not touch the global RNG
    for j, m in enumerate(methods):
        for i, t in enumerate(tasks):
            v = df[(df["method"] == m) & (df["task"] == t)]["value"].to_numpy()
            x = i - 0.4 + width * (j + 0.5) + rng.uniform(-width / 4, width / 4, v.size)
            ax.scatter(x, v, s=14, color=colours[j], label=m if i == 0 else None,
                       edgecolor="black", linewidth=0.3)
    for i in range(1, len(tasks)):
        ax.axvline(i - 0.5, color="0.85", linewidth=0.8, zorder=0)
    ax.set_xticks(range(len(tasks)), tasks, rotation=30 if len(tasks) > 6 else 0)
    ax.set_xlabel("task")
    ax.set_ylabel(f"{split} {metric}")
    ax.legend(fontsize=8, ncol=min(len(methods), 4), loc="best")
    return _finish(fig, save)


def weight_evolution(steps: pd.DataFrame | Mapping[str, pd.DataFrame], smooth: int = 1,
                     save: str | Path | None = None) -> Figure:
    """Task weights against training step, one panel per method
    (``metaweighting.txt`` Figs 8-9).  ``steps``: one ``RunResult.steps`` or
    {method: steps}; ``smooth``: moving-average window in steps."""
    runs = {"": steps} if isinstance(steps, pd.DataFrame) else dict(steps)
    fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 3.2), squeeze=False,
                             sharey=True)
    for ax, (name, df) in zip(axes[0], runs.items()):
        cols = [c for c in df.columns if c.startswith("weight/")]
        if not cols:
            raise ValueError(f"steps of {name or 'the run'} have no weight/<task> columns")
        for c, colour in zip(cols, palette(len(cols))):
            y = df[c].rolling(smooth, min_periods=1).mean()
            ax.plot(df["step"], y, color=colour, label=c.split("/", 1)[1], linewidth=1.2)
        ax.set_title(name)
        ax.set_xlabel("training step")
    axes[0, 0].set_ylabel("task weight")
    axes[0, -1].legend(fontsize=8, title="task")
    return _finish(fig, save)


def loss_gap(records: pd.DataFrame, epochs: Sequence[int] | None = None,
             splits: Sequence[str] = ("train", "query", "test"),
             save: str | Path | None = None) -> Figure:
    """Per-task training, query and test loss as grouped bars, one panel per
    epoch (``metaweighting.txt`` Figs 1, 6-7).  Splits without records (e.g.
    no query split) are skipped.  ``records``: one run."""
    df = records[records["metric"] == "loss"]
    splits = [s for s in splits if (df["split"] == s).any()]
    _need(df, "metric 'loss'")
    have = sorted(set.intersection(*[set(df[df["split"] == s]["epoch"]) for s in splits]))
    if epochs is None:
        epochs = have if len(have) <= 3 else [have[len(have) // 3 - 1],
                                               have[2 * len(have) // 3 - 1], have[-1]]
    tasks = list(dict.fromkeys(df["task"]))
    fig, axes = plt.subplots(1, len(epochs), figsize=(3.8 * len(epochs), 3.2), squeeze=False,
                             sharey=True)
    width = 0.8 / len(splits)
    for ax, e in zip(axes[0], epochs):
        for j, (s, colour) in enumerate(zip(splits, palette(len(splits)))):
            sub = df[(df["split"] == s) & (df["epoch"] == e)].set_index("task")["value"]
            x = np.arange(len(tasks)) - 0.4 + width * (j + 0.5)
            ax.bar(x, [sub.get(t, np.nan) for t in tasks], width, color=colour, label=s)
        ax.set_xticks(range(len(tasks)), tasks)
        ax.set_title(f"epoch {e}")
        ax.set_xlabel("task")
    axes[0, 0].set_ylabel("loss")
    axes[0, -1].legend(fontsize=8)
    return _finish(fig, save)


def loss_curves(records: pd.DataFrame, splits: Sequence[str] = ("train", "query", "val", "test"),
                save: str | Path | None = None) -> Figure:
    """Loss against epoch, one panel per task, one line per split (one run)."""
    df = records[records["metric"] == "loss"]
    _need(df, "metric 'loss'")
    tasks = list(dict.fromkeys(df["task"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks), 3.0), squeeze=False)
    for ax, t in zip(axes[0], tasks):
        for s, colour in zip(splits, palette(len(splits))):
            sub = df[(df["task"] == t) & (df["split"] == s)].sort_values("epoch")
            if not sub.empty:
                ax.plot(sub["epoch"], sub["value"], marker="o", markersize=3, color=colour,
                        label=s)
        ax.set_title(t)
        ax.set_xlabel("epoch")
    axes[0, 0].set_ylabel("loss")
    axes[0, -1].legend(fontsize=8)
    return _finish(fig, save)


def delta_p_bars(values: Mapping[str, float] | pd.Series, baseline: str = "EW",
                 save: str | Path | None = None) -> Figure:
    """Horizontal bars of Δp (%) per method; improvements and losses in two colours."""
    s = pd.Series(values, dtype=float)
    if s.empty:
        raise ValueError("no Δp values to plot")
    fig, ax = plt.subplots(figsize=(5.0, 0.4 * len(s) + 1.2))
    colours = [OKABE_ITO[4] if v >= 0 else OKABE_ITO[5] for v in s.to_numpy()]
    ax.barh(range(len(s)), s.to_numpy(), color=colours)
    ax.set_yticks(range(len(s)), [str(i) for i in s.index])
    ax.axvline(0, color="black", linewidth=0.8)
    ax.invert_yaxis()
    ax.set_xlabel(f"Δp vs {baseline} (%)")
    ax.set_ylabel("method")
    return _finish(fig, save)


def sweep_boxplot(records: pd.DataFrame, param: str, metric: str = "acc", split: str = "test",
                  save: str | Path | None = None) -> Figure:
    """Box plots of the task-average ``metric`` over runs, one box per value of
    hyper-parameter ``param`` read from the records' JSON ``hparams``
    (``metaweighting.txt`` Figs 4-5)."""
    df = _selected(records, split, metric)
    per_run = df.groupby("run_id").agg(value=("value", "mean"), hparams=("hparams", "first"))
    per_run["p"] = [json.loads(h).get(param) for h in per_run["hparams"]]
    if per_run["p"].isna().all():
        raise ValueError(f"no run records hyper-parameter {param!r}")
    levels = sorted(per_run["p"].dropna().unique())
    data = [per_run[per_run["p"] == v]["value"].to_numpy() for v in levels]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.8 * len(levels) + 2), 3.2))
    box = ax.boxplot(data, patch_artist=True)
    for patch in box["boxes"]:
        patch.set_facecolor(OKABE_ITO[1])
    ax.set_xticks(range(1, len(levels) + 1), [str(v) for v in levels])
    ax.set_xlabel(param)
    ax.set_ylabel(f"task-average {split} {metric}")
    return _finish(fig, save)


# --------------------------------------------------------------------- dense (helper: dense)
# rlw.md Tables 1-2, 4, 6-8 and Fig. 1, drawn by notebooks 51 and 55 from
# mtlkit.protocols.rlw_dense_claims summaries.
def seed_intervals(summaries: Mapping[str, pd.DataFrame], reference: Mapping[str, float] | None
                   = None, reference_label: str = "paper", xlabel: str = "Δp vs EW (%)",
                   save: str | Path | None = None) -> Figure:
    """Mean ± 95% CI per row for one or more runs (``{label: DataFrame with columns mean,
    ci95, indexed by row}``, e.g. Δp per method over seeds: this run, precomputed), and an
    optional reference value per row (the paper's number) as a black diamond."""
    if not summaries:
        raise ValueError("no summaries to plot")
    rows = list(dict.fromkeys(r for s in summaries.values() for r in s.index))
    k = len(summaries)
    fig, ax = plt.subplots(figsize=(5.6, 0.42 * len(rows) + 1.4))
    for j, ((label, s), colour) in enumerate(zip(summaries.items(), palette(k))):
        s = s.reindex(rows)
        y = np.arange(len(rows)) + (j - (k - 1) / 2) * 0.22
        ax.errorbar(s["mean"], y, xerr=s["ci95"].fillna(0), fmt="o", color=colour,
                    markersize=4, capsize=2, label=label)
    if reference:
        ref = pd.Series(reference, dtype=float).reindex(rows)
        ax.scatter(ref, np.arange(len(rows)), marker="D", color="black", s=14, zorder=3,
                   label=reference_label)
    ax.set_yticks(range(len(rows)), [str(r) for r in rows])
    ax.axvline(0, color="black", linewidth=0.8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.legend(fontsize=7, loc="best")
    return _finish(fig, save)


def metric_curves(panels: Mapping[str, pd.DataFrame], save: str | Path | None = None) -> Figure:
    """One panel per ``{title: DataFrame with columns method, epoch, mean, ci95}``: a line
    per method with its 95% band over seeds (``rlw.md`` Fig. 1: EW vs RLW curves)."""
    if not panels:
        raise ValueError("no curves to plot")
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(3.4 * n, 3.0), squeeze=False)
    methods = list(dict.fromkeys(m for df in panels.values() for m in df["method"]))
    colours = dict(zip(methods, palette(len(methods))))
    for ax, (title, df) in zip(axes[0], panels.items()):
        for m in methods:
            sub = df[df["method"] == m].sort_values("epoch")
            if sub.empty:
                continue
            ax.plot(sub["epoch"], sub["mean"], color=colours[m], label=m, linewidth=1.2)
            band = sub["ci95"].fillna(0)
            ax.fill_between(sub["epoch"], sub["mean"] - band, sub["mean"] + band,
                            color=colours[m], alpha=0.15, linewidth=0)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch")
    axes[0, 0].set_ylabel("validation value")
    axes[0, -1].legend(fontsize=7)
    return _finish(fig, save)


def effect_heatmap(matrix: pd.DataFrame, label: str = "Δp vs HPS + EW (%)",
                   save: str | Path | None = None) -> Figure:
    """Rows x columns of values (e.g. architecture x weighting mean Δp), annotated, on a
    diverging colour scale centred at 0."""
    if matrix.empty:
        raise ValueError("empty matrix")
    v = matrix.to_numpy(dtype=float)
    lim = float(np.nanmax(np.abs(v))) or 1.0
    fig, ax = plt.subplots(figsize=(0.9 * matrix.shape[1] + 2.2, 0.5 * matrix.shape[0] + 1.6))
    im = ax.imshow(v, cmap="PuOr", vmin=-lim, vmax=lim, aspect="auto")
    for i in range(v.shape[0]):
        for j in range(v.shape[1]):
            if np.isfinite(v[i, j]):
                ax.text(j, i, f"{v[i, j]:+.1f}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(matrix.shape[1]), [str(c) for c in matrix.columns], rotation=45,
                  ha="right")
    ax.set_yticks(range(matrix.shape[0]), [str(r) for r in matrix.index])
    fig.colorbar(im, ax=ax, label=label)
    return _finish(fig, save)


# --- toy problems (issue 17)
def toy_panel(ax, grid: tuple[np.ndarray, np.ndarray, np.ndarray], front: np.ndarray,
              paths: Sequence[np.ndarray] = (), title: str = "", levels: int = 30) -> None:
    """Draw the two-task toy (:mod:`mtlkit.theory.toys`) on ``ax``: contours of L1 + L2,
    the brute-force Pareto set (black dots), and each path with its start (circle) and
    end (star).

    ``grid``: ``toys.landscape(...)``'s (X, Y, F); ``front``: the Pareto points in
    parameter space (``toys.pareto_points(...)[0]``, shape (K, 2)); ``paths``: arrays of
    shape (steps + 1, 2) (``toys.run_trajectory``)."""
    xx, yy, f = grid
    ax.contour(xx, yy, np.asarray(f).sum(0), levels=levels, cmap="Greys", linewidths=0.5)
    front = np.asarray(front)
    ax.plot(front[:, 0], front[:, 1], "k.", ms=1)
    for p in paths:
        p = np.asarray(p)
        ax.plot(p[:, 0], p[:, 1], lw=1.5, color=OKABE_ITO[4])
        ax.plot(*p[0], "o", color=OKABE_ITO[0], ms=4)
        ax.plot(*p[-1], "*", color=OKABE_ITO[5], ms=8)
    ax.set(title=title, xlabel="$x_1$", ylabel="$x_2$")


def toy_trajectories(paths: Mapping[str, Sequence[np.ndarray]],
                     grid: tuple[np.ndarray, np.ndarray, np.ndarray], front: np.ndarray,
                     rows: int | None = None, save: str | Path | None = None) -> Figure:
    """One :func:`toy_panel` per method (``paths``: {method: [path, ...]}), on ``rows``
    rows (default: 1 for up to 3 methods, else 2); unused panels are hidden."""
    if not paths:
        raise ValueError("no paths to plot: pass {method: [path, ...]}")
    n = len(paths)
    rows = rows or (1 if n <= 3 else 2)
    cols = int(np.ceil(n / rows))
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.4 * rows), squeeze=False,
                             sharex=True, sharey=True)
    flat = axes.ravel()
    for ax, (name, ps) in zip(flat, paths.items()):
        toy_panel(ax, grid, front, ps, title=name)
        ax.label_outer()
    for ax in flat[n:]:
        ax.axis("off")
    return _finish(fig, save)


# ------------------------------------------------------------------ cls helper (rlw.md App. C)
def method_intervals(table: pd.DataFrame, value: str = "Avg", ci: str = "±95% CI",
                     baseline: str = "EW", paper: Mapping[str, float] | None = None,
                     xlabel: str = "test average accuracy (%)",
                     save: str | Path | None = None) -> Figure:
    """Mean ± 95% CI over seeds of one column per method (``rlw.md`` Tables 9, 10, 3, 12),
    RLW rows in one colour, the baseline's mean as a vertical line; ``paper`` values
    (same units) as open diamonds on a second axis, when given."""
    if value not in table or ci not in table:
        raise ValueError(f"table needs columns {value!r} and {ci!r}")
    s = table[value].astype(float)
    half = table[ci].astype(float).fillna(0.0)
    y = np.arange(len(s))
    colours = [OKABE_ITO[4] if str(m).startswith("RLW") else
               OKABE_ITO[7] if m == baseline else OKABE_ITO[0] for m in s.index]
    fig, ax = plt.subplots(figsize=(5.6, 0.32 * len(s) + 1.3))
    ax.errorbar(s.to_numpy(), y, xerr=half.to_numpy(), fmt="none", ecolor="grey", capsize=2)
    ax.scatter(s.to_numpy(), y, c=colours, zorder=3, label="this run (mean ± 95% CI)")
    if baseline in s.index:
        ax.axvline(float(s[baseline]), color="black", linewidth=0.6, linestyle=":")
    ax.set_yticks(y, [str(i) for i in s.index])
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    if paper:
        top = ax.twiny()
        pv = [paper.get(str(m), np.nan) for m in s.index]
        top.scatter(pv, y, marker="D", facecolors="none", edgecolors=OKABE_ITO[5],
                    label="paper")
        top.set_xlabel("paper (%)", color=OKABE_ITO[5])
        top.tick_params(axis="x", colors=OKABE_ITO[5])
    ax.legend(fontsize=7, loc="lower right")
    return _finish(fig, save)


def convergence_curves(curves: pd.DataFrame, ylabel: str = "validation average accuracy",
                       scale: float = 1.0, save: str | Path | None = None) -> Figure:
    """Learning curves with 95% CI bands over seeds (``rlw.md`` Fig. 1): ``curves`` has
    columns method, epoch, mean, lo, hi (``mtlkit.protocols.rlw_findings.curves``)."""
    need = {"method", "epoch", "mean", "lo", "hi"}
    if not need <= set(curves.columns) or curves.empty:
        raise ValueError(f"curves need columns {sorted(need)} and at least one row")
    methods = list(dict.fromkeys(curves["method"].astype(str)))
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    for m, colour in zip(methods, palette(len(methods))):
        c = curves[curves["method"].astype(str) == m].sort_values("epoch")
        ax.plot(c["epoch"], scale * c["mean"], color=colour, label=m,
                linewidth=2.0 if m == "EW" else 1.2, linestyle="--" if m == "EW" else "-")
        ax.fill_between(c["epoch"], scale * c["lo"].fillna(c["mean"]),
                        scale * c["hi"].fillna(c["mean"]), color=colour, alpha=0.15,
                        linewidth=0)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7, ncol=2)
    return _finish(fig, save)


# ------------------------------------------------------------------ text (issue 15)
def hypergradient_path(frames: Mapping[str, pd.DataFrame], radius: float,
                       save: str | Path | None = None) -> Figure:
    """Why learnt weights stay put (``metaweighting.txt`` Eqs. 10–13): left, the size of
    each weight step alpha ||e_k|| (the part of the hypergradient direction that the
    constraint lets act), log scale; right, its running sum divided by T (the bound on
    ||w/T - 1/T||) and the measured ||w/T - 1/T||, against ``radius`` (the distance from
    uniform weights to a single task).  ``frames``: {label: HypergradProbe.frame()}."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for (name, df), colour in zip(frames.items(), palette(len(frames))):
        t = sum(c.startswith("w/") for c in df.columns)
        axes[0].plot(df["step"], df["step_norm"], color=colour, linewidth=0.8, label=name)
        axes[1].plot(df["step"], df["step_norm"].cumsum() / t, color=colour, linestyle="--",
                     linewidth=1.2, label=f"{name}: bound")
        axes[1].plot(df["step"], df["w_dist"], color=colour, linewidth=1.6,
                     label=f"{name}: measured")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("training step")
    axes[0].set_ylabel("weight step α‖e_k‖")
    axes[0].legend(fontsize=7)
    axes[1].axhline(radius, color="black", linewidth=0.8, linestyle=":")
    axes[1].annotate("uniform → one task", (0.02, radius), xycoords=("axes fraction", "data"),
                     fontsize=7, va="bottom")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("training step")
    axes[1].set_ylabel("‖w/T − 1/T‖")
    axes[1].legend(fontsize=7)
    return _finish(fig, save)


def weight_panels(frames: Mapping[str, pd.DataFrame], tasks: Sequence[str] | None = None,
                  smooth: int = 1, ncols: int = 3, save: str | Path | None = None) -> Figure:
    """Task weights against training step, one panel per method on its own y scale
    (UW's and GradNorm's weights are not on the simplex), wrapped in ``ncols`` columns
    (``metaweighting.txt`` Figs 8–9, 12).  ``frames``: {method: frame with ``step`` and
    ``weight/<task>`` columns}; ``tasks`` restricts to those tasks (e.g. the first four)."""
    n = len(frames)
    if n == 0:
        raise ValueError("no weight frames to plot")
    rows = math.ceil(n / ncols)
    fig, axes = plt.subplots(rows, min(n, ncols), figsize=(4.0 * min(n, ncols), 2.9 * rows),
                             squeeze=False)
    for ax, (name, df) in zip(axes.flat, frames.items()):
        cols = [c for c in df.columns if c.startswith("weight/")
                and (tasks is None or c.split("/", 1)[1] in tasks)]
        if not cols:
            raise ValueError(f"steps of {name} have no weight/<task> columns")
        for c, colour in zip(cols, palette(len(cols))):
            y = df[c].rolling(smooth, min_periods=1).mean()
            ax.plot(df["step"], y, color=colour, label=c.split("/", 1)[1], linewidth=1.1)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("training step")
        ax.set_ylabel("task weight")
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7, title="task", title_fontsize=7)
    return _finish(fig, save)


def sweep_boxes(values: pd.DataFrame, xlabel: str, ylabel: str = "task-average test acc",
                reference: Mapping[str, float] | None = None, title: str = "",
                save: str | Path | None = None) -> Figure:
    """Box plots over runs of one value per run against a swept level
    (``metaweighting.txt`` Figs 4–5), one box colour per group.  ``values``: columns
    level, group, value (one row per run); ``reference``: {label: y} drawn as horizontal
    lines (e.g. EW's mean)."""
    if values.empty:
        raise ValueError("no values to plot")
    levels = sorted(values["level"].unique())
    groups = list(dict.fromkeys(values["group"]))
    width = 0.8 / len(groups)
    fig, ax = plt.subplots(figsize=(max(4.5, 0.9 * len(levels) * len(groups) + 2), 3.4))
    for j, (g, colour) in enumerate(zip(groups, palette(len(groups)))):
        data, pos = [], []
        for i, lv in enumerate(levels):
            v = values[(values["group"] == g) & (values["level"] == lv)]["value"].to_numpy()
            if v.size:
                data.append(v)
                pos.append(i - 0.4 + width * (j + 0.5))
        if not data:
            continue
        box = ax.boxplot(data, positions=pos, widths=width * 0.85, patch_artist=True,
                         manage_ticks=False)
        for patch in box["boxes"]:
            patch.set_facecolor(colour)
        ax.plot([], [], color=colour, linewidth=6, label=g)
    for (name, y), ls in zip((reference or {}).items(), ("--", ":", "-.")):
        ax.axhline(y, color="black", linewidth=0.9, linestyle=ls, label=name)
    ax.set_xticks(range(len(levels)), [f"{lv:g}" for lv in levels])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _finish(fig, save)


def method_clusters(records: pd.DataFrame, methods: Sequence[str], metric: str = "acc",
                    split: str = "test", title: str = "", save: str | Path | None = None
                    ) -> Figure:
    """``metaweighting.txt`` Figs 2–3, 10–11 for many methods: one column per task, in it one
    cluster per method, one point per run; colours cycle through the Okabe-Ito palette and
    each cycle gets its own marker, so no two methods look alike; the legend sits outside."""
    df = _selected(records, split, metric)
    tasks = list(dict.fromkeys(df["task"]))
    markers = ["o", "s", "^", "D", "v"]
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(tasks) + 2.5), 3.8))
    rng = np.random.default_rng(0)  # jitter only; does not touch the global RNG
    for j, m in enumerate(methods):
        colour, marker = OKABE_ITO[j % 8], markers[(j // 8) % len(markers)]
        for i, t in enumerate(tasks):
            v = df[(df["method"] == m) & (df["task"] == t)]["value"].to_numpy()
            x = i - 0.4 + width * (j + 0.5) + rng.uniform(-width / 4, width / 4, v.size)
            ax.scatter(x, v, s=16, color=colour, marker=marker, label=m if i == 0 else None,
                       edgecolor="black", linewidth=0.3)
    for i in range(1, len(tasks)):
        ax.axvline(i - 0.5, color="0.85", linewidth=0.8, zorder=0)
    ax.set_xticks(range(len(tasks)), tasks, rotation=30 if len(tasks) > 6 else 0)
    ax.set_xlabel("task")
    ax.set_ylabel(f"{split} {metric}")
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _finish(fig, save)
