"""The RLW paper's single-input dense-prediction protocol, in one place for notebooks 51 and 55.

``rlw.md`` §5.1–5.4 (NYUv2, Table 1; PASCAL-Context, Table 2), §5.7 and App. C.2 (MTAN,
cross-stitch, NDDR-CNN on NYUv2: Tables 4, 6, 7), App. C.3 (Cityscapes, Table 8):

* :data:`SETTINGS`: each dataset's tasks, table columns, input size, optimiser, batch
  and encoder as §5.2 / App. C.3 give them, and the paper's Δp (and Table 1's Δt);
* :func:`plan`: every knob of a run for a profile, from the paper's settings (``full``)
  or sized for a CPU on the synthetic ``scenes`` stand-in (``smoke``, ``teach``,
  ``paper-cpu``);
* the method rows (:data:`TABLE_METHODS`) and which architecture supports which
  (:func:`check_method`): a strategy run on the gradient of *one shared representation*
  (MGDA-UB, GradDrop as the paper runs it) with an architecture that has none is an
  :class:`ArchitectureMismatch`, never a silent reinterpretation;
* the model (:func:`build_model`): a dilated ResNet (50 for NYUv2 and Cityscapes, 18 for
  PASCAL-Context) with one ASPP head per task, arranged as HPS, MTAN, cross-stitch or
  NDDR-CNN; ImageNet weights from a torchvision weights name or a file, else random;
* the losses and the metrics the trainer does not compute (PASCAL-Context: L1 normal
  loss, saliency maxF, normal RMSE), and :func:`train_grid`, a method x seed grid that
  keeps going past a diverged run and records it.

Analysis of the records (Δp per seed, convergence, timing, verdicts) lives in
:mod:`mtlkit.protocols.rlw_dense_claims`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from mtlkit import experiments, results
from mtlkit.arch import HPS, MTAN, NDDR, CrossStitch, MTLModel
from mtlkit.data.base import MTLData, TaskSpec
from mtlkit.encoders.vision import ASPPHead, Stages, conv_stages, resnet_encoder
from mtlkit.experiments import Method, parse_method
from mtlkit.losses import criteria_for, normals_valid
from mtlkit.metrics import Metric, normal_angles
from mtlkit.registry import normalize
from mtlkit.trainer import TrainConfig, Trainer

RLW6 = tuple(f"RLW-{d}" for d in ("uniform", "normal", "dirichlet", "bernoulli",
                                   "constrained_bernoulli", "random_normal"))
#: the rows of rlw.md Table 1, MGDA both on the shared parameters (the paper's row) and on
#: the shared representation (MGDA-UB, Sener & Koltun's bound; not a row of the paper)
TABLE_METHODS = ("EW", "GradNorm", "UW", "MGDA", "MGDA-UB", "DWA", "PCGrad", "GradDrop",
                 "IMTL", "GradVac", *RLW6)
#: the paper's row names -> our labels
PAPER_ROWS = {"EW": "EW", "GradNorm": "GradNorm", "UW": "UW", "MGDA": "MGDA", "DWA": "DWA",
              "PCGrad": "PCGrad", "GradDrop": "GradDrop", "IMTL": "IMTL", "GradVac": "GradVac",
              "RLW (Uniform)": "RLW-uniform", "RLW (Normal)": "RLW-normal",
              "RLW (Dirichlet)": "RLW-dirichlet", "RLW (Bernoulli)": "RLW-bernoulli",
              "RLW (constrained Bernoulli)": "RLW-constrained_bernoulli",
              "RLW (random Normal)": "RLW-random_normal"}

#: notebook 55's weightings: every one runs with all four architectures (no rep mode);
#: loss-based, gradient-based and three RLW distributions
ARCH_GRID_METHODS = ("EW", "UW", "DWA", "MGDA", "PCGrad", "IMTL", "RLW-normal",
                     "RLW-dirichlet")
#: the same, fewer, for the teach and smoke profiles
ARCH_GRID_METHODS_SMALL = ("EW", "RLW-normal", "UW", "MGDA")
#: architecture name -> class; ``shared_rep`` says whether it has one shared representation
ARCHS: dict[str, type[MTLModel]] = {"HPS": HPS, "MTAN": MTAN, "cross-stitch": CrossStitch,
                                    "NDDR": NDDR}
#: (the registries' naming rule: case, "-", "_" and spaces do not matter)
_ARCH_ALIASES = {"hps": "HPS", "dmtl": "HPS", "mtan": "MTAN", "crossstitch": "cross-stitch",
                 "nddr": "NDDR", "nddrcnn": "NDDR"}
#: the paper's table of each architecture on NYUv2
ARCH_TABLE = {"HPS": "Table 1", "MTAN": "Table 4", "cross-stitch": "Table 6", "NDDR": "Table 7"}


def _dp(values: str) -> dict[str, float]:
    """{our label: Δp} from the paper's Δp column, rows in :data:`PAPER_ROWS` order."""
    return dict(zip(PAPER_ROWS.values(), (float(v) for v in values.split())))


