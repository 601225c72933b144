"""The gap between training, query and test loss (``metaweighting.txt`` §1 Fig 1, §6.7
Figs 6–7), measured per task during training.

The trainer records the query loss (a held-out 10% of each task's training set, App. B)
and the test loss at every evaluation, and the *running* training loss (the mean of the
epoch's minibatch losses, with dropout on).  The paper's "training loss" is the loss of the
model on the data it trains on; :class:`SupportLoss` adds it, in eval mode, on each task's
support set at the same epochs, so the three are measured alike.

Per run and epoch the gaps are |L^s_t - L^test_t| and |L^q_t - L^test_t|; the paper's claim
(§6.7) is that the second is smaller.  :func:`gap_table` and :func:`rank_agreement` compute
them per seed for :mod:`mtlkit.verdicts`.  Used by
``notebooks/54_train_query_test_loss_gap.ipynb``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from scipy import stats


@dataclass
class SupportLoss:
    """A :class:`~mtlkit.trainer.Trainer` callback: at each evaluated epoch, every task's
    mean loss on its support set (the examples it trains on), in eval mode, computed by the
    trainer's own evaluator exactly as it computes the query loss.  The evaluator's data
    loaders have their own generator, so the training run's random state is untouched."""

    eval_every: int = 1
    rows: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, trainer: Any, step: int, losses: Any, weights: Any) -> None:
        last = trainer.epoch == trainer.cfg.epochs
        if step % trainer.steps_per_epoch or (trainer.epoch % self.eval_every and not last):
            return
        support = {key: stream.dataset for key, stream in trainer.batches.streams.items()}
        for t, r in trainer.evaluator.losses(support, trainer.criteria).items():
            self.rows.append({"task": t, "metric": "loss", "value": r["loss"],
                              "split": "support", "epoch": trainer.epoch})
        trainer.model.train()


def with_support(records: pd.DataFrame, probe: SupportLoss) -> pd.DataFrame:
    """``records`` of one run plus the probe's support-set losses as records (same run
    labels, ``split="support"``)."""
    if not probe.rows:
        return records
    first = records.iloc[0]
    extra = pd.DataFrame(probe.rows)
    for col in records.columns:
        if col not in extra.columns:
            extra[col] = first[col]
    extra["selected"] = extra["epoch"] == int(records.loc[records["selected"], "epoch"].iloc[0]) \
        if records["selected"].any() else False
    return pd.concat([records, extra[records.columns]], ignore_index=True)


def run_with_gap(data: Any, make_model: Any, config: Any, seed: int, run_dir: Any,
                 method: str = "EW") -> tuple[pd.DataFrame, Any]:
    """Train ``method`` (§6.7: uniform weights) with a query split of ``config.query_ratio``
    and the :class:`SupportLoss` probe; returns its records (with the support losses) and
    the ``RunResult``."""
    from dataclasses import replace

    from mtlkit import weighting as W
    from mtlkit.trainer import Trainer

    if not config.query_ratio:
        raise ValueError("the loss gap needs a query split: set query_ratio > 0 (App. B: 0.1)")
    probe = SupportLoss(eval_every=config.eval_every)
    cfg = replace(config, seed=int(seed))
    result = Trainer(make_model(seed), W.get(method), data, cfg, callbacks=[probe],
                     run_dir=run_dir, labels={"method": method}).fit()
    return with_support(result.records, probe), result


def figure_epochs(evaluated: list[int], total: int, fractions=(1 / 6, 1 / 3, 1 / 2)
                  ) -> list[int]:
    """The evaluated epochs nearest ``fractions`` of ``total`` (Figs 1, 6–7 show the 500th,
    1000th and 1500th of 3000 epochs: 1/6, 1/3 and 1/2), without repeats."""
    out = []
    for f in fractions:
        e = min(evaluated, key=lambda x: (abs(x - f * total), x))
        if e not in out:
            out.append(e)
    return out


def gap_table(records: pd.DataFrame, epochs: list[int] | None = None) -> pd.DataFrame:
    """Per dataset, seed, epoch and task: the support (training), query and test losses
    and the gaps |support - test| and |query - test|.  ``epochs`` restricts the epochs."""
    df = records[(records["metric"] == "loss")
                 & records["split"].isin(["support", "query", "test"])]
    if epochs is not None:
        df = df[df["epoch"].isin(epochs)]
    wide = df.pivot_table(index=["dataset", "seed", "epoch", "task"], columns="split",
                          values="value").reset_index().dropna()
    if wide.empty:
        raise ValueError("no epoch has support, query and test losses of the same run: run "
                         "with a query split (query_ratio > 0) and the SupportLoss probe")
    wide["train_gap"] = (wide["support"] - wide["test"]).abs()
    wide["query_gap"] = (wide["query"] - wide["test"]).abs()
    return wide


def rank_agreement(gaps: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, seed and epoch: Kendall's tau between the tasks' test losses and their
    support (training) losses, and between the test and the query losses (§1: "a task
    might have the largest training loss but the lowest generalization loss")."""
    rows = []
    for (ds, seed, epoch), g in gaps.groupby(["dataset", "seed", "epoch"]):
        if len(g) < 2:
            continue
        rows.append({"dataset": ds, "seed": seed, "epoch": epoch,
                     "tau_train": stats.kendalltau(g["support"], g["test"]).statistic,
                     "tau_query": stats.kendalltau(g["query"], g["test"]).statistic})
    return pd.DataFrame(rows)
