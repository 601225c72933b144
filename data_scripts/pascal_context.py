"""PASCAL-Context multi-task data (Maninis et al. 2019, ``PASCAL_MT.tgz``): 21-class
segmentation, human parts (6 parts + background), distilled saliency and normals;
exactly 4,998 train / 5,105 val images (any other count is an error).

What is kept, following the reference multi-task preprocessing (ASTMT's PASCAL-Context
loader, reused by MTI-Net):

* images: the original JPEGs, copied byte for byte (never re-encoded);
* segmentation: ``semseg/VOC12/<id>.png`` where the release has it, else
  ``semseg/pascal-context/<id>.png`` (the 20 VOC classes + background drawn from the
  PASCAL-Context annotations); the PNGs are copied and the number of images taken from
  each source is stored in MANIFEST.json (``semseg_source``);
* human parts: drawn from ``human_parts/<id>.mat`` (PASCAL-Part; person objects, class
  15, that have part masks) with the 6-part grouping below, 0 = background.  An image
  with no annotated person parts is an ignore region everywhere (255, like ASTMT's
  ``AddIgnoreRegions``), not background: there is nothing to learn about parts there;
* saliency and normals: the distilled PNGs, copied.

Checksum: none published; the archive's sha256 is printed and recorded in
``<out>/checksums.json`` once it has been extracted, and checked on later runs
(``--expect-sha256`` pins a value you trust).  Output is read by
``mtlkit.data.pascal_context.load_pascal_context``.

    python data_scripts/pascal_context.py --out .data
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from _archive import extract
from _common import BadFile, expect_count, fetch, parse, parser, staged

from mtlkit.data.images import write_image
from mtlkit.data.pascal_context import IGNORE, NAME, finish_pascal

URL = "https://data.vision.ee.ethz.ch/kmaninis/share/MTL/PASCAL_MT.tgz"
FILE = "PASCAL_MT.tgz"
COUNTS = {"train": 4998, "val": 5105}
PERSON = 15
SEMSEG_SOURCES = ("VOC12", "pascal-context")
#: part name -> 1 head, 2 torso, 3 upper arm, 4 lower arm/hand, 5 upper leg, 6 lower leg/foot
PARTS6 = {**{p: 1 for p in ("hair", "head", "lear", "lebrow", "leye", "mouth", "nose",
                            "rear", "rebrow", "reye")},
          "neck": 2, "torso": 2, "luarm": 3, "ruarm": 3,
          **{p: 4 for p in ("llarm", "rlarm", "lhand", "rhand")},
          "luleg": 5, "ruleg": 5, **{p: 6 for p in ("llleg", "rlleg", "lfoot", "rfoot")}}


def human_parts(mat_path: Path, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) uint8 part labels from one ``human_parts/<id>.mat``: 0 background, 1..6
    parts, and 255 everywhere when the image has no person with part masks."""
    import scipy.io

    out = np.zeros(shape, dtype=np.uint8)
    found = False
    objects = scipy.io.loadmat(mat_path)["anno"][0][0][1][0] if mat_path.exists() else []
    for obj in objects:
        if int(obj[1][0][0]) != PERSON or len(obj[3]) == 0:
            continue
        for part in obj[3][0]:
            name = str(part[0][0])
            if name not in PARTS6:
                raise BadFile(f"{mat_path}: unknown person part {name!r}")
            mask = part[1].astype(bool)
            if mask.shape != shape:
                raise BadFile(f"{mat_path}: part mask {mask.shape} != image {shape}")
            out[mask] = PARTS6[name]
            found = found or bool(mask.any())
    if not found:
        out[:] = IGNORE
    return out


def semseg_source(src: Path, sid: str) -> tuple[str, Path]:
    """``(source, path)`` of the segmentation of ``sid``: VOC12 first, then PASCAL-Context."""
    for source in SEMSEG_SOURCES:
        path = src / "semseg" / source / f"{sid}.png"
        if path.is_file():
            return source, path
    raise BadFile(f"no segmentation for {sid} in {src}/semseg/{{VOC12,pascal-context}}")


def image_shape(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        return im.size[1], im.size[0]


def prepare_sample(src: Path, out: Path, sid: str, counts: dict[str, int]) -> None:
    """Copy / convert one sample of the release into the prepared layout ``out``."""
    copies = {"image": (src / "JPEGImages" / f"{sid}.jpg", f"{sid}.jpg"),
              "saliency": (src / "sal_distill" / f"{sid}.png", f"{sid}.png"),
              "normals": (src / "normals_distill" / f"{sid}.png", f"{sid}.png")}
    source, seg = semseg_source(src, sid)
    copies["semseg"] = (seg, f"{sid}.png")
    counts[source] += 1
    for folder, (path, name) in copies.items():
        if not path.is_file():
            raise BadFile(f"{path} is missing from the release")
        (out / folder).mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, out / folder / name)
    parts = human_parts(src / "human_parts" / f"{sid}.mat", image_shape(copies["image"][0]))
    counts["human_parts_ignored"] += int((parts == IGNORE).all())
    write_image(out / "human_parts" / f"{sid}.png", parts)


def main(argv: list[str] | None = None) -> None:
    args = parse(parser(__doc__, [FILE]), argv)
    raw = extract(fetch(URL, FILE, args), args.raw / "pascal")
    src = next((p.parent for p in raw.rglob("JPEGImages") if p.is_dir()), None)
    if src is None:
        raise BadFile(f"no JPEGImages/ under {raw}: is {FILE} the PASCAL_MT release?")
    ids = {s: (src / "ImageSets" / "Context" / f"{s}.txt").read_text().split() for s in COUNTS}
    for split, n in COUNTS.items():
        expect_count(f"{NAME} ImageSets/Context/{split}.txt", len(ids[split]), n)
    counts = dict.fromkeys([*SEMSEG_SOURCES, "human_parts_ignored"], 0)
    with staged(args.out, NAME) as stage:
        for split in COUNTS:
            for k, sid in enumerate(ids[split]):
                prepare_sample(src, stage / NAME, sid, counts)
                if k % 500 == 0:
                    print(f"  {split}: {k}/{len(ids[split])}")
        finish_pascal(stage, ids, extra={"semseg_source": {s: counts[s] for s in SEMSEG_SOURCES},
                                         "human_parts_ignored": counts["human_parts_ignored"]})
    print(f"wrote {args.out / NAME}: segmentation from {counts['VOC12']} VOC12 and "
          f"{counts['pascal-context']} PASCAL-Context masks; {counts['human_parts_ignored']} "
          "images without person parts are ignore regions for human_parts")


if __name__ == "__main__":
    main()
