"""Training-step time of every weighting strategy, as a ratio to EW in the same run.

For each registered strategy (bi-level ones excepted: see
``benchmarks/metaweighting_overhead.py``) and each gradient mode it supports
(loss-only strategies: the ``losses`` path; gradient strategies: ``param`` and
``rep``) this times one full training step,

    optimizer.zero_grad(); make_engine(model, strategy, mode).step(x, y, criteria); optimizer.step()

on the same model and batch.  Configurations are interleaved in rounds (so that
drift in machine load hits all of them alike); each round runs ``--warmup``
untimed steps, then ``--steps`` timed ones, with ``torch.cuda.synchronize()``
around each timed step on CUDA.  The reported time is the median over all
rounds' steps, and the ratio is to EW (``losses`` mode) of the same run.

Configurations
--------------
``--config small``  an MLP hard-parameter-sharing model on CPU-sized data.
``--config nyuv2``  the RLW paper's NYUv2 setting (``rlw.md`` §5.2): a dilated
    ResNet-50 encoder (torchvision ``resnet50(weights=None,
    replace_stride_with_dilation=[False, True, True])``, output stride 8) shared
    by three DeepLabV3-style ASPP heads (``mtlkit.encoders.vision.ASPPHead``):
    13-class segmentation (cross-entropy), depth (L1) and surface normals
    (1 - cosine), at 288 x 384, batch 8, on random tensors.

Targets (nyuv2, H100): param-gradient strategies <= 2.2x EW, rep-gradient
<= 1.15x, loss-only <= 1.03x.

Usage::

    python benchmarks/weighting_overhead.py --config small --out runs/bench/small
    python benchmarks/weighting_overhead.py --config nyuv2 --device cuda --out runs/bench/nyuv2
    python benchmarks/weighting_overhead.py --config nyuv2 --device cpu --steps 2 --rounds 1 \\
        --warmup 1 --size 64 96 --batch 2 --only EW,MGDA      # a quick CPU check

Prints a Markdown table; ``--out PREFIX`` writes PREFIX.json and PREFIX.csv.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import statistics
import sys
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from mtlkit import weighting as W
from mtlkit.arch import HPS
from mtlkit.engine import make_engine
from mtlkit.weighting.base import LOSSES

TARGETS = {"losses": 1.03, "rep": 1.15, "param": 2.2}  # nyuv2 on an H100


# ------------------------------------------------------------------ models
def small_problem(device: str, tasks: int = 3, batch: int = 128, dim: int = 64,
                  hidden: int = 256):
    """An MLP HPS model, random regression/classification targets."""
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    enc = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                        nn.Linear(hidden, hidden), nn.ReLU())
    names = [f"t{i}" for i in range(tasks)]
    heads = {t: nn.Sequential(nn.Linear(hidden, 64), nn.ReLU(), nn.Linear(64, 4)) for t in names}
    model = HPS(enc, heads).to(device)
    x = torch.randn(batch, dim, generator=g).to(device)
    y = {t: torch.randn(batch, 4, generator=g).to(device) for t in names}
    crit = {t: F.mse_loss for t in names}
    return model, x, y, crit


class _MiniASPPHead(nn.Module):
    """Fallback dense head if ``mtlkit.encoders.vision`` is missing: ASPP-like
    parallel dilated 3x3 convs + image pooling, projection, classifier, upsampling."""

    def __init__(self, c_in: int, c_out: int, size: tuple[int, int], ch: int = 256,
                 rates: tuple[int, ...] = (12, 24, 36)) -> None:
        super().__init__()

        def block(k: int, r: int) -> nn.Module:
            return nn.Sequential(nn.Conv2d(c_in, ch, k, padding=0 if k == 1 else r, dilation=r,
                                           bias=False), nn.BatchNorm2d(ch), nn.ReLU())

        self.branches = nn.ModuleList([block(1, 1)] + [block(3, r) for r in rates])
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c_in, ch, 1), nn.ReLU())
        self.proj = nn.Sequential(nn.Conv2d(ch * (len(rates) + 2), ch, 1, bias=False),
                                  nn.BatchNorm2d(ch), nn.ReLU(),
                                  nn.Conv2d(ch, ch, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(ch), nn.ReLU(), nn.Conv2d(ch, c_out, 1))
        self.size = size

    def forward(self, x):
        p = self.pool(x).expand(-1, -1, *x.shape[-2:])
        y = self.proj(torch.cat([b(x) for b in self.branches] + [p], 1))
        return F.interpolate(y, size=self.size, mode="bilinear", align_corners=False)


def _heads(size: tuple[int, int]) -> tuple[dict[str, nn.Module], str]:
    try:
        from mtlkit.encoders.vision import ASPPHead
    except ImportError:
        return ({"segmentation": _MiniASPPHead(2048, 13, size),
                 "depth": _MiniASPPHead(2048, 1, size),
                 "normal": _NormalHead(_MiniASPPHead(2048, 3, size))},
                "benchmark's own minimal ASPP head (mtlkit.encoders.vision missing)")
    return ({"segmentation": ASPPHead(2048, "segmentation", 13, output_size=size),
             "depth": ASPPHead(2048, "depth", output_size=size),
             "normal": ASPPHead(2048, "normal", output_size=size)},
            "mtlkit.encoders.vision.ASPPHead")


class _NormalHead(nn.Module):
    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, x):
        return F.normalize(self.head(x), dim=1)


def nyuv2_problem(device: str, batch: int = 8, size: tuple[int, int] = (288, 384),
                  channels_last: bool = False):
    """Dilated ResNet-50 + three ASPP heads on random NYUv2-shaped tensors."""
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet50(weights=None,
                                      replace_stride_with_dilation=[False, True, True])
    enc = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool,
                        net.layer1, net.layer2, net.layer3, net.layer4)
    heads, head_note = _heads(size)
    model = HPS(enc, heads).to(device)
    g = torch.Generator().manual_seed(0)
    h, w = size
    x = torch.randn(batch, 3, h, w, generator=g)
    y = {"segmentation": torch.randint(-1, 13, (batch, h, w), generator=g),
         "depth": torch.rand(batch, 1, h, w, generator=g) * 10,
         "normal": F.normalize(torch.randn(batch, 3, h, w, generator=g), dim=1)}
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    x = x.to(device)
    y = {k: v.to(device) for k, v in y.items()}

    def seg(out, tgt):
        return F.cross_entropy(out, tgt, ignore_index=-1)

    def depth(out, tgt):
        return (out - tgt).abs().mean()

    def normal(out, tgt):
        return 1 - (out * tgt).sum(1).mean()

    crit = {"segmentation": seg, "depth": depth, "normal": normal}
    return model, x, y, crit, head_note


# ------------------------------------------------------------------ timing
def cases(only: list[str] | None) -> list[tuple[str, str]]:
    """(strategy, mode) pairs: loss-only strategies once, others in each mode."""
    out = []
    for name in W.names():
        cls = W.base._REGISTRY[name]
        if cls.needs_query or (only and name not in only):
            continue
        modes = (LOSSES,) if LOSSES in cls.modes else tuple(cls.modes)
        out += [(name, m) for m in modes]
    if ("EW", LOSSES) not in out:
        out.insert(0, ("EW", LOSSES))
    return out


def time_case(model, x, y, crit, name, mode, steps, warmup, device, amp, batched,
              clock=time.perf_counter):
    """Per-step times (seconds) of ``steps`` training steps after ``warmup``."""
    # methods defined on another architecture (AdvMTL: SharedPrivate) time their weighting
    strategy = W.get(name, **({"allow_without_discriminator": True} if W.get(name).arch else {}))
    engine = make_engine(model, strategy, mode, batched=batched)
    opt = torch.optim.SGD(model.parameters(), lr=1e-7, momentum=0.9)
    strategy.attach(model, opt)
    cuda = device.startswith("cuda")
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if (amp and cuda) else nullcontext()
    times = []
    for k in range(warmup + steps):
        if cuda:
            torch.cuda.synchronize()
        t0 = clock()
        opt.zero_grad(set_to_none=True)
        with ctx:
            engine.step(x, y, crit)
        opt.step()
        if cuda:
            torch.cuda.synchronize()
        if k >= warmup:
            times.append(clock() - t0)
    return times


def run(args) -> list[dict]:
    device = args.device
    note = ""
    if args.config == "small":
        model, x, y, crit = small_problem(device)
    else:
        model, x, y, crit, note = nyuv2_problem(device, args.batch, tuple(args.size),
                                                args.channels_last)
    model.train()
    todo = cases(args.only.split(",") if args.only else None)
    if args.clock == "process" and device.startswith("cuda"):
        raise SystemExit("--clock process measures CPU time only; use --clock wall on CUDA")
    clock = time.process_time if args.clock == "process" else time.perf_counter
    times: dict[tuple[str, str], list[float]] = {c: [] for c in todo}
    failed: dict[tuple[str, str], str] = {}
    for r in range(args.rounds):
        for c in todo:
            if c in failed:
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    times[c] += time_case(model, x, y, crit, *c, args.steps, args.warmup,
                                          device, args.amp, args.batched, clock)
            except Exception as err:  # report, keep measuring the others
                failed[c] = f"{type(err).__name__}: {err}"[:200]
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    ew = statistics.median(times[("EW", LOSSES)])
    rows = []
    for (name, mode) in todo:
        if (name, mode) in failed:
            rows.append({"strategy": name, "mode": mode, "ms": None, "ratio": None,
                         "target": TARGETS[mode], "error": failed[(name, mode)]})
            continue
        med = statistics.median(times[(name, mode)])
        rows.append({"strategy": name, "mode": mode, "ms": 1e3 * med, "ratio": med / ew,
                     "target": TARGETS[mode], "n": len(times[(name, mode)]), "error": ""})
    meta = {"config": args.config, "device": device, "amp": args.amp, "batched": args.batched,
            "torch": torch.__version__, "python": platform.python_version(),
            "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else "",
            "threads": torch.get_num_threads(), "heads": note,
            "batch": args.batch if args.config == "nyuv2" else 128,
            "size": args.size if args.config == "nyuv2" else None,
            "steps": args.steps, "rounds": args.rounds, "warmup": args.warmup,
            "clock": args.clock}
    return rows, meta


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [f"Config `{meta['config']}` on {meta['gpu'] or meta['device']} "
             f"(torch {meta['torch']}, AMP {meta['amp']}, batched {meta['batched']}, "
             f"{meta['threads']} threads, {meta['clock']} clock); "
             f"median of {meta['rounds']} x {meta['steps']} steps.", "",
             "| strategy | mode | step (ms) | x EW | target |", "|---|---|---:|---:|---:|"]
    for r in rows:
        if r["ms"] is None:
            lines.append(f"| {r['strategy']} | {r['mode']} | failed: {r['error']} | | |")
        else:
            lines.append(f"| {r['strategy']} | {r['mode']} | {r['ms']:.2f} | {r['ratio']:.2f} "
                         f"| <= {r['target']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", choices=["small", "nyuv2"], default="small")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=int, default=10, help="timed steps per round")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per round")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    p.add_argument("--batch", type=int, default=8, help="nyuv2 batch size")
    p.add_argument("--size", type=int, nargs=2, default=[288, 384], help="nyuv2 H W")
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast (CUDA)")
    p.add_argument("--channels-last", action="store_true", help="nyuv2 in channels_last")
    p.add_argument("--batched", choices=["auto", "true", "false"], default="auto",
                   help="param mode: vmapped encoder backward (engine option)")
    p.add_argument("--only", default="", help="comma-separated strategy names")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--clock", choices=["wall", "process"], default="wall",
                   help="process: this process's CPU time (CPU runs on a shared machine)")
    p.add_argument("--out", default="", help="write PREFIX.json and PREFIX.csv")
    args = p.parse_args(argv)
    args.batched = {"auto": "auto", "true": True, "false": False}[args.batched]
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    rows, meta = run(args)
    print(markdown(rows, meta))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
        with open(out.with_suffix(".csv"), "w", newline="") as f:
            wr = csv.DictWriter(f, fieldnames=["strategy", "mode", "ms", "ratio", "target", "n",
                                               "error"])
            wr.writeheader()
            wr.writerows(rows)


if __name__ == "__main__":
    main()
