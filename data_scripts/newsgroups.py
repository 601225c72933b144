"""20 Newsgroups (``20news-bydate``) -> the four 4-class tasks of metaweighting Table 1.

Checksum: the published sha256 of ``20news-bydate.tar.gz`` (the value scikit-learn's
``fetch_20newsgroups`` pins), checked before anything is extracted.  Both sources are
HTTPS: figshare (scikit-learn's mirror), then the original site.  Output:
``<out>/newsgroups/{train,test}/<task>.tsv`` + MANIFEST.json, read by
``mtlkit.data.newsgroups.load_newsgroups``.

    python data_scripts/newsgroups.py --out .data
"""

from __future__ import annotations

from pathlib import Path

from _archive import extract
from _common import DownloadFailed, fetch, parse, parser, staged

from mtlkit.data.newsgroups import NAME, TASKS, write_newsgroups

URL = "https://ndownloader.figshare.com/files/5975967"  # mirror of qwone.com/~jason/...
MIRROR = "https://qwone.com/~jason/20Newsgroups/20news-bydate.tar.gz"
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


def main(argv: list[str] | None = None) -> None:
    args = parse(parser(__doc__, [FILE]), argv)
    try:
        archive = fetch(URL, FILE, args, SHA256)
    except DownloadFailed as err:
        print(f"  {err}; trying {MIRROR}")
        archive = fetch(MIRROR, FILE, args, SHA256)
    raw = extract(archive, args.raw / "20news")
    splits = {s: collect(raw / f"20news-bydate-{s}") for s in ("train", "test")}
    with staged(args.out, NAME) as root:
        write_newsgroups(root, splits)
    print(f"wrote {args.out / NAME}")


if __name__ == "__main__":
    main()
