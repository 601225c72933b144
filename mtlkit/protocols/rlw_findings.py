"""Tables, timings and verdicts of the RLW paper's classification claims, from tidy records
over seeds (:mod:`mtlkit.results`, :mod:`mtlkit.verdicts`).

The tables of ``rlw.md`` App. C.4-C.6 report a task average (CelebA's 40 accuracies,
Office's domains, XTREME's languages); :func:`with_average` adds it to the records as a
task ``"avg"``, so that every comparison below is one of :func:`mtlkit.verdicts.compare_methods`
(paired by seed).  A claim becomes a :class:`Finding`, which the notebook records with
``nb.finding(f.claim, f.supported, f.detail, f.source)`` (never asserted; this layer does not
import the notebook helpers):

=========================  ================================================================
helper                     the paper's claim it tests
=========================  ================================================================
:func:`all_better`         "RLW with all six distributions outperforms EW" (C.5, C.6, §5.6)
:func:`all_comparable`     "RLW with any distribution is comparable to EW"
:func:`versus_baselines`   "RLW performs comparably with / better than most baselines"
:func:`is_weakest`         "Bernoulli is the weakest distribution" (Table 9)
:func:`is_best`            "constrained Bernoulli achieves the best average" (Table 10)
:func:`same_cost`          "RLW costs the same time as EW" (§1, §5.4)
:func:`auc_claim`          "RLW converges as fast as EW / constrained Bernoulli slower" (C.1)
=========================  ================================================================

Used by notebooks 56-59.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from mtlkit import experiments, results, shipped
from mtlkit.verdicts import Comparison, compare, compare_methods, per_seed

AVG = "avg"


@dataclass(frozen=True)
class Finding:
    """A verdict on one of the paper's empirical claims (True, False or None)."""

    claim: str
    supported: bool | None
    detail: str
    source: str


# --------------------------------------------------------------------------- grid
def run_grid_lean(methods: Sequence[Any], seeds: Sequence[int], data, make_model, config,
                  out_dir, warmup_steps: int = 0, prune: bool = True,
                  log: Callable[[str], None] | None = print):
    """:func:`mtlkit.experiments.run_grid` one method x seed at a time; with ``prune`` each
    finished run's model files (checkpoint with the optimizer state, best model) are deleted
    (``keep_files="none"``), its records, step log and summary stay; without, ``config``'s
    ``keep_files`` decides.  A transformer run's
    checkpoint holds three copies of the model (weights, Adam's two moments): about 0.3 GB
    for MiniLM and 2 GB for mBERT, which a 15 x 5 grid cannot keep on disk."""
    runs, skipped, warm = [], [], warmup_steps
    config = replace(config, keep_files="none") if prune else config
    for m in methods:
        for s in seeds:
            g = experiments.run_grid([m], [s], data, make_model, config, out_dir, log=log,
                                     warmup_steps=warm)
            warm = 0
            skipped += [x for x in g.skipped if x not in skipped]
            runs += g.runs
            if g.skipped:
                break
    return experiments.Grid(runs, skipped)


# --------------------------------------------------------------------------- records
def with_average(records: pd.DataFrame, metric: str, tasks: Sequence[str] | None = None,
                 name: str = AVG) -> pd.DataFrame:
    """``records`` plus, for every run, split and epoch, the mean of ``metric`` over
    ``tasks`` (default: every task that reports it) as task ``name``."""
    rows = records[(records["metric"] == metric) & (records["task"] != name)]
    if tasks is not None:
        rows = rows[rows["task"].isin(list(tasks))]
    if rows.empty:
        raise ValueError(f"no {metric!r} records to average")
    keys = ["run_id", "split", "epoch"]
    first = {c: "first" for c in records.columns if c not in (*keys, "value", "task")}
    avg = rows.groupby(keys, sort=False).agg({**first, "value": "mean"}).reset_index()
    avg["task"] = name
    return pd.concat([records, avg[records.columns]], ignore_index=True)