#: the paper's Δp (%) by (dataset, architecture), in the row order of PAPER_ROWS
PAPER_DELTA_P: dict[tuple[str, str], dict[str, float]] = {
    ("nyuv2", "HPS"): _dp("0 -0.06 -0.24 -0.35 0.07 0.12 -0.33 -0.35 0.48 0.17 1.02 0.27 0.28 "
                          "1.29 0.39"),
    ("nyuv2", "MTAN"): _dp("0 0.83 0.95 0.37 -0.39 -0.16 0.57 0.72 0.34 0.08 0.16 0.35 0.61 "
                           "0.10 0.76"),
    ("nyuv2", "cross-stitch"): _dp("0 1.42 0.71 -0.05 0.02 1.45 0.56 1.89 1.42 0.53 0.95 0.47 "
                                   "1.33 1.79 0.79"),
    ("nyuv2", "NDDR"): _dp("0 0.51 0.52 -0.19 -0.13 0.07 -0.02 2.00 0.47 0.18 0.88 0.14 0.53 "
                           "0.49 0.02"),
    ("cityscapes", "HPS"): _dp("0 0.64 0.83 2.60 0.04 2.79 -0.37 1.54 1.70 1.12 0.67 1.95 0.91 "
                               "1.28 0.27"),
    ("pascal_context", "HPS"): _dp("0 -1.94 0.09 0.18 0.14 -0.08 -0.58 -0.81 -0.10 0.27 0.16 "
                                   "0.37 0.11 0.46 0.16"),
}
#: Table 1's Δt (time per epoch / EW's, RTX 3090); one merged cell x1.00 for all RLW rows
PAPER_DELTA_T: dict[str, float] = {**dict(zip(
    ["EW", "GradNorm", "UW", "MGDA", "DWA", "PCGrad", "GradDrop", "IMTL", "GradVac"],
    [1.00, 1.82, 1.01, 2.64, 1.00, 2.10, 1.84, 1.82, 2.11])), **dict.fromkeys(RLW6, 1.00)}

NORMAL_COLUMNS = ["mean_angle", "median_angle", "within_11.25", "within_22.5", "within_30"]


@dataclass(frozen=True)
class DenseSetting:
    """One dataset as the paper trains it (``rlw.md`` §5.2, App. C.3)."""

    name: str
    table: str  #: the paper's table (HPS)
    metrics: dict[str, list[str]]  #: {task: the table's columns}, in the table's order
    size: tuple[int, int]  #: input size (H, W)
    batch_size: int
    lr: float
    weight_decay: float
    backbone: str  #: resnet50 | resnet18 (dilated, output stride 8)
    normal_loss: str = "cosine"  #: cosine (1 - cos) | l1 (sum_c |n - n*| per pixel)
    extras: dict[str, tuple[str, ...]] = field(default_factory=dict)  #: {task: extra metrics}
    notes: str = ""


