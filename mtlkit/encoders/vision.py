"""Vision encoders and heads: ResNet backbones (optionally dilated), DeepLab
ASPP heads for dense tasks, linear heads, and small CNNs for MNIST-sized inputs.

Every backbone here is a :class:`Stages` module: ``forward`` runs its stages
in order, and ``stages`` / ``channels`` let the column architectures
(cross-stitch, NDDR-CNN) and MTAN cut it between stages.

``rlw.md`` §5.2: NYUv2 uses a dilated ResNet-50 shared encoder (DeepLabV3+,
output stride 8) with an ASPP head per task; PASCAL-Context a ResNet-18.  No
ImageNet weights install offline, so ``weights=None`` (random) is the default
here; ``weights="DEFAULT"`` takes torchvision's path for users who have them.
Derived in ``notebooks/03_architectures.ipynb``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

DENSE_KINDS = ("segmentation", "depth", "normal")


class Stages(nn.Module):
    """A backbone cut into stages: x -> s_J(...s_1(x)); ``channels[j]`` is the
    number of channels that stage j outputs."""

    def __init__(self, stages: Sequence[nn.Module], channels: Sequence[int]) -> None:
        super().__init__()
        if len(stages) == 0 or len(stages) != len(channels):
            raise ValueError(f"need one channel count per stage, got {len(stages)} stages "
                             f"and {len(channels)} channel counts")
        self.stages = nn.ModuleList(stages)
        self.channels = [int(c) for c in channels]

    @property
    def out_channels(self) -> int:
        return self.channels[-1]

    def forward(self, x: Tensor) -> Tensor:
        for s in self.stages:
            x = s(x)
        return x


def as_stages(backbone: nn.Module | Sequence[nn.Module],
              channels: Sequence[int] | None = None) -> Stages:
    """A :class:`Stages` view of ``backbone``: a Stages module as it is, or an
    ``nn.Sequential`` / list whose items are the stages, given their ``channels``."""
    if isinstance(backbone, Stages):
        return backbone
    if channels is None:
        raise ValueError("give channels=[...] (output channels of each stage) for a backbone "
                         "that is not an mtlkit.encoders Stages module")
    if isinstance(backbone, nn.Sequential):
        backbone = list(backbone.children())
    if not isinstance(backbone, Sequence):
        raise TypeError("backbone must be a Stages module, an nn.Sequential of stages, or a "
                        f"list of stage modules, got {type(backbone).__name__}")
    return Stages(list(backbone), channels)


def conv_block(c_in: int, c_out: int, pool: bool = True) -> nn.Sequential:
    """3x3 conv, BatchNorm, ReLU, then 2x2 max-pooling."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                               nn.BatchNorm2d(c_out), nn.ReLU(inplace=False)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


def conv_stages(in_channels: int = 1, channels: Sequence[int] = (8, 16, 32)) -> Stages:
    """A tiny conv backbone, one :func:`conv_block` per stage (fast CPU tests)."""
    ins = [in_channels, *channels[:-1]]
    return Stages([conv_block(a, b) for a, b in zip(ins, channels)], channels)


class SmallCNN(Stages):
    """A LeNet-sized CNN for MNIST-sized inputs (28x28 MNIST, 36x36 MultiMNIST).

    Three conv blocks (3x3 conv, BatchNorm, ReLU, 2x2 max-pool); a 28x28 input
    leaves a (B, channels[-1], 3, 3) map, a 36x36 input a 4x4 one.  Pair it with
    ``LinearHead(channels[-1] * 16, 10, pool="flatten")`` for 36x36 MultiMNIST
    (the tasks are positions, which average pooling would discard).
    """

    def __init__(self, in_channels: int = 1, channels: Sequence[int] = (16, 32, 64)) -> None:
        if len(channels) < 2 or any(c < 1 for c in channels):
            raise ValueError(f"SmallCNN needs >= 2 positive channel counts, got {channels}")
        ins = [in_channels, *channels[:-1]]
        super().__init__([conv_block(a, b) for a, b in zip(ins, channels)], channels)


class LinearHead(nn.Module):
    """A classification head for a feature map or vector: pooling, an optional
    hidden layer, then a linear layer to ``out_features`` logits.

    ``pool="avg"`` averages feature maps over space (``in_features`` = C);
    ``pool="flatten"`` keeps where things are (``in_features`` = C*H*W), as
    LeNet-style MultiMNIST heads must, since their tasks are positions.
    """

    def __init__(self, in_features: int, out_features: int, hidden: int | None = None,
                 dropout: float = 0.0, pool: str = "avg") -> None:
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError("LinearHead needs positive in_features and out_features")
        if pool not in ("avg", "flatten"):
            raise ValueError(f"pool must be 'avg' or 'flatten', got {pool!r}")
        self.pool = pool
        layers: list[nn.Module] = [nn.Dropout(dropout)] if dropout > 0 else []
        if hidden:
            layers += [nn.Linear(in_features, hidden), nn.ReLU()]
            in_features = hidden
        layers.append(nn.Linear(in_features, out_features))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() > 2:
            x = x.flatten(2).mean(-1) if self.pool == "avg" else x.flatten(1)
        return self.net(x)


