"""20 Newsgroups (``20news-bydate``) -> the four 4-class tasks of metaweighting Table 1.

Checksum: published/known sha256 of ``20news-bydate.tar.gz`` (the value scikit-learn
checks).  Output: ``<out>/newsgroups/{train,test}/<task>.tsv`` + MANIFEST.json, read by
``mtlkit.data.newsgroups.load_newsgroups``.

    python data_scripts/newsgroups.py --out .data
"""

from __future__ import annotations

from pathlib import Path

from _common import DownloadFailed, extract, fetch, parser

from mtlkit.data.newsgroups import TASKS, write_newsgroups

URL = "https://ndownloader.figshare.com/files/5975967"  # mirror of qwone.com/~jason/...
MIRROR = "http://qwone.com/~jason/20Newsgroups/20news-bydate.tar.gz"
FILE = "20news-bydate.tar.gz"
SHA256 = "8f1b2514ca22a5ade8fbb9cfa5727df95fa587f4c87b786e15c759fa66d95610"


def strip_header(raw: str) -> str:
    """The body of a newsgroup post: everything after the first blank line."""
    _, sep, body = raw.partition("\n\n")
    return body if sep else raw


def collect(folder: Path) -> dict[str, list[tuple[int, str]]]:
    """``{task: [(label, body)]}`` from a ``20news-bydate-{train,test}`` folder."""
    out = {}
    for task, groups in TASKS.items():
        rows = []
        for label, group in enumerate(groups):
            for f in sorted((folder / group).iterdir(), key=lambda p: p.name):
                rows.append((label, strip_header(f.read_text(encoding="latin-1"))))
        out[task] = rows
    return out


def main() -> None:
    args = parser(__doc__).parse_args()
    try:
        archive = fetch(URL, FILE, args, SHA256)
    except DownloadFailed:
        archive = fetch(MIRROR, FILE, args, SHA256)
    raw = extract(archive, (args.raw or args.out / "raw") / "20news")
    splits = {s: collect(raw / f"20news-bydate-{s}") for s in ("train", "test")}
    out = write_newsgroups(args.out, splits)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
