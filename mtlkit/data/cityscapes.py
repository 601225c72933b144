"""Cityscapes (``rlw.md`` App. C.3): 7-class segmentation and depth at 128 x 256,
2,975 training / 500 validation images.

Layout: MTAN's preprocessed 128 x 256 ``.npy`` release, fetched and checked by
``data_scripts/cityscapes.py``::

    <root>/cityscapes/{train,val}/image/<i>.npy     (128, 256, 3) float32 in [0, 1]
    <root>/cityscapes/{train,val}/label_7/<i>.npy   (128, 256) 7 classes, -1 = void
    <root>/cityscapes/{train,val}/depth/<i>.npy     (128, 256, 1) (inverse) depth
    <root>/cityscapes/MANIFEST.json
"""

from __future__ import annotations

from pathlib import Path

from mtlkit.data.base import MTLData, TaskSpec
from mtlkit.data.nyuv2 import load_dense

NAME = "cityscapes"
SCRIPT = "cityscapes.py"
SHAPE = (128, 256)
TASKS = {"segmentation": ("label_7", TaskSpec("segmentation", "segmentation", 7, -1)),
         "depth": ("depth", TaskSpec("depth", "depth"))}


def load_cityscapes(tasks: list[str] | None = None, *, root: str | Path | None = None,
                    limit: int | None = None, verify: str = "auto") -> MTLData:
    """Cityscapes from the MTAN ``.npy`` layout."""
    return load_dense(NAME, SCRIPT, TASKS, SHAPE, tasks, root, limit, verify,
                      "the paper's data (MTAN preprocessing: 7 classes, 128x256)")