SETTINGS: dict[str, DenseSetting] = {
    "nyuv2": DenseSetting(
        "nyuv2", "Table 1",
        {"segmentation": ["miou", "pix_acc"], "depth": ["abs_err", "rel_err"],
         "normals": NORMAL_COLUMNS}, (288, 384), 8, 1e-4, 1e-5, "resnet50",
        notes="cross-entropy, L1 and cosine losses; 795 train / 654 validation images, the "
              "validation set doubling as the test set"),
    "cityscapes": DenseSetting(
        "cityscapes", "Table 8",
        {"segmentation": ["miou", "pix_acc"], "depth": ["abs_err", "rel_err"]}, (128, 256),
        64, 1e-4, 1e-5, "resnet50",
        notes="cross-entropy and L1 losses; 2,975 train / 500 validation images (= test)"),
    "pascal_context": DenseSetting(
        "pascal_context", "Table 2",
        {"segmentation": ["miou"], "human_parts": ["miou"], "saliency": ["miou", "maxf"],
         "normals": ["mean_angle", "rmse_angle", "within_11.25", "within_22.5", "within_30"]},
        (512, 512), 12, 1e-4, 1e-4, "resnet18", normal_loss="l1",
        extras={"saliency": ("maxf",), "normals": ("rmse_angle",)},
        notes="cross-entropy for both segmentations and saliency, L1 for normals; "
              "4,998 train / 5,105 validation images (= test)"),
}
#: direction of the metrics this module adds (for results.paper_table and verdicts)
EXTRA_DIRECTIONS = {"maxf": True, "rmse_angle": False}


# ------------------------------------------------------------------------------ plans
@dataclass(frozen=True)
class Plan:
    """Every knob of a dense run, resolved for one profile (see :func:`plan`)."""

    dataset: str  #: nyuv2 | cityscapes | pascal_context (the paper's table)
    source: str  #: real (DATA_DIR, as data_scripts writes it) | scenes (synthetic stand-in)
    profile: str
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    size: tuple[int, int]
    backbone: str  #: small (CPU conv stages) | resnet18 | resnet50
    widths: tuple[int, ...]  #: channels of the small backbone's stages
    head_channels: int
    rates: tuple[int, ...]  #: ASPP dilation rates
    n_seeds: int
    n_train: int = 0  #: stand-in sizes (0 for real data)
    n_val: int = 0
    n_test: int = 0
    eval_every: int = 1
    warmup_steps: int = 3
    pretrained: str = ""

    @property
    def setting(self) -> DenseSetting:
        return SETTINGS[self.dataset]

    def train_config(self, device: str) -> TrainConfig:
        """The trainer's settings: Adam, selection on the mean validation loss; a finished
        run keeps its results only (a ResNet-50 checkpoint is about 0.3 GB)."""
        cuda = str(device).startswith("cuda")
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size,
                           eval_batch_size=max(self.batch_size, 8), lr=self.lr,
                           weight_decay=self.weight_decay, select="loss", device=str(device),
                           eval_every=self.eval_every, progress=False,
                           amp="bf16" if cuda and self.profile == "full" else None,
                           keep_files="none")

    def describe(self) -> str:
        data = (f"SYNTHETIC scenes stand-in ({self.n_train}/{self.n_val}/{self.n_test} "
                "train/val/test)" if self.source == "scenes" else f"{self.dataset} (real)")
        enc = ("small conv encoder " + "-".join(map(str, self.widths)) if self.backbone == "small"
               else f"dilated {self.backbone}, "
                    + (f"weights {self.pretrained}" if self.pretrained else "RANDOM init"))
        return (f"{data} at {self.size[0]}x{self.size[1]}; {enc}, ASPP heads "
                f"({self.head_channels} ch, rates {self.rates}); {self.epochs} epochs, batch "
                f"{self.batch_size}, Adam lr {self.lr:g}, wd {self.weight_decay:g}; "
                f"{self.n_seeds} seed(s)")


#: CPU stand-in sizes by grid ("table": notebook 51, "arch": notebook 55) and profile; sized
#: by one-epoch timings at 1 thread (EW, PCGrad, MGDA-UB, GradNorm; each architecture) so that
#: paper-cpu's whole grid takes about 12 min on a quiet core (every row, at least 3 seeds)
_CPU = {"lr": 1e-3, "weight_decay": 1e-5}
_SMOKE = dict(n_train=24, n_val=8, n_test=8, size=(24, 32), widths=(8, 16), head_channels=8,
              rates=(1, 2), epochs=2, batch_size=8, n_seeds=1, warmup_steps=1)
