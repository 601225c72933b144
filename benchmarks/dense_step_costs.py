"""Δt on a GPU: time per step and peak memory of every row of the RLW dense tables.

For each architecture (HPS, MTAN, cross-stitch, NDDR-CNN) this builds the model of
``notebooks/51_benchmark_dense_prediction.ipynb`` in its ``full`` setting
(:mod:`mtlkit.protocols.rlw_dense`: dilated ResNet-50 shared by ASPP heads, NYUv2's
288 x 384 at batch 8, float32 unless ``--amp bf16``)
on a few images of the synthetic ``scenes`` stand-in at that resolution (timing does not
depend on the pixels), then for every row the architecture supports:

* time per training step, ``--replicates`` independent interleaved measurements
  (``mtlkit.experiments.step_times``: ``--steps`` timed steps after ``--warmup``, methods in
  turn, CUDA synchronised), as a ratio to EW in the same replicate, with a second copy of
  EW as the noise yardstick;
* peak CUDA memory of a few steps of each row alone (``torch.cuda.max_memory_allocated``).

Writes ``<out>.csv`` (architecture, method, mode, ms per step mean and 95% half-width,
Δt step mean and 95% half-width, peak MiB) and ``<out>.json`` (the same plus the machine).

Usage (about 10-20 minutes on one H100 for the four architectures)::

    python benchmarks/dense_step_costs.py --device cuda --out results/dense_step_costs/nyuv2
    python benchmarks/dense_step_costs.py --device cuda --arch HPS --replicates 3
    python benchmarks/dense_step_costs.py --device cpu --backbone small --size 48 64 \\
        --batch 4 --arch HPS --methods EW RLW-normal MGDA --replicates 2 --steps 2  # CPU check
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd


def measure(arch: str, args: argparse.Namespace) -> pd.DataFrame:
    from mtlkit import experiments, results
    from mtlkit.protocols import rlw_dense as P
    from mtlkit.protocols import rlw_dense_claims as C

    plan = P.plan("full", args.dataset, "scenes", n_train=max(args.batch, 8), n_val=2,
                  n_test=2, size=args.size, batch_size=args.batch, backbone=args.backbone,
                  pretrained=args.pretrained)
    data = P.load_data(plan, seed=0)
    make = P.model_factory(arch, data, plan)
    methods, notes = P.methods_for(arch, args.methods or ())
    for n in notes:
        print(f"[{arch}] note: {n}", file=sys.stderr)
    cfg = replace(plan.train_config(args.device), amp=args.amp or None)
    twin = experiments.parse_method("EW()")
    if "EW" not in [m.label for m in methods]:
        methods.insert(0, experiments.parse_method("EW"))
    times = C.timing_replicates(methods + [twin], data, make, cfg, replicates=args.replicates,
                                steps=args.steps, warmup=args.warmup)
    ratios = C.time_ratios(times)
    memory = C.peak_memory(methods, data, make, cfg)
    rows = []
    for m in methods + [twin]:
        rows.append({"architecture": arch, "method": m.label, "mode": P.gradient_mode(m),
                     "ms_per_step": 1000 * times[m.label].mean(),
                     "ms_ci95": 1000 * results.ci95(times[m.label]),
                     "dt_step": ratios[m.label].mean(), "dt_ci95": results.ci95(ratios[m.label]),
                     "peak_MiB": memory.get(m.label, float("nan"))})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (the point of this script) or cpu")
    p.add_argument("--arch", nargs="+", default=["HPS", "MTAN", "cross-stitch", "NDDR"])
    p.add_argument("--methods", nargs="*", default=[],
                   help="method specs; default every paper row the architecture supports")
    p.add_argument("--dataset", default="nyuv2", help="nyuv2 | cityscapes | pascal_context")
    p.add_argument("--size", type=int, nargs=2, default=[288, 384], help="H W")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--backbone", default="", help="resnet50 (paper) | resnet18 | small")
    p.add_argument("--pretrained", default="", help="torchvision weights name or .pth")
    p.add_argument("--amp", default="", help="'' (float32, default) | bf16 | fp16")
    p.add_argument("--replicates", type=int, default=5)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--out", default="runs/gpu/dense_steps", help="output prefix")
    args = p.parse_args(argv)
    import torch

    from mtlkit.shipped import machine

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("dense_step_costs: --device cuda but CUDA is not available; use --device cpu "
              "for a check", file=sys.stderr)
        return 2
    if args.device == "cpu":
        torch.set_num_threads(1)  # a CPU check only; one thread is steadiest on a shared machine
    table = pd.concat([measure(a, args) for a in args.arch], ignore_index=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out.with_suffix(".csv"), index=False)
    import datetime as dt

    info = {"command": "python benchmarks/dense_step_costs.py " + " ".join(argv or sys.argv[1:]),
            "args": vars(args), "machine": machine(),
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "rows": table.to_dict("records")}
    out.with_suffix(".json").write_text(json.dumps(info, indent=1, default=str))
    print(table.round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
