"""Reading dense-prediction records against the RLW paper's claims (notebooks 51 and 55).

Everything here works on the tidy records of :mod:`mtlkit.results` and returns numbers
or ``(verdict, detail)`` pairs for :func:`mtlkit.nb.finding`; nothing is asserted.

* Δp per seed (:func:`per_seed_delta_p`): each run against the baseline run *of the
  same seed* (paired), so that a verdict's interval is over seeds:

      Δp_s(m) = 100/T sum_t 1/N_t sum_n s_{t,n} (M_{t,n}(m, s) - M_{t,n}(B, s)) / M_{t,n}(B, s)

* the paper's selection (:func:`reselect`): NYUv2's, Cityscapes' and PASCAL-Context's
  validation sets double as their test sets, so the paper's epoch choice is made on
  the test split; the stand-in has both, and can show what that choice adds;
* convergence (:func:`curves`, :func:`convergence_gap`): ``rlw.md`` App. C.1, Fig. 1;
* cost (:func:`timing_replicates`, :func:`peak_memory`): Δt per step, interleaved;
* verdicts (``claim_*``): intervals from :mod:`mtlkit.verdicts`, margins fixed here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mtlkit import experiments, results, verdicts
from mtlkit.metrics import HIGHER_IS_BETTER, delta_p
from mtlkit.protocols.rlw_dense import EXTRA_DIRECTIONS, RLW6

#: Δp (percentage points) within which two methods count as comparable: about the
#: largest gain the paper reports for RLW on NYUv2 (+1.02 Normal, +1.29 constrained
#: Bernoulli), so a gap smaller than that is within what the paper calls a real effect
DP_MARGIN = 1.0
#: relative time per step within which a method costs "the same" as EW
TIME_MARGIN = 0.10
DIRECTIONS = {**HIGHER_IS_BETTER, **EXTRA_DIRECTIONS}
BERNOULLI = ("RLW-bernoulli", "RLW-constrained_bernoulli")
CONTINUOUS = tuple(m for m in RLW6 if m not in BERNOULLI)
#: the three distributions of Fig. 1 (App. C.1 names Normal, Bernoulli, constrained Bernoulli)
FIG1 = ("RLW-normal", "RLW-bernoulli", "RLW-constrained_bernoulli")


# ---------------------------------------------------------------------- Δp by seed
def _flat(df: pd.DataFrame) -> dict[str, float]:
    return {f"{r.task}/{r.metric}": float(r.value) for r in df.itertuples()}


def per_seed_delta_p(records: pd.DataFrame, metrics: Mapping[str, Sequence[str]],
                     baseline: str = "EW", split: str = "test",
                     key: str = "method") -> pd.DataFrame:
    """Δp (%) of every ``key`` value (method) against ``baseline`` of the same seed, on the
    columns ``metrics`` = {task: [metric]}: a DataFrame seed x method (NaN where a run is
    missing).  ``key`` may name another column of the records (e.g. one that joins the
    architecture and the method)."""
    fin = results.final(records, split)
    tasks = {t: [f"{t}/{m}" for m in ms] for t, ms in metrics.items()}
    dirs = {f"{t}/{m}": DIRECTIONS[m] for t, ms in metrics.items() for m in ms}
    out: dict[str, dict[int, float]] = {}
    for seed, part in fin.groupby("seed"):
        base = part[part[key] == baseline]
        if base.empty:
            continue
        b = _flat(base)
        for label, run in part.groupby(key, sort=False):
            m = _flat(run)
            if all(c in m for c in dirs):
                try:
                    out.setdefault(label, {})[int(seed)] = delta_p(m, b, dirs, tasks)
                except ValueError:  # a baseline value of 0 (e.g. no pixel within 11.25°)
                    out.setdefault(label, {})[int(seed)] = float("nan")
    if not out:
        raise ValueError(f"no seed has a {baseline!r} run with {split} records of {dict(metrics)}")
    order = list(dict.fromkeys(fin[key]))
    return pd.DataFrame(out)[[k for k in order if k in out]].sort_index()


def paper_table(records: pd.DataFrame, metrics: Mapping[str, Sequence[str]],
                methods: Sequence[str] | None = None, baseline: str = "EW",
                split: str = "test") -> tuple[pd.DataFrame, list[str]]:
    """(:func:`mtlkit.results.paper_table` on the columns ``metrics``, notes).  A column
    whose baseline mean is 0 or missing cannot enter Δp (it divides by it): it is left
    out of the table and named in the notes, instead of failing the whole table."""
    agg = results.aggregate(records, split, by=["method"])
    base = agg[agg["method"] == baseline].set_index(["task", "metric"])["mean"]
    keep, notes = {}, []
    for t, ms in metrics.items():
        ok = [m for m in ms if (t, m) in base.index and base[(t, m)] not in (0,)
              and np.isfinite(base[(t, m)])]
        notes += [f"{t}/{m}: {baseline}'s value is {base.get((t, m), 'missing')}, left out "
                  "of the table and Δp" for m in ms if m not in ok]
        if ok:
            keep[t] = ok
    table = results.paper_table(records, split, baseline, keep, DIRECTIONS, methods)
    return table, notes


def slim_records(records: pd.DataFrame, curves: Mapping[str, str] | None = None,
                 digits: int = 6) -> pd.DataFrame:
    """The records that ship (a few hundred KB): each run's selected epoch on the test and
    validation splits (the tables, the verdicts, validation = test on the real releases),
    and the validation value of ``curves`` = {task: metric} at every epoch (Fig. 1's
    panels).  Values keep ``digits`` significant digits; a run's ``hparams`` (the same on
    every row of a run) stay on its test rows only.  Training rows, the other per-epoch
    rows and the full precision stay in the run's own ``all/records.csv``."""
    split = records["split"]
    keep = records["selected"].astype(bool) & split.isin(["test", "val"])
    if curves:
        pairs = set(curves.items())
        keep |= (split == "val") & pd.Series(
            [(t, m) in pairs for t, m in zip(records["task"], records["metric"])],
            index=records.index)
    out = records[keep].reset_index(drop=True)
    return out.assign(
        hparams=out["hparams"].where(out["split"] == "test", ""),
        value=[float(f"{v:.{digits}g}") for v in out["value"]],
        wall_time=out["wall_time"].round(3))


