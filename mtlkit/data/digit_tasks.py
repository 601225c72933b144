"""CPU stand-ins for the RLW paper's image classification problems, built from the embedded
MNIST and Fashion-MNIST (:mod:`mtlkit.data.multimnist`).

``digit_attributes`` (stands in for CelebA, ``rlw.md`` App. C.4): 40 binary attributes of a
MultiMNIST canvas (two overlaid digits, upper-left ``a`` and lower-right ``b``), one task
each, heterogeneous (every image has all 40 labels), as CelebA's 40 face attributes:

* per side (``l_`` / ``r_``, 15 each): ``is0`` ... ``is9`` (10% positive each),
  ``even``, ``large`` (>= 5), ``prime`` (2, 3, 5, 7), ``loop`` (0, 6, 8, 9: a closed
  loop) and ``straight`` (1, 4, 7: straight strokes only);
* of the pair (10): ``same`` (a = b), ``l_greater`` (a > b), ``sum_ge10``,
  ``sum_even``, ``both_even``, ``both_large``, ``any_zero``, ``adjacent`` (|a - b| = 1),
  ``sum_is9`` and ``prod_ge20``.

Positive rates range from 10% to 50% (CelebA's from 2% to 84%).  Like face attributes,
they are related: they share evidence (the digit at one position) and some are functions
of others (``both_even`` = ``l_even`` and ``r_even``).

``digit_domains`` (stands in for Office-31 / Office-Home, App. C.5): one 10-class digit
task per *domain*, each domain with its own images (homogeneous, multi-input), split
60/20/20 stratified per domain as the paper splits Office.  Domains are renderings of
disjoint sets of MNIST digits:

=========  =======================================================================
clean      MNIST as it is (white digit, black background)
lowres     average-pooled to 7 x 7 and upsampled back (blurred, as a webcam frame)
textured   the digit over a dimmed Fashion-MNIST image (a cluttered background,
           as MNIST-M's photo backgrounds)
inverted   black digit on a white background (as product shots on white)
=========  =======================================================================

``variant="office31"`` has domains clean / lowres / textured with Office-31's domain
sizes (Amazon 2,817, DSLR 498, Webcam 795 images, times ``scale``);
``variant="office_home"`` has all four with Office-Home's (Art 2,427, Clipart 4,365,
Product 4,439, Real World 4,357).  Generation is deterministic in ``seed``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from mtlkit.data.base import MTLData, TaskSpec
from mtlkit.data.common import ArrayDataset, MultiTargetDataset, stratified_split
from mtlkit.data.multimnist import load_fashion, load_mnist, load_multimnist

# ----------------------------------------------------------------------------- attributes

_SIDE: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    **{f"is{k}": (lambda d, k=k: d == k) for k in range(10)},
    "even": lambda d: d % 2 == 0,
    "large": lambda d: d >= 5,
    "prime": lambda d: np.isin(d, (2, 3, 5, 7)),
    "loop": lambda d: np.isin(d, (0, 6, 8, 9)),
    "straight": lambda d: np.isin(d, (1, 4, 7)),
}
_PAIR: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "same": lambda a, b: a == b,
    "l_greater": lambda a, b: a > b,
    "sum_ge10": lambda a, b: a + b >= 10,
    "sum_even": lambda a, b: (a + b) % 2 == 0,
    "both_even": lambda a, b: (a % 2 == 0) & (b % 2 == 0),
    "both_large": lambda a, b: (a >= 5) & (b >= 5),
    "any_zero": lambda a, b: (a == 0) | (b == 0),
    "adjacent": lambda a, b: np.abs(a - b) == 1,
    "sum_is9": lambda a, b: a + b == 9,
    "prod_ge20": lambda a, b: a * b >= 20,
}
#: the 40 attribute names, in task order
ATTRIBUTES: list[str] = ([f"l_{k}" for k in _SIDE] + [f"r_{k}" for k in _SIDE]
                         + list(_PAIR))


def attribute_table(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """(N, 40) uint8: the attributes of :data:`ATTRIBUTES` for digit pairs (left, right)."""
    a, b = np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"left {a.shape} and right {b.shape} must be equal 1-d arrays")
    if a.size and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) > 9):
        raise ValueError("digits must lie in 0..9")
    cols = ([f(a) for f in _SIDE.values()] + [f(b) for f in _SIDE.values()]
            + [f(a, b) for f in _PAIR.values()])
    return np.stack(cols, axis=1).astype(np.uint8)


def load_digit_attributes(variant: str = "multimnist", *, n_train: int = 10000,
                          n_val: int = 2000, n_test: int = 2000, seed: int = 0,
                          tasks: list[str] | None = None, cache: bool = True) -> MTLData:
    """The 40-attribute multi-label stand-in for CelebA (module docstring).

    Inputs are MultiMNIST canvases, float32 (1, 36, 36) in [0, 1]
    (:func:`~mtlkit.data.multimnist.load_multimnist` with the same sizes and seed);
    ``tasks`` selects attributes (default all 40).  Each task is a 2-class
    classification, as the paper's 2-unit head per CelebA attribute.
    """
    names = list(ATTRIBUTES) if tasks is None else list(tasks)
    bad = [t for t in names if t not in ATTRIBUTES]
    if bad or not names:
        raise ValueError(f"unknown attribute(s) {bad}; choose from {ATTRIBUTES}" if bad else
                         "choose at least one attribute")
    pairs = load_multimnist(variant, n_train=n_train, n_val=n_val, n_test=n_test, seed=seed,
                            cache=cache)
    parts = {}
    for split in ("train", "val", "test"):
        ds = pairs.split(split)
        table = attribute_table(ds.targets["left"].numpy(), ds.targets["right"].numpy())
        cols = {t: torch.from_numpy(table[:, ATTRIBUTES.index(t)].astype(np.int64))
                for t in names}
        parts[split] = MultiTargetDataset(ds.x, cols)
    return MTLData(
        "digit_attributes", [TaskSpec(t, "classification", 2) for t in names], False,
        parts["train"], parts["val"], parts["test"],
        stands_in_for="CelebA's 40 binary face attributes (rlw.md App. C.4, Table 9)",
        differences=(f"40 binary attributes of the two digits of a {variant} canvas (36x36, "
                     "grey) instead of face attributes of 64x64 colour photos; positive rates "
                     f"10-50%; {n_train}/{n_val}/{n_test} images instead of "
                     "162,770/19,867/19,962"),
        meta={"variant": variant, "seed": seed, "attributes": list(ATTRIBUTES),
              "positive_rate": {t: float(c.float().mean()) for t, c in
                                parts["train"].targets.items()}})


# ----------------------------------------------------------------------------- domains

#: per variant, {domain: number of images} of the paper's dataset (App. C.5)
DOMAIN_SIZES: dict[str, dict[str, int]] = {
    "office31": {"clean": 2817, "lowres": 498, "textured": 795},
    "office_home": {"clean": 2427, "lowres": 4365, "textured": 4439, "inverted": 4357},
}
#: the paper's domain each stand-in domain takes its size from
PAPER_DOMAIN: dict[str, dict[str, str]] = {
    "office31": {"clean": "amazon", "lowres": "dslr", "textured": "webcam"},
    "office_home": {"clean": "art", "lowres": "clipart", "textured": "product",
                    "inverted": "real_world"},
}


def render(domain: str, digits: np.ndarray, rng: np.random.Generator,
           textures: np.ndarray | None = None) -> np.ndarray:
    """uint8 (N, 28, 28) MNIST ``digits`` rendered in ``domain`` (module docstring);
    ``textures`` (uint8 (M, 28, 28), M >= 1) are the backgrounds of ``textured``."""
    x = np.asarray(digits, dtype=np.uint8)
    if domain == "clean":
        return x.copy()
    if domain == "inverted":
        return 255 - x
    if domain == "lowres":
        small = x.reshape(-1, 7, 4, 7, 4).astype(np.float32).mean(axis=(2, 4))
        t = torch.from_numpy(small)[:, None]
        up = torch.nn.functional.interpolate(t, size=(28, 28), mode="bilinear",
                                             align_corners=False)[:, 0].numpy()
        return np.clip(np.round(up), 0, 255).astype(np.uint8)
    if domain == "textured":
        if textures is None or len(textures) == 0:
            raise ValueError("the textured domain needs background textures")
        bg = textures[rng.integers(0, len(textures), size=len(x))].astype(np.float32)
        return np.maximum(x.astype(np.float32), 0.6 * bg).round().astype(np.uint8)
    raise ValueError(f"unknown domain {domain!r}; choose one of clean, lowres, textured, "
                     "inverted")


def load_digit_domains(variant: str = "office31", *, scale: float = 1.0,
                       n_images: int | None = None, seed: int = 0,
                       tasks: list[str] | None = None) -> MTLData:
    """The multi-input stand-in for Office-31 (``variant="office31"``) or Office-Home
    (``"office_home"``): one 10-class task per domain (module docstring).

    Each domain has ``round(scale * paper size)`` images (at least 30; ``n_images`` sets
    ``scale`` so that the domains hold about that many images in all), drawn without
    replacement from MNIST's 70,000 (so no digit image is in two domains) and split
    60/20/20, stratified by class, with ``seed``.  Inputs are float32 (1, 28, 28).
    """
    if variant not in DOMAIN_SIZES:
        raise ValueError(f"unknown variant {variant!r}; choose one of {list(DOMAIN_SIZES)}")
    if n_images is not None:
        if not isinstance(n_images, int) or n_images < 1:
            raise ValueError(f"n_images={n_images!r} must be a positive int")
        scale = n_images / sum(DOMAIN_SIZES[variant].values())
    if not scale > 0:
        raise ValueError(f"scale={scale!r} must be > 0")
    sizes = {d: max(30, int(round(scale * n))) for d, n in DOMAIN_SIZES[variant].items()}
    names = list(sizes) if tasks is None else list(tasks)
    bad = [t for t in names if t not in sizes]
    if bad or not names:
        raise ValueError(f"unknown domain(s) {bad}; choose from {list(sizes)}" if bad else
                         "choose at least one domain")
    mnist = load_mnist()
    x_all = np.concatenate([mnist["train"][0], mnist["test"][0]])
    y_all = np.concatenate([mnist["train"][1], mnist["test"][1]])
    if sum(sizes.values()) > len(x_all):
        raise ValueError(f"scale={scale} asks for {sum(sizes.values())} images; MNIST has "
                         f"{len(x_all)}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x_all))
    textures = load_fashion()["train"][0] if "textured" in sizes else None
    parts: dict[str, dict[str, ArrayDataset]] = {"train": {}, "val": {}, "test": {}}
    start = 0
    for k, (domain, n) in enumerate(sizes.items()):
        idx = order[start:start + n]  # every domain is drawn, so sizes do not shift
        start += n
        if domain not in names:
            continue
        img = render(domain, x_all[idx], np.random.default_rng([seed, k]), textures)
        x = torch.from_numpy(img).float().div_(255.0).unsqueeze(1)
        y = torch.from_numpy(y_all[idx].astype(np.int64))
        for split, part in zip(parts, stratified_split(y.numpy(), [0.6, 0.2, 0.2], seed + k)):
            parts[split][domain] = ArrayDataset(x[part], y[part])
    paper = PAPER_DOMAIN[variant]
    return MTLData(
        f"digit_domains_{variant}", [TaskSpec(d, "classification", 10) for d in names], True,
        parts["train"], parts["val"], parts["test"],
        stands_in_for=(f"{'Office-31' if variant == 'office31' else 'Office-Home'}, one task "
                       "per domain (rlw.md App. C.5, Table 10)"),
        differences=("10 MNIST digit classes rendered in "
                     f"{len(sizes)} synthetic domains instead of "
                     f"{31 if variant == 'office31' else 65} object classes photographed in "
                     f"{len(sizes)} real domains; 28x28 grey images; domain sizes "
                     f"{scale:.3g} x the paper's "
                     f"({', '.join(f'{d}~{paper[d]}' for d in sizes)})"),
        meta={"variant": variant, "seed": seed, "scale": scale, "sizes": sizes,
              "paper_domain": paper, "classes": [str(i) for i in range(10)]})
