"""CelebA (Liu et al. 2015): 40 binary attributes, aligned faces centre-cropped to
178 x 178 and resized to 64 x 64, official 162,770 / 19,867 / 19,962 partition.

Download: through ``torchvision.datasets.CelebA(download=True)`` (Google Drive; it
checks the md5 values torchvision publishes); sha256s of the raw files are then recorded
in ``<out>/checksums.json`` and checked on later runs.  Manual route: put
``img_align_celeba/``, ``list_attr_celeba.txt`` and ``list_eval_partition.txt`` in
``<raw>/celeba`` and run with ``--no-download``.  Output (read by
``mtlkit.data.celeba.load_celeba``): arrays + MANIFEST.json.

    python data_scripts/celeba.py --out .data
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from _common import check_or_record, parser

from mtlkit.data.celeba import NAME, SIZE, write_celeba

SPLITS = {0: "train", 1: "val", 2: "test"}


def parse_attrs(text: str) -> tuple[list[str], dict[str, np.ndarray]]:
    """``list_attr_celeba.txt``: count line, 40 names, then ``file v1..v40`` in {-1, 1}."""
    lines = text.strip().splitlines()
    names = lines[1].split()
    rows = {}
    for line in lines[2:]:
        parts = line.split()
        rows[parts[0]] = (np.asarray(parts[1:], dtype=int) > 0).astype(np.uint8)
    return names, rows


def parse_partition(text: str) -> dict[str, str]:
    """``list_eval_partition.txt``: ``file 0|1|2`` -> train / val / test."""
    return {f: SPLITS[int(s)] for f, s in (ln.split() for ln in text.strip().splitlines())}


def crop_resize(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        w, h = im.size
        top = (h - w) // 2
        return np.asarray(im.convert("RGB").crop((0, top, w, top + w)).resize(
            (SIZE, SIZE), Image.BILINEAR))


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--no-download", action="store_true")
    args = p.parse_args()
    raw = (args.raw or args.out / "raw")
    if not args.no_download:
        import torchvision

        torchvision.datasets.CelebA(str(raw), split="all", target_type="attr", download=True)
    src = raw / "celeba"
    for f in ("list_attr_celeba.txt", "list_eval_partition.txt"):
        check_or_record(src / f, args.out, f"celeba/{f}", None)
    names, attrs = parse_attrs((src / "list_attr_celeba.txt").read_text())
    part = parse_partition((src / "list_eval_partition.txt").read_text())
    splits = {}
    for split in SPLITS.values():
        files = sorted(f for f, s in part.items() if s == split)
        x = np.stack([crop_resize(src / "img_align_celeba" / f) for f in files])
        splits[split] = (x, np.stack([attrs[f] for f in files]))
        print(f"  {split}: {len(files)}")
    print(f"wrote {write_celeba(args.out, names, splits)} ({NAME})")


if __name__ == "__main__":
    main()
