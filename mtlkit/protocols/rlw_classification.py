"""The RLW paper's image classification protocols (``rlw.md`` App. C.1, C.4, C.5): the method
rows of its tables, the data of each profile, and the model each method is trained with.

=============  =====================================  ==========================================
problem        full (``DATA_DIR``, GPU)               stand-in (``smoke``/``teach``/``paper-cpu``)
=============  =====================================  ==========================================
``celeba``     CelebA, 40 binary attributes, 64x64,   ``digit_attributes``: 40 binary attributes
               ResNet-18 + a 2-unit head per task,    of MultiMNIST canvases, a small CNN + a
               Adam 1e-3, batch 512 (Table 9)         2-unit head per task
``office``     Office-31 / Office-Home, one task per  ``digit_domains``: one 10-class task per
               domain, 224x224, ResNet-18 (ImageNet   synthetic digit domain, Office's domain
               weights), Adam 1e-3, batch 64 per      sizes, a small CNN + a linear head per
               task (Table 10)                        task
``convergence`` as ``celeba``, validation every epoch  as ``celeba`` (Figure 1, CelebA panel)
=============  =====================================  ==========================================

The paper does not state its numbers of epochs for CelebA and Office; ``full`` uses 100
(LibMTL's usual setting) and says so.  On the stand-ins the gradient-based baselines run on the
shared representation (``@rep``; MGDA as MGDA-UB): with 40 tasks, 40 encoder backward passes per
step cost 15-45 times EW's step on a CPU (measured in ``notebooks/56``), which the paper-cpu
budget cannot pay; ``full`` runs them on the shared parameters, LibMTL's default.

Used by ``notebooks/56_benchmark_multilabel_celeba.ipynb``,
``57_benchmark_multi_input_office.ipynb`` and ``59_rlw_convergence_celeba.ipynb``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from mtlkit.arch.hps import HPS
from mtlkit.data import registry
from mtlkit.data.base import MTLData
from mtlkit.data.digit_tasks import load_digit_attributes, load_digit_domains
from mtlkit.encoders.vision import LinearHead, SmallCNN, resnet_encoder
from mtlkit.trainer import TrainConfig
from mtlkit.weighting.rlw import DISTRIBUTIONS

#: RLW with the six distributions of ``rlw.md`` §3, in the tables' order
RLW6: tuple[str, ...] = tuple(f"RLW-{d}" for d in DISTRIBUTIONS)
#: the eight baselines of ``rlw.md`` §2 in the tables' order (Tables 1-3, 9, 10, 12)
BASELINES: tuple[str, ...] = ("GradNorm", "UW", "MGDA", "DWA", "PCGrad", "GradDrop", "IMTL",
                              "GradVac")
#: baselines that need per-task gradients (the others need the losses only)
GRADIENT_BASED = frozenset({"GradNorm", "MGDA", "PCGrad", "GradDrop", "IMTL", "GradVac"})
#: ``rlw.md`` Table 9: CelebA, average accuracy over the 40 attributes (%)
PAPER_TABLE9 = {"EW": 90.70, "GradNorm": 90.77, "UW": 90.84, "MGDA": 90.73, "DWA": 90.77,
                "PCGrad": 90.85, "GradDrop": 90.71, "IMTL": 90.91, "GradVac": 90.75,
                "RLW-uniform": 90.86, "RLW-normal": 90.73, "RLW-dirichlet": 90.89,
                "RLW-bernoulli": 90.71, "RLW-constrained_bernoulli": 90.81,
                "RLW-random_normal": 90.88}
_T10_ROWS = ["EW", *BASELINES, *RLW6]
#: ``rlw.md`` Table 10: accuracy (%) per domain and average, Office-31 and Office-Home
PAPER_TABLE10 = {
    "office31": pd.DataFrame(
        [[87.17, 98.36, 99.44, 94.99], [86.66, 99.18, 98.89, 94.91], [87.35, 99.18, 98.89, 95.13],
         [87.52, 99.18, 99.44, 95.38], [87.52, 99.18, 99.44, 95.38], [87.00, 98.36, 98.33, 94.56],
         [87.17, 98.36, 98.89, 94.80], [87.52, 98.36, 98.89, 94.92], [88.71, 98.36, 98.89, 95.32],
         [88.71, 98.36, 98.89, 95.32], [88.03, 99.18, 98.89, 95.36], [88.37, 99.18, 98.89, 95.48],
         [88.20, 99.18, 98.89, 95.42], [88.37, 100.0, 99.44, 95.94],
         [88.37, 98.36, 98.89, 95.20]],
        index=_T10_ROWS, columns=["amazon", "dslr", "webcam", "Avg"]),
    "office_home": pd.DataFrame(
        [[68.88, 80.93, 91.73, 81.72, 80.81], [68.88, 80.49, 91.73, 82.70, 80.95],
         [69.63, 82.55, 91.20, 81.08, 81.12], [69.44, 79.30, 91.63, 81.72, 80.52],
         [70.39, 79.95, 90.36, 82.05, 80.69], [68.31, 80.71, 90.57, 81.94, 80.38],
         [68.50, 81.47, 91.41, 81.40, 80.69], [67.93, 80.49, 91.94, 82.05, 80.60],
         [67.93, 82.01, 91.84, 81.72, 80.87], [70.01, 81.79, 90.88, 80.97, 80.92],
         [69.44, 80.93, 90.36, 82.70, 80.86], [70.01, 81.69, 91.31, 81.18, 81.05],
         [68.69, 82.23, 91.73, 81.72, 81.09], [70.77, 81.69, 91.41, 82.05, 81.48],
         [68.88, 82.12, 91.41, 81.72, 81.03]],
        index=_T10_ROWS, columns=["art", "clipart", "product", "real_world", "Avg"]),
}


def paper_label(label: str) -> str:
    """The paper's row for one of our method labels (``"PCGrad@rep"`` -> ``"PCGrad"``,
    ``"MGDA-UB"`` -> ``"MGDA"``)."""
    return "MGDA" if label == "MGDA-UB" else label.split("@")[0]


def table_rows(grad_mode: str = "auto", per_task_inputs: bool = False) -> list[str]:
    """The 15 rows of ``rlw.md`` Tables 3, 9, 10 and 12: EW, the eight baselines, RLW x 6.

    ``grad_mode="rep"`` runs the gradient-based baselines on the shared representation
    (method specs ``"PCGrad@rep"``, ...; MGDA as ``"MGDA-UB"``; GradDrop's own mode is the
    representation already); ``"auto"`` runs each strategy in its first mode (the shared
    parameters for all of them but GradDrop).

    ``per_task_inputs=True`` (a multi-input problem: Office, XTREME) runs GradDrop on the
    shared parameters (``"GradDrop@param"``): with one representation per task's own batch,
    the engine refuses a strategy that is not a reweighting in representation mode (LibMTL,
    the paper's code, stacks the tasks' representations instead; there is no such mode here).
    """
    if grad_mode not in ("auto", "rep"):
        raise ValueError(f"grad_mode={grad_mode!r}; choose 'auto' or 'rep'")
    rows = ["EW"]
    for b in BASELINES:
        if b == "GradDrop":
            b = "GradDrop@param" if per_task_inputs else b
        elif grad_mode == "rep" and b in GRADIENT_BASED:
            b = "MGDA-UB" if b == "MGDA" else f"{b}@rep"
        rows.append(b)
    return rows + list(RLW6)


def run_seeds(seeds: Sequence[int], n_seeds: int) -> list[int]:
    """The seeds to run: ``seeds`` as given when it lists several, else ``n_seeds``
    consecutive seeds from its one entry."""
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("SEEDS is empty; give the first seed, e.g. [0]")
    if len(seeds) > 1:
        return seeds
    if int(n_seeds) < 1:
        raise ValueError(f"N_SEEDS={n_seeds} must be >= 1 (0 in a notebook = the profile "
                         "default)")
    return list(range(seeds[0], seeds[0] + int(n_seeds)))


# --------------------------------------------------------------------------- settings

def with_overrides(setting: Any, **kw: Any) -> Any:
    """A copy of a settings dataclass with every given non-empty value replaced (0, "",
    None and [] keep the default; lists become tuples); an unknown name is an error."""
    kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in kw.items()
          if v not in (0, "", None, [], ())}
    bad = sorted(set(kw) - set(setting.__dataclass_fields__))
    if bad:
        raise ValueError(f"unknown setting(s) {bad}")
    return replace(setting, **kw)

@dataclass(frozen=True)
class Setting:
    """One profile's settings for one problem; notebook parameters override fields."""

    datasets: tuple[str, ...]  #: registry or stand-in names (one table block each)
    methods: tuple[str, ...]  #: method specs (``mtlkit.experiments``)
    epochs: int
    batch_size: int  #: per step (heterogeneous) or per task and step (homogeneous)
    lr: float
    weight_decay: float = 0.0
    n_train: int = 0  #: digit_attributes: training canvases; celeba: a cap (0 = all)
    n_eval: int = 0  #: digit_attributes: validation and test canvases each
    n_images: int = 0  #: digit_domains: images per stand-in dataset, all domains and splits
    image_size: int = 0  #: paper data: side of the resized images (0 = the loader's)
    eval_batch_size: int = 256
    n_seeds: int = 3  #: seeds when the notebook gives one (>= 5 in full, as the issue asks)
    timing_replicates: int = 3  #: interleaved step-time replicates for the Δt verdict
    notes: tuple[str, ...] = field(default_factory=tuple)

    def with_overrides(self, **kw: Any) -> Setting:
        """A copy with every given non-empty value replaced (0, "" and [] keep the default)."""
        return with_overrides(self, **kw)


