"""How close is a MetaWeighting step to the floor of an exact per-task hypergradient?

The floor (``metaweighting.txt`` Eq. 10 with per-task gradients): two forward
passes (support, query) and 2T per-task backward passes through the shared
part and the task's head, nothing else.  This script times, in one run and on
the same model and batches:

* EW            one forward, one backward of the mean loss (the cheapest step)
* floor         2 forwards + 2T ``torch.autograd.grad`` calls, results discarded
* MetaWeighting ``GradEngine(model, MetaWeighting).step(..., query=...)``
* AutoLambda    ``GradEngine(model, AutoLambda).step(...)`` (no query batch)

and prints the medians and the ratios MetaWeighting/floor and */EW as JSON.
Usage: ``python benchmarks/metaweighting_overhead.py [--tasks 4] [--device cpu]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch import nn

from mtlkit import weighting as W
from mtlkit.arch import HPS
from mtlkit.grads import GradEngine


def build(tasks: int, dim: int, hidden: int, device: str) -> HPS:
    torch.manual_seed(0)
    enc = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                        nn.Linear(hidden, hidden), nn.ReLU())
    return HPS(enc, {f"t{i}": nn.Linear(hidden, 2) for i in range(tasks)}).to(device)


def batches(model: HPS, n: int, dim: int, device: str, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = {t: torch.randn(n, dim, generator=g).to(device) for t in model.tasks}
    y = {t: torch.randint(0, 2, (n,), generator=g).to(device) for t in model.tasks}
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
    ap.add_argument("--tasks", type=int, default=4)
    ap.add_argument("--dim", type=int, default=300)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clock", choices=("wall", "process"), default="wall",
                    help="process = CPU time of this process (robust on a shared CPU)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = build(a.tasks, a.dim, a.hidden, a.device)
    xs, ys = batches(model, a.batch, a.dim, a.device, 1)
    xq, yq = batches(model, a.batch, a.dim, a.device, 2)
    crit = {t: nn.functional.cross_entropy for t in model.tasks}
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def engine_step(name: str, **kw):
        strat = W.get(name, **kw)
        strat.attach(model, opt)
        eng = GradEngine(model, strat)
        query = (xq, yq) if strat.needs_query else None

        def run():
            model.zero_grad(set_to_none=True)
            eng.step(xs, ys, crit, query=query)
        return run

    params = model.shared_parameters()

    def floor():
        model.zero_grad(set_to_none=True)
        for x, y in ((xs, ys), (xq, yq)):
            out = {t: model.decode(model.encode(x[t]), t) for t in model.tasks}
            losses = [crit[t](out[t], y[t]) for t in model.tasks]
            for i, t in enumerate(model.tasks):
                torch.autograd.grad(losses[i], params + model.task_parameters(t),
                                    retain_graph=i < len(losses) - 1)

    res = {"device": a.device, "threads": a.threads, "tasks": a.tasks, "batch": a.batch,
           "hidden": a.hidden, "shared_params": sum(p.numel() for p in params)}
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
