"""Verdicts on the papers' empirical claims, from confidence intervals over seeds.

A benchmark notebook ends with the claims of a paper that its data can test
("MetaWeighting outperforms every baseline", "RLW is comparable to EW") and
records a verdict from the measured statistics, whichever way it goes.  The
verdict is never asserted: seeds, machines and stand-in data decide it.

For methods A and B run with seeds s = 1..n, the difference of a metric
(signed so that positive means A is better) is

    d_s = sign * (a_s - b_s)        (paired: same seeds, same data order)
    mean d = (1/n) sum_s d_s,   CI = mean d ± t_{0.975, n-1} * sd(d) / sqrt(n)

and, unpaired, Welch's interval with the Welch–Satterthwaite degrees of
freedom.  The outcome is

* ``better`` when the whole CI is above 0, ``worse`` when it is below 0,
* ``indistinguishable`` otherwise (n too small or the difference too small);
* for "comparable" claims (equivalence, a two one-sided tests reading):
  ``comparable`` when the whole CI lies inside ``[-margin, margin]``.

Used by the benchmark notebooks (5x) with :func:`mtlkit.nb.finding`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from mtlkit.metrics import HIGHER_IS_BETTER

LEVEL = 0.95  #: the confidence level of every interval here


@dataclass(frozen=True)
class Comparison:
    """A − B of one metric over seeds, signed so that positive means A is better."""

    a: str
    b: str
    metric: str
    n_a: int
    n_b: int
    diff: float  #: mean of A − B (signed: > 0 means A is better)
    lo: float  #: lower end of the 95% CI of ``diff``
    hi: float  #: upper end
    paired: bool

    @property
    def outcome(self) -> str:
        """``better``, ``worse`` or ``indistinguishable`` (A against B)."""
        if self.lo > 0:
            return "better"
        if self.hi < 0:
            return "worse"
        return "indistinguishable"

    def comparable(self, margin: float) -> bool:
        """True when the whole CI of the difference lies inside ``[-margin, margin]``."""
        return -margin <= self.lo and self.hi <= margin

    def __str__(self) -> str:
        n = f"{self.n_a} seeds" if self.n_a == self.n_b else f"{self.n_a} vs {self.n_b} runs"
        how = "paired" if self.paired else "Welch"
        return (f"{self.a} − {self.b} on {self.metric}: {self.diff:+.4g} "
                f"[95% CI {self.lo:+.4g}, {self.hi:+.4g}] over {n} ({how}): {self.outcome}")


def _values(x: Sequence[float] | pd.Series | np.ndarray) -> pd.Series:
    s = x.astype(float) if isinstance(x, pd.Series) else pd.Series(np.asarray(x, dtype=float))
    return s[np.isfinite(s.to_numpy())]


def compare(a: Sequence[float] | pd.Series, b: Sequence[float] | pd.Series, *,
            higher_is_better: bool = True, paired: bool | None = None, names: tuple[str, str] =
            ("A", "B"), metric: str = "value") -> Comparison:
    """The :class:`Comparison` of samples ``a`` and ``b`` (non-finite values dropped).

    ``paired=None`` pairs them when both are pandas Series indexed by the same
    seeds (at least two); ``paired=True`` requires that.  With fewer than two
    values on a side the interval is (-inf, inf): no verdict from one seed.
    """
    sa, sb = _values(a), _values(b)
    sign = 1.0 if higher_is_better else -1.0
    same_index = (isinstance(a, pd.Series) and isinstance(b, pd.Series)
                  and sorted(sa.index) == sorted(sb.index) and len(sa) >= 2)
    if paired is None:
        paired = same_index
    if paired and not same_index:
        raise ValueError("paired=True needs two Series indexed by the same (>= 2) seeds; got "
                         f"{list(sa.index)} and {list(sb.index)}")
    if paired:
        d = sign * (sa.sort_index().to_numpy() - sb.sort_index().to_numpy())
        mean, half = float(d.mean()), _half_width(d)
    else:
        mean = sign * float(sa.mean() - sb.mean()) if len(sa) and len(sb) else math.nan
        half = _welch_half_width(sa.to_numpy(), sb.to_numpy())
    lo, hi = (mean - half, mean + half) if math.isfinite(half) else (-math.inf, math.inf)
    return Comparison(names[0], names[1], metric, len(sa), len(sb), mean, lo, hi, bool(paired))


def _half_width(d: np.ndarray) -> float:
    n = d.size
    if n < 2:
        return math.inf
    return float(stats.t.ppf(0.5 + LEVEL / 2, n - 1) * d.std(ddof=1) / math.sqrt(n))


def _welch_half_width(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 2 or b.size < 2:
        return math.inf
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    if se == 0:
        return 0.0
    dof = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1))
    return float(stats.t.ppf(0.5 + LEVEL / 2, dof) * se)


def per_seed(records: pd.DataFrame, method: str, task: str, metric: str,
             split: str = "test") -> pd.Series:
    """One value per seed of ``method`` at each run's selected epoch (tidy records of
    :mod:`mtlkit.results`), indexed by seed."""
    df = records[(records["method"] == method) & (records["task"] == task)
                 & (records["metric"] == metric) & (records["split"] == split)
                 & records["selected"].astype(bool)]
    if df.empty:
        known = sorted(records["method"].unique())
        raise ValueError(f"no {split} records of {method!r} for {task}/{metric}; methods: {known}")
    return df.groupby("seed")["value"].mean()


def compare_methods(records: pd.DataFrame, a: str, b: str, task: str, metric: str,
                    split: str = "test",
                    higher_is_better: Mapping[str, bool] | None = None) -> Comparison:
    """:func:`compare` of two methods' per-seed values of one task's metric, paired by
    seed where both ran the same seeds."""
    hib = {**HIGHER_IS_BETTER, **(higher_is_better or {})}
    if metric not in hib and metric != "loss":
        raise ValueError(f"unknown direction of metric {metric!r}; pass higher_is_better")
    up = False if metric == "loss" else hib[metric]
    return compare(per_seed(records, a, task, metric, split),
                   per_seed(records, b, task, metric, split), higher_is_better=up,
                   names=(a, b), metric=f"{task}/{metric}")


def outcome_counts(comparisons: Sequence[Comparison]) -> dict[str, int]:
    """How many comparisons came out ``better``, ``worse`` and ``indistinguishable``."""
    out = {"better": 0, "worse": 0, "indistinguishable": 0}
    for c in comparisons:
        out[c.outcome] += 1
    return out
