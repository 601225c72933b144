"""Office-31 and Office-Home (``rlw.md`` App. C.5): one classification task per domain
(homogeneous), 60/20/20 train/val/test splits.

* Office-31: domains ``amazon``, ``dslr``, ``webcam``; 31 classes; 4,110 images.
* Office-Home: domains ``art``, ``clipart``, ``product``, ``real_world``; 65 classes;
  15,588 images (15,500 in the paper).

Layout written by ``data_scripts/office31.py`` / ``data_scripts/office_home.py`` (through
:func:`write_office`)::

    <root>/<name>/classes.txt                        class names, label = line index
    <root>/<name>/images/<domain>/<class>/<file>      the original image files
    <root>/<name>/splits/<domain>_{train,val,test}.txt   "<relative path>\\t<label>"
    <root>/<name>/MANIFEST.json

By default the split lists and labels are the ones the RLW authors published with LibMTL
(``meta["split"] == "libmtl"``); ``--split random`` draws a stratified split (seed 0)
instead.  Either way they are fixed by the manifest.  Images are resized to ``size``
(224 in the paper); no ImageNet normalisation is applied here (the encoder's job).
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
    stratified_split,
    verify_manifest,
    write_manifest,
)
from mtlkit.data.images import read_image, to_tensor

DATASETS = {"office31": ("office31.py", ["amazon", "dslr", "webcam"], 31),
            "office_home": ("office_home.py", ["art", "clipart", "product", "real_world"], 65)}


class ImageListDataset(Dataset):
    """``(image (3,S,S), label)`` for ``(path, label)`` rows."""

    def __init__(self, base: Path, rows: list[tuple[str, int]], size: int) -> None:
        self.base, self.rows, self.size = base, rows, (size, size)
        self.y = torch.tensor([r[1] for r in rows], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        path, label = self.rows[i]
        return to_tensor(read_image(self.base / path, self.size)), self.y[i]


def make_splits(labels: list[int], seed: int = 0) -> list[np.ndarray]:
    """The stratified 60/20/20 split of ``--split random`` (seeded)."""
    return stratified_split(labels, [0.6, 0.2, 0.2], seed)


def write_office(base: str | Path, name: str, classes: list[str],
                 splits: dict[str, dict[str, list[tuple[str, int]]]],
                 extra: dict | None = None) -> Path:
    """Given images already under ``base/<name>/images`` and ``{domain: {split: [(relpath,
    label)]}}``, write classes, split lists and the manifest."""
    out = Path(base) / name
    (out / "splits").mkdir(parents=True, exist_ok=True)
    (out / "classes.txt").write_text("".join(f"{c}\n" for c in classes))
    for domain, parts in splits.items():
        for split, rows in parts.items():
            (out / "splits" / f"{domain}_{split}.txt").write_text(
                "".join(f"{rel}\t{label}\n" for rel, label in rows))
    return write_manifest(out, name, extra=extra)


def _read_list(path: Path, n_classes: int, howto: str) -> list[tuple[str, int]]:
    rows = []
    for k, line in enumerate(read_text(path, howto).splitlines(), 1):
        rel, sep, lab = line.rpartition("\t")
        if not sep or not lab.isdigit() or int(lab) >= n_classes:
            raise DataCorrupt(f"{path}:{k} is not `<path>\\t<label < {n_classes}>`")
        rows.append((rel, int(lab)))
    return rows


def load_office(name: str = "office31", tasks: list[str] | None = None, *,
                root: str | Path | None = None, size: int = 224,
                verify: str = "auto") -> MTLData:
    """Office-31 (``name="office31"``) or Office-Home (``"office_home"``)."""
    if name not in DATASETS:
        raise ValueError(f"unknown Office dataset {name!r}; choose one of {list(DATASETS)}")
    script, domains, n_classes = DATASETS[name]
    base = data_root(root) / name
    doc = verify_manifest(base, name, script, verify)
    names = check_tasks(tasks, domains, name)
    howto = f"run `python data_scripts/{script}`"
    classes = read_text(base / "classes.txt", howto).splitlines()
    if len(classes) != n_classes:
        raise DataCorrupt(f"{base}/classes.txt lists {len(classes)} classes, not {n_classes}")
    split_note = ("the RLW authors' published 60/20/20 split (LibMTL)"
                  if doc.get("split") == "libmtl" else "a seeded stratified 60/20/20 split")
    parts: dict[str, dict[str, Dataset]] = {"train": {}, "val": {}, "test": {}}
    for d in names:
        for split in parts:
            rows = _read_list(base / "splits" / f"{d}_{split}.txt", n_classes, howto)
            parts[split][d] = ImageListDataset(base / "images", rows, size)
    return MTLData(name, [TaskSpec(d, "classification", n_classes) for d in names], True,
                   parts["train"], parts["val"], parts["test"],
                   differences=f"the paper's data; {split_note}",
                   meta={"root": str(base), "classes": classes, "size": size,
                         "split": doc.get("split", "random")})