_SMALL = dict(size=(32, 48), widths=(16, 32, 64), head_channels=32, rates=(1, 2, 3),
              batch_size=8)
STANDIN: dict[str, dict[str, dict[str, Any]]] = {
    "table": {"smoke": _SMOKE,
              "teach": {**_SMALL, "n_train": 96, "n_val": 32, "n_test": 64, "epochs": 4,
                        "n_seeds": 3},
              "paper-cpu": {**_SMALL, "n_train": 160, "n_val": 48, "n_test": 96, "epochs": 5,
                            "n_seeds": 4}},
    "arch": {"smoke": {**_SMOKE, "epochs": 1},
             "teach": {**_SMALL, "n_train": 64, "n_val": 32, "n_test": 64, "epochs": 3,
                       "n_seeds": 3},
             "paper-cpu": {**_SMALL, "n_train": 96, "n_val": 32, "n_test": 64, "epochs": 3,
                           "n_seeds": 3}},
}
#: ``full``: the paper's settings; epochs are not in the paper (LibMTL's NYUv2 default 200)
FULL_EPOCHS, FULL_SEEDS = 200, 5


def plan(profile: str, dataset: str = "nyuv2", source: str = "", grid: str = "table",
         **overrides: Any) -> Plan:
    """The :class:`Plan` of ``dataset`` under ``profile``.

    ``source``: ``"real"`` (the paper's data), ``"scenes"`` (the synthetic stand-in),
    or empty for real in ``full`` and the stand-in otherwise.  ``full`` takes the
    paper's model and optimiser; the CPU profiles a small model at lr 1e-3 (the paper's
    1e-4 is for an ImageNet-initialised ResNet).  ``overrides`` replace single knobs;
    a value of 0, "" or an empty list/tuple means "the default" (as notebook parameters).
    """
    if dataset not in SETTINGS:
        raise ValueError(f"DATASET={dataset!r}; choose one of {sorted(SETTINGS)}")
    if grid not in STANDIN:
        raise ValueError(f"grid={grid!r}; choose one of {sorted(STANDIN)}")
    source = source or ("real" if profile == "full" else "scenes")
    if source not in ("real", "scenes"):
        raise ValueError(f"DATA={source!r}; choose 'real' (DATA_DIR) or 'scenes' (stand-in)")
    s = SETTINGS[dataset]
    if profile == "full":
        knobs: dict[str, Any] = dict(
            epochs=FULL_EPOCHS, batch_size=s.batch_size, lr=s.lr, weight_decay=s.weight_decay,
            size=s.size, backbone=s.backbone, widths=(16, 32, 64), head_channels=256,
            rates=(12, 24, 36), n_seeds=FULL_SEEDS, warmup_steps=10)
        if source == "scenes":
            knobs.update(n_train=795, n_val=80, n_test=654)
    elif profile in STANDIN[grid]:
        knobs = {**_CPU, "backbone": "small", **STANDIN[grid][profile]}
        if source == "real":  # the paper's data on a CPU: the small model, real images
            knobs.update(size=s.size, n_train=0, n_val=0, n_test=0)
    else:
        raise ValueError(f"unknown profile {profile!r}")
    given = {k: (tuple(v) if isinstance(v, list) else v) for k, v in overrides.items()
             if v not in (0, "", None, [], ())}
    bad = sorted(set(given) - set(Plan.__dataclass_fields__))
    if bad:
        raise ValueError(f"unknown plan knob(s) {bad}")
    if source == "real" and "size" in given and dataset != "pascal_context" \
            and tuple(given["size"]) != s.size:
        raise ValueError(f"IMAGE_SIZE={list(given['size'])}: the prepared {dataset} release is "
                         f"{s.size[0]}x{s.size[1]}; only the stand-in and pascal_context "
                         "(square sizes) can be resized")
    if "backbone" in given and given["backbone"] not in ("small", "resnet18", "resnet50"):
        raise ValueError(f"BACKBONE={given['backbone']!r}; choose small, resnet18 or resnet50")
    return Plan(dataset=dataset, source=source, profile=profile, **{**knobs, **given})


