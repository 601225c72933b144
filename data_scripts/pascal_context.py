"""PASCAL-Context multi-task data (Maninis et al. 2019, ``PASCAL_MT.tgz``): 21-class
segmentation, human parts (6 parts + background), distilled saliency and normals.

Checksum: none published; the archive's sha256 is recorded in ``<out>/checksums.json``
on first download and checked on later runs.  Human-part masks are converted from the
``human_parts/<id>.mat`` annotations (person objects, category 15) with the 6-part
grouping below.  NOT RUN in this project's CI (no internet); the loader is tested on
fixtures in the output layout.  Output is read by
``mtlkit.data.pascal_context.load_pascal_context``.

    python data_scripts/pascal_context.py --out .data
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from _common import extract, fetch, parser

from mtlkit.data.images import read_image
from mtlkit.data.pascal_context import NAME, finish_pascal, write_pascal_sample

URL = "https://data.vision.ee.ethz.ch/kmaninis/share/MTL/PASCAL_MT.tgz"
FILE = "PASCAL_MT.tgz"
PERSON = 15
#: part name -> 1 head, 2 torso, 3 upper arm, 4 lower arm/hand, 5 upper leg, 6 lower leg/foot
PARTS6 = {**{p: 1 for p in ("hair", "head", "lear", "lebrow", "leye", "mouth", "nose",
                            "rear", "rebrow", "reye")},
          "neck": 2, "torso": 2, "luarm": 3, "ruarm": 3,
          **{p: 4 for p in ("llarm", "rlarm", "lhand", "rhand")},
          "luleg": 5, "ruleg": 5, **{p: 6 for p in ("llleg", "rlleg", "lfoot", "rfoot")}}


def human_parts(mat_path: Path, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) uint8 part labels from one ``human_parts/<id>.mat`` (0 = background)."""
    import scipy.io

    out = np.zeros(shape, dtype=np.uint8)
    if not mat_path.exists():
        return out
    objects = scipy.io.loadmat(mat_path)["anno"][0][0][1][0]
    for obj in objects:
        if int(obj[1][0][0]) != PERSON or len(obj[3]) == 0:
            continue
        for part in obj[3][0]:
            out[part[1].astype(bool)] = PARTS6[str(part[0][0])]
    return out


def main() -> None:
    args = parser(__doc__).parse_args()
    archive = fetch(URL, FILE, args)
    raw = extract(archive, (args.raw or args.out / "raw") / "pascal")
    src = next(p.parent for p in raw.rglob("JPEGImages"))
    splits = {}
    for split in ("train", "val"):
        ids = (src / "ImageSets" / "Context" / f"{split}.txt").read_text().split()
        for k, sid in enumerate(ids):
            img = read_image(src / "JPEGImages" / f"{sid}.jpg")
            seg = read_image(src / "semseg" / "pascal-context" / f"{sid}.png", mode="")
            sal = read_image(src / "sal_distill" / f"{sid}.png", mode="L")
            nrm = read_image(src / "normals_distill" / f"{sid}.png")
            parts = human_parts(src / "human_parts" / f"{sid}.mat", img.shape[:2])
            write_pascal_sample(args.out, sid, img, seg, parts, sal, nrm)
            if k % 500 == 0:
                print(f"  {split}: {k}/{len(ids)}")
        splits[split] = ids
    print(f"wrote {finish_pascal(args.out, splits)} ({NAME})")


if __name__ == "__main__":
    main()