_STAND_IN_ATTR = ("digit_attributes",)
_STAND_IN_DOM = ("digit_domains_office31", "digit_domains_office_home")
_PAPER_EPOCHS = ("the paper does not state its number of epochs; 100 is assumed (LibMTL's "
                 "usual setting)",)
_ALL_REP, _ALL = tuple(table_rows("rep")), tuple(table_rows("auto"))
_ALL_MULTI = tuple(table_rows("auto", per_task_inputs=True))
_CURVES = ("EW", *RLW6)

SETTINGS: dict[str, dict[str, Setting]] = {
    "celeba": {
        "smoke": Setting(_STAND_IN_ATTR, ("EW", "RLW-normal", "PCGrad@rep"), 1, 64, 1e-3,
                         n_train=192, n_eval=64, n_seeds=1, timing_replicates=2),
        "teach": Setting(_STAND_IN_ATTR, _ALL_REP, 3, 128, 1e-3, n_train=1280, n_eval=400),
        "paper-cpu": Setting(_STAND_IN_ATTR, _ALL_REP, 3, 128, 1e-3, n_train=1200,
                             n_eval=200, n_seeds=3, timing_replicates=3),
        "full": Setting(("celeba",), _ALL, 100, 512, 1e-3, image_size=64, n_seeds=5,
                        timing_replicates=5, notes=_PAPER_EPOCHS),
    },
    "office": {
        "smoke": Setting(_STAND_IN_DOM, ("EW", "RLW-normal", "PCGrad"), 1, 32, 1e-3,
                         n_images=300, n_seeds=1, timing_replicates=2),
        "teach": Setting(_STAND_IN_DOM, _ALL_MULTI, 4, 64, 1e-3, n_images=1200),
        "paper-cpu": Setting(_STAND_IN_DOM, _ALL_MULTI, 5, 64, 1e-3, n_images=1200, n_seeds=3,
                             timing_replicates=3),
        "full": Setting(("office31", "office_home"), _ALL_MULTI, 100, 64, 1e-3, image_size=224,
                        n_seeds=5, timing_replicates=5, notes=_PAPER_EPOCHS),
    },
    "convergence": {
        "smoke": Setting(_STAND_IN_ATTR, ("EW", "RLW-normal", "RLW-constrained_bernoulli"), 2,
                         64, 1e-3, n_train=192, n_eval=64, n_seeds=1),
        "teach": Setting(_STAND_IN_ATTR, _CURVES, 6, 128, 1e-3, n_train=1280, n_eval=400),
        "paper-cpu": Setting(_STAND_IN_ATTR, _CURVES, 6, 128, 1e-3, n_train=1200,
                             n_eval=200, n_seeds=3),
        "full": Setting(("celeba",), _CURVES, 100, 512, 1e-3, image_size=64, n_seeds=5,
                        notes=_PAPER_EPOCHS),
    },
}


