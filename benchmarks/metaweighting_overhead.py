"""How close is a MetaWeighting step to the floor of an exact per-task hypergradient?

The floor (``metaweighting.txt`` Eq. 10 with per-task gradients): two forward
passes (support, query) and 2T per-task backward passes through the shared
part and the task's head, nothing else.  This script times, in one run and on
the same model and batches:

* EW            one forward, one backward of the mean loss (the cheapest step)
* floor         2 forwards + 2T ``torch.autograd.grad`` calls, results discarded
* MetaWeighting ``make_engine(model, MetaWeighting).step(..., query=...)``
* AutoLambda    ``make_engine(model, AutoLambda).step(...)`` (no query batch)

and prints the medians and the ratios MetaWeighting/floor and */EW as JSON.

Two models, one batch per task (the text setting of ``metaweighting.txt`` §6):

* ``--model textcnn``: App. B's network, a TextCNN (kernels 3/5/7, ``--filters``
  each, ``--dim``-d embeddings, frozen unless ``--train-embeddings``) and one linear
  softmax head per task, on random token sequences of length ``--seq``;
* ``--model mlp``: a 3-layer MLP on dense features, the worst case for the
  bi-level overhead: every weight is used once per example, so the backward
  passes are cheap next to the T x P gradient rows MetaWeighting must store
  and multiply;
* ``--model dense``: one input for all tasks, the RLW paper's NYUv2 network
  (dilated ResNet-50, three ASPP heads; ``benchmarks/weighting_overhead.py``)
  at ``--size`` H W, ``--batch`` images; each per-task backward then runs
  through the whole encoder, so the floor is about 4.7x EW.

Usage: ``python benchmarks/metaweighting_overhead.py [--model textcnn] [--tasks 14]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from mtlkit import weighting as W
from mtlkit.arch import HPS
from mtlkit.encoders import TextCNN
from mtlkit.engine import make_engine


def dense_problem(a: argparse.Namespace):
    """(model, support, query, criteria) for ``--model dense``: the NYUv2 problem of
    ``weighting_overhead.py`` and a second random batch as the query batch."""
    sys.path.insert(0, str(Path(__file__).parent))
    from weighting_overhead import nyuv2_problem

    model, x, y, crit, _ = nyuv2_problem(a.device, a.batch, tuple(a.size))
    gen = torch.Generator().manual_seed(2)
    xq = torch.randn(x.shape, generator=gen).to(a.device)
    yq = {k: v[torch.randperm(v.shape[0], generator=gen)] for k, v in y.items()}
    return model, (x, y), (xq, yq), crit


def build(a: argparse.Namespace) -> HPS:
    """The benchmark's HPS model (see the module docstring)."""
    torch.manual_seed(0)
    if a.model == "textcnn":
        enc = TextCNN(vocab_size=a.vocab, embed_dim=a.dim, num_filters=a.filters, dropout=0.0,
                      freeze_embeddings=not a.train_embeddings)
        width = enc.out_features
    else:
        enc = nn.Sequential(nn.Linear(a.dim, a.hidden), nn.ReLU(), nn.Linear(a.hidden, a.hidden),
                            nn.ReLU(), nn.Linear(a.hidden, a.hidden), nn.ReLU())
        width = a.hidden
    heads = {f"t{i}": nn.Linear(width, 2) for i in range(a.tasks)}
    return HPS(enc, heads).to(a.device)


def batches(model: HPS, a: argparse.Namespace, seed: int):
    """One random batch per task: token ids (textcnn) or features (mlp), and labels."""
    g = torch.Generator().manual_seed(seed)
    if a.model == "textcnn":
        x = {t: torch.randint(1, a.vocab, (a.batch, a.seq), generator=g).to(a.device)
             for t in model.tasks}
    else:
        x = {t: torch.randn(a.batch, a.dim, generator=g).to(a.device) for t in model.tasks}
    y = {t: torch.randint(0, 2, (a.batch,), generator=g).to(a.device) for t in model.tasks}
    return x, y


