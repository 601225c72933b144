"""Small real training runs for the theory notebooks.

* :func:`mean_embedding_features` and :func:`mlp_hps`: mean GloVe features (frozen)
  and an HPS MLP on them, a text model that trains in seconds on a CPU.
* :func:`track_loss_gaps`: train with a weighting strategy on the support split
  and record, every epoch, each task's loss (cross-entropy and 0-1 error) on the
  support ("training"), query and test splits — the measurement behind
  ``metaweighting.txt`` §6.7 (Figs. 1, 6, 7).
* :func:`gradient_noise`: per-task mini-batch gradients of the shared parameters
  and the full-batch gradient, fed to :func:`mtlkit.theory.sgd_sim.noise_intensity`
  (``rlw.md`` App. B.3, the noise intensity r).

Used in ``notebooks/41_query_loss_bound_and_hypergradients.ipynb`` and
``43_rlw_noise_and_flat_minima.ipynb``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from mtlkit.arch.hps import HPS
from mtlkit.engine import GradEngine, per_task_grads


def mean_embedding_features(ds: Dataset, E: Tensor) -> tuple[Tensor, Tensor]:
    """(features, labels): the mean of the (frozen) word vectors E[x_j] over the non-padding
    token ids of each example (id 0 = padding), and the labels."""
    x, y = _tensors(ds)
    mask = (x != 0).float()
    feats = (E.float()[x] * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
    return feats, y


def mlp_hps(in_dim: int, tasks: list[str], num_classes: Mapping[str, int],
            hidden: int = 128, seed: int = 0) -> HPS:
    """HPS with a shared 2-layer ReLU MLP encoder and linear heads (CPU init from ``seed``)."""
    torch.manual_seed(seed)
    enc = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
    return HPS(enc, {t: nn.Linear(hidden, num_classes[t]) for t in tasks})


def _tensors(ds: Dataset) -> tuple[Tensor, Tensor]:
    xs, ys = zip(*[ds[i] for i in range(len(ds))])
    return torch.stack(xs), torch.stack([torch.as_tensor(y) for y in ys])


@torch.no_grad()
def _eval(model: HPS, data: Mapping[str, tuple[Tensor, Tensor]]) -> dict[str, tuple[float, float]]:
    model.eval()
    out = {}
    for t, (x, y) in data.items():
        logits = model(x, [t])[t]
        out[t] = (float(nn.functional.cross_entropy(logits, y)),
                  float((logits.argmax(1) != y).float().mean()))
    model.train()
    return out


def track_loss_gaps(model: HPS, weighting,
                    splits: Mapping[str, Mapping[str, tuple[Tensor, Tensor]]],
                    epochs: int, batch: int = 32, lr: float = 1e-2, seed: int = 0,
                    train_split: str = "support") -> pd.DataFrame:
    """Train on ``splits[train_split]`` ({task: (x, y)} tensors; one batch per task per step,
    an epoch = the largest task once) and return one row per (epoch, task, split) with the
    mean cross-entropy ``ce`` and the 0-1 error ``err``."""
    data = splits
    tasks = list(model.tasks)
    engine = GradEngine(model, weighting, "losses")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    crit = {t: nn.functional.cross_entropy for t in tasks}
    g = torch.Generator().manual_seed(seed)
    train = data[train_split]
    steps = max(len(train[t][1]) for t in tasks) // batch + 1
    rows = []

    def record(epoch: int) -> None:
        for s, per in data.items():
            for t, (ce, err) in _eval(model, per).items():
                rows.append({"epoch": epoch, "task": t, "split": s, "ce": ce, "err": err})

    record(0)
    for ep in range(1, epochs + 1):
        for _ in range(steps):
            idx = {t: torch.randint(len(train[t][1]), (batch,), generator=g) for t in tasks}
            opt.zero_grad()
            engine.step({t: train[t][0][idx[t]] for t in tasks},
                        {t: train[t][1][idx[t]] for t in tasks}, crit)
            opt.step()
        record(ep)
    return pd.DataFrame(rows)


def gradient_noise(model: HPS, train: Mapping[str, tuple[Tensor, Tensor]], batch: int,
                   n_batches: int,
                   weights: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(G_mb, g_full): per-task mini-batch gradients of the shared parameters for
    ``n_batches`` draws (n_batches, T, P), and ``weights @`` the (T, P) full-data per-task
    gradients (``weights`` = mu of shape (T,), or the T x T identity for the per-task rows),
    for :func:`~mtlkit.theory.sgd_sim.noise_intensity`."""
    data = train
    tasks = list(model.tasks)
    params = model.shared_parameters()
    crit = nn.functional.cross_entropy

    def grads(idx: Mapping[str, Tensor | None]) -> Tensor:
        losses = []
        for t in tasks:
            x, y = data[t]
            if idx[t] is not None:
                x, y = x[idx[t]], y[idx[t]]
            losses.append(crit(model(x, [t])[t], y))
        return per_task_grads(torch.stack(losses), params).detach()

    full = grads({t: None for t in tasks})
    g = torch.Generator().manual_seed(seed)
    G = torch.stack([grads({t: torch.randint(len(data[t][1]), (batch,), generator=g)
                            for t in tasks}) for _ in range(n_batches)])
    return G.double().numpy(), (torch.as_tensor(weights).double() @ full.double()).numpy()
