"""20 Newsgroups in the four 4-class tasks of ``metaweighting.txt`` Table 1.

On-disk layout written by ``data_scripts/newsgroups.py`` (and :func:`write_newsgroups`)::

    <root>/newsgroups/{train,test}/<task>.tsv   label<TAB>text (label = index in TASKS)
    <root>/newsgroups/MANIFEST.json

The ``bydate`` train/test split is kept; validation is a stratified 15% of train.
Headers are removed by the script (the posts' bodies only).  Homogeneous.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mtlkit.data.base import MTLData, TaskSpec
from mtlkit.data.common import (
    cached,
    check_tasks,
    data_root,
    hash_key,
    stratified_split,
    verify_manifest,
    write_manifest,
)
from mtlkit.data.text import (
    PIPELINE_VERSION,
    TextDataset,
    Vocab,
    encode_texts,
    read_tsv,
    valid_text_entry,
    write_tsv,
)

NAME = "newsgroups"
SCRIPT = "newsgroups.py"
TASKS: dict[str, list[str]] = {
    "comp": ["comp.os.ms-windows.misc", "comp.sys.mac.hardware", "comp.graphics",
             "comp.windows.x"],
    "rec": ["rec.sport.baseball", "rec.sport.hockey", "rec.autos", "rec.motorcycles"],
    "sci": ["sci.crypt", "sci.electronics", "sci.med", "sci.space"],
    "talk": ["talk.politics.mideast", "talk.religion.misc", "talk.politics.misc",
             "talk.politics.guns"],
}


def write_newsgroups(root: str | Path,
                     splits: dict[str, dict[str, list[tuple[int, str]]]]) -> Path:
    """Write ``{"train"|"test": {task: [(label, text)]}}`` and the manifest."""
    out = Path(root) / NAME
    for split, per_task in splits.items():
        if split not in ("train", "test"):
            raise ValueError(f"split {split!r}: 20NG has train and test")
        for task, rows in per_task.items():
            write_tsv(out / split / f"{task}.tsv", rows)
    write_manifest(out, NAME)
    return out


def load_newsgroups(tasks: list[str] | None = None, *, root: str | Path | None = None,
                    seed: int = 0, val_fraction: float = 0.15, max_len: int = 256,
                    min_freq: int = 2, max_vocab: int | None = 50000, verify: str = "auto",
                    cache: bool = True, output: str = "ids") -> MTLData:
    """The four Table-1 tasks from the prepared layout (vocabulary from train only)."""
    base = data_root(root) / NAME
    doc = verify_manifest(base, NAME, SCRIPT, verify)
    present = [t for t in TASKS if f"train/{t}.tsv" in doc["files"]]
    names = check_tasks(tasks, present, NAME)
    shas = {rel: info["sha256"] for rel, info in doc["files"].items()}
    key = hash_key(PIPELINE_VERSION, shas, names, seed, val_fraction, max_len, min_freq,
                   max_vocab)

    def build() -> dict:
        raw = {}
        for t in names:
            tr_txt, tr_y = read_tsv(base / "train" / f"{t}.tsv", 4)
            te_txt, te_y = read_tsv(base / "test" / f"{t}.tsv", 4)
            tr_i, va_i = stratified_split(tr_y, [1 - val_fraction, val_fraction], seed)
            raw[t] = {"train": ([tr_txt[i] for i in tr_i], np.asarray(tr_y)[tr_i]),
                      "val": ([tr_txt[i] for i in va_i], np.asarray(tr_y)[va_i]),
                      "test": (te_txt, np.asarray(te_y))}
        vocab = Vocab.build((x for t in names for x in raw[t]["train"][0]),
                            min_freq=min_freq, max_size=max_vocab)
        return {"itos": vocab.itos, **{s: {t: (encode_texts(raw[t][s][0], vocab, max_len),
                                               torch.as_tensor(raw[t][s][1]), raw[t][s][0])
                                           for t in names}
                                       for s in ("train", "val", "test")}}

    built = cached(f"text-{NAME}", key, build, cache,
                   validate=lambda b: valid_text_entry(b, names, max_len))
    parts = {s: {t: TextDataset(x, torch.as_tensor(y), txt, output)
                 for t, (x, y, txt) in built[s].items()} for s in ("train", "val", "test")}
    return MTLData(NAME, [TaskSpec(t, "classification", 4) for t in names], True,
                   parts["train"], parts["val"], parts["test"],
                   differences="the paper's data (20news-bydate)",
                   meta={"vocab": Vocab(built["itos"]), "classes": {t: TASKS[t] for t in names},
                         "root": str(base), "max_len": max_len})
