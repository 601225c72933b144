"""Amazon multi-domain sentiment (Blitzer et al. 2007) -> 14 binary domain tasks.

Two protocols, both prepared from ``unprocessed.tar.gz`` (``sorted_data/<domain>/``):

* ``rating`` (``metaweighting.txt`` §6.1, the loader's default): every review in
  ``all.review``; rated > 3 positive, < 3 negative, 3 dropped.  The loader splits each
  domain 70/15/15 (stratified, seeded); the paper gives no split.
* ``balanced`` (the common multi-domain protocol, e.g. Liu et al. 2017, 1,400 / 200 /
  400 of 2,000 reviews per domain): the labelled ``positive.review`` and
  ``negative.review`` files, split once here 70/10/20 (stratified, seed 0) into fixed
  ``train`` / ``val`` / ``test`` lists.

In both, reviews are de-duplicated (title + text, whitespace and case ignored): copies
with the same label are kept once, copies with conflicting labels are dropped, and a
review already kept by an earlier domain (in ``DOMAINS`` order; dvd and video share many)
is dropped from the later one, so no review can sit in two splits or two tasks.  The
per-domain sizes and the counts dropped are printed and stored in ``MANIFEST.json``
(``sizes``), which the loader returns as ``meta["sizes"]``.

Checksum: none published; the sha256 is printed and recorded in ``<out>/checksums.json``
once the archive has been extracted, and checked on later runs (``--expect-sha256``
pins a value you trust).  Output: ``<out>/amazon_sentiment/`` + MANIFEST.json, read by
``mtlkit.data.amazon.load_amazon``.

    python data_scripts/amazon_sentiment.py --out .data [--protocols rating balanced]
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np
from _archive import extract
from _common import BadFile, fetch, parse, parser, staged

from mtlkit.data.amazon import DOMAINS, NAME, PROTOCOLS, rating_to_label, write_amazon
from mtlkit.data.common import stratified_split

URL = "https://www.cs.jhu.edu/~mdredze/datasets/sentiment/unprocessed.tar.gz"
FILE = "unprocessed.tar.gz"
BALANCED_SPLIT = {"train": 0.7, "val": 0.1, "test": 0.2}
_REVIEW = re.compile(r"<review>(.*?)</review>", re.S)
_FIELD = r"<{0}>(.*?)</{0}>"

Rows = list[tuple[int, str]]


def parse_reviews(raw: str, label: int | None = None) -> Rows:
    """``(label, title + " . " + text)`` per review block.  ``label=None``: from the
    rating (3 dropped); else the file's label.  The files are pseudo-XML (unescaped
    ``&``), so fields are found with regular expressions and entities unescaped."""
    rows = []
    for block in _REVIEW.findall(raw):
        rating = re.search(_FIELD.format("rating"), block, re.S)
        text = re.search(_FIELD.format("review_text"), block, re.S)
        title = re.search(_FIELD.format("title"), block, re.S)
        if not text or (label is None and not rating):
            continue
        y = label if label is not None else rating_to_label(float(rating.group(1).strip()))
        if y is None:
            continue
        body = ((title.group(1).strip() + " . ") if title else "") + text.group(1).strip()
        rows.append((y, html.unescape(body)))
    return rows


def dedupe(domains: dict[str, Rows]) -> tuple[dict[str, Rows], dict[str, dict[str, int]]]:
    """Each review once: within a domain (conflicting labels: dropped), then across
    domains (kept by the first domain in ``DOMAINS`` order).  Returns the rows and, per
    domain, the counts: reviews read, kept, ``duplicates`` (extra copies of a review),
    ``conflicting_labels`` (reviews dropped for carrying both labels) and
    ``in_an_earlier_domain``."""
    seen: set[str] = set()
    out, stats = {}, {}
    for d in [d for d in DOMAINS if d in domains]:
        labels: dict[str, set[int]] = {}
        for y, text in domains[d]:
            labels.setdefault(_key(text), set()).add(y)
        kept, done = [], set()
        n_conflict = n_cross = 0
        for y, text in domains[d]:
            k = _key(text)
            if k in done:
                continue
            done.add(k)
            if len(labels[k]) > 1:
                n_conflict += 1
            elif k in seen:
                n_cross += 1
            else:
                kept.append((y, text))
        seen.update(_key(t) for _, t in kept)
        out[d] = kept
        stats[d] = {"read": len(domains[d]), "kept": len(kept),
                    "duplicates": len(domains[d]) - len(done), "conflicting_labels": n_conflict,
                    "in_an_earlier_domain": n_cross}
    return out, stats


def _key(text: str) -> str:
    return " ".join(text.split()).casefold()


def split_balanced(rows: Rows, seed: int = 0) -> dict[str, Rows]:
    """The fixed 70/10/20 stratified split of the balanced protocol."""
    parts = stratified_split([y for y, _ in rows], list(BALANCED_SPLIT.values()), seed)
    return {s: [rows[i] for i in idx] for s, idx in zip(BALANCED_SPLIT, parts)}


def read_domain(root: Path, folder: str, protocol: str) -> Rows:
    """The raw reviews of one domain folder for ``protocol``."""
    files = {"rating": [("all.review", None)],
             "balanced": [("positive.review", 1), ("negative.review", 0)]}[protocol]
    rows = []
    for fname, label in files:
        path = root / folder / fname
        if not path.is_file():
            raise BadFile(f"{path} is missing: the archive is not Blitzer's unprocessed.tar.gz "
                          "(sorted_data/<domain>/{all,positive,negative}.review), or this "
                          f"release lacks the files of the {protocol!r} protocol (leave it "
                          "out with --protocols)")
        rows += parse_reviews(path.read_text(encoding="latin-1"), label)
    return rows


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__, [FILE])
    p.add_argument("--protocols", nargs="+", choices=PROTOCOLS, default=list(PROTOCOLS))
    args = parse(p, argv)
    raw = extract(fetch(URL, FILE, args), args.raw / "amazon")
    root = next((d for d in raw.rglob("sorted_data") if d.is_dir()), None)
    if root is None:
        raise BadFile(f"no sorted_data/ folder in {raw}: is {FILE} Blitzer's unprocessed "
                      "release?")
    prepared: dict[str, dict] = {}
    sizes: dict[str, dict] = {}
    for protocol in args.protocols:
        rows = {d: read_domain(root, folder, protocol) for d, folder in DOMAINS.items()}
        rows, stats = dedupe(rows)
        if protocol == "balanced":
            splits = {d: split_balanced(r) for d, r in rows.items()}
            for d, parts in splits.items():
                stats[d].update({s: len(v) for s, v in parts.items()})
            prepared[protocol] = splits
        else:
            for d, r in rows.items():
                stats[d].update(positive=sum(y for y, _ in r),
                                negative=len(r) - sum(y for y, _ in r))
            prepared[protocol] = rows
        sizes[protocol] = stats
        _report(protocol, stats)
    with staged(args.out, NAME) as stage:
        write_amazon(stage, sizes=sizes, **prepared)
    print(f"wrote {args.out / NAME}")


def _report(protocol: str, stats: dict[str, dict[str, int]]) -> None:
    cols = [c for c in next(iter(stats.values())) if c != "read"]
    print(f"  {protocol}: " + "  ".join(f"{c}" for c in cols))
    for d, s in stats.items():
        print(f"    {d:12s} " + "  ".join(f"{s[c]:>{len(c)}d}" for c in cols))
    total = np.sum([s["kept"] for s in stats.values()])
    print(f"    {'all':12s} kept {total}")


if __name__ == "__main__":
    main()
