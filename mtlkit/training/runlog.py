"""What a run records, and the files and result it leaves.

:class:`RunLog` keeps one row per step (losses, weights, query losses, learning rate), the
tidy epoch rows (``task, metric, value, split, epoch``; train means, query losses, val and
test results) and the running sums of the epoch in progress.  :func:`write_result` turns
them into ``records.csv`` (:func:`mtlkit.results.make_records`), ``steps.csv`` and
``summary.json`` in the run folder, and the :class:`RunResult` that ``fit`` returns.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from mtlkit import results
from mtlkit.training.config import RUN_HPARAMS, TrainConfig
from mtlkit.training.device import DevicePolicy
from mtlkit.utils import jsonable


@dataclass
class RunResult:
    """What :meth:`Trainer.fit` returns (also written under ``run_dir``)."""

    run_id: str
    run_dir: Path
    chosen_epoch: int  #: epoch chosen on the validation split
    val: dict[str, dict[str, float]]  #: {task: {metric: value}} at the chosen epoch
    test: dict[str, dict[str, float]]  #: {task: {metric: value}} at the chosen epoch
    epoch_time: float  #: mean training seconds per epoch (for Δt)
    records: pd.DataFrame  #: tidy records of every evaluated epoch (see mtlkit.results)
    steps: pd.DataFrame  #: per-step losses, query losses, weights and learning rate
    meta: dict[str, Any] = field(default_factory=dict)


class RunLog:
    """The step log, the epoch rows and the epoch's running sums of one run."""

    def __init__(self, tasks: Sequence[str]) -> None:
        self.tasks = list(tasks)
        self.steps: list[dict[str, float]] = []
        self.rows: list[dict[str, Any]] = []
        self.epoch_times: list[float] = []  #: training seconds of each finished epoch
        #: (losses, weights) of the last step, float32, as the callbacks receive them
        self.last: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None)
        self._t0 = time.perf_counter()
        self.reset_epoch()

    def reset_epoch(self) -> None:
        """Start the sums (and the training time) of a new epoch."""
        T = len(self.tasks)
        self.loss_sum = torch.zeros(T, dtype=torch.float64)
        self.weight_sum = torch.zeros(T, dtype=torch.float64)
        self.n = 0
        self.train_time = 0.0  #: training seconds of this epoch before the last pause

    def step(self, step: int, epoch: int, lr: float, host: Mapping[str, Any]) -> None:
        """Log one step (``host``: :meth:`~mtlkit.training.health.StepCheck.host`)."""
        losses, weights, q = host["losses"], host["weights"], host["query_losses"]
        self.last = (losses.float(), weights.float())
        row: dict[str, float] = {"step": step, "epoch": epoch, "lr": lr}
        for i, t in enumerate(self.tasks):
            row[f"loss/{t}"] = float(losses[i])
            row[f"weight/{t}"] = float(weights[i])
            if q is not None:
                row[f"query_loss/{t}"] = float(q[i])
        self.steps.append(row)
        self.loss_sum += losses
        self.weight_sum += weights
        self.n += 1

    def add(self, split: str, res: Mapping[str, Mapping[str, float]], epoch: int) -> None:
        """Epoch rows of ``{task: {metric: value}}`` on ``split``."""
        for t, ms in res.items():
            for m, v in ms.items():
                self.rows.append({"task": t, "metric": m, "value": v, "split": split,
                                  "epoch": epoch})

    def add_train_means(self, epoch: int) -> None:
        """The epoch's mean training loss and weight of every task."""
        n = max(self.n, 1)
        self.add("train", {t: {"loss": float(self.loss_sum[i] / n),
                               "weight": float(self.weight_sum[i] / n)}
                           for i, t in enumerate(self.tasks)}, epoch)

    def start_clock(self) -> None:
        """Start timing training (the epoch's earlier training time is in ``train_time``)."""
        self._t0 = time.perf_counter()

    @contextmanager
    def untimed(self, end_of_epoch: bool = False) -> Iterator[None]:
        """Stop the clock for the enclosed work (evaluation, a checkpoint); at the end of an
        epoch, first append the epoch's training time to ``epoch_times``."""
        elapsed = time.perf_counter() - self._t0
        if end_of_epoch:
            self.epoch_times.append(self.train_time + elapsed)
        else:
            self.train_time += elapsed
        yield
        self.start_clock()

    def state(self) -> dict[str, Any]:
        """Everything logged so far, for a checkpoint."""
        return {"steps_log": self.steps, "epoch_rows": self.rows,
                "epoch_times": self.epoch_times,
                "acc": (self.loss_sum, self.weight_sum, self.n, self.train_time)}

    def load(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state`."""
        self.steps, self.rows = state["steps_log"], state["epoch_rows"]
        self.epoch_times = state["epoch_times"]
        self.loss_sum, self.weight_sum, self.n, self.train_time = state["acc"]


class Progress:
    """A tqdm bar over the run's steps that shows the last losses (``enabled`` or not)."""

    def __init__(self, total: int, initial: int, enabled: bool, desc: str,
                 tasks: Sequence[str]) -> None:
        from tqdm.auto import tqdm

        self.enabled, self.tasks = enabled, list(tasks)
        self.bar = tqdm(total=total, initial=initial, disable=not enabled, desc=desc,
                        leave=False)

    def update(self, losses: torch.Tensor) -> None:
        self.bar.update(1)
        if self.enabled:
            self.bar.set_postfix({t: f"{v:.3f}" for t, v in zip(self.tasks, losses.tolist())},
                                 refresh=False)

    def close(self) -> None:
        self.bar.close()


def run_meta(cfg: TrainConfig, labels: Mapping[str, str], run_id: str, policy: DevicePolicy,
             query_ratio: float, steps_per_epoch: int,
             strategy_hparams: Mapping[str, Any]) -> dict[str, Any]:
    """What ``config.json`` and ``summary.json`` say about a run: its labels and id, seed,
    device, settings, and the hyper-parameters its records carry (the training knobs of
    :data:`~mtlkit.training.config.RUN_HPARAMS`, the query ratio, the strategy's)."""
    config = asdict(cfg)
    hparams = {**{k: config[k] for k in RUN_HPARAMS}, "query_ratio": query_ratio,
               **strategy_hparams}
    return {**labels, "run_id": run_id, "seed": cfg.seed, "device": str(policy.device),
            "config": config, "hparams": jsonable(hparams), "query_ratio": query_ratio,
            "steps_per_epoch": steps_per_epoch, "amp": str(policy.amp_dtype),
            "channels_last": policy.channels_last}


def nested(df: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Tidy rows as ``{task: {metric: value}}``."""
    out: dict[str, dict[str, float]] = {}
    for r in df.itertuples():
        out.setdefault(r.task, {})[r.metric] = float(r.value)
    return out


def write_result(log: RunLog, run_dir: Path, meta: Mapping[str, Any],
                 chosen: int) -> RunResult:
    """Write ``records.csv``, ``steps.csv`` and ``summary.json`` under ``run_dir`` and
    return the run's result (``meta``: the labels, ``run_id``, ``seed``, ``device`` and
    ``hparams`` of the run; ``chosen``: the selected epoch)."""
    epoch_time = float(np.mean(log.epoch_times)) if log.epoch_times else float("nan")
    rows = pd.DataFrame(log.rows)
    records = results.make_records(rows, run_id=meta["run_id"], dataset=meta["dataset"],
                                   architecture=meta["architecture"], method=meta["method"],
                                   hparams=meta["hparams"], seed=meta["seed"],
                                   device=meta["device"], wall_time=epoch_time,
                                   chosen_epoch=chosen)
    steps = pd.DataFrame(log.steps)
    own = run_dir / "records.csv"
    own.unlink(missing_ok=True)  # this run's own file (a resumed run rewrites it)
    results.write_records(records, own, append=False)
    steps.to_csv(run_dir / "steps.csv", index=False)
    pick = rows[rows["epoch"] == chosen]
    val, test = nested(pick[pick["split"] == "val"]), nested(pick[pick["split"] == "test"])
    summary = {**meta, "chosen_epoch": chosen, "epoch_time": epoch_time, "val": val,
               "test": test}
    (run_dir / "summary.json").write_text(json.dumps(jsonable(summary), indent=1))
    return RunResult(run_dir.name, run_dir, chosen, val, test, epoch_time, records, steps,
                     dict(meta))