# ------------------------------------------------------------------------------ data
def load_data(p: Plan, data_dir: str = "", seed: int = 0) -> MTLData:
    """The paper's data (``source="real"``: the layout ``data_scripts/`` writes, under
    ``data_dir``), or the SYNTHETIC ``scenes`` with the same tasks (``source="scenes"``)."""
    from mtlkit import data as mdata

    if p.source == "scenes":
        return mdata.load("scenes", n_train=p.n_train, n_val=p.n_val, n_test=p.n_test,
                          height=p.size[0], width=p.size[1], seed=seed, variant=p.dataset)
    kw: dict[str, Any] = {"root": data_dir or None}
    if p.dataset == "pascal_context":
        if p.size[0] != p.size[1]:
            raise ValueError(f"IMAGE_SIZE={list(p.size)}: PASCAL-Context is resized to a "
                             "square (the paper: 512x512)")
        kw["size"] = p.size[0]
    return mdata.load(p.dataset, **kw)


def data_label(data: MTLData) -> str:
    """What to write next to every number: the dataset, and SYNTHETIC stand-in if it is one."""
    if data.stands_in_for:
        return f"{data.name} (SYNTHETIC stand-in for {data.stands_in_for.split(' (')[0]})"
    return f"{data.name} (the paper's data)"


# ------------------------------------------------------------------------- methods
class ArchitectureMismatch(ValueError):
    """A strategy that needs one shared representation, with an architecture that has none."""


def arch_name(name: str) -> str:
    """The canonical architecture name (HPS, MTAN, cross-stitch, NDDR) of ``name``."""
    key = _ARCH_ALIASES.get(normalize(name))
    if key is None:
        raise ValueError(f"ARCH={name!r}; choose one of {list(ARCHS)}")
    return key


def gradient_mode(method: Method) -> str:
    """The gradient mode ``method`` trains in (``losses``, ``param`` or ``rep``)."""
    from mtlkit.grads import resolve_mode

    return resolve_mode(method.build(0), method.mode)


def check_method(method: Method | str, arch: str) -> Method:
    """``method`` if ``arch`` supports it, else :class:`ArchitectureMismatch`.

    A strategy in ``rep`` mode reads the T gradients of *one* shared representation
    (MGDA-UB's upper bound, GradDrop's sign purity, any Gram matrix of them).  MTAN,
    cross-stitch and NDDR give each task its own representation, so the rows would be
    gradients of different tensors: the engine only refuses the strategies that are
    not reweightings, and would otherwise train on a quantity the method does not
    define.  This check refuses every such pairing (LibMTL, which the paper used, runs
    it; this protocol does not)."""
    m = parse_method(method) if isinstance(method, str) else method
    a = arch_name(arch)
    if gradient_mode(m) == "rep" and not ARCHS[a].shared_rep:
        raise ArchitectureMismatch(
            f"{m.label} uses the gradients of one shared representation (rep mode), but {a} "
            f"gives each task its own representation. Run it with ARCH='HPS', or on the shared "
            f"parameters ('{m.name}@param'{', i.e. MGDA' if m.name == 'MGDA' else ''}).")
    return m


def methods_for(arch: str, specs: Sequence[str] = ()) -> tuple[list[Method], list[str]]:
    """(the methods to run with ``arch``, notes on rows left out or changed).

    ``specs`` given: each is parsed and checked (:func:`check_method` raises on a
    mismatch; an unregistered strategy is left out with a note).  Empty: the rows of
    :data:`TABLE_METHODS` that ``arch`` supports, GradDrop on the shared parameters
    (``GradDrop@param``) where there is no shared representation."""
    a = arch_name(arch)
    notes: list[str] = []
    if specs:
        ok, notes = experiments.available(list(specs))
        return [check_method(m, a) for m in ok], notes
    out = []
    for spec in TABLE_METHODS:
        m = parse_method(spec)
        if gradient_mode(m) == "rep" and not ARCHS[a].shared_rep:
            if m.name == "MGDA":
                notes.append(f"{spec}: left out, {a} has no shared representation (MGDA on "
                             "the shared parameters is the 'MGDA' row)")
                continue
            m = parse_method(f"{m.name}@param")
            notes.append(f"{spec}: runs as {m.label} on {a}, which has no shared "
                         "representation (LibMTL, the paper's code, applies it to the per-task "
                         "representations instead)")
        out.append(m)
    return out, notes


