"""NYUv2 (``rlw.md`` §5.1): 13-class segmentation, depth and surface normals at
288 x 384, 795 training / 654 validation images.

Layout: the common preprocessed ``.npy`` release of MTAN (Liu et al. 2019), also used by
LibMTL, fetched and checked by ``data_scripts/nyuv2.py``::

    <root>/nyuv2/{train,val}/image/<i>.npy    (288, 384, 3) float32 in [0, 1]
    <root>/nyuv2/{train,val}/label/<i>.npy    (288, 384)    13 classes, -1 = void
    <root>/nyuv2/{train,val}/depth/<i>.npy    (288, 384, 1) metres, 0 = missing
    <root>/nyuv2/{train,val}/normal/<i>.npy   (288, 384, 3) unit normals, 0 = missing
    <root>/nyuv2/MANIFEST.json

with ``i = 0 .. n-1``.  :class:`NpyDenseDataset` reads one sample at a time (the full
set is ~5 GB).  The generic reader also serves Cityscapes (``cityscapes.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mtlkit.data.base import MTLData, TaskSpec
from mtlkit.data.common import (
    MANIFEST,
    DataCorrupt,
    check_tasks,
    data_root,
    verify_manifest,
)

NAME = "nyuv2"
SCRIPT = "nyuv2.py"
SHAPE = (288, 384)
#: task name -> (folder, TaskSpec)
TASKS = {"segmentation": ("label", TaskSpec("segmentation", "segmentation", 13, -1)),
         "depth": ("depth", TaskSpec("depth", "depth")),
         "normals": ("normal", TaskSpec("normals", "normals"))}


class NpyDenseDataset(Dataset):
    """``(image (3,H,W), {task: target})`` read lazily from ``<split>/<folder>/<i>.npy``
    for ``i < n`` (the samples the manifest lists; files not listed are never read).

    Channel-last arrays are moved to channel-first; labels become ``long``."""

    def __init__(self, split_dir: Path, folders: dict[str, str], shape: tuple[int, int],
                 n: int, limit: int | None = None) -> None:
        self.dir, self.folders, self.shape = Path(split_dir), folders, shape
        self.ids = list(range(n))[:limit]

    def __len__(self) -> int:
        return len(self.ids)

    def _load(self, folder: str, i: int) -> np.ndarray:
        path = self.dir / folder / f"{i}.npy"
        try:
            arr = np.load(path)
        except (OSError, ValueError) as err:
            raise DataCorrupt(f"{path} does not load ({err})") from None
        if tuple(arr.shape[:2]) != self.shape:
            raise DataCorrupt(f"{path} has shape {arr.shape}, expected {self.shape}[+C]")
        return arr

    def __getitem__(self, i: int):
        img = torch.from_numpy(np.ascontiguousarray(
            np.moveaxis(self._load("image", i), -1, 0), dtype=np.float32))
        out = {}
        for task, folder in self.folders.items():
            arr = self._load(folder, i)
            if arr.ndim == 2:
                out[task] = torch.from_numpy(arr.astype(np.int64))
            else:
                out[task] = torch.from_numpy(np.ascontiguousarray(
                    np.moveaxis(arr, -1, 0), dtype=np.float32))
        return img, out


def _listed_samples(files: dict, split: str, folders: list[str], base: Path,
                    script: str) -> int:
    """The number n of samples the manifest lists for ``split``: every folder must list
    exactly ``0.npy .. (n-1).npy``."""
    counts = set()
    for f in folders:
        prefix = f"{split}/{f}/"
        stems = sorted(rel[len(prefix):-4] for rel in files
                       if rel.startswith(prefix) and rel.endswith(".npy"))
        if stems != sorted(str(i) for i in range(len(stems))) or not stems:
            raise DataCorrupt(f"{base}/{MANIFEST}: {prefix} does not list 0.npy .. n-1.npy; "
                              f"run `python data_scripts/{script}` again")
        counts.add(len(stems))
    if len(counts) != 1:
        raise DataCorrupt(f"{base}/{MANIFEST}: the {split} folders list different numbers of "
                          f"samples {sorted(counts)}; run `python data_scripts/{script}` again")
    return counts.pop()


def load_dense(name: str, script: str, tasks_table: dict, shape: tuple[int, int],
               tasks: list[str] | None, root, limit: int | None, verify: str,
               stands: str) -> MTLData:
    """Shared loader for MTAN-layout datasets (train = ``train/``, val = test = ``val/``)."""
    base = data_root(root) / name
    doc = verify_manifest(base, name, script, verify)
    names = check_tasks(tasks, list(tasks_table), name)
    folders = {t: tasks_table[t][0] for t in names}
    n = {s: _listed_samples(doc["files"], s, ["image", *folders.values()], base, script)
         for s in ("train", "val")}
    train = NpyDenseDataset(base / "train", folders, shape, n["train"], limit)
    val = NpyDenseDataset(base / "val", folders, shape, n["val"], limit)
    return MTLData(name, [tasks_table[t][1] for t in names], False, train, val, val,
                   differences=stands, meta={"root": str(base), "shape": shape,
                                             "note": "val doubles as test, as in the papers"})


def load_nyuv2(tasks: list[str] | None = None, *, root: str | Path | None = None,
               limit: int | None = None, verify: str = "auto") -> MTLData:
    """NYUv2 from the MTAN ``.npy`` layout; ``limit`` keeps the first n samples per split."""
    return load_dense(NAME, SCRIPT, TASKS, SHAPE, tasks, root, limit, verify,
                      "the paper's data (MTAN preprocessing: 13 classes, 288x384)")