def timed(fn, repeats: int, device: str, clock) -> float:
    """Median seconds per call of ``fn`` by ``clock`` (wall or this process's CPU time)."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = clock()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(clock() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("textcnn", "mlp", "dense"), default="textcnn")
    ap.add_argument("--tasks", type=int, default=14, help="14: sentiment, 16: topics")
    ap.add_argument("--dim", type=int, default=50, help="embedding (textcnn) / input (mlp) size")
    ap.add_argument("--hidden", type=int, default=256, help="mlp width")
    ap.add_argument("--filters", type=int, default=100, help="textcnn filters per kernel size")
    ap.add_argument("--vocab", type=int, default=20000)
    ap.add_argument("--seq", type=int, default=128, help="textcnn tokens per example")
    ap.add_argument("--train-embeddings", action="store_true")
    ap.add_argument("--batch", type=int, default=32,
                    help="examples per task (App. B: 256); images for dense (RLW: 8)")
    ap.add_argument("--size", type=int, nargs=2, default=[288, 384], help="dense H W")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clock", choices=("wall", "process"), default="wall",
                    help="process = CPU time of this process (robust on a shared CPU)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.model == "dense":
        model, (xs, ys), (xq, yq), crit = dense_problem(a)
        a.tasks = len(model.tasks)
    else:
        model = build(a)
        xs, ys = batches(model, a, 1)
        xq, yq = batches(model, a, 2)
        crit = {t: nn.functional.cross_entropy for t in model.tasks}
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def engine_step(name: str, **kw):
        strat = W.get(name, **kw)
        strat.attach(model, opt)
        eng = make_engine(model, strat)
        query = (xq, yq) if strat.needs_query else None

        def run():
            model.zero_grad(set_to_none=True)
            eng.step(xs, ys, crit, query=query)
        return run

    params = model.shared_parameters()

    def floor():
        model.zero_grad(set_to_none=True)
        for x, y in ((xs, ys), (xq, yq)):
            if isinstance(x, dict):  # one batch per task
                out = {t: model.decode(model.encode(x[t]), t) for t in model.tasks}
            else:  # one batch for all tasks: one encoder forward
                rep = model.encode(x)
                out = {t: model.decode(rep, t) for t in model.tasks}
            losses = [crit[t](out[t], y[t]) for t in model.tasks]
            for i, t in enumerate(model.tasks):
                torch.autograd.grad(losses[i], params + model.task_parameters(t),
                                    retain_graph=i < len(losses) - 1)

    res = {k: v for k, v in vars(a).items() if k != "repeats"}
    res["shared_params"] = sum(p.numel() for p in params if p.requires_grad)
    fns = {"EW": engine_step("EW"), "floor": floor,
           "MetaWeighting": engine_step("MetaWeighting"),
           "MetaWeighting_adam": engine_step("MetaWeighting", inner="adam"),
           "AutoLambda": engine_step("AutoLambda")}
    clock = time.perf_counter if a.clock == "wall" else time.process_time
    res["clock"] = a.clock
    for _ in range(3):  # interleave rounds so drift hits every variant alike; keep the best
        for k, fn in fns.items():
            res.setdefault(f"{k}_s", []).append(timed(fn, a.repeats, a.device, clock))
    for k in fns:
        res[f"{k}_s"] = min(res[f"{k}_s"])
    res["MetaWeighting/floor"] = res["MetaWeighting_s"] / res["floor_s"]
    res["MetaWeighting_adam/floor"] = res["MetaWeighting_adam_s"] / res["floor_s"]
    for k in ("floor", "MetaWeighting", "AutoLambda"):
        res[f"{k}/EW"] = res[f"{k}_s"] / res["EW_s"]
    print(json.dumps({k: (round(v, 6) if isinstance(v, float) else v) for k, v in res.items()},
                     indent=1))


if __name__ == "__main__":
    main()
