"""Image helpers for the benchmark loaders: PIL reading with clear errors, resizing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mtlkit.data.common import DataCorrupt


def read_image(path: str | Path, size: tuple[int, int] | None = None,
               mode: str = "RGB", nearest: bool = False) -> np.ndarray:
    """An image file as a uint8 array (H, W[, C]), optionally resized to ``size=(H, W)``
    (nearest-neighbour for label maps).  Unreadable/truncated files raise DataCorrupt."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            im = im.convert(mode) if mode else im
            if size is not None and im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]),
                               Image.NEAREST if nearest else Image.BILINEAR)
            return np.asarray(im)
    except (OSError, UnidentifiedImageError, SyntaxError) as err:
        raise DataCorrupt(f"{path} is not a readable image ({err})") from None


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float32 (3, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(255.0)


def write_image(path: str | Path, arr: np.ndarray) -> None:
    """Save a uint8 array as PNG/JPEG (by suffix); used by data_scripts and test fixtures."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(arr, dtype=np.uint8)).save(path)
