"""Amazon multi-domain product-review sentiment (Blitzer et al. 2007): 14 product
domains, one binary task each (homogeneous).  Two protocols, both prepared by
``data_scripts/amazon_sentiment.py`` from ``unprocessed.tar.gz``:

* ``rating`` (default; ``metaweighting.txt`` §6.1): every review of a domain
  (``all.review``), rated > 3 positive, < 3 negative, = 3 dropped.  Split here
  70/15/15 per domain (stratified, seeded); the paper does not give its split.
* ``balanced`` (the common multi-domain protocol, e.g. Liu et al. 2017): the labelled
  ``positive.review`` / ``negative.review`` files, with the fixed 70/10/20 split the
  script drew once (seed 0).

Reviews are de-duplicated by the script (each review is in one domain and one split
only).  Per-domain sizes depend on the release and are measured by the script: they are
printed, stored in ``MANIFEST.json`` and returned as ``meta["sizes"]``.

On-disk layout (written by :func:`write_amazon`)::

    <root>/amazon_sentiment/rating/<domain>.tsv                     label<TAB>text
    <root>/amazon_sentiment/balanced/<domain>/{train,val,test}.tsv  label<TAB>text
    <root>/amazon_sentiment/MANIFEST.json    sha256 + size of every file, and the sizes

(1 = positive).  Inputs are GloVe-vocabulary token ids, as for ``sentiment``.
"""

from __future__ import annotations

from pathlib import Path

from mtlkit.data.base import MTLData
from mtlkit.data.common import (
    DataUnavailable,
    check_tasks,
    data_root,
    hash_key,
    verify_manifest,
    write_manifest,
)
from mtlkit.data.text import build_text_data, read_tsv, write_tsv

NAME = "amazon_sentiment"
SCRIPT = "amazon_sentiment.py"
PROTOCOLS = ("rating", "balanced")
SPLITS = ("train", "val", "test")
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


def write_amazon(root: str | Path, rating: dict[str, list[tuple[int, str]]] | None = None,
                 balanced: dict[str, dict[str, list[tuple[int, str]]]] | None = None,
                 sizes: dict | None = None) -> Path:
    """Write the prepared layout and its manifest: ``rating`` is ``{domain: [(label,
    text)]}``, ``balanced`` is ``{domain: {"train"|"val"|"test": [(label, text)]}}``."""
    out = Path(root) / NAME
    for name in [*(rating or {}), *(balanced or {})]:
        if name not in DOMAINS:
            raise ValueError(f"unknown Amazon domain {name!r}; expected one of {list(DOMAINS)}")
    for name, rows in (rating or {}).items():
        write_tsv(out / "rating" / f"{name}.tsv", rows)
    for name, parts in (balanced or {}).items():
        for split in SPLITS:
            write_tsv(out / "balanced" / name / f"{split}.tsv", parts[split])
    return write_manifest(out, NAME, extra={"sizes": sizes or {}})


def _files(protocol: str, domain: str) -> list[str]:
    if protocol == "rating":
        return [f"rating/{domain}.tsv"]
    return [f"balanced/{domain}/{s}.tsv" for s in SPLITS]


def load_amazon(tasks: list[str] | None = None, *, protocol: str = "rating",
                root: str | Path | None = None, n_per_task: int | None = None, seed: int = 0,
                max_len: int = 128, verify: str = "auto", cache: bool = True,
                **text_kw) -> MTLData:
    """The 14-domain Amazon sentiment benchmark (``protocol`` "rating" or "balanced")."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol={protocol!r}; choose one of {list(PROTOCOLS)}")
    base = data_root(root) / NAME
    doc = verify_manifest(base, NAME, SCRIPT, verify)
    present = [d for d in DOMAINS if all(f in doc["files"] for f in _files(protocol, d))]
    if not present:
        raise DataUnavailable(f"{NAME}: {base} holds no {protocol!r} protocol (prepared by an "
                              f"older script, or with --protocols that left it out); run "
                              f"`python data_scripts/{SCRIPT} --out {base.parent}`.")
    names = check_tasks(tasks, present, NAME)
    howto = f"run `python data_scripts/{SCRIPT}`"
    if protocol == "rating":
        data = {d: read_tsv(base / "rating" / f"{d}.tsv", 2, howto) for d in names}
    else:
        data = {d: {s: read_tsv(base / "balanced" / d / f"{s}.tsv", 2, howto) for s in SPLITS}
                for d in names}
    key = hash_key(protocol, {d: [doc["files"][f]["sha256"] for f in _files(protocol, d)]
                              for d in names})
    return build_text_data(NAME, data, {d: 2 for d in names}, source_key=key, seed=seed,
                           n_per_task=n_per_task, max_len=max_len, cache=cache,
                           stands_in_for="",
                           differences=f"the paper's data (Blitzer et al.), {protocol} protocol",
                           meta={"root": str(base), "protocol": protocol,
                                 "sizes": doc.get("sizes", {}).get(protocol, {})},
                           **text_kw)