def compact(records: pd.DataFrame, metrics: Sequence[str] = ("acc",)) -> pd.DataFrame:
    """The records a shipped table needs: validation and test ``metrics`` at each run's
    selected epoch, and the task average (:func:`with_average`) at every epoch (learning
    curves).  With 40 tasks the full records are tens of MB; this keeps a few."""
    keep = (records["split"].isin(["val", "test"]) & records["metric"].isin(list(metrics))
            & (records["selected"].astype(bool) | (records["task"] == AVG)))
    return records[keep].reset_index(drop=True)


def summary_table(records: pd.DataFrame, methods: Sequence[str], tasks: Sequence[str],
                  metric: str, scale: float = 100.0,
                  step_ratio: pd.Series | None = None) -> pd.DataFrame:
    """One row per method: the mean test ``metric`` of each task and of their average
    (records from :func:`with_average`) times ``scale``, the 95% CI half-width of the
    average over seeds, the number of seeds and (if given) Δt per step against EW."""
    agg = results.aggregate(records[records["metric"] == metric], by=["method"])
    wide = agg.pivot_table(index="method", columns="task", values="mean", sort=False)
    cols = [*tasks, AVG]
    missing = [c for c in cols if c not in wide.columns]
    if missing:
        raise ValueError(f"no test {metric!r} records of tasks {missing}")
    table = wide.reindex(index=list(methods))[cols] * scale
    avg = agg[agg["task"] == AVG].set_index("method")
    table["±95% CI"] = avg["ci95"].reindex(table.index) * scale
    table["seeds"] = avg["n"].reindex(table.index)
    if step_ratio is not None:
        table["Δt step"] = step_ratio.reindex(table.index)
    return table.rename(columns={AVG: "Avg"})


def pooled(records: pd.DataFrame, methods: Sequence[str], task: str, metric: str,
           split: str = "test") -> pd.Series:
    """Per seed, the mean over ``methods`` of a task's metric (seeds all of them ran)."""
    cols = [per_seed(records, m, task, metric, split).rename(m) for m in methods]
    return pd.concat(cols, axis=1, join="inner").mean(axis=1)


# --------------------------------------------------------------------------- verdicts
def comparable(c: Comparison, margin: float) -> bool | None:
    """True when the CI lies inside ``[-margin, margin]``, False when it lies wholly
    outside it, None otherwise."""
    if c.comparable(margin):
        return True
    if c.lo > margin or c.hi < -margin:
        return False
    return None


def _cmp(records, a, b, task, metric) -> Comparison:
    return compare_methods(records, a, b, task, metric)


def _lines(cs: Sequence[Comparison]) -> str:
    return "; ".join(str(c) for c in cs)


def all_better(records: pd.DataFrame, rows: Sequence[str], baseline: str, task: str,
               metric: str, claim: str, source: str) -> Finding:
    """Supported if every row is better than ``baseline`` (whole CI above 0), not
    supported if one is worse, inconclusive otherwise."""
    cs = [_cmp(records, r, baseline, task, metric) for r in rows]
    out = [c.outcome for c in cs]
    verdict = True if all(o == "better" for o in out) else (
        False if "worse" in out else None)
    counts = {k: out.count(k) for k in ("better", "indistinguishable", "worse")}
    return Finding(claim, verdict, f"{counts}: {_lines(cs)}", source)


def all_comparable(records: pd.DataFrame, rows: Sequence[str], baseline: str, task: str,
                   metric: str, margin: float, claim: str, source: str) -> Finding:
    """Supported if every row's difference to ``baseline`` lies within ±``margin`` (CI),
    not supported if one lies wholly outside, inconclusive otherwise."""
    cs = [_cmp(records, r, baseline, task, metric) for r in rows]
    vs = [comparable(c, margin) for c in cs]
    verdict = True if all(v is True for v in vs) else (False if False in vs else None)
    return Finding(claim, verdict, f"margin ±{margin:g}: {_lines(cs)}", source)


