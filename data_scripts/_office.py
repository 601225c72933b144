"""Shared preparation for Office-31 and Office-Home (image folders per domain/class)."""

from __future__ import annotations

import shutil
from pathlib import Path

from _common import check_or_record, extract, parser

from mtlkit.data.office import write_office


def gdrive(file_id: str, name: str, args) -> Path:
    """Download a Google Drive file with torchvision's helper (handles the confirm page)."""
    raw = args.raw or args.out / "raw"
    given = [a for a in args.archive if a.name == name]
    path = given[0] if given else raw / name
    if not path.exists():
        from torchvision.datasets.utils import download_file_from_google_drive

        download_file_from_google_drive(file_id, str(raw), name)
    check_or_record(path, args.out, name, None)  # none published: recorded on first use
    return path


def prepare(doc: str, name: str, file_id: str, file: str,
            domain_dirs: dict[str, str]) -> None:
    """``domain_dirs``: our domain name -> glob (relative to the extracted archive) of the
    folder whose sub-folders are the classes."""
    args = parser(doc).parse_args()
    raw = extract(gdrive(file_id, file, args), (args.raw or args.out / "raw") / name)
    out = args.out / name / "images"
    sources = {d: next(raw.glob(g)) for d, g in domain_dirs.items()}
    classes = sorted({c.name for s in sources.values() for c in s.iterdir() if c.is_dir()})
    files: dict[str, list[tuple[str, int]]] = {}
    for domain, src in sources.items():
        rows = []
        for k, cls in enumerate(classes):
            for img in sorted((src / cls).iterdir()):
                rel = f"{domain}/{cls}/{img.name}"
                (out / domain / cls).mkdir(parents=True, exist_ok=True)
                shutil.copy2(img, out / rel)
                rows.append((rel, k))
        files[domain] = rows
        print(f"  {domain}: {len(rows)} images")
    print(f"wrote {write_office(args.out, name, classes, files)}")
