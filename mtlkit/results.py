"""Tidy run records, aggregation over seeds, and paper-style tables.

One record = one number: ``run_id, dataset, architecture, method, hparams
(JSON), seed, task, metric, value, split, epoch, wall_time, device,
selected``.  ``split`` is train / query / val / test; ``metric`` is a metric
name of :mod:`mtlkit.metrics`, ``loss``, or ``weight`` (the mean task weight
of the epoch); ``wall_time`` is the run's mean training seconds per epoch (for
Δt); ``selected`` marks the epoch chosen on the validation split.

Files are CSV or Parquet (by suffix), appendable across runs, and never take a
second copy of a run id.  :func:`paper_table` lays results out as ``rlw.md``
Table 1: one row per method, columns grouped by task, the best value of each
column in bold (by its direction), then Δp and Δt against a baseline.
Used in ``notebooks/01_the_mtl_problem.ipynb``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from mtlkit.metrics import HIGHER_IS_BETTER, delta_p, delta_t

RECORD_COLUMNS = ["run_id", "dataset", "architecture", "method", "hparams", "seed", "task",
                  "metric", "value", "split", "epoch", "wall_time", "device", "selected"]
GROUP = ["dataset", "architecture", "method"]


def make_records(rows: pd.DataFrame, *, run_id: str, dataset: str, architecture: str,
                 method: str, hparams: Mapping[str, Any] | str, seed: int, device: str,
                 wall_time: float, chosen_epoch: int) -> pd.DataFrame:
    """Tidy records from ``rows`` with columns task, metric, value, split, epoch."""
    missing = {"task", "metric", "value", "split", "epoch"} - set(rows.columns)
    if missing:
        raise ValueError(f"rows lack columns {sorted(missing)}")
    df = rows[["task", "metric", "value", "split", "epoch"]].copy()
    hp = hparams if isinstance(hparams, str) else json.dumps(hparams, sort_keys=True,
                                                              default=str)
    for k, v in {"run_id": run_id, "dataset": dataset, "architecture": architecture,
                 "method": method, "hparams": hp, "seed": int(seed), "device": device,
                 "wall_time": float(wall_time)}.items():
        df[k] = v
    df["selected"] = df["epoch"] == chosen_epoch
    return df[RECORD_COLUMNS].reset_index(drop=True)


def read_records(path: str | Path) -> pd.DataFrame:
    """Records from a ``.csv`` or ``.parquet`` file."""
    path = Path(path)
    df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    missing = set(RECORD_COLUMNS) - set(df.columns)
    if missing:
        raise ValueError(f"{path} is not a records file: it lacks {sorted(missing)}")
    df["selected"] = df["selected"].astype(bool)
    return df


def write_records(records: pd.DataFrame, path: str | Path, append: bool = True) -> Path:
    """Write (or append) records; refuses run ids that the file already holds.

    CSV appends in place; Parquet is rewritten atomically (temporary file, then
    ``os.replace``).  ``append=False`` refuses an existing file.
    """
    path = Path(path)
    if path.suffix not in (".csv", ".parquet"):
        raise ValueError(f"records go to a .csv or .parquet file, not {path.name!r}")
    records = records[RECORD_COLUMNS]
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        if not append:
            raise FileExistsError(f"{path} exists; use append=True or another path")
        old = read_records(path)
        clash = sorted(set(old["run_id"]) & set(records["run_id"]))
        if clash:
            raise ValueError(f"{path} already holds run(s) {clash}: a run never overwrites "
                             "another's results; give the run a new id")
        if path.suffix == ".csv":
            records.to_csv(path, mode="a", header=False, index=False)
            return path
        records = pd.concat([old, records], ignore_index=True)
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix == ".csv":
        records.to_csv(tmp, index=False)
    else:
        records.to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return path


def merge_single_task(runs: Mapping[str, pd.DataFrame], method: str = "STL") -> pd.DataFrame:
    """One method's records from T single-task runs: ``runs`` maps each task to
    the records of the run that trained it alone (e.g. ``STL(task=i)``); only
    that task's rows are kept, relabelled ``method``.  ``wall_time`` becomes the
    sum over the T runs (training T models costs T times as much), for Δt."""
    if not runs:
        raise ValueError("runs is empty: give {task: records of the run trained on it}")
    parts = []
    for task, rec in runs.items():
        own = rec[rec["task"] == task]
        if own.empty:
            raise ValueError(f"the run given for task {task!r} has no records of it")
        parts.append(own)
    out = pd.concat(parts, ignore_index=True)
    out["method"] = method
    out["wall_time"] = sum(float(r["wall_time"].iloc[0]) for r in runs.values())
    return out[RECORD_COLUMNS]


def final(records: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """The records of ``split`` at each run's selected epoch."""
    return records[(records["split"] == split) & records["selected"].astype(bool)]