def setting(problem: str, profile: str, **overrides: Any) -> Setting:
    """The :class:`Setting` of ``problem`` in ``profile`` with notebook overrides."""
    if problem not in SETTINGS:
        raise ValueError(f"unknown problem {problem!r}; choose one of {list(SETTINGS)}")
    if profile not in SETTINGS[problem]:
        raise ValueError(f"unknown profile {profile!r}; choose one of "
                         f"{list(SETTINGS[problem])}")
    return SETTINGS[problem][profile].with_overrides(**overrides)


# --------------------------------------------------------------------------- data
def is_stand_in(name: str) -> bool:
    """True for the generated stand-ins (``digit_*``), False for the paper's data."""
    return name.startswith("digit_")


def load_data(name: str, s: Setting, root: str | Path | None = None) -> MTLData:
    """One dataset of a setting: a stand-in generated with data seed 0 (every training seed
    sees the same data, as with the paper's fixed splits) or the paper's prepared data."""
    if name == "digit_attributes":
        return load_digit_attributes(n_train=s.n_train, n_val=s.n_eval, n_test=s.n_eval)
    if name.startswith("digit_domains_"):
        return load_digit_domains(name.removeprefix("digit_domains_"),
                                  n_images=s.n_images or None)
    if name == "celeba":
        return registry.load("celeba", root=root or None, limit=s.n_train or None)
    if name in ("office31", "office_home"):
        kw = {"size": s.image_size} if s.image_size else {}
        return registry.load(name, root=root or None, **kw)
    raise ValueError(f"unknown dataset {name!r}; choose digit_attributes, "
                     "digit_domains_office31, digit_domains_office_home, celeba, office31 or "
                     "office_home")


