"""Amazon multi-domain product-review sentiment (Blitzer et al. 2007), as used in
``metaweighting.txt`` §6.1: 14 product domains, one binary task each; reviews rated > 3
are positive, < 3 negative, = 3 dropped.

On-disk layout written by ``data_scripts/amazon_sentiment.py`` (and by
:func:`write_amazon`, which the script and the tests share)::

    <root>/amazon_sentiment/<domain>.tsv     label<TAB>text per line (1 = positive)
    <root>/amazon_sentiment/MANIFEST.json    sha256 + size of every file

Splits: stratified 70/15/15 per domain (seeded); ``metaweighting.txt`` does not give
its split.  Homogeneous.  Inputs are GloVe-vocabulary token ids, as for ``sentiment``.
"""

from __future__ import annotations

from pathlib import Path

from mtlkit.data.base import MTLData
from mtlkit.data.common import check_tasks, data_root, hash_key, verify_manifest, write_manifest
from mtlkit.data.text import build_text_data, read_tsv, write_tsv

NAME = "amazon_sentiment"
SCRIPT = "amazon_sentiment.py"
#: the 14 domains (short name -> folder in Blitzer's ``unprocessed.tar.gz``)
DOMAINS: dict[str, str] = {
    "apparel": "apparel", "baby": "baby", "books": "books", "camera": "camera_&_photo",
    "dvd": "dvd", "electronics": "electronics", "health": "health_&_personal_care",
    "kitchen": "kitchen_&_housewares", "magazines": "magazines", "music": "music",
    "software": "software", "sports": "sports_&_outdoors", "toys": "toys_&_games",
    "video": "video",
}


def rating_to_label(rating: float) -> int | None:
    """> 3 -> 1 (positive), < 3 -> 0 (negative), 3 -> None (dropped)."""
    if rating > 3:
        return 1
    if rating < 3:
        return 0
    return None


def write_amazon(root: str | Path, domains: dict[str, list[tuple[int, str]]]) -> Path:
    """Write the prepared layout (``{domain: [(label, text), ...]}``) and its manifest."""
    out = Path(root) / NAME
    for name, rows in domains.items():
        if name not in DOMAINS:
            raise ValueError(f"unknown Amazon domain {name!r}; expected one of {list(DOMAINS)}")
        write_tsv(out / f"{name}.tsv", rows)
    write_manifest(out, NAME)
    return out


def load_amazon(tasks: list[str] | None = None, *, root: str | Path | None = None,
                n_per_task: int | None = None, seed: int = 0, max_len: int = 128,
                verify: str = "auto", cache: bool = True, **text_kw) -> MTLData:
    """The 14-domain Amazon sentiment benchmark from its prepared layout."""
    base = data_root(root) / NAME
    doc = verify_manifest(base, NAME, SCRIPT, verify)
    present = [d for d in DOMAINS if f"{d}.tsv" in doc["files"]]
    names = check_tasks(tasks, present, NAME)
    data = {d: read_tsv(base / f"{d}.tsv", 2) for d in names}
    key = hash_key({d: doc["files"][f"{d}.tsv"]["sha256"] for d in names})
    return build_text_data(NAME, data, {d: 2 for d in names}, source_key=key, seed=seed,
                           n_per_task=n_per_task, max_len=max_len, cache=cache,
                           stands_in_for="", differences="the paper's data (Blitzer et al.)",
                           meta={"root": str(base)}, **text_kw)
