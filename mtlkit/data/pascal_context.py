"""PASCAL-Context multi-task (``rlw.md`` §5.1, after Maninis et al. 2019): 21-class
semantic segmentation, 7-class human-part segmentation, saliency and surface normals
(the last two distilled from pretrained models), 4,998 train / 5,105 val images, resized
to 512 x 512 in the paper.

Layout written by ``data_scripts/pascal_context.py`` from ``PASCAL_MT.tgz``::

    <root>/pascal_context/{train,val}.txt            image ids, one per line
    <root>/pascal_context/image/<id>.jpg             the original JPEG, byte for byte
    <root>/pascal_context/semseg/<id>.png            uint8, 0..20, 255 = void
                                                     (VOC12 mask if any, else PASCAL-Context)
    <root>/pascal_context/human_parts/<id>.png       uint8, 0 = background, 1..6 parts,
                                                     255 = ignore (images without people)
    <root>/pascal_context/saliency/<id>.png          uint8, 0 or 255
    <root>/pascal_context/normals/<id>.png           RGB uint8, n = 2 v / 255 - 1
    <root>/pascal_context/MANIFEST.json              also: semseg_source, human_parts_ignored

Void / ignore (255) is mapped to ``-1``: an image with no person parts contributes no
human-parts loss or metric, as in ASTMT and MTI-Net.  Saliency is a 2-class
segmentation (cross-entropy, as in the paper).  Difference: MTI-Net masks the distilled
normals to NYU-compatible classes; the script keeps them for every pixel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mtlkit.data.base import MTLData, TaskSpec
from mtlkit.data.common import (
    DataCorrupt,
    check_tasks,
    data_root,
    read_text,
    verify_manifest,
    write_manifest,
)
from mtlkit.data.images import read_image, to_tensor

NAME = "pascal_context"
SCRIPT = "pascal_context.py"
IGNORE = 255  # void / ignore label in the prepared PNGs
TASKS = {"segmentation": TaskSpec("segmentation", "segmentation", 21, -1),
         "human_parts": TaskSpec("human_parts", "segmentation", 7, -1),
         "saliency": TaskSpec("saliency", "segmentation", 2, -1),
         "normals": TaskSpec("normals", "normals")}
_FOLDER = {"segmentation": "semseg", "human_parts": "human_parts", "saliency": "saliency",
           "normals": "normals"}


class PascalDataset(Dataset):
    """``(image (3,S,S), {task: target})`` for the ids of one split, resized to ``size``."""

    def __init__(self, base: Path, ids: list[str], tasks: list[str], size: int) -> None:
        self.base, self.ids, self.tasks, self.size = base, ids, tasks, (size, size)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int):
        sid = self.ids[i]
        img = to_tensor(read_image(self.base / "image" / f"{sid}.jpg", self.size))
        out = {}
        for t in self.tasks:
            path = self.base / _FOLDER[t] / f"{sid}.png"
            if t == "normals":
                n = read_image(path, self.size).astype(np.float32) * (2 / 255) - 1
                n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-6)
                out[t] = torch.from_numpy(np.ascontiguousarray(n.transpose(2, 0, 1)))
                continue
            lab = read_image(path, self.size, mode="L", nearest=True).astype(np.int64)
            if t == "saliency":
                lab = (lab > 127).astype(np.int64)
            lab[lab == IGNORE] = -1
            out[t] = torch.from_numpy(lab)
        return img, out


def finish_pascal(root: str | Path, splits: dict[str, list[str]],
                  extra: dict | None = None) -> Path:
    """Write the split lists and the manifest (``extra`` goes into the manifest)."""
    base = Path(root) / NAME
    for split, ids in splits.items():
        (base / f"{split}.txt").write_text("".join(f"{s}\n" for s in ids))
    return write_manifest(base, NAME, extra=extra)


def load_pascal_context(tasks: list[str] | None = None, *, root: str | Path | None = None,
                        size: int = 512, limit: int | None = None,
                        verify: str = "auto") -> MTLData:
    """PASCAL-Context from the prepared layout; val doubles as test (as in the paper)."""
    base = data_root(root) / NAME
    verify_manifest(base, NAME, SCRIPT, verify)
    names = check_tasks(tasks, list(TASKS), NAME)
    parts = {}
    for split in ("train", "val"):
        ids = read_text(base / f"{split}.txt", f"run `python data_scripts/{SCRIPT}`").split()
        ids = ids[:limit]
        missing = [s for s in ids if not (base / "image" / f"{s}.jpg").exists()]
        if missing:
            raise DataCorrupt(f"{NAME}: {len(missing)} images of {split}.txt are missing, e.g. "
                              f"{missing[0]}; run `python data_scripts/{SCRIPT}`")
        parts[split] = PascalDataset(base, ids, names, size)
    return MTLData(NAME, [TASKS[t] for t in names], False, parts["train"], parts["val"],
                   parts["val"], differences="the paper's data (PASCAL_MT)",
                   meta={"root": str(base), "size": size})