# --------------------------------------------------------------------------- models
HEAD_KIND = {"segmentation": "segmentation", "depth": "depth", "normals": "normal"}


def load_resnet_weights(stages: Stages, path: str | Path) -> None:
    """Load a torchvision ResNet ``state_dict`` file (``conv1``, ``bn1``, ``layer1..4``;
    ``fc`` ignored) into the :func:`~mtlkit.encoders.vision.resnet_encoder` stages;
    raises ValueError naming the keys that do not match."""
    from mtlkit.checkpoints import load_weights

    state = {k: v for k, v in load_weights(path).items() if not k.startswith("fc.")}
    rename = {"conv1.": "stages.0.0.", "bn1.": "stages.0.1.", "layer1.": "stages.0.4.",
              "layer2.": "stages.1.", "layer3.": "stages.2.", "layer4.": "stages.3."}
    mapped = {}
    for k, v in state.items():
        prefix = next((p for p in rename if k.startswith(p)), None)
        mapped[rename[prefix] + k[len(prefix):] if prefix else k] = v
    missing, unexpected = stages.load_state_dict(mapped, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path} is not a torchvision ResNet of this depth: missing "
                         f"{list(missing)[:5]}, unexpected {list(unexpected)[:5]}")


def _backbone(p: Plan) -> Stages:
    if p.backbone == "small":
        return conv_stages(3, p.widths)
    depth = int(p.backbone.removeprefix("resnet"))
    path = Path(p.pretrained).expanduser() if p.pretrained else None
    is_file = path is not None and (path.suffix in (".pt", ".pth") or path.exists())
    enc = resnet_encoder(depth, dilated=True, weights=None if is_file else (p.pretrained or None))
    if is_file:
        if not path.exists():
            raise FileNotFoundError(f"PRETRAINED={p.pretrained!r}: no such file")
        load_resnet_weights(enc, path)
    return enc


def build_model(arch: str, tasks: Sequence[TaskSpec], p: Plan, seed: int = 0) -> MTLModel:
    """``arch`` on the plan's encoder with one ASPP head per task (``rlw.md`` §5.2).

    Cross-stitch (Misra et al.'s 0.9 / 0.1 initial mix) and NDDR-CNN (0.9 / 0.1 diagonal)
    get one column per task: copies of the encoder when it is pretrained (as LibMTL),
    independently initialised columns otherwise.  Heads upsample to the input size."""
    a = arch_name(arch)
    bad = [s.name for s in tasks if s.kind not in HEAD_KIND]
    if bad:
        raise ValueError(f"tasks {bad} are not dense (segmentation, depth, normals)")
    torch.manual_seed(seed)
    enc = _backbone(p)
    heads = {s.name: ASPPHead(enc.out_channels, HEAD_KIND[s.kind], s.num_classes or 2,
                              channels=p.head_channels, rates=p.rates, output_size=p.size)
             for s in tasks}
    if a == "HPS":
        return HPS(enc, heads)
    if a == "MTAN":
        return MTAN(enc, heads)
    columns: Any = enc if p.pretrained else (lambda: _backbone(p))
    if a == "cross-stitch":
        return CrossStitch(columns, heads, alpha_self=0.9, alpha_other=0.1)
    return NDDR(columns, heads)


def model_factory(arch: str, data: MTLData, p: Plan) -> Callable[[int], MTLModel]:
    """``seed -> a fresh model`` for :func:`train_grid`."""
    a = arch_name(arch)
    return lambda seed: build_model(a, data.tasks, p, seed)