def ci95(values: Sequence[float]) -> float:
    """Half-width of the 95% Student-t confidence interval of the mean (NaN for n < 2)."""
    x = np.asarray(values, dtype=float)
    n = x.size
    if n < 2:
        return float("nan")
    return float(stats.t.ppf(0.975, n - 1) * x.std(ddof=1) / math.sqrt(n))


def aggregate(records: pd.DataFrame, split: str = "test", by: Sequence[str] = GROUP
              ) -> pd.DataFrame:
    """Mean, std, n and 95% CI over seeds (runs) of each (group, task, metric)
    at the selected epoch; also the mean ``wall_time``."""
    df = final(records, split)
    keys = list(by) + ["task", "metric"]
    g = df.groupby(keys, sort=False)
    out = g["value"].agg(mean="mean", std="std", n="count").reset_index()
    out["ci95"] = g["value"].apply(lambda v: ci95(v.to_numpy())).to_numpy()
    out["wall_time"] = g["wall_time"].mean().to_numpy()
    return out


def paper_table(records: pd.DataFrame, split: str = "test", baseline: str = "EW",
                metrics: Mapping[str, Sequence[str]] | None = None,
                higher_is_better: Mapping[str, bool] | None = None,
                methods: Sequence[str] | None = None) -> pd.DataFrame:
    """``rlw.md`` Table 1 as a DataFrame: rows = methods, columns = (task,
    metric) with the mean over seeds, then ("Δp", "↑") in percent and ("Δt",
    "↓") as a ratio, both against ``baseline`` (a method name in ``records``).

    ``metrics``: {task: [metric names]} to show, in order (default: every
    metric except ``loss``, as recorded).  Δp uses exactly these columns.
    """
    agg = aggregate(records, split, by=["method"])
    hib = {**HIGHER_IS_BETTER, **(higher_is_better or {})}
    if metrics is None:
        metrics = {}
        for r in agg[agg["metric"] != "loss"].itertuples():
            metrics.setdefault(r.task, [])
            if r.metric not in metrics[r.task]:
                metrics[r.task].append(r.metric)
    cols = [(t, m) for t, ms in metrics.items() for m in ms]
    wide = agg.pivot_table(index="method", columns=["task", "metric"], values="mean",
                           sort=False)
    missing = [c for c in cols if c not in wide.columns]
    if missing:
        raise ValueError(f"no records for columns {missing}")
    order = list(methods) if methods else list(dict.fromkeys(agg["method"]))
    table = wide.reindex(index=order)[cols]
    table.columns = pd.MultiIndex.from_tuples(cols, names=["task", "metric"])
    if baseline not in table.index:
        raise ValueError(f"baseline {baseline!r} has no records; methods: {list(table.index)}")
    flat = {m: {f"{t}/{n}": table.loc[m, (t, n)] for t, n in cols} for m in table.index}
    tasks = {t: [f"{t}/{n}" for n in ms] for t, ms in metrics.items()}
    dirs = {f"{t}/{n}": hib[n] for t, n in cols}
    table[("Δp", "↑")] = [delta_p(flat[m], flat[baseline], dirs, tasks) for m in table.index]
    times = agg.groupby("method")["wall_time"].mean()
    table[("Δt", "↓")] = [delta_t(times[m], times[baseline]) for m in table.index]
    table.attrs["higher_is_better"] = {**dirs, "Δp/↑": True, "Δt/↓": False}
    return table