def summarize(dp: pd.DataFrame) -> pd.DataFrame:
    """Mean, 95% CI half-width and n over seeds of each column of :func:`per_seed_delta_p`."""
    return pd.DataFrame({"mean": dp.mean(), "ci95": [results.ci95(dp[c].dropna())
                                                     for c in dp], "n": dp.count()})


def versus_zero(series: pd.Series, name: str, against: str = "EW",
                metric: str = "Δp") -> verdicts.Comparison:
    """The paired interval of a per-seed difference (already against the baseline) around 0."""
    s = series.dropna()
    return verdicts.compare(s, pd.Series(0.0, index=s.index), names=(name, against),
                            metric=metric)


# ------------------------------------------------------------- the paper's selection
def reselect(records: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """The records with each run's ``selected`` epoch re-chosen by the mean ``split`` loss
    over tasks (the paper's protocol on NYUv2, whose validation set is its test set).
    Rows that exist only at the original epoch (extra metrics) keep their place but are no
    longer selected unless the epoch is the same."""
    loss = records[(records["split"] == split) & (records["metric"] == "loss")]
    if loss.empty:
        raise ValueError(f"no {split} losses in the records: cannot select on {split}")
    mean = loss.groupby(["run_id", "epoch"])["value"].mean().reset_index()
    best = mean.loc[mean.groupby("run_id")["value"].idxmin(), ["run_id", "epoch"]]
    chosen = dict(zip(best["run_id"], best["epoch"]))
    out = records.copy()
    out["selected"] = out["epoch"] == out["run_id"].map(chosen)
    return out


# ---------------------------------------------------------------------- convergence
def curves(records: pd.DataFrame, task: str, metric: str, split: str = "val",
           methods: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean and 95% CI over seeds of one metric at every evaluated epoch:
    columns method, epoch, mean, ci95, n."""
    df = records[(records["task"] == task) & (records["metric"] == metric)
                 & (records["split"] == split)]
    if methods is not None:
        df = df[df["method"].isin(methods)]
    if df.empty:
        raise ValueError(f"no {split} records of {task}/{metric}")
    g = df.groupby(["method", "epoch"], sort=False)["value"]
    out = g.agg(mean="mean", n="count").reset_index()
    out["ci95"] = g.apply(lambda v: results.ci95(v.to_numpy())).to_numpy()
    return out


def convergence_gap(records: pd.DataFrame, metrics: Mapping[str, Sequence[str]],
                    baseline: str = "EW", split: str = "val") -> pd.DataFrame:
    """Seed x method: the mean over evaluated epochs of Δp (%) against ``baseline`` at the
    same epoch and seed, on the ``split`` metrics.  Negative = behind the baseline during
    training (slower convergence, Fig. 1); 0 = the same curve."""
    df = records[records["split"] == split]
    per_epoch = []
    for _, part in df.groupby("epoch"):
        sel = part.assign(selected=True)
        try:
            per_epoch.append(per_seed_delta_p(sel, metrics, baseline, split))
        except ValueError:
            continue
    if not per_epoch:
        raise ValueError(f"no {split} records shared by {baseline!r} and the other methods")
    return pd.concat(per_epoch).groupby(level=0).mean()


# ---------------------------------------------------------------------------- cost
def timing_replicates(methods: Sequence[Any], data, make_model: Callable, config,
                      replicates: int = 3, steps: int = 4, warmup: int = 1) -> pd.DataFrame:
    """Seconds per training step, replicate x method: ``replicates`` independent calls of
    :func:`mtlkit.experiments.step_times` (interleaved, one round each), so that a ratio
    to EW has an interval over replicates."""
    rows = [experiments.step_times(methods, data, make_model, config, rounds=1, steps=steps,
                                   warmup=warmup) for _ in range(replicates)]
    return pd.DataFrame(rows).reset_index(drop=True)


def peak_memory(methods: Sequence[Any], data, make_model: Callable, config,
                steps: int = 2) -> pd.Series:
    """Peak CUDA memory (MiB) of a few training steps of each method, one at a time;
    NaN off CUDA (no comparable measurement on a CPU)."""
    import torch

    if not str(config.device).startswith("cuda"):
        return pd.Series({experiments.parse_method(m).label if isinstance(m, str) else m.label:
                          float("nan") for m in methods}, name="peak_MiB")
    out = {}
    for m in methods:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        s = experiments.step_times([m], data, make_model, config, rounds=1, steps=steps,
                                   warmup=1)
        out[s.index[0]] = torch.cuda.max_memory_allocated() / 2**20
    return pd.Series(out, name="peak_MiB")


def time_ratios(times: pd.DataFrame, baseline: str = "EW") -> pd.DataFrame:
    """Replicate x method: time per step / the baseline's in the same replicate."""
    return times.div(times[baseline], axis=0)


# -------------------------------------------------------------------------- verdicts
Verdict = tuple[bool | None, str]


def _lines(cs: Sequence[verdicts.Comparison]) -> str:
    return "; ".join(f"{c.a} {c.diff:+.2f} [{c.lo:+.2f}, {c.hi:+.2f}]" for c in cs)


def claim_comparable(dp: pd.DataFrame, rows: Sequence[str] = RLW6,
                     margin: float = DP_MARGIN) -> Verdict:
    """"RLW with any distribution is comparable to EW": non-inferiority on Δp per seed.
    Supported if every row's CI lies above ``-margin``; not supported if some row's
    whole CI lies below ``-margin``; inconclusive otherwise."""
    cs = [versus_zero(dp[r], r) for r in rows if r in dp]
    if not cs:
        return None, "no RLW rows ran"
    ok = all(c.lo >= -margin for c in cs)
    bad = [c.a for c in cs if c.hi < -margin]
    verdict = True if ok else (False if bad else None)
    return verdict, (f"Δp − EW per seed, mean [95% CI], margin ±{margin:g} pp: {_lines(cs)}"
                     + (f"; clearly worse: {bad}" if bad else ""))


def claim_outperforms(dp: pd.DataFrame, rows: Sequence[str] = RLW6) -> Verdict:
    """"RLW with six distributions can always outperform EW" (§5.4): supported if every
    row's CI of Δp is above 0, not supported if one is below 0, else inconclusive."""
    cs = [versus_zero(dp[r], r) for r in rows if r in dp]
    if not cs:
        return None, "no RLW rows ran"
    counts = verdicts.outcome_counts(cs)
    verdict = (True if counts["better"] == len(cs) else False if counts["worse"] else None)
    return verdict, f"{counts} of {len(cs)} rows; {_lines(cs)}"


def claim_same_time(ratios: pd.DataFrame, rows: Sequence[str] = RLW6,
                    margin: float = TIME_MARGIN) -> Verdict:
    """"RLW costs the same time as EW": per replicate, the mean over RLW rows of the time
    per step / EW's, minus 1.  Supported if its CI lies within ±``margin``; not supported
    if it lies wholly outside; inconclusive otherwise."""
    cols = [r for r in rows if r in ratios]
    if not cols:
        return None, "no RLW rows were timed"
    if len(ratios) < 2:
        return None, f"{len(ratios)} timing replicate: no interval"
    d = ratios[cols].mean(axis=1) - 1
    c = verdicts.compare(d, pd.Series(0.0, index=d.index), names=("RLW", "EW"),
                         metric="time per step / EW's − 1")
    inside = c.comparable(margin)
    outside = c.lo > margin or c.hi < -margin
    others = [m for m in ratios if m not in cols and m != "EW" and not m.startswith("EW")]
    ctx = ", ".join(f"{m} ×{ratios[m].mean():.2f}" for m in others)
    return (True if inside else False if outside else None,
            f"RLW/EW − 1 = {c.diff:+.3f} [{c.lo:+.3f}, {c.hi:+.3f}] over {len(d)} interleaved "
            f"replicates, margin ±{margin:g}" + (f"; for contrast {ctx}" if ctx else ""))


def claim_bernoulli_worse(dp: pd.DataFrame) -> Verdict:
    """"Bernoulli sampling is worse": per seed, the mean Δp of the two Bernoulli rows minus
    the mean of the four continuous distributions.  Supported if that CI is below 0, not
    supported if above 0, else inconclusive (no difference shown)."""
    b, c = [r for r in BERNOULLI if r in dp], [r for r in CONTINUOUS if r in dp]
    if not b or not c:
        return None, "needs Bernoulli and continuous RLW rows"
    d = dp[b].mean(axis=1) - dp[c].mean(axis=1)
    cmp = versus_zero(d, "Bernoulli rows", "continuous rows")
    return ({"worse": True, "better": False}.get(cmp.outcome),
            f"mean Δp of {b} − mean of {c}: {cmp.diff:+.2f} [{cmp.lo:+.2f}, {cmp.hi:+.2f}] pp "
            f"over {cmp.n_a} seeds ({cmp.outcome} for Bernoulli)")


def claim_same_convergence(gap: pd.DataFrame, rows: Sequence[str] = FIG1,
                           margin: float = DP_MARGIN) -> Verdict:
    """Fig. 1 (NYUv2): "the performance curves of RLW ... are consistent with EW":
    :func:`convergence_gap` per seed within ±``margin`` for every row (supported), wholly
    below ``-margin`` for one (not supported), else inconclusive."""
    cs = [versus_zero(gap[r], r, metric="mean Δp over epochs") for r in rows if r in gap]
    if not cs:
        return None, "no RLW rows ran"
    inside = all(c.comparable(margin) for c in cs)
    behind = [c.a for c in cs if c.hi < -margin]
    return (True if inside else False if behind else None,
            f"mean over epochs of validation Δp − EW at the same epoch, margin ±{margin:g} pp: "
            f"{_lines(cs)}")


# ------------------------------------------------------------ architecture vs weighting
def effects(scores: pd.DataFrame) -> pd.DataFrame:
    """Seed x {architecture, weighting}: the spread (sample std) of the marginal means.

    ``scores`` has columns seed, architecture, method, value (e.g. Δp of each run against
    HPS + EW of its seed).  For seed s, the architecture effect is the std over
    architectures a of mean_w value(a, w, s); the weighting effect the std over methods
    w of mean_a value(a, w, s).  Both are invariant to a shift of a seed's scores."""
    rows = {}
    for seed, part in scores.groupby("seed"):
        wide = part.pivot_table(index="architecture", columns="method", values="value")
        wide = wide.dropna(axis=1)  # methods every architecture ran
        if wide.shape[0] < 2 or wide.shape[1] < 2:
            continue
        rows[int(seed)] = {"architecture": float(wide.mean(axis=1).std(ddof=1)),
                           "weighting": float(wide.mean(axis=0).std(ddof=1))}
    return pd.DataFrame(rows).T.sort_index()


def scores_by_cell(records: pd.DataFrame, metrics: Mapping[str, Sequence[str]],
                   baseline: tuple[str, str] = ("HPS", "EW"), split: str = "test"
                   ) -> pd.DataFrame:
    """Long table seed, architecture, method, value: Δp (%) of every architecture x method
    run against ``baseline`` (architecture, method) of the same seed."""
    sep = " · "
    cell = records.assign(cell=records["architecture"] + sep + records["method"])
    wide = per_seed_delta_p(cell, metrics, sep.join(baseline), split, key="cell")
    long = wide.stack().rename("value").reset_index()
    if long.empty:
        raise ValueError(f"no finite Δp against {sep.join(baseline)} on {dict(metrics)} (a "
                         "baseline value of 0?); leave such columns out")
    long.columns = ["seed", "cell", "value"]
    parts = long["cell"].str.split(sep, n=1, expand=True)
    return long.assign(architecture=parts[0], method=parts[1])[
        ["seed", "architecture", "method", "value"]]


def arch_gains(scores: pd.DataFrame, reference: str = "HPS") -> pd.DataFrame:
    """Seed x architecture: mean over the methods every architecture ran of the score,
    minus the same mean for ``reference`` (positive = the architecture helps on average)."""
    out = {}
    for seed, part in scores.groupby("seed"):
        wide = part.pivot_table(index="architecture", columns="method", values="value")
        wide = wide.dropna(axis=1)
        if reference in wide.index and wide.shape[1]:
            m = wide.mean(axis=1)
            out[int(seed)] = (m - m[reference]).to_dict()
    return pd.DataFrame(out).T.sort_index()


def claim_arch_improves(gains: pd.DataFrame, archs: Sequence[str] = ("MTAN", "NDDR")
                        ) -> Verdict:
    """§5.7 / App. C.2: "the performance of each loss weighting strategy with the deeper
    MTAN [and NDDR-CNN] architecture is improved": per seed, the architecture's mean Δp
    over weightings minus HPS's.  Supported if every named architecture's CI is above 0,
    not supported if one is below 0, else inconclusive; every architecture is reported."""
    cs = [versus_zero(gains[a], a, "HPS", "mean Δp over weightings") for a in gains
          if a != "HPS"]
    named = [c for c in cs if c.a in archs]
    if not named:
        return None, "none of the named architectures ran"
    outs = [c.outcome for c in named]
    verdict = True if all(o == "better" for o in outs) else False if "worse" in outs else None
    return verdict, "architecture − HPS: " + _lines(cs) + " pp"


def eta_squared(scores: pd.DataFrame) -> dict[str, float]:
    """Two-way share of variance (sum of squares / total) of architecture, weighting,
    their interaction and seeds (residual) over all runs of a complete design."""
    x = scores.pivot_table(index=["architecture", "method"], columns="seed", values="value")
    x = x.dropna()
    grand = x.values.mean()
    cell = x.mean(axis=1)
    a = cell.groupby(level=0).mean()
    w = cell.groupby(level=1).mean()
    n_seed, n_w, n_a = x.shape[1], len(w), len(a)
    ss_a = n_seed * n_w * float(((a - grand) ** 2).sum())
    ss_w = n_seed * n_a * float(((w - grand) ** 2).sum())
    ss_cell = n_seed * float(((cell - grand) ** 2).sum())
    ss_tot = float(((x.values - grand) ** 2).sum())
    return {"architecture": ss_a / ss_tot, "weighting": ss_w / ss_tot,
            "interaction": (ss_cell - ss_a - ss_w) / ss_tot,
            "seeds (residual)": (ss_tot - ss_cell) / ss_tot}


def claim_arch_matters_more(eff: pd.DataFrame, eta: Mapping[str, float] | None = None
                            ) -> Verdict:
    """"The weighting matters less than the architecture": per seed, architecture effect
    minus weighting effect (:func:`effects`).  Supported if its CI is above 0, not
    supported if below 0, else inconclusive."""
    if len(eff) < 2:
        return None, f"{len(eff)} seed(s) with a complete grid: no interval"
    c = versus_zero(eff["architecture"] - eff["weighting"], "architecture", "weighting",
                    "spread of marginal mean Δp (pp)")
    share = ("; share of variance: " + ", ".join(f"{k} {v:.0%}" for k, v in eta.items())
             if eta else "")
    return ({"better": True, "worse": False}.get(c.outcome),
            f"spread over architectures {eff['architecture'].mean():.2f} pp vs over "
            f"weightings {eff['weighting'].mean():.2f} pp; difference {c.diff:+.2f} "
            f"[{c.lo:+.2f}, {c.hi:+.2f}] over {c.n_a} seeds{share}")


def verdict_rows(dp: pd.DataFrame) -> pd.DataFrame:
    """One row per method: mean Δp, CI and outcome against EW (paired by seed)."""
    rows = []
    for m in dp:
        c = versus_zero(dp[m], m)
        rows.append({"method": m, "Δp mean": c.diff, "CI low": c.lo, "CI high": c.hi,
                     "seeds": c.n_a, "vs EW": c.outcome if m != "EW" else "—",
                     f"comparable (±{DP_MARGIN:g} pp)": bool(c.comparable(DP_MARGIN))})
    return pd.DataFrame(rows).set_index("method").replace([np.inf, -np.inf], np.nan)
