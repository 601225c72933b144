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
from mtlkit.data.common import DataCorrupt, check_tasks, data_root, verify_manifest, write_manifest

NAME = "nyuv2"
SCRIPT = "nyuv2.py"
SHAPE = (288, 384)
#: task name -> (folder, TaskSpec)
TASKS = {"segmentation": ("label", TaskSpec("segmentation", "segmentation", 13, -1)),
         "depth": ("depth", TaskSpec("depth", "depth")),
         "normals": ("normal", TaskSpec("normals", "normals"))}


class NpyDenseDataset(Dataset):
    """``(image (3,H,W), {task: target})`` read lazily from ``<split>/<folder>/<i>.npy``.

    Channel-last arrays are moved to channel-first; labels become ``long``."""

    def __init__(self, split_dir: Path, folders: dict[str, str], shape: tuple[int, int],
                 limit: int | None = None) -> None:
        self.dir, self.folders, self.shape = Path(split_dir), folders, shape
        files = sorted((self.dir / "image").glob("*.npy"), key=lambda p: int(p.stem))
        self.ids = [int(p.stem) for p in files][:limit]
        if self.ids != list(range(len(self.ids))):
            raise DataCorrupt(f"{self.dir}/image: expected files 0.npy .. {len(self.ids) - 1}"
                              f".npy, found {[p.name for p in files[:5]]}...")

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


def write_dense_sample(split_dir: str | Path, i: int, arrays: dict[str, np.ndarray]) -> None:
    """Save one sample (``{"image": ..., "label": ..., ...}``) in the MTAN layout."""
    for folder, arr in arrays.items():
        p = Path(split_dir) / folder / f"{i}.npy"
        p.parent.mkdir(parents=True, exist_ok=True)
        np.save(p, arr)


def load_dense(name: str, script: str, tasks_table: dict, shape: tuple[int, int],
               tasks: list[str] | None, root, limit: int | None, verify: str,
               stands: str) -> MTLData:
    """Shared loader for MTAN-layout datasets (train = ``train/``, val = test = ``val/``)."""
    base = data_root(root) / name
    verify_manifest(base, name, script, verify)
    names = check_tasks(tasks, list(tasks_table), name)
    folders = {t: tasks_table[t][0] for t in names}
    train = NpyDenseDataset(base / "train", folders, shape, limit)
    val = NpyDenseDataset(base / "val", folders, shape, limit)
    return MTLData(name, [tasks_table[t][1] for t in names], False, train, val, val,
                   differences=stands, meta={"root": str(base), "shape": shape,
                                             "note": "val doubles as test, as in the papers"})


def load_nyuv2(tasks: list[str] | None = None, *, root: str | Path | None = None,
               limit: int | None = None, verify: str = "auto") -> MTLData:
    """NYUv2 from the MTAN ``.npy`` layout; ``limit`` keeps the first n samples per split."""
    return load_dense(NAME, SCRIPT, TASKS, SHAPE, tasks, root, limit, verify,
                      "the paper's data (MTAN preprocessing: 13 classes, 288x384)")


def write_manifest_nyuv2(root: str | Path) -> Path:
    """Manifest over a prepared ``<root>/nyuv2`` tree (used by the script and tests)."""
    return write_manifest(Path(root) / NAME, NAME)
