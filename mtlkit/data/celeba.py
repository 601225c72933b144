"""CelebA (``rlw.md`` App. C.4): 40 binary attribute tasks on 64 x 64 face crops;
162,770 / 19,867 / 19,962 train / val / test images.

Layout written by ``data_scripts/celeba.py`` (aligned images resized to 64 x 64, stored
as arrays so that loading is a memory map)::

    <root>/celeba/attributes.txt             the 40 attribute names, in file order
    <root>/celeba/{train,val,test}_images.npy  uint8 (N, 64, 64, 3)
    <root>/celeba/{train,val,test}_attrs.npy   uint8 (N, 40), 1 = attribute present
    <root>/celeba/MANIFEST.json

Heterogeneous: ``(image, {attribute: 0/1})``.
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

NAME = "celeba"
SCRIPT = "celeba.py"
SIZE = 64


class CelebADataset(Dataset):
    """Memory-mapped images and attributes; ``tasks`` selects attribute columns."""

    def __init__(self, images: np.ndarray, attrs: np.ndarray, cols: dict[str, int]) -> None:
        self.images, self.attrs, self.cols = images, attrs, cols

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        img = torch.from_numpy(np.ascontiguousarray(self.images[i].transpose(2, 0, 1)))
        row = self.attrs[i]
        return img.float().div_(255.0), {t: torch.tensor(int(row[c])) for t, c in
                                         self.cols.items()}


def write_celeba(root: str | Path, attributes: list[str],
                 splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """Write ``{split: (images uint8 (N,64,64,3), attrs (N,40) in {0,1})}`` + manifest."""
    base = Path(root) / NAME
    base.mkdir(parents=True, exist_ok=True)
    (base / "attributes.txt").write_text("".join(f"{a}\n" for a in attributes))
    for split, (x, a) in splits.items():
        np.save(base / f"{split}_images.npy", np.asarray(x, dtype=np.uint8))
        np.save(base / f"{split}_attrs.npy", np.asarray(a, dtype=np.uint8))
    return write_manifest(base, NAME)


def load_celeba(tasks: list[str] | None = None, *, root: str | Path | None = None,
                limit: int | None = None, verify: str = "auto") -> MTLData:
    """CelebA's 40 attributes (or the ``tasks`` subset) from the prepared arrays."""
    base = data_root(root) / NAME
    verify_manifest(base, NAME, SCRIPT, verify)
    attributes = read_text(base / "attributes.txt", f"run `python data_scripts/{SCRIPT}`").split()
    names = check_tasks(tasks, attributes, NAME)
    cols = {t: attributes.index(t) for t in names}
    parts = {}
    for split in ("train", "val", "test"):
        try:
            x = np.load(base / f"{split}_images.npy", mmap_mode="r")
            a = np.load(base / f"{split}_attrs.npy", mmap_mode="r")
        except (OSError, ValueError) as err:
            raise DataCorrupt(f"{NAME}/{split}: arrays do not load ({err})") from None
        if x.shape[1:] != (SIZE, SIZE, 3) or a.shape != (len(x), len(attributes)):
            raise DataCorrupt(f"{NAME}/{split}: images {x.shape} / attrs {a.shape} do not "
                              f"match (N, 64, 64, 3) / (N, {len(attributes)})")
        parts[split] = CelebADataset(x[:limit], a[:limit], cols)
    return MTLData(NAME, [TaskSpec(t, "classification", 2) for t in names], False,
                   parts["train"], parts["val"], parts["test"],
                   differences="the paper's data (aligned crops resized to 64x64)",
                   meta={"root": str(base), "attributes": attributes})