def versus_baselines(records: pd.DataFrame, rows: Sequence[str], baselines: Sequence[str],
                     task: str, metric: str, margin: float, claim: str, source: str,
                     how: str = "comparable") -> Finding:
    """The seed-wise mean of ``rows`` (RLW pooled over its distributions) against each
    baseline.  ``how="comparable"``: supported if within ±``margin`` of every baseline or
    better, not supported if worse than one.  ``how="better_than_most"``: supported if
    better than more than half of them, not supported if not better than any and worse
    than at least half, inconclusive otherwise."""
    a = pooled(records, rows, task, metric)
    up = metric != "loss"
    cs = [compare(a, per_seed(records, b, task, metric), higher_is_better=up,
                  names=("RLW (pooled)", b), metric=f"{task}/{metric}") for b in baselines]
    out = [c.outcome for c in cs]
    if how == "comparable":
        ok = [c.outcome == "better" or c.comparable(margin) for c in cs]
        verdict = True if all(ok) else (False if "worse" in out else None)
    elif how == "better_than_most":
        nb_, nw = out.count("better"), out.count("worse")
        verdict = True if nb_ > len(cs) / 2 else (False if nb_ == 0 and nw >= len(cs) / 2
                                                   else None)
    else:
        raise ValueError(f"how={how!r}; choose 'comparable' or 'better_than_most'")
    counts = {k: out.count(k) for k in ("better", "indistinguishable", "worse")}
    return Finding(claim, verdict, f"{counts}, margin ±{margin:g}: {_lines(cs)}", source)


def is_weakest(records: pd.DataFrame, row: str, others: Sequence[str], task: str,
               metric: str, claim: str, source: str) -> Finding:
    """``row`` against the seed-wise mean of ``others``: supported if worse, not
    supported if better, inconclusive otherwise."""
    c = compare(per_seed(records, row, task, metric), pooled(records, others, task, metric),
                higher_is_better=metric != "loss", names=(row, "mean of the others"),
                metric=f"{task}/{metric}")
    verdict = {"worse": True, "better": False}.get(c.outcome)
    return Finding(claim, verdict, str(c), source)


def is_best(records: pd.DataFrame, row: str, others: Sequence[str], task: str, metric: str,
            claim: str, source: str) -> Finding:
    """Supported if ``row`` has the best mean and no other method is significantly better;
    not supported if one is; inconclusive otherwise (best mean not shown)."""
    cs = [_cmp(records, row, o, task, metric) for o in others]
    if any(c.outcome == "worse" for c in cs):
        verdict: bool | None = False
    else:
        verdict = True if all(c.diff > 0 for c in cs) else None
    beaten = sum(c.outcome == "better" for c in cs)
    return Finding(claim, verdict, f"significantly better than {beaten} of {len(cs)}; "
                   + _lines(cs), source)


# --------------------------------------------------------------------------- time
def step_time_replicates(methods: Sequence[Any], data, make_model: Callable[[int], Any],
                         config, replicates: int = 3, steps: int = 3,
                         warmup: int = 1) -> pd.DataFrame:
    """Seconds per training step, one row per replicate, one column per method: each
    replicate is one interleaved round of :func:`mtlkit.experiments.step_times` (every
    method in turn on the same batch, the order rotated by the replicate number)."""
    methods = [experiments.parse_method(m) if isinstance(m, str) else m for m in methods]
    rows = []
    for r in range(replicates):
        k = r % len(methods)
        order = methods[k:] + methods[:k]
        rows.append(experiments.step_times(order, data, make_model, config, rounds=1,
                                           steps=steps, warmup=warmup))
    return pd.DataFrame(rows).reset_index(drop=True)[[m.label for m in methods]]


def same_cost(times: pd.DataFrame, rows: Sequence[str], baseline: str, margin: float,
              claim: str, source: str) -> Finding:
    """Per replicate, (t_row - t_baseline) / mean t_baseline: supported if its CI lies
    within ±``margin`` for every row, not supported if one lies wholly outside."""
    ref = float(times[baseline].mean())
    cs = [compare(times[r] / ref, times[baseline] / ref, higher_is_better=False,
                  names=(r, baseline), metric=f"seconds per step / {baseline}'s")
          for r in rows]
    vs = [comparable(c, margin) for c in cs]
    verdict = True if all(v is True for v in vs) else (False if False in vs else None)
    ratio = times.median() / times[baseline].median()
    return Finding(claim, verdict, f"margin ±{margin:.0%} of EW's step, "
                   f"{len(times)} interleaved replicates; median ratios "
                   + ", ".join(f"{r} ×{ratio[r]:.2f}" for r in rows) + "; "
                   + _lines(cs).replace(" seeds (", " replicates ("), source)