# ------------------------------------------------------------------ ResNet
def _dilate(layer: nn.Module, dilation: int) -> None:
    """Output stride /2 -> dilation: stride-2 convs become stride 1, and every
    3x3 conv gets ``dilation`` (the first, formerly strided, ``dilation // 2``)."""
    for m in layer.modules():
        if not isinstance(m, nn.Conv2d):
            continue
        if m.stride == (2, 2):
            m.stride = (1, 1)
            if m.kernel_size == (3, 3):
                d = max(1, dilation // 2)
                m.dilation, m.padding = (d, d), (d, d)
        elif m.kernel_size == (3, 3):
            m.dilation, m.padding = (dilation, dilation), (dilation, dilation)


def resnet_encoder(depth: int = 18, dilated: bool = False, weights: str | None = None,
                   in_channels: int = 3) -> Stages:
    """A torchvision ResNet-18/50 without its pooling and classifier, as 4 stages
    (stem + layer1, layer2, layer3, layer4).

    ``dilated=True`` replaces the strides of layer3 and layer4 by dilations 2
    and 4 (output stride 8 instead of 32, as DeepLab; ``rlw.md`` §5.2).
    ``weights=None`` initialises randomly; ``weights="DEFAULT"`` (or a
    torchvision weights name) loads ImageNet weights, which needs internet or
    the checkpoint in ``$TORCH_HOME/hub/checkpoints``.
    """
    import torchvision

    builders = {18: torchvision.models.resnet18, 50: torchvision.models.resnet50}
    if depth not in builders:
        raise ValueError(f"depth must be 18 or 50, got {depth!r}")
    try:
        net = builders[depth](weights=weights)
    except Exception as e:  # torchvision raises URLError/RuntimeError/ValueError
        raise RuntimeError(
            f"could not load ResNet-{depth} weights {weights!r}: without internet, put the "
            "torchvision checkpoint (e.g. resnet18-f37072fd.pth) in $TORCH_HOME/hub/checkpoints, "
            "or use weights=None for a random initialisation") from e
    if in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    if dilated:
        _dilate(net.layer3, 2)
        _dilate(net.layer4, 4)
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1)
    width = 1 if depth == 18 else 4
    return Stages([stem, net.layer2, net.layer3, net.layer4],
                  [64 * width, 128 * width, 256 * width, 512 * width])


# -------------------------------------------------------------------- ASPP
class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (Chen et al. 2017/2018): a 1x1 conv, three
    3x3 convs with dilation rates r_i and an image-level pooling branch,
    concatenated and projected to ``channels`` by a 1x1 conv."""

    def __init__(self, in_channels: int, channels: int = 256,
                 rates: Sequence[int] = (12, 24, 36)) -> None:
        super().__init__()

        def branch(k: int, r: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(in_channels, channels, k, padding=0 if k == 1 else r,
                                           dilation=r, bias=False),
                                 nn.BatchNorm2d(channels), nn.ReLU())

        self.branches = nn.ModuleList([branch(1, 1)] + [branch(3, r) for r in rates])
        self.image_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1),
                                        nn.Conv2d(in_channels, channels, 1, bias=False),
                                        nn.ReLU())
        self.project = nn.Sequential(
            nn.Conv2d(channels * (len(rates) + 2), channels, 1, bias=False),
            nn.BatchNorm2d(channels), nn.ReLU())

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.image_pool(x).expand(-1, -1, *x.shape[-2:])
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class ASPPHead(nn.Module):
    """A DeepLab dense head: ASPP, a 3x3 conv, a 1x1 conv to the outputs, and
    bilinear upsampling to the input size (the task-specific head of ``rlw.md``
    §5.2, as in LibMTL's NYUv2 code).  DeepLabV3+'s decoder, which also reads
    low-level encoder features, is not included: the head sees only the
    encoder's output, as the MTL engine's ``decode(rep, task)`` requires.

    ``kind`` sets the output: ``"segmentation"`` gives ``num_classes`` logits,
    ``"depth"`` one channel, ``"normal"`` three channels L2-normalised over the
    channel axis (unit surface normals).  ``output_size=(H, W)`` upsamples to a
    fixed size (the input's), else the map is scaled by ``scale_factor`` (the
    encoder's output stride: 8 dilated, 32 plain).
    """

    def __init__(self, in_channels: int, kind: str = "segmentation", num_classes: int = 13,
                 channels: int = 256, rates: Sequence[int] = (12, 24, 36),
                 output_size: tuple[int, int] | None = None, scale_factor: int = 8) -> None:
        super().__init__()
        if kind not in DENSE_KINDS:
            raise ValueError(f"kind must be one of {DENSE_KINDS}, got {kind!r}")
        if kind == "segmentation" and num_classes < 2:
            raise ValueError(f"segmentation needs num_classes >= 2, got {num_classes}")
        self.kind = kind
        self.out_channels = {"segmentation": num_classes, "depth": 1, "normal": 3}[kind]
        self.output_size = tuple(output_size) if output_size is not None else None
        self.scale_factor = scale_factor
        self.net = nn.Sequential(
            ASPP(in_channels, channels, rates),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels), nn.ReLU(),
            nn.Conv2d(channels, self.out_channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        y = self.net(x)
        if self.output_size is not None:
            y = F.interpolate(y, size=self.output_size, mode="bilinear", align_corners=False)
        elif self.scale_factor != 1:
            y = F.interpolate(y, scale_factor=self.scale_factor, mode="bilinear",
                              align_corners=False)
        return F.normalize(y, p=2, dim=1) if self.kind == "normal" else y
