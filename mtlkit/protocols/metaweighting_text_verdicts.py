"""Verdicts on the MetaWeighting paper's empirical claims (``metaweighting.txt`` §6.4–6.6,
App. C) from paired 95% confidence intervals over seeds (:mod:`mtlkit.verdicts`).

* :func:`versus`, :func:`beats_all`, :func:`beats_all_on_average`: "MetaWeighting
  outperforms all baselines on every task (or a share of them)" and "its average
  performance is superior to that of all baselines" (Figs 2–3, 10–11);
* :func:`per_run`, :func:`interior_peak`, :func:`slopes`, :func:`insensitive`: the
  query-ratio and step-size sweeps (Figs 4–5: "first increases, then decreases", "not very
  sensitive to alpha").

Each verdict is True (supported), False (not supported) or None (inconclusive), with the
statistics in words, for :func:`mtlkit.nb.finding`.  Used by notebooks 50, 52 and 53.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from mtlkit import results


def versus(records: pd.DataFrame, a: str, baselines: Sequence[str], metric: str = "acc"
           ) -> pd.DataFrame:
    """``a`` against each baseline on every task and on the per-run task average (paired
    95% CIs over seeds, :func:`mtlkit.verdicts.compare_methods`): columns task, baseline,
    diff, lo, hi, outcome (``better`` means ``a`` is better)."""
    from mtlkit import verdicts

    rec = pd.concat([results.final(records), results.per_run_average(records, metric)],
                    ignore_index=True)
    tasks = list(dict.fromkeys(rec[rec["metric"] == metric]["task"]))
    rows = []
    for t in tasks:
        for b in baselines:
            c = verdicts.compare_methods(rec, a, b, t, metric)
            rows.append({"task": t, "baseline": b, "diff": c.diff, "lo": c.lo, "hi": c.hi,
                         "n": min(c.n_a, c.n_b), "outcome": c.outcome})
    return pd.DataFrame(rows)


def beats_all(table: pd.DataFrame, share: float = 1.0) -> tuple[bool | None, str]:
    """The verdict on "``a`` outperforms every baseline on (a ``share`` of) the tasks" from
    :func:`versus` (tasks only, not the average).  A task is *won* when ``a`` is better
    than every baseline (whole CI above 0), *lost* when it is worse than one, undecided
    otherwise.  True when at least ``share`` of the tasks are won, False when even winning
    every undecided task would not reach ``share``, None (inconclusive) otherwise; and the
    counts, in words."""
    per_task = table[table["task"] != "average"]
    tasks = list(dict.fromkeys(per_task["task"]))
    out = {t: per_task[per_task["task"] == t]["outcome"] for t in tasks}
    won = [t for t in tasks if (out[t] == "better").all()]
    lost = [t for t in tasks if (out[t] == "worse").any()]
    need = share * len(tasks) - 1e-9
    verdict = True if len(won) >= need else (False if len(tasks) - len(lost) < need else None)
    worse = sorted({f"{r.task} vs {r.baseline}" for r in per_task.itertuples()
                    if r.outcome == "worse"})
    words = (f"better than every baseline (whole 95% CI above 0) on {len(won)} of {len(tasks)} "
             f"tasks, worse than some baseline on {len(lost)}"
             + (f" ({', '.join(worse[:6])}{', ...' if len(worse) > 6 else ''})" if worse else "")
             + f"; needed {share:.0%} of the tasks")
    return verdict, words


def beats_all_on_average(table: pd.DataFrame) -> tuple[bool | None, str]:
    """The verdict on "``a``'s average is superior to every baseline's" from :func:`versus`."""
    avg = table[table["task"] == "average"]
    worse = avg[avg["outcome"] == "worse"]["baseline"].tolist()
    better = avg[avg["outcome"] == "better"]["baseline"].tolist()
    verdict = True if len(better) == len(avg) else (False if worse else None)
    lo = avg.sort_values("diff").iloc[0] if len(avg) else None
    words = (f"task-average accuracy better than {len(better)} of {len(avg)} baselines, worse "
             f"than {worse or 'none'}" + (f"; closest: {lo.baseline} {lo['diff']:+.4f} "
                                          f"[{lo.lo:+.4f}, {lo.hi:+.4f}]" if lo is not None
                                          else ""))
    return verdict, words


# ------------------------------------------------------------------ sweeps (Figs 4-5)
def per_run(records: pd.DataFrame, metric: str = "acc") -> pd.DataFrame:
    """One row per run: dataset, method, seed and its task-average test ``metric``."""
    avg = results.per_run_average(records, metric)
    return avg[["dataset", "method", "seed", "value"]].reset_index(drop=True)


def by_seed(values: pd.DataFrame, level: Any) -> pd.Series:
    """The values of one sweep level, indexed by seed (for paired comparisons)."""
    return values[values["level"] == level].set_index("seed")["value"].sort_index()


def interior_peak(values: pd.DataFrame) -> tuple[bool | None, str]:
    """The verdict on "as the level grows, the metric first increases and then decreases"
    (§6.5) from ``values`` (columns level, seed, value): True when the best level (by its
    mean) is interior and better than both end levels (paired 95% CIs); False when the best
    is an end level and better than every interior one; None otherwise."""
    from mtlkit import verdicts

    levels = sorted(values["level"].unique())
    if len(levels) < 3:
        return None, f"{len(levels)} levels: no interior level to peak at"
    means = values.groupby("level")["value"].mean()
    peak = means.idxmax()
    if peak in (levels[0], levels[-1]):
        cs = [verdicts.compare(by_seed(values, peak), by_seed(values, lv))
              for lv in levels[1:-1]]
        ok = False if all(c.outcome == "better" for c in cs) else None
        return ok, (f"best mean at the end level {peak:g} ({means[peak]:.4f}); better than "
                    f"{sum(c.outcome == 'better' for c in cs)} of {len(cs)} interior levels")
    cs = [verdicts.compare(by_seed(values, peak), by_seed(values, lv))
          for lv in (levels[0], levels[-1])]
    ok = True if all(c.outcome == "better" for c in cs) else None
    return ok, (f"best mean at the interior level {peak:g} ({means[peak]:.4f}); against the "
                f"ends: {cs[0].diff:+.4f} [{cs[0].lo:+.4f}, {cs[0].hi:+.4f}] and "
                f"{cs[1].diff:+.4f} [{cs[1].lo:+.4f}, {cs[1].hi:+.4f}]")


def slopes(values: pd.DataFrame) -> pd.Series:
    """Per seed, the least-squares slope of the value on the level (its change per unit)."""
    def one(g: pd.DataFrame) -> float:
        x, y = g["level"].to_numpy(float), g["value"].to_numpy(float)
        x = x - x.mean()
        return float((x * (y - y.mean())).sum() / (x * x).sum()) if (x * x).sum() else math.nan
    return values.groupby("seed")[["level", "value"]].apply(one).sort_index()


def insensitive(values: pd.DataFrame, levels: Sequence[float], margin: float
                ) -> tuple[bool | None, str]:
    """The verdict on "the metric is not sensitive to the level within ``levels``" (§6.6):
    True when every pair of those levels is comparable within ``margin`` (whole paired CI
    of the difference inside [-margin, margin]), False when a pair differs (CI beyond 0),
    None otherwise."""
    from mtlkit import verdicts

    have = [float(lv) for lv in sorted(levels) if (values["level"] == lv).any()]
    if len(have) < 2:
        return None, f"fewer than two of the levels {list(levels)} were run"
    pairs = [(a, b) for i, a in enumerate(have) for b in have[i + 1:]]
    cs = [verdicts.compare(by_seed(values, a), by_seed(values, b)) for a, b in pairs]
    widest = max(cs, key=lambda c: max(abs(c.lo), abs(c.hi)))
    if all(c.comparable(margin) for c in cs):
        ok: bool | None = True
    elif any(c.outcome != "indistinguishable" for c in cs):
        ok = False
    else:
        ok = None
    return ok, (f"levels {have}: {sum(c.comparable(margin) for c in cs)} of {len(cs)} pairs "
                f"within ±{margin:g}, {sum(c.outcome != 'indistinguishable' for c in cs)} "
                f"differ; widest difference {widest.diff:+.4f} [{widest.lo:+.4f}, "
                f"{widest.hi:+.4f}]")