# ------------------------------------------------------------------ losses, metrics
def l1_normals_loss(out: Tensor, y: Tensor) -> Tensor:
    """mean over valid pixels of sum_c |n_c - n*_c| (PASCAL-Context's normal loss, §5.2)."""
    mask = normals_valid(y)
    if not mask.any():
        return out.float().sum() * 0.0
    return (out.float() - y.float()).abs().sum(1)[mask].mean()


def criteria(data: MTLData, p: Plan) -> dict[str, Callable[[Tensor, Tensor], Tensor]]:
    """The training losses: the library's per kind, normals L1 where the paper says so."""
    crit = criteria_for(data.tasks)
    if p.setting.normal_loss == "l1":
        crit.update({s.name: l1_normals_loss for s in data.tasks if s.kind == "normals"})
    return crit


class SaliencyMaxF(Metric):
    """maxF of saliency (ASTMT / MTI-Net): F_beta = (1 + b2) P R / (b2 P + R) with
    b2 = 0.3, from the foreground probability softmax(logits)_1 thresholded at 15 levels
    in [0.2, 0.9], P and R pooled over the split; the maximum over levels."""

    names = ("maxf",)
    THRESHOLDS = torch.linspace(0.2, 0.9, 15)
    BETA2 = 0.3

    def reset(self) -> None:
        n = len(self.THRESHOLDS)
        self.tp, self.fp, self.fn = (torch.zeros(n, dtype=torch.float64) for _ in range(3))

    def update(self, output: Tensor, target: Tensor) -> None:
        prob = output.detach().float().softmax(1)[:, 1].cpu()
        y = target.detach().cpu()
        keep = y >= 0
        prob, fg = prob[keep], y[keep] == 1
        for i, t in enumerate(self.THRESHOLDS):
            pred = prob > t
            self.tp[i] += float((pred & fg).sum())
            self.fp[i] += float((pred & ~fg).sum())
            self.fn[i] += float((~pred & fg).sum())

    def compute(self) -> dict[str, float]:
        p = self.tp / (self.tp + self.fp).clamp(min=1e-12)
        r = self.tp / (self.tp + self.fn).clamp(min=1e-12)
        f = (1 + self.BETA2) * p * r / (self.BETA2 * p + r).clamp(min=1e-12)
        return {"maxf": float(f.max())}


class NormalRMSE(Metric):
    """Root mean square of the angle error (degrees) over valid pixels (ASTMT's RMSE)."""

    names = ("rmse_angle",)

    def reset(self) -> None:
        self.sq, self.n = 0.0, 0

    def update(self, output: Tensor, target: Tensor) -> None:
        a = normal_angles(output.detach().cpu(), target.detach().cpu())
        self.sq += float((a ** 2).sum())
        self.n += a.numel()

    def compute(self) -> dict[str, float]:
        return {"rmse_angle": (self.sq / self.n) ** 0.5 if self.n else float("nan")}


EXTRA_METRICS: dict[str, type[Metric]] = {"maxf": SaliencyMaxF, "rmse_angle": NormalRMSE}


@torch.no_grad()
def evaluate_extras(model: nn.Module, dataset, extras: Mapping[str, Sequence[str]],
                    device: str, batch_size: int) -> dict[str, dict[str, float]]:
    """{task: {metric: value}} of the :data:`EXTRA_METRICS` named in ``extras`` on one split."""
    from torch.utils.data import DataLoader

    mets = {t: [EXTRA_METRICS[m]() for m in ms] for t, ms in extras.items()}
    model.eval().to(device)
    for x, y in DataLoader(dataset, batch_size=batch_size):
        out = model(x.to(device), list(extras))
        for t, ms in mets.items():
            for m in ms:
                m.update(out[t].float(), y[t])
    return {t: {k: v for m in ms for k, v in m.compute().items()} for t, ms in mets.items()}


# --------------------------------------------------------------------------- runner
@dataclass
class DenseGrid(experiments.Grid):
    """:class:`mtlkit.experiments.Grid` plus the runs that diverged (not in ``runs``)."""

    failed: list[str] = field(default_factory=list)