def best_mask(table: pd.DataFrame) -> pd.DataFrame:
    """True where a cell is the best of its column (ties all marked), by the
    direction stored in ``table.attrs['higher_is_better']`` (set by
    :func:`paper_table`) or :data:`~mtlkit.metrics.HIGHER_IS_BETTER`."""
    dirs = table.attrs.get("higher_is_better", {})
    mask = pd.DataFrame(False, index=table.index, columns=table.columns)
    for c in table.columns:
        key = "/".join(c) if isinstance(c, tuple) else str(c)
        name = c[-1] if isinstance(c, tuple) else c
        up = dirs.get(key, HIGHER_IS_BETTER.get(name, True))
        col = table[c].astype(float)
        best = col.max() if up else col.min()
        mask[c] = np.isclose(col, best, rtol=0, atol=1e-12)
    return mask


def _fmt(v: float, digits: int) -> str:
    return "" if pd.isna(v) else f"{v:.{digits}f}"


def to_markdown(table: pd.DataFrame, digits: int = 4) -> str:
    """The table as GitHub Markdown, best of each column in **bold**."""
    mask = best_mask(table)
    head = ["method"] + [" ".join(c) if isinstance(c, tuple) else str(c) for c in table.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in table.index:
        cells = []
        for c in table.columns:
            s = _fmt(table.loc[m, c], 2 if c[0] in ("Δp", "Δt") else digits)
            cells.append(f"**{s}**" if mask.loc[m, c] and s else s)
        lines.append("| " + " | ".join([str(m)] + cells) + " |")
    return "\n".join(lines)


def to_html(table: pd.DataFrame, digits: int = 4) -> str:
    """The table as HTML (pandas Styler), best of each column in bold."""
    mask = best_mask(table)
    styler = table.style.format(precision=digits).apply(
        lambda col: ["font-weight: bold" if b else "" for b in mask[col.name]], axis=0)
    return styler.to_html()


# ------------------------------------------------------------------ text (issue 15)
def per_run_average(records: pd.DataFrame, metric: str = "acc", split: str = "test"
                    ) -> pd.DataFrame:
    """The task average of ``metric`` of each run (at its selected epoch), as records with
    task ``"average"``: averaged per run first, so its spread over seeds is the spread of
    the runs' averages (``metaweighting.txt`` §6.4, "average performance")."""
    df = final(records, split)
    df = df[df["metric"] == metric]
    keys = [c for c in RECORD_COLUMNS if c not in ("task", "value")]
    avg = df.groupby(keys, sort=False, dropna=False)["value"].mean().reset_index()
    return avg.assign(task="average")[RECORD_COLUMNS]


def summary_long(records: pd.DataFrame, metric: str = "acc", split: str = "test",
                 methods: Sequence[str] | None = None, average: bool = True) -> pd.DataFrame:
    """Mean, std, n and the 95% CI of the mean over runs of each (method, task), with the
    per-run task average as task ``"average"`` (``average=True``); one row each."""
    df = final(records, split)
    df = df[df["metric"] == metric]
    if average:
        df = pd.concat([df, per_run_average(records, metric, split)], ignore_index=True)
    g = df.groupby(["method", "task"], sort=False)["value"]
    out = g.agg(mean="mean", std="std", n="count").reset_index()
    half = g.apply(lambda v: ci95(v.to_numpy())).to_numpy()
    out["lo"], out["hi"] = out["mean"] - half, out["mean"] + half
    if methods is not None:
        out = out[out["method"].isin(list(methods))]
        out["method"] = pd.Categorical(out["method"], list(methods), ordered=True)
        out = out.sort_values(["method"], kind="stable")
        out["method"] = out["method"].astype(str)
    return out.reset_index(drop=True)


def summary_table(records: pd.DataFrame, metric: str = "acc", split: str = "test",
                  methods: Sequence[str] | None = None, digits: int = 3) -> pd.DataFrame:
    """:func:`summary_long` as a method x task table of ``"mean ± std [lo, hi]"`` strings
    (tasks in record order, then ``average``); ``nan`` std/CI with one run."""
    long = summary_long(records, metric, split, methods)
    f = f"{{:.{digits}f}}"
    long["cell"] = [f"{f.format(m)} ± {f.format(s)} [{f.format(lo)}, {f.format(hi)}]"
                    for m, s, lo, hi in zip(long["mean"], long["std"], long["lo"], long["hi"])]
    tasks = list(dict.fromkeys(long["task"]))
    order = list(methods) if methods is not None else list(dict.fromkeys(long["method"]))
    table = long.pivot(index="method", columns="task", values="cell")
    return table.reindex(index=[m for m in order if m in table.index], columns=tasks)