# --------------------------------------------------------------------------- models
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalize(nn.Module):
    """(x - mean) / std per channel: the input scaling of ImageNet-trained ResNets."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


#: torchvision ResNet state-dict prefixes -> :func:`mtlkit.encoders.vision.resnet_encoder`'s
_RESNET_KEYS = (("conv1.", "stages.0.0."), ("bn1.", "stages.0.1."), ("layer1.", "stages.0.4."),
                ("layer2.", "stages.1."), ("layer3.", "stages.2."), ("layer4.", "stages.3."))


def resnet_state_to_stages(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A torchvision ResNet ``state_dict`` renamed for ``resnet_encoder``'s stages (the
    classifier ``fc.*`` dropped); raises on a key it does not know."""
    out = {}
    for k, v in state.items():
        if k.startswith("fc."):
            continue
        for old, new in _RESNET_KEYS:
            if k.startswith(old):
                out[new + k[len(old):]] = v
                break
        else:
            raise ValueError(f"{k!r} is not a torchvision ResNet parameter")
    return out


def resnet18(weights: str = "") -> nn.Module:
    """ResNet-18 as stages (``rlw.md`` App. C.4-C.5).  ``weights``: ``""`` random; a file
    holding a torchvision ``resnet18`` state dict (loaded with ``weights_only=True``); or a
    torchvision weights name (``"DEFAULT"``, ``"IMAGENET1K_V1"``), which needs the checkpoint
    in the torch hub cache or internet."""
    if weights and Path(weights).is_file():
        enc = resnet_encoder(18, weights=None)
        state = torch.load(weights, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        enc.load_state_dict(resnet_state_to_stages(state))
        return enc
    if weights and ("/" in weights or weights.endswith((".pth", ".pt"))):
        raise FileNotFoundError(f"PRETRAINED={weights!r} is not a file; give a path to a "
                                "torchvision resnet18 state dict, a torchvision weights name "
                                "such as 'IMAGENET1K_V1', or '' for random weights")
    return resnet_encoder(18, weights=weights or None)


def model_factory(data: MTLData, pretrained: str = "") -> Callable[[int], HPS]:
    """``make_model(seed)`` for ``data``: hard parameter sharing with one linear head per task.

    Paper data (3-channel images): ImageNet normalisation + ResNet-18 (``pretrained`` as
    :func:`resnet18`), global average pooling, a linear head per task (2 units per CelebA
    attribute, 31/65 classes per Office domain).  Stand-ins (1-channel): a three-block
    :class:`~mtlkit.encoders.vision.SmallCNN` (16, 32, 64 channels) and flattening heads.
    """
    x0 = _first_input(data)
    channels, size = int(x0.shape[0]), tuple(int(s) for s in x0.shape[-2:])
    outputs = {s.name: int(s.num_classes) for s in data.tasks}

    def make(seed: int) -> HPS:
        torch.manual_seed(seed)
        if channels == 3:
            enc = nn.Sequential(Normalize(), resnet18(pretrained))
            heads = {t: LinearHead(512, n) for t, n in outputs.items()}
        else:
            enc = SmallCNN(channels, (16, 32, 64))
            cells = (size[0] // 8) * (size[1] // 8)
            heads = {t: LinearHead(64 * cells, n, pool="flatten") for t, n in outputs.items()}
        return HPS(enc, heads)

    return make


def _first_input(data: MTLData) -> Tensor:
    ds = data.train[data.task_names[0]] if data.homogeneous else data.train
    return ds[0][0]


def positive_rates(data: MTLData) -> pd.Series:
    """Per binary task of a heterogeneous dataset, the fraction of positive training labels
    (CelebA's attribute arrays are read directly; nothing is decoded)."""
    ds = data.train
    if hasattr(ds, "attrs") and hasattr(ds, "cols"):
        a = ds.attrs
        return pd.Series({t: float(a[:, c].mean()) for t, c in ds.cols.items()})
    if hasattr(ds, "targets"):
        return pd.Series({t: float(y.float().mean()) for t, y in ds.targets.items()})
    raise TypeError(f"cannot read the labels of {type(ds).__name__}")


def train_config(s: Any, device: str, full: bool, select: str = "acc",
                 progress: bool = False) -> Any:
    """The :class:`~mtlkit.trainer.TrainConfig` of a setting (Adam as in the paper;
    bf16 autocast in ``full`` on CUDA); a finished run keeps its results only."""
    cuda = str(device).startswith("cuda")
    return TrainConfig(epochs=s.epochs, batch_size=s.batch_size, lr=s.lr,
                       weight_decay=s.weight_decay,
                       eval_batch_size=getattr(s, "eval_batch_size", 256), select=select,
                       device=str(device), progress=progress,
                       amp="bf16" if full and cuda else None, keep_files="none")
