"""Every knob of a training run: :class:`TrainConfig` (literal values, saved with the results).

``AMP_DTYPES``, ``OPTIMIZERS`` and ``SCHEDULERS`` list the valid choices; the optimizer and
scheduler are built in :mod:`mtlkit.training.optim`, the device policy in
:mod:`mtlkit.training.device`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch

from mtlkit.checkpoints import PRUNED
from mtlkit.metrics import HIGHER_IS_BETTER

OPTIMIZERS = ("adam", "sgd")
SCHEDULERS = (None, "step", "cosine")
AMP_DTYPES = {None: None, "bf16": torch.bfloat16, "fp16": torch.float16}
#: what a finished run keeps of its model files (:func:`mtlkit.checkpoints.prune`)
KEEP_FILES = tuple(PRUNED)
#: training knobs recorded with the strategy's hyper-parameters in each record
RUN_HPARAMS = ("optimizer", "lr", "weight_decay", "batch_size", "epochs")
#: settings that do not change the trajectory, so they may differ on resume
FREE_ON_RESUME = ("progress", "num_workers", "checkpoint_every", "keep_files")


@dataclass
class TrainConfig:
    """Every knob of a run (all literal values, saved with the results)."""

    epochs: int = 10  #: number of epochs
    steps_per_epoch: int | None = None  #: None = one pass over the largest training set
    batch_size: int = 32  #: per task (homogeneous) or for all tasks (heterogeneous)
    eval_batch_size: int = 256  #: batch size for validation/test/query evaluation
    optimizer: str = "adam"  #: adam | sgd
    lr: float = 1e-3  #: learning rate
    weight_decay: float = 0.0  #: L2 weight decay
    momentum: float = 0.9  #: SGD momentum
    scheduler: str | None = None  #: None | step | cosine (stepped once per epoch)
    step_size: int = 10  #: StepLR period in epochs
    gamma: float = 0.5  #: StepLR decay factor
    clip_grad: float | None = None  #: max global gradient norm, None = no clipping
    #: None | bf16 | fp16, CUDA only (ignored with a warning elsewhere); fp16 has no loss
    #: scaling (the engine owns the backward): with a loss-only strategy an update that
    #: overflowed is skipped; a gradient-based strategy refuses a non-finite gradient row
    #: and the run stops with that message (use bf16)
    amp: str | None = None
    channels_last: bool = False  #: channels-last memory format (CUDA only)
    query_ratio: float | None = None  #: query fraction; None = 0.1 if needs_query else 0
    mode: str = "auto"  #: gradient mode passed to GradEngine
    seed: int = 0  #: seeds model-independent randomness: batches, split, strategies
    device: str = "cpu"  #: torch device string
    checkpoint_every: int = 0  #: steps between checkpoints (0 = only at the end)
    #: model files a finished run keeps: "all" (checkpoints and best model), "best" (the
    #: best model only) or "none" (results only; a grid of large models fills no disk)
    keep_files: str = "all"
    eval_every: int = 1  #: epochs between val/test evaluations
    select: str = "loss"  #: validation criterion: "loss" (mean over tasks) or a metric name
    progress: bool = True  #: tqdm progress bars
    num_workers: int = 0  #: DataLoader workers

    def validate(self) -> None:
        """Raise ValueError with the valid choices for a bad value."""
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={self.optimizer!r}; choose one of {OPTIMIZERS}")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler={self.scheduler!r}; choose one of {SCHEDULERS}")
        if self.keep_files not in KEEP_FILES:
            raise ValueError(f"keep_files={self.keep_files!r}; choose one of {KEEP_FILES}")
        if self.amp not in AMP_DTYPES:
            raise ValueError(f"amp={self.amp!r}; choose None, 'bf16' or 'fp16'")
        for name in ("epochs", "batch_size", "eval_batch_size", "eval_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be None or >= 1, got {self.steps_per_epoch}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.query_ratio is not None and not 0 <= self.query_ratio < 1:
            raise ValueError(f"query_ratio must be in [0, 1), got {self.query_ratio}")
        if self.clip_grad is not None and not self.clip_grad > 0:
            raise ValueError(f"clip_grad must be None or > 0, got {self.clip_grad}")
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
        if self.select != "loss" and self.select not in HIGHER_IS_BETTER:
            raise ValueError(f"select={self.select!r}; use 'loss' or a metric name: "
                             f"{sorted(HIGHER_IS_BETTER)}")

    @classmethod
    def merged(cls, config: TrainConfig | None, overrides: Mapping[str, Any]) -> TrainConfig:
        """``config`` (default: the defaults) with keyword ``overrides``, validated; an
        unknown field is a ValueError that lists the valid ones."""
        base = asdict(config or cls())
        bad = sorted(set(overrides) - set(base))
        if bad:
            raise ValueError(f"unknown TrainConfig field(s) {bad}; valid: {sorted(base)}")
        cfg = cls(**{**base, **overrides})
        cfg.validate()
        return cfg

    def query_ratio_for(self, needs_query: bool) -> float:
        """The query fraction: ``query_ratio``, or 0.1 for a strategy that needs a query
        batch and 0 otherwise."""
        if self.query_ratio is not None:
            return self.query_ratio
        return 0.1 if needs_query else 0.0

    def trajectory(self) -> dict[str, Any]:
        """The settings that shape the trajectory (all but :data:`FREE_ON_RESUME`)."""
        return {k: v for k, v in asdict(self).items() if k not in FREE_ON_RESUME}
