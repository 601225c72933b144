"""Why MetaWeighting's (and Auto-λ's) weights barely move, measured on a run.

One hypergradient step (``metaweighting.txt`` Eqs. 10–13; :mod:`mtlkit.weighting.metaweighting`)::

    D[t, j] = -(eta/T) <g^q_t(theta^k), g^s_j(theta^{k-1})>          (Eq. 10)
    d_c     = lambda*^T D   (min-norm point of the rows; Auto-λ: 1^T D)   (Eqs. 11-12)
    w      <- Pi(w - alpha d_c)                                         (Eq. 13)

``Pi`` is the library's validity rule.  The projection onto {w >= 0, sum w = T} is
unchanged by adding c 1 to its argument, so only the *centred* part d_c - mean(d_c) 1 can
move w; "clamp" and "none" keep all of d_c.  Call ``e_k`` the part that acts at step k.
Every projection onto a convex set containing w is non-expansive, so after K steps

    || w_K - w_0 ||_2  <=  alpha * sum_k || e_k ||_2   =: path(alpha)            (bound)

and the weights w/T that the trainer logs moved at most path/T.  Each factor of one step
is measured here: eta/T (Adam's learning rate over the task count), the size of the
gradient inner products, how much the min-norm combination shrinks the rows (they
conflict), what the constraint removes, alpha, and the number of steps K.

:func:`acting_alpha` gives the step size at which path/T equals the distance from uniform
weights to a single task, sqrt(1 - 1/T): the smallest alpha at which the weights *could*
leave uniform for any task, were all steps aligned.  Used in
``notebooks/50_benchmark_text_classification.ipynb`` and 52.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch


def acting_part(dc: torch.Tensor, constraint: str) -> torch.Tensor:
    """The part of d_c that moves w under ``constraint`` (see the module docstring)."""
    return dc - dc.mean() if constraint == "simplex" else dc


@dataclass
class HypergradProbe:
    """A :class:`~mtlkit.trainer.Trainer` callback recording, after every step whose
    hypergradient was computed, the quantities of the module docstring."""

    rows: list[dict[str, float]] = field(default_factory=list)

    def __call__(self, trainer: Any, step: int, losses: Any, weights: Any) -> None:
        s = trainer.weighting
        if getattr(s, "hypergrad", None) is None or s.w is None:
            return
        d, lam = s.hypergrad.detach().double().cpu(), s.lam.detach().double().cpu()
        t = d.shape[0]
        dc = lam @ d
        eff = acting_part(dc, s.constraint)
        w = s.w.detach().double().cpu() / t
        self.rows.append({
            "step": step, "eta_over_T": float(trainer.optimizer.param_groups[0]["lr"]) / t,
            "D_abs_median": float(d.abs().median()), "row_norm_median": float(
                d.norm(dim=1).median()), "dc_norm": float(dc.norm()),
            "acting_norm": float(eff.norm()), "alpha": float(s.alpha),
            "step_norm": float(s.alpha * eff.norm()),
            "w_dist": float((w - 1.0 / t).norm()), "w_dev_max": float((w - 1.0 / t).abs().max()),
            **{f"w/{i}": float(v) for i, v in enumerate(w)}})

    def frame(self) -> pd.DataFrame:
        """One row per step (``step_norm`` = alpha ||e_k||, ``w_dist`` = ||w/T - 1/T||)."""
        return pd.DataFrame(self.rows)


@dataclass
class Diagnosis:
    """The measured factors of one run's weight steps (module docstring)."""

    label: str
    T: int
    steps: int  #: K, steps with a hypergradient
    alpha: float
    constraint: str
    eta_over_T: float  #: the scalar of Eq. 10 (Adam's lr / T with inner='sgd')
    inner_product: float  #: median |<g^q_t, g^s_j>| = median |D| / (eta/T)
    row_norm: float  #: median ||d_t||
    shrink: float  #: median ||d_c|| / median ||d_t|| (the rows conflict: min-norm shrinks)
    acting_share: float  #: median ||e_k|| / ||d_c|| (what the constraint lets act)
    path: float  #: alpha sum_k ||e_k||: the bound on ||w_K - w_0||
    moved: float  #: max_k ||w_k/T - 1/T||_2, measured
    moved_max: float  #: max_k max_t |w_t/T - 1/T|, measured
    frame: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)

    @property
    def radius(self) -> float:
        """sqrt(1 - 1/T): the distance in w/T from uniform weights to a single task."""
        return math.sqrt(1 - 1 / self.T)

    @property
    def bound(self) -> float:
        """path / T: the furthest w/T can be from uniform (in the 2-norm)."""
        return self.path / self.T

    def summary(self) -> dict[str, float | int | str]:
        """The factors as one flat dict (for a table and metrics.json)."""
        return {"label": self.label, "T": self.T, "steps K": self.steps, "alpha": self.alpha,
                "constraint": self.constraint, "eta/T": self.eta_over_T,
                "median |<g^q,g^s>|": self.inner_product, "median ||d_t||": self.row_norm,
                "||d_c||/||d_t|| (min-norm shrinks, a sum grows)": self.shrink,
                "acting share ||e||/||d_c||": self.acting_share,
                "median step alpha||e_k||": float(self.frame["step_norm"].median()),
                "bound on ||w/T - 1/T||": self.bound, "moved ||w/T - 1/T||": self.moved,
                "moved max_t |w_t/T - 1/T|": self.moved_max, "radius sqrt(1-1/T)": self.radius}


