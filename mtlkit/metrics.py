"""Evaluation metrics per task kind, and the MTL summaries Δp and Δt.

Streaming metric objects accumulate sufficient statistics over batches
(confusion matrices, error sums, the list of normal angles), so the value over
a whole split is exact, not an average of per-batch values.  All fractions are
in [0, 1] (accuracy, F1, mIoU, pixel accuracy, "within t degrees"); angles are
in degrees.  Multiply by 100 for the papers' percentages: Δp is unaffected
because it uses relative changes.

Δp (``rlw.md`` §5.3, following Maninis et al. 2019 and Vandenhende et al. 2021)::

    Δp = 100% * 1/T sum_t 1/N_t sum_n s_{t,n} (M_{t,n} - M^B_{t,n}) / M^B_{t,n}

with s = +1 when a higher value of metric n of task t is better and s = -1
otherwise.  ``rlw.md`` prints the sign as (-1)^{p_{t,n}} with p_{t,n} = 1 for
higher-is-better, which would make every improvement count as negative; the
paper's own Table 1 (e.g. RLW (Normal) +1.02, MGDA -0.35 against EW) is only
reproduced with s = +1 for higher-is-better.  Derived and checked in
``notebooks/01_the_mtl_problem.ipynb``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from mtlkit.data.base import TASK_KINDS, TaskSpec
from mtlkit.losses import depth_valid, normals_valid

#: direction of every metric name this module produces
HIGHER_IS_BETTER: dict[str, bool] = {
    "acc": True, "f1": True, "miou": True, "pix_acc": True,
    "abs_err": False, "rel_err": False,
    "mean_angle": False, "median_angle": False,
    "within_11.25": True, "within_22.5": True, "within_30": True,
    "mse": False, "mae": False, "loss": False,
}
ANGLE_THRESHOLDS = (11.25, 22.5, 30.0)


# ------------------------------------------------------------ functional
def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int,
                     ignore_index: int | None = None) -> Tensor:
    """C[i, j] = #{target = i, pred = j}, skipping ``ignore_index`` targets."""
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
    keep = (target >= 0) & (target < num_classes)
    if ignore_index is not None:
        keep &= target != ignore_index
    idx = target[keep] * num_classes + pred[keep].clamp(0, num_classes - 1)
    return torch.bincount(idx, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def accuracy_from_cm(cm: Tensor) -> float:
    """trace(C) / sum(C): accuracy, or pixel accuracy for segmentation."""
    total = cm.sum().item()
    return float(cm.trace().item() / total) if total else float("nan")


def macro_f1_from_cm(cm: Tensor) -> float:
    """Mean over classes of F1_c = 2 TP / (2 TP + FP + FN), over the classes
    that occur in the targets or the predictions (others are undefined)."""
    cm = cm.double()
    tp = cm.diag()
    denom = 2 * tp + (cm.sum(0) - tp) + (cm.sum(1) - tp)
    seen = denom > 0
    return float((2 * tp[seen] / denom[seen]).mean().item()) if seen.any() else float("nan")


def miou_from_cm(cm: Tensor) -> float:
    """Mean over classes of IoU_c = TP / (TP + FP + FN), over classes whose
    union is non-empty (the void label is never counted)."""
    cm = cm.double()
    tp = cm.diag()
    union = cm.sum(0) + cm.sum(1) - tp
    seen = union > 0
    return float((tp[seen] / union[seen]).mean().item()) if seen.any() else float("nan")


def accuracy(pred: Tensor, target: Tensor, ignore_index: int | None = None) -> float:
    """Fraction of equal labels (``pred`` are labels, not logits)."""
    keep = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else \
        target != ignore_index
    n = int(keep.sum())
    return float((pred[keep] == target[keep]).sum().item() / n) if n else float("nan")


def macro_f1(pred: Tensor, target: Tensor, num_classes: int,
             ignore_index: int | None = None) -> float:
    """Macro-averaged F1 of label predictions (token-level for tagging)."""
    return macro_f1_from_cm(confusion_matrix(pred, target, num_classes, ignore_index))


def miou(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int | None = None) -> float:
    """Mean intersection over union of label maps, void label ignored."""
    return miou_from_cm(confusion_matrix(pred, target, num_classes, ignore_index))


def normal_angles(pred: Tensor, target: Tensor) -> Tensor:
    """Angles in degrees between predicted and true normals (N, 3, ...) at valid pixels."""
    mask = normals_valid(target)
    p = torch.nn.functional.normalize(pred.double(), dim=1, eps=1e-12)
    t = torch.nn.functional.normalize(target.double(), dim=1, eps=1e-12)
    cos = (p * t).sum(1).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.acos(cos[mask]))


