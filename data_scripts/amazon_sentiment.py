"""Amazon multi-domain sentiment (Blitzer et al. 2007) -> 14 binary domain tasks.

Reviews rated > 3 are positive, < 3 negative, 3 dropped (metaweighting §6.1).
Checksum: not published; recorded in ``<out>/checksums.json`` on first download and
checked on later runs.  Output: ``<out>/amazon_sentiment/<domain>.tsv`` + MANIFEST.json,
read by ``mtlkit.data.amazon.load_amazon``.

    python data_scripts/amazon_sentiment.py --out .data
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from _common import extract, fetch, parser

from mtlkit.data.amazon import DOMAINS, rating_to_label, write_amazon

URL = "https://www.cs.jhu.edu/~mdredze/datasets/sentiment/unprocessed.tar.gz"
FILE = "unprocessed.tar.gz"
_REVIEW = re.compile(r"<review>(.*?)</review>", re.S)
_FIELD = r"<{0}>(.*?)</{0}>"


def parse_reviews(raw: str) -> list[tuple[int, str]]:
    """``(label, title + text)`` for every review with a rating other than 3 (the files
    are pseudo-XML: unescaped ``&``, so they are parsed with regular expressions)."""
    rows = []
    for block in _REVIEW.findall(raw):
        rating = re.search(_FIELD.format("rating"), block, re.S)
        text = re.search(_FIELD.format("review_text"), block, re.S)
        title = re.search(_FIELD.format("title"), block, re.S)
        if not rating or not text:
            continue
        label = rating_to_label(float(rating.group(1).strip()))
        if label is None:
            continue
        body = ((title.group(1).strip() + " . ") if title else "") + text.group(1).strip()
        rows.append((label, html.unescape(body)))
    return rows


def main() -> None:
    args = parser(__doc__).parse_args()
    archive = fetch(URL, FILE, args)
    raw = extract(archive, (args.raw or args.out / "raw") / "amazon")
    root = next(raw.rglob("sorted_data"), raw)
    domains = {}
    for short, folder in DOMAINS.items():
        path = Path(root) / folder / "all.review"
        domains[short] = parse_reviews(path.read_text(encoding="latin-1"))
        print(f"  {short}: {len(domains[short])} reviews")
    print(f"wrote {write_amazon(args.out, domains)}")


if __name__ == "__main__":
    main()