def diagnose(frame: pd.DataFrame, label: str, constraint: str) -> Diagnosis:
    """A :class:`Diagnosis` from a :class:`HypergradProbe` frame."""
    if frame.empty:
        raise ValueError(f"{label}: the probe recorded no hypergradient step (a run of one step "
                         "has none: the first step only stores the support gradients)")
    t = sum(c.startswith("w/") for c in frame.columns)
    med = frame.median(numeric_only=True)
    eta_t = float(med["eta_over_T"])
    return Diagnosis(
        label=label, T=t, steps=len(frame), alpha=float(frame["alpha"].iloc[0]),
        constraint=constraint, eta_over_T=eta_t, inner_product=float(med["D_abs_median"]) / eta_t,
        row_norm=float(med["row_norm_median"]),
        shrink=float((frame["dc_norm"] / frame["row_norm_median"]).median()),
        acting_share=float((frame["acting_norm"] / frame["dc_norm"].clip(lower=1e-300)).median()),
        path=float(frame["step_norm"].sum()), moved=float(frame["w_dist"].max()),
        moved_max=float(frame["w_dev_max"].max()), frame=frame)


def acting_alpha(diag: Diagnosis, digits: int = 2) -> float:
    """The alpha at which path(alpha) / T = sqrt(1 - 1/T) (module docstring), from the
    steps measured at ``diag.alpha``; rounded to ``digits`` significant digits."""
    per_unit = diag.path / diag.alpha if diag.alpha > 0 else float(diag.frame["acting_norm"].sum())
    if not per_unit > 0:
        raise ValueError(f"{diag.label}: every hypergradient step was zero; no alpha moves w")
    a = diag.radius * diag.T / per_unit
    return float(f"{a:.{digits}g}")


def probe_run(method: Any, data: Any, make_model: Any, config: Any, seed: int,
              run_dir: str | Path) -> tuple[Diagnosis, Any]:
    """Train ``method`` (a MetaWeighting or AutoLambda ``experiments.Method``) once with a
    :class:`HypergradProbe`; returns its :class:`Diagnosis` and the ``RunResult``."""
    from dataclasses import replace

    from mtlkit.trainer import Trainer

    probe = HypergradProbe()
    strategy = method.build(seed)
    if not hasattr(strategy, "hypergrad"):
        raise ValueError(f"{method.label}: only hypergradient strategies (MetaWeighting, "
                         "AutoLambda) can be probed")
    cfg = replace(config, seed=int(seed), mode=method.mode)
    result = Trainer(make_model(seed), strategy, data, cfg, callbacks=[probe],
                     run_dir=Path(run_dir), labels={"method": method.label}).fit()
    return diagnose(probe.frame(), method.label, strategy.constraint), result


def moved_weights(steps: pd.DataFrame) -> float:
    """max over steps and tasks of |w_t - w_t(first step)| in a trainer's per-step log."""
    cols = [c for c in steps.columns if c.startswith("weight/")]
    w = steps[cols].to_numpy(dtype=float)
    return float(np.abs(w - w[0]).max()) if len(w) else 0.0
