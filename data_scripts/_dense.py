"""Shared preparation for MTAN's preprocessed ``.npy`` releases (NYUv2, Cityscapes)."""

from __future__ import annotations

import shutil
from pathlib import Path

from _archive import extract
from _common import BadFile, expect_count, fetch, parse, parser, staged

from mtlkit.data.common import write_manifest


def find_root(raw: Path, folders: list[str]) -> Path:
    """The folder under ``raw`` that holds ``train/<f>`` and ``val/<f>`` for every folder."""
    for cand in [raw, *sorted(p for p in raw.rglob("*") if p.is_dir())]:
        if all((cand / "train" / f).is_dir() and (cand / "val" / f).is_dir() for f in folders):
            return cand
    raise BadFile(f"no train/ and val/ with {folders} under {raw}; is this the right archive?")


def sample_files(folder: Path, n: int, what: str) -> list[Path]:
    """``0.npy .. (n-1).npy`` of ``folder``; any other count or name is an error."""
    files = sorted(folder.glob("*.npy"))
    expect_count(what, len(files), n)
    names = {p.name for p in files}
    missing = [f"{i}.npy" for i in range(n) if f"{i}.npy" not in names]
    if missing:
        raise BadFile(f"{what}: {missing[0]} is missing (files must be 0.npy .. {n - 1}.npy); "
                      "the archive is not the expected release")
    return [folder / f"{i}.npy" for i in range(n)]


def prepare(doc: str, name: str, url: str, file: str, folders: list[str],
            counts: dict[str, int], argv: list[str] | None = None) -> None:
    """Fetch, check, extract and copy exactly the published samples into a fresh layout."""
    args = parse(parser(doc, [file]), argv)
    src = find_root(extract(fetch(url, file, args), args.raw / name), folders)
    plan = {(split, f): sample_files(src / split / f, n, f"{name} {split}/{f}")
            for split, n in counts.items() for f in folders}  # every count checked first
    with staged(args.out, name) as stage:
        out = stage / name
        written = []
        for (split, f), files in plan.items():
            dest = out / split / f
            dest.mkdir(parents=True, exist_ok=True)
            for p in files:
                shutil.copy2(p, dest / p.name)
                written.append(dest / p.name)
        write_manifest(out, name, files=written)
    print(f"wrote {args.out / name} ({', '.join(f'{s}: {n}' for s, n in counts.items())})")
