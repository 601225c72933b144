"""Shared preparation for MTAN's preprocessed ``.npy`` releases (NYUv2, Cityscapes)."""

from __future__ import annotations

import shutil
from pathlib import Path

from _common import extract, fetch, parser

from mtlkit.data.common import write_manifest


def find_root(raw: Path, folders: list[str]) -> Path:
    """The folder under ``raw`` that holds ``train/<f>`` for every required folder."""
    for cand in [raw, *sorted(p for p in raw.rglob("*") if p.is_dir())]:
        if all((cand / "train" / f).is_dir() and (cand / "val" / f).is_dir() for f in folders):
            return cand
    raise SystemExit(f"no train/ and val/ with {folders} under {raw}; is this the right archive?")


def prepare(doc: str, name: str, url: str, file: str, folders: list[str],
            counts: dict[str, int]) -> None:
    args = parser(doc).parse_args()
    archive = fetch(url, file, args)  # no published sha256: recorded on first download
    raw = extract(archive, (args.raw or args.out / "raw") / name)
    src = find_root(raw, folders)
    out = args.out / name
    for split, n in counts.items():
        for f in folders:
            files = sorted((src / split / f).glob("*.npy"), key=lambda p: int(p.stem))
            if len(files) != n:
                print(f"  warning: {split}/{f} has {len(files)} files, expected {n}")
            dest = out / split / f
            dest.mkdir(parents=True, exist_ok=True)
            for p in files:
                shutil.copy2(p, dest / p.name)
    print(f"wrote {write_manifest(out, name)}")