def _slug(label: str) -> str:
    return re.sub(r"[^\w\-]+", "_", label).strip("_")


def _extra_records(rec: pd.DataFrame, values: Mapping[str, Mapping[str, Mapping[str, float]]]
                   ) -> pd.DataFrame:
    """Records of the extra metrics at the selected epoch, with the run's other columns."""
    base = rec[rec["selected"].astype(bool)].iloc[0]
    rows = [{**base.to_dict(), "task": t, "metric": m, "value": v, "split": split}
            for split, tasks in values.items() for t, ms in tasks.items() for m, v in ms.items()]
    return pd.DataFrame(rows)[results.RECORD_COLUMNS]


def train_one(method: Method, seed: int, data: MTLData, make_model: Callable[[int], MTLModel],
              config: TrainConfig, run_dir: Path, *, arch: str,
              crit: Mapping[str, Callable] | None = None,
              extras: Mapping[str, Sequence[str]] | None = None) -> experiments.MethodRun:
    """One method x seed through :class:`~mtlkit.trainer.Trainer` (records labelled with
    the method and ``arch``); ``extras`` are evaluated on the selected epoch's weights."""
    from mtlkit import checkpoints

    check_method(method, arch)
    cfg = replace(config, seed=int(seed), mode=method.mode)
    keep = "best" if extras and cfg.keep_files == "none" else cfg.keep_files
    r = Trainer(make_model(seed), method.build(seed), data, replace(cfg, keep_files=keep),
                criteria=crit, run_dir=run_dir / f"{_slug(arch)}-{_slug(method.label)}-s{seed}",
                labels={"method": method.label, "architecture": arch}).fit()
    rec = r.records
    if extras:
        model = make_model(seed)
        model.load_state_dict(checkpoints.load_weights(r.run_dir / checkpoints.BEST))
        vals = {s: evaluate_extras(model, data.split(s), extras, cfg.device, cfg.eval_batch_size)
                for s in ("val", "test")}
        rec = pd.concat([rec, _extra_records(rec, vals)], ignore_index=True)
        checkpoints.prune(r.run_dir, cfg.keep_files)
    return experiments.MethodRun(method.label, int(seed), rec, r.steps, r.epoch_time, True)


def train_grid(methods: Sequence[Method], seeds: Sequence[int], data: MTLData,
               make_model: Callable[[int], MTLModel], config: TrainConfig, out_dir: str | Path,
               *, arch: str, crit: Mapping[str, Callable] | None = None,
               extras: Mapping[str, Sequence[str]] | None = None,
               records_file: str | Path | None = None, warmup_steps: int = 0,
               log: Callable[[str], None] | None = print) -> DenseGrid:
    """Every method x seed (method-major), each checked against ``arch`` *before* any
    training.  A run that diverges (the trainer stops it at the first non-finite loss or
    update) is listed in ``failed`` and the grid goes on.  ``records_file`` receives each
    run's records as it finishes; ``warmup_steps`` of untimed EW first keep one-off costs
    out of the first method's Δt."""
    arch = arch_name(arch)
    methods = [check_method(m, arch) for m in methods]
    out = Path(out_dir)
    if warmup_steps > 0:
        warm = replace(config, epochs=1, steps_per_epoch=int(warmup_steps), progress=False)
        train_one(parse_method("EW"), seeds[0], data, make_model, warm, out / "warmup",
                  arch=arch, crit=crit)
    grid = DenseGrid([], [])
    for m in methods:
        for seed in seeds:
            try:
                run = train_one(m, seed, data, make_model, config, out / "train", arch=arch,
                                crit=crit, extras=extras)
            except FloatingPointError as e:
                grid.failed.append(f"{m.label} seed {seed}: {str(e).splitlines()[0]}")
                if log:
                    log(f"{m.label:>26s} seed {seed}: DIVERGED ({str(e)[:120]})")
                continue
            if log:
                log(f"{arch} {m.label:>26s} seed {seed}: {run.epoch_time:.2f} s/epoch")
            if records_file:
                results.write_records(run.records, records_file)
            grid.runs.append(run)
    return grid