# --------------------------------------------------------------------------- curves
def curves(records: pd.DataFrame, methods: Sequence[str], metric: str, task: str = AVG,
           split: str = "val") -> pd.DataFrame:
    """Per method and epoch, the mean of ``task``'s ``metric`` over seeds with its 95% CI
    (columns method, epoch, mean, lo, hi, n): the learning curves of ``rlw.md`` Fig. 1."""
    df = records[(records["task"] == task) & (records["metric"] == metric)
                 & (records["split"] == split) & records["method"].isin(list(methods))]
    if df.empty:
        raise ValueError(f"no {split} {task}/{metric} records of {list(methods)}")
    g = df.groupby(["method", "epoch"], sort=False)["value"]
    out = g.agg(mean="mean", n="count").reset_index()
    half = g.apply(lambda v: results.ci95(v.to_numpy())).to_numpy()
    out["lo"], out["hi"] = out["mean"] - half, out["mean"] + half
    out["method"] = pd.Categorical(out["method"], categories=list(methods), ordered=True)
    return out.sort_values(["method", "epoch"]).reset_index(drop=True)


def auc(records: pd.DataFrame, method: str, metric: str, task: str = AVG,
        split: str = "val", epochs: int | None = None) -> pd.Series:
    """Per seed, the mean of ``task``'s ``metric`` over epochs 1..``epochs`` (all if None):
    the area under the learning curve divided by its length, a convergence-speed score."""
    df = records[(records["method"] == method) & (records["task"] == task)
                 & (records["metric"] == metric) & (records["split"] == split)]
    if epochs is not None:
        df = df[df["epoch"] <= epochs]
    if df.empty:
        raise ValueError(f"no {split} {task}/{metric} curve of {method!r}")
    return df.groupby("seed")["value"].mean()


def auc_claim(records: pd.DataFrame, rows: Sequence[str], baseline: str, metric: str,
              claim: str, source: str, expect: str, margin: float,
              epochs: int | None = None) -> Finding:
    """Learning-curve area of each row against ``baseline``'s, paired by seed.
    ``expect="same"``: supported if every row is within ±``margin``; ``"slower"``:
    supported if every row is worse (lower area)."""
    cs = [compare(auc(records, r, metric, epochs=epochs), auc(records, baseline, metric,
                                                              epochs=epochs),
                  names=(r, baseline), metric=f"mean val {metric} over epochs")
          for r in rows]
    if expect == "same":
        vs = [comparable(c, margin) for c in cs]
        verdict = True if all(v is True for v in vs) else (False if False in vs else None)
    elif expect == "slower":
        if all(c.outcome == "worse" for c in cs):
            verdict = True
        elif all(c.outcome == "better" or c.comparable(margin) for c in cs):
            verdict = False  # shown to be as fast (or faster)
        else:
            verdict = None
    else:
        raise ValueError(f"expect={expect!r}; choose 'same' or 'slower'")
    return Finding(claim, verdict, f"margin ±{margin:g}: {_lines(cs)}", source)


# --------------------------------------------------------------------------- shipped
def shipped_table(stem: str, name: str) -> tuple[str, pd.DataFrame] | None:
    """(label, table) of a shipped CSV of notebook ``stem`` (``results/<stem>/<name>``),
    or None when nothing is shipped (the caller says so)."""
    pre = shipped.load(stem)
    if pre is None or not (pre.folder / name).exists():
        return None
    return pre.label(), pre.read_csv(name).set_index("method")


def fmt_ratio(x: float) -> str:
    """``×1.02`` (or ``n/a`` for a missing value)."""
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"×{x:.2f}"