# -------------------------------------------------------------- streaming
class Metric:
    """Accumulates statistics over batches: ``update(output, target)`` then
    ``compute() -> {metric name: value}``; ``reset()`` starts over."""

    names: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        raise NotImplementedError

    def update(self, output: Tensor, target: Tensor) -> None:
        raise NotImplementedError

    def compute(self) -> dict[str, float]:
        raise NotImplementedError

    @property
    def higher_is_better(self) -> dict[str, bool]:
        return {n: HIGHER_IS_BETTER[n] for n in self.names}


class ConfusionMetric(Metric):
    """Accuracy and macro-F1 from a confusion matrix.

    ``class_dim`` is where the logits' class axis is (1 for classification and
    segmentation, -1 for tagging).  ``segmentation=True`` reports mIoU and
    pixel accuracy instead.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = None, class_dim: int = 1,
                 segmentation: bool = False) -> None:
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.class_dim, self.segmentation = class_dim, segmentation
        self.names = ("miou", "pix_acc") if segmentation else ("acc", "f1")
        self.reset()

    def reset(self) -> None:
        self.cm = torch.zeros(self.num_classes, self.num_classes, dtype=torch.long)

    def update(self, output: Tensor, target: Tensor) -> None:
        pred = output.argmax(self.class_dim) if output.dim() > target.dim() else output
        self.cm += confusion_matrix(pred.detach().cpu(), target.detach().cpu(),
                                    self.num_classes, self.ignore_index)

    def compute(self) -> dict[str, float]:
        if self.segmentation:
            return {"miou": miou_from_cm(self.cm), "pix_acc": accuracy_from_cm(self.cm)}
        return {"acc": accuracy_from_cm(self.cm), "f1": macro_f1_from_cm(self.cm)}


class MultilabelMetric(Metric):
    """Label-wise accuracy (threshold logits at 0) and macro-F1 over labels."""

    names = ("acc", "f1")

    def __init__(self, num_labels: int) -> None:
        self.num_labels = num_labels
        self.reset()

    def reset(self) -> None:
        self.tp = torch.zeros(self.num_labels, dtype=torch.float64)
        self.fp, self.fn, self.correct, self.total = self.tp.clone(), self.tp.clone(), 0.0, 0.0

    def update(self, output: Tensor, target: Tensor) -> None:
        pred = (output.detach().cpu() > 0).double()
        y = target.detach().cpu().double()
        self.tp += (pred * y).sum(0)
        self.fp += (pred * (1 - y)).sum(0)
        self.fn += ((1 - pred) * y).sum(0)
        self.correct += float((pred == y).sum())
        self.total += y.numel()

    def compute(self) -> dict[str, float]:
        denom = 2 * self.tp + self.fp + self.fn
        seen = denom > 0
        f1 = float((2 * self.tp[seen] / denom[seen]).mean()) if seen.any() else float("nan")
        acc = self.correct / self.total if self.total else float("nan")
        return {"acc": acc, "f1": f1}


class DepthMetric(Metric):
    """abs_err = mean |d - d*|, rel_err = mean |d - d*| / d*, over every valid
    pixel of the split (d* finite and > 0)."""

    names = ("abs_err", "rel_err")

    def reset(self) -> None:
        self.abs_sum, self.rel_sum, self.n = 0.0, 0.0, 0

    def update(self, output: Tensor, target: Tensor) -> None:
        y = target.detach().cpu().double()
        p = output.detach().cpu().double().reshape(y.shape)
        m = depth_valid(y)
        err = (p[m] - y[m]).abs()
        self.abs_sum += float(err.sum())
        self.rel_sum += float((err / y[m]).sum())
        self.n += int(m.sum())

    def compute(self) -> dict[str, float]:
        if not self.n:
            return {"abs_err": float("nan"), "rel_err": float("nan")}
        return {"abs_err": self.abs_sum / self.n, "rel_err": self.rel_sum / self.n}


class NormalMetric(Metric):
    """Angle between predicted and true normals at valid pixels: mean, median,
    and the fraction within 11.25, 22.5 and 30 degrees."""

    names = ("mean_angle", "median_angle", "within_11.25", "within_22.5", "within_30")

    def reset(self) -> None:
        self.angles: list[Tensor] = []

    def update(self, output: Tensor, target: Tensor) -> None:
        self.angles.append(normal_angles(output.detach().cpu(), target.detach().cpu()).float())

    def compute(self) -> dict[str, float]:
        a = torch.cat(self.angles) if self.angles else torch.zeros(0)
        if a.numel() == 0:
            return dict.fromkeys(self.names, float("nan"))
        out = {"mean_angle": float(a.double().mean()),
               "median_angle": float(a.double().quantile(0.5))}
        for t, name in zip(ANGLE_THRESHOLDS, self.names[2:]):
            out[name] = float((a < t).double().mean())
        return out


class RegressionMetric(Metric):
    """Mean squared and mean absolute error over all outputs."""

    names = ("mse", "mae")

    def reset(self) -> None:
        self.se, self.ae, self.n = 0.0, 0.0, 0

    def update(self, output: Tensor, target: Tensor) -> None:
        y = target.detach().cpu().double()
        d = output.detach().cpu().double().reshape(y.shape) - y
        self.se += float((d ** 2).sum())
        self.ae += float(d.abs().sum())
        self.n += y.numel()

    def compute(self) -> dict[str, float]:
        if not self.n:
            return {"mse": float("nan"), "mae": float("nan")}
        return {"mse": self.se / self.n, "mae": self.ae / self.n}


def metric_for(spec: TaskSpec) -> Metric:
    """A fresh streaming metric for one task, by ``spec.kind``."""
    k = spec.kind
    if k in ("classification", "segmentation", "tagging", "multilabel") and not spec.num_classes:
        raise ValueError(f"task {spec.name!r} of kind {k!r} needs num_classes in its TaskSpec")
    if k == "classification":
        return ConfusionMetric(spec.num_classes)
    if k == "segmentation":
        return ConfusionMetric(spec.num_classes, spec.ignore_index, segmentation=True)
    if k == "tagging":
        return ConfusionMetric(spec.num_classes, spec.ignore_index, class_dim=-1)
    if k == "multilabel":
        return MultilabelMetric(spec.num_classes)
    if k == "depth":
        return DepthMetric()
    if k == "normals":
        return NormalMetric()
    if k == "regression":
        return RegressionMetric()
    raise ValueError(f"task {spec.name!r}: no metric for kind {k!r}; choose one of {TASK_KINDS}")


# ------------------------------------------------------------- summaries
def delta_p(metrics: Mapping[str, float], baseline: Mapping[str, float],
            higher_is_better: Mapping[str, bool], tasks: Mapping[str, Sequence[str]]) -> float:
    """Δp in percent: the mean over tasks of the mean over the task's metrics of
    the signed relative change s (M - M_B) / M_B, with s = +1 for
    higher-is-better metrics and -1 otherwise (``rlw.md`` §5.3, sign corrected:
    see the module docstring).  Positive = better than the baseline.
    """
    if not tasks:
        raise ValueError("tasks is empty: give {task name: [metric names]}")
    per_task = []
    for task, names in tasks.items():
        if not names:
            raise ValueError(f"task {task!r} has no metrics")
        rel = []
        for n in names:
            for what, d in (("metrics", metrics), ("baseline", baseline),
                            ("higher_is_better", higher_is_better)):
                if n not in d:
                    raise ValueError(f"metric {n!r} of task {task!r} is missing from {what}; "
                                     f"it has {sorted(d)}")
            b = float(baseline[n])
            if b == 0 or not math.isfinite(b):
                raise ValueError(f"baseline value of {n!r} is {b}; Δp divides by it")
            s = 1.0 if higher_is_better[n] else -1.0
            rel.append(s * (float(metrics[n]) - b) / b)
        per_task.append(sum(rel) / len(rel))
    return 100.0 * sum(per_task) / len(per_task)


def delta_p_printed(metrics: Mapping[str, float], baseline: Mapping[str, float],
                    higher_is_better: Mapping[str, bool],
                    tasks: Mapping[str, Sequence[str]]) -> float:
    """Δp computed literally as printed in ``rlw.md`` §5.3: factor (-1)^{p_{t,n}}
    with p_{t,n} = 1 for higher-is-better metrics.  Kept only to show the sign
    discrepancy in notebook 01 (it is the negative of :func:`delta_p`); never
    use it to compare methods."""
    per_task = []
    for names in tasks.values():
        rel = [(-1.0) ** int(bool(higher_is_better[n])) * (metrics[n] - baseline[n]) / baseline[n]
               for n in names]
        per_task.append(sum(rel) / len(rel))
    return 100.0 * sum(per_task) / len(per_task)


def delta_t(epoch_time: float, baseline_epoch_time: float) -> float:
    """Δt: time per epoch relative to EW (``rlw.md`` Table 1, "×1.82")."""
    if not baseline_epoch_time > 0:
        raise ValueError(f"baseline epoch time must be > 0, got {baseline_epoch_time}")
    return float(epoch_time) / float(baseline_epoch_time)
