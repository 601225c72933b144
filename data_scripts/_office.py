"""Shared preparation for Office-31 and Office-Home (image folders per domain/class).

Splits: by default the 60/20/20 train/val/test lists the RLW authors published with
their library LibMTL (``examples/office/data_txt/<dataset>/<Domain>_<split>.txt``, lines
``<Domain>/<path> <label>``), fetched from a fixed LibMTL commit and checked against the
sha256 pinned below (or read from a LibMTL checkout with ``--lists DIR``).  Labels and
class order are LibMTL's.  ``--split random`` instead draws a stratified 60/20/20 split
(seed 0) over the classes in alphabetical order.
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import dataclass
from pathlib import Path

from _archive import extract
from _common import BadFile, drive_url, expect_count, fetch, gdown_get, parse, parser, staged

from mtlkit.data.office import make_splits, write_office

LIBMTL_COMMIT = "f82b8486daeb669a8473a30608ab690833e799af"
LIBMTL_URL = ("https://raw.githubusercontent.com/median-research-group/LibMTL/"
              f"{LIBMTL_COMMIT}/examples/office/data_txt/{{dataset}}/{{file}}")
SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class Domain:
    """One domain: our task name, LibMTL's name (list files and paths), the folder in the
    archive whose sub-folders are the classes (relative to the archive's root folder),
    and the published number of images."""

    name: str
    libmtl: str
    folder: str
    count: int


@dataclass(frozen=True)
class Release:
    """Where one Office dataset comes from."""

    name: str  # our dataset name (office31 / office_home)
    libmtl_dataset: str  # office-31 / office-home
    file: str
    drive_id: str
    resource_key: str
    domains: tuple[Domain, ...]
    list_sha256: dict  # LibMTL list file -> sha256 at LIBMTL_COMMIT


def list_files(rel: Release) -> list[str]:
    return [f"{d.libmtl}_{s}.txt" for d in rel.domains for s in SPLITS]


def find_root(raw: Path, rel: Release) -> Path:
    """The folder of the extracted archive that holds every domain folder."""
    for cand in [raw, *sorted(p for p in raw.rglob("*") if p.is_dir())]:
        if all((cand / d.folder).is_dir() for d in rel.domains):
            return cand
    raise BadFile(f"{raw}: no folder holds {[d.folder for d in rel.domains]}; is "
                  f"{rel.file} the {rel.name} release?")


def archive_images(root: Path, d: Domain) -> dict[str, Path]:
    """``{"<class>/<file>": path}`` of every image of one domain (published count checked)."""
    base = root / d.folder
    found = {f"{p.parent.name}/{p.name}": p for p in base.glob("*/*")
             if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}
    expect_count(f"{d.name} images in {base}", len(found), d.count)
    return found


def parse_list(text: str, d: Domain, where: str) -> list[tuple[str, int]]:
    """``(<class>/<file>, label)`` rows of one LibMTL list (``<Domain>/.../<class>/<file>
    <label>`` per line)."""
    rows = []
    for k, line in enumerate(text.splitlines(), 1):
        path, sep, label = line.strip().rpartition(" ")
        parts = path.split("/")
        if not sep or not label.isdigit() or parts[0] != d.libmtl or len(parts) < 3:
            raise BadFile(f"{where}:{k}: {line!r} is not `{d.libmtl}/.../<class>/<file> "
                          "<label>`")
        rows.append((f"{parts[-2]}/{parts[-1]}", int(label)))
    return rows


def libmtl_splits(args: argparse.Namespace, rel: Release
                  ) -> tuple[list[str], dict[str, dict[str, list[tuple[str, int]]]]]:
    """LibMTL's classes (by label) and ``{domain: {split: [(<class>/<file>, label)]}}``."""
    splits: dict[str, dict[str, list]] = {}
    for d in rel.domains:
        splits[d.name] = {}
        for s in SPLITS:
            f = f"{d.libmtl}_{s}.txt"
            url = LIBMTL_URL.format(dataset=rel.libmtl_dataset, file=f)
            got = fetch(url, f, args, sha256_hex=rel.list_sha256[f])
            splits[d.name][s] = parse_list(got.path.read_text(encoding="utf-8"), d, str(got.path))
    names: dict[int, set[str]] = {}
    for parts in splits.values():
        for rows in parts.values():
            for key, label in rows:
                names.setdefault(label, set()).add(key.split("/")[0])
    bad = {k: v for k, v in names.items() if len(v) != 1}
    if bad or sorted(names) != list(range(len(names))):
        raise BadFile(f"LibMTL lists: labels do not map one-to-one to classes ({bad or names})")
    return [names[k].pop() for k in range(len(names))], splits


def random_splits(images: dict[str, dict[str, Path]]
                  ) -> tuple[list[str], dict[str, dict[str, list[tuple[str, int]]]]]:
    """Alphabetical classes and a stratified 60/20/20 split (seed 0) per domain."""
    classes = sorted({k.split("/")[0] for imgs in images.values() for k in imgs})
    splits = {}
    for d, imgs in images.items():
        rows = [(k, classes.index(k.split("/")[0])) for k in sorted(imgs)]
        parts = make_splits([y for _, y in rows])
        splits[d] = {s: [rows[i] for i in idx] for s, idx in zip(SPLITS, parts)}
    return classes, splits


def prepare(doc: str, rel: Release, argv: list[str] | None = None) -> None:
    p = parser(doc, [rel.file, *list_files(rel)], main=rel.file)
    p.add_argument("--split", choices=["libmtl", "random"], default="libmtl",
                   help="LibMTL's published lists (default) or a seeded stratified split")
    p.add_argument("--lists", type=Path, default=None,
                   help=f"a folder with LibMTL's data_txt/{rel.libmtl_dataset} lists")
    args = parse(p, argv)
    if args.lists is not None:
        for f in list_files(rel):
            if not (args.lists / f).is_file():
                raise BadFile(f"--lists {args.lists}: no {f} (LibMTL's "
                              f"examples/office/data_txt/{rel.libmtl_dataset}/)")
            args.given.setdefault(f, args.lists / f)
    archive = fetch(drive_url(rel.drive_id, rel.resource_key), rel.file, args, get=gdown_get,
                    how=f"download {rel.file} from https://drive.google.com/file/d/"
                        f"{rel.drive_id}/view?resourcekey={rel.resource_key}")
    root = find_root(extract(archive, args.raw / rel.name), rel)
    images = {d.name: archive_images(root, d) for d in rel.domains}
    classes, splits = (libmtl_splits(args, rel) if args.split == "libmtl"
                       else random_splits(images))
    with staged(args.out, rel.name) as stage:
        out = stage / rel.name / "images"
        rows = {}
        for d in rel.domains:
            rows[d.name] = _copy_domain(images[d.name], splits[d.name], out, d)
        write_office(stage, rel.name, classes, rows, extra={"split": args.split})
    print(f"wrote {args.out / rel.name} ({args.split} split)")


def _copy_domain(images: dict[str, Path], parts: dict[str, list[tuple[str, int]]],
                 out: Path, d: Domain) -> dict[str, list[tuple[str, int]]]:
    """Copy one domain's images; every image must be in exactly one split."""
    listed = [k for rows in parts.values() for k, _ in rows]
    missing = sorted(set(listed) - set(images))
    unlisted = sorted(set(images) - set(listed))
    if missing or unlisted or len(listed) != len(set(listed)):
        raise BadFile(f"{d.name}: the split lists and the archive disagree ({len(missing)} "
                      f"listed images missing, e.g. {missing[:1]}; {len(unlisted)} images in "
                      f"no list, e.g. {unlisted[:1]}; {len(listed) - len(set(listed))} listed "
                      "twice)")
    result = {}
    for s, rows in parts.items():
        result[s] = []
        for key, label in rows:
            dest = out / d.name / key
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(images[key], dest)
            result[s].append((f"{d.name}/{key}", label))
        print(f"  {d.name} {s}: {len(rows)} images")
    return result
