"""CelebA (Liu et al. 2015): 40 binary attributes, aligned faces centre-cropped to
178 x 178 and resized to 64 x 64, official 162,770 / 19,867 / 19,962 partition (any other
count is an error).

Download: the three files below from Google Drive with gdown (the optional ``data``
extra: ``pip install -e '.[data]'``).  Checksum: the published md5 values (those
torchvision's CelebA pins) are pinned here and checked before anything is extracted or
read, also with ``--no-download``.  Manual route: put ``img_align_celeba.zip``,
``list_attr_celeba.txt`` and ``list_eval_partition.txt`` in ``<raw>/celeba`` (or pass
each with ``--archive NAME=FILE``) and run with ``--no-download``.  Output (read by
``mtlkit.data.celeba.load_celeba``): arrays + MANIFEST.json.

    python data_scripts/celeba.py --out .data
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from _archive import extract
from _common import (
    BadFile,
    DownloadFailed,
    drive_url,
    expect_count,
    fetch,
    gdown_get,
    parse,
    parser,
    staged,
)

from mtlkit.data.celeba import NAME, SIZE, write_celeba

SPLITS = {0: "train", 1: "val", 2: "test"}
COUNTS = {"train": 162770, "val": 19867, "test": 19962}
#: file -> (Google Drive id, md5 published by torchvision.datasets.CelebA)
FILES = {"img_align_celeba.zip": ("0B7EVK8r0v71pZjFTYXZWM3FlRnM",
                                  "00d2c5bc6d35e252742224ab0c1e8fcb"),
         "list_attr_celeba.txt": ("0B7EVK8r0v71pblRyaVFSWGxPY0U",
                                  "75e246fa4810816ffd6ee81facbd244c"),
         "list_eval_partition.txt": ("0B7EVK8r0v71pY0NSMzRuSXJEVkk",
                                     "d32c9cbf5e040fd4025c592c306e6668")}


def parse_attrs(text: str) -> tuple[list[str], dict[str, np.ndarray]]:
    """``list_attr_celeba.txt``: count line, 40 names, then ``file v1..v40`` in {-1, 1}."""
    lines = text.strip().splitlines()
    names = lines[1].split()
    rows = {}
    for line in lines[2:]:
        parts = line.split()
        if len(parts) != len(names) + 1 or not set(parts[1:]) <= {"-1", "1"}:
            raise BadFile(f"list_attr_celeba.txt: bad line {line[:60]!r}")
        rows[parts[0]] = (np.asarray(parts[1:], dtype=int) > 0).astype(np.uint8)
    if not lines[0].strip().isdigit() or int(lines[0]) != len(rows):
        raise BadFile(f"list_attr_celeba.txt: the first line says {lines[0]!r} images, the "
                      f"file lists {len(rows)}")
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


def _no_download(url: str, dest: Path) -> None:
    raise DownloadFailed(f"--no-download: {dest.name} is not in {dest.parent.parent}; put it "
                         f"there or pass --archive {dest.name}=FILE")


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__, list(FILES))
    p.add_argument("--no-download", action="store_true",
                   help="use files already in <raw>/celeba (their md5s are still checked)")
    args = parse(p, argv)
    args.raw = args.raw / "celeba"
    got = {f: fetch(drive_url(fid), f, args, md5_hex=md5, how="download it from the CelebA "
                    "page (Google Drive, 'Align&Cropped Images')",
                    get=_no_download if args.no_download else gdown_get)
           for f, (fid, md5) in FILES.items()}
    images = extract(got["img_align_celeba.zip"], args.raw / "images")
    src = next((d for d in images.rglob("img_align_celeba") if d.is_dir()), images)
    names, attrs = parse_attrs(got["list_attr_celeba.txt"].path.read_text())
    part = parse_partition(got["list_eval_partition.txt"].path.read_text())
    files = {split: sorted(f for f, s in part.items() if s == split) for split in COUNTS}
    for split, n in COUNTS.items():
        expect_count(f"{NAME} {split} partition", len(files[split]), n)
    splits = {}
    for split, fs in files.items():
        missing = [f for f in fs if f not in attrs or not (src / f).is_file()]
        if missing:
            raise BadFile(f"{NAME}: {len(missing)} {split} images lack an image file or "
                          f"attributes, e.g. {missing[0]}")
        x = np.stack([crop_resize(src / f) for f in fs])
        splits[split] = (x, np.stack([attrs[f] for f in fs]))
        print(f"  {split}: {len(fs)}")
    with staged(args.out, NAME) as stage:
        write_celeba(stage, names, splits)
    print(f"wrote {args.out / NAME}")


if __name__ == "__main__":
    main()
