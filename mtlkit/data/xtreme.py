"""XTREME problems of ``rlw.md`` §5.6 / App. C.6 (Table 11): one task per language
(homogeneous), a shared multilingual encoder.

=======  ==========================  ===============  ==========================
problem  source                      languages        labels
=======  ==========================  ===============  ==========================
pos      Universal Dependencies 2.5  en, zh, te, vi   17 UPOS tags (tagging)
ner      WikiANN (PAN-X)             en, zh, de, es   7 BIO tags (tagging)
nli      MultiNLI (+MT) / XNLI       en, zh, de, es   3 classes (sentence pairs)
pi       PAWS-X                      en, zh, de, es   2 classes (sentence pairs)
=======  ==========================  ===============  ==========================

Layout written by ``data_scripts/xtreme.py`` (through :func:`write_problem`)::

    <root>/xtreme/<problem>/<lang>/{train,dev,test}.jsonl
    <root>/xtreme/MANIFEST.json

Lines are ``{"tokens": [...], "tags": [...]}`` (pos, ner) or ``{"text_a": ..., "text_b":
..., "label": ...}`` (nli, pi).  Items are raw text for a pretrained tokenizer:
``(tokens, LongTensor(tags))`` or ``((text_a, text_b), label)``; use
:func:`collate_raw` with a DataLoader.  ``dev`` is the validation split.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch.utils.data import Dataset

from mtlkit.data.base import MTLData, TaskSpec
from mtlkit.data.common import DataCorrupt, check_tasks, data_root, read_text, verify_manifest

NAME = "xtreme"
SCRIPT = "xtreme.py"
UPOS = ["ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON",
        "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X"]
NER = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]
PROBLEMS = {"pos": (["en", "zh", "te", "vi"], UPOS),
            "ner": (["en", "zh", "de", "es"], NER),
            "nli": (["en", "zh", "de", "es"], ["entailment", "neutral", "contradiction"]),
            "pi": (["en", "zh", "de", "es"], ["0", "1"])}


class RawTextDataset(Dataset):
    """Tokens + tag ids, or a sentence pair + label id."""

    def __init__(self, items: list, labels: list) -> None:
        self.items, self.labels = items, labels
        #: class ids of a sentence-pair task (None for tagging, whose labels are sequences)
        self.y = torch.tensor(labels) if labels and isinstance(labels[0], int) else None

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i], torch.tensor(self.labels[i])


def collate_raw(batch: list) -> tuple[list, torch.Tensor]:
    """Keep inputs as a list; pad tag sequences with -1 (the ignore index)."""
    xs, ys = zip(*batch)
    if ys[0].dim() == 0:
        return list(xs), torch.stack(ys)
    return list(xs), torch.nn.utils.rnn.pad_sequence(list(ys), batch_first=True,
                                                     padding_value=-1)


def write_problem(folder: str | Path, data: dict[str, dict[str, list[dict]]]) -> None:
    """Write ``{lang: {"train"|"dev"|"test": [record, ...]}}`` as
    ``<folder>/<lang>/<split>.jsonl``."""
    for lang, splits in data.items():
        for split, records in splits.items():
            p = Path(folder) / lang / f"{split}.jsonl"
            p.parent.mkdir(parents=True, exist_ok=True)
            with open(p, "w", encoding="utf-8") as f:
                for r in records:
                    f.write(json.dumps(r, ensure_ascii=False) + "\n")


def _read(path: Path, problem: str, labels: list[str]) -> RawTextDataset:
    index = {lab: i for i, lab in enumerate(labels)}
    items, ys = [], []
    text = read_text(path, f"run `python data_scripts/{SCRIPT} --problems {problem}`")
    for n, line in enumerate(text.splitlines(), 1):
        try:
            r = json.loads(line)
            if problem in ("pos", "ner"):
                if len(r["tokens"]) != len(r["tags"]):
                    raise ValueError("tokens and tags differ in length")
                items.append(list(r["tokens"]))
                ys.append([index[t] for t in r["tags"]])
            else:
                items.append((r["text_a"], r["text_b"]))
                ys.append(index[str(r["label"])])
        except (ValueError, KeyError, TypeError) as err:
            raise DataCorrupt(f"{path}:{n}: bad {problem} record ({err!r})") from None
    return RawTextDataset(items, ys)


def load_xtreme(problem: str = "pi", tasks: list[str] | None = None, *,
                root: str | Path | None = None, verify: str = "auto") -> MTLData:
    """One XTREME problem; ``tasks`` are languages (default: the four of Table 11)."""
    if problem not in PROBLEMS:
        raise ValueError(f"unknown XTREME problem {problem!r}; choose one of {list(PROBLEMS)}")
    langs, labels = PROBLEMS[problem]
    base = data_root(root) / NAME
    doc = verify_manifest(base, NAME, SCRIPT, verify)
    present = [lang for lang in langs if f"{problem}/{lang}/train.jsonl" in doc["files"]]
    if not present:
        raise DataCorrupt(f"{NAME}: no {problem} data in {base}; run `python data_scripts/"
                          f"{SCRIPT} --problems {problem}`")
    names = check_tasks(tasks, present, f"{NAME}-{problem}")
    parts: dict[str, dict] = {"train": {}, "val": {}, "test": {}}
    for lang in names:
        for split, fname in (("train", "train"), ("val", "dev"), ("test", "test")):
            parts[split][lang] = _read(base / problem / lang / f"{fname}.jsonl", problem, labels)
    kind = "tagging" if problem in ("pos", "ner") else "classification"
    return MTLData(f"xtreme_{problem}", [TaskSpec(lang, kind, len(labels)) for lang in names],
                   True, parts["train"], parts["val"], parts["test"],
                   differences="the paper's data (XTREME); inputs are raw text",
                   meta={"root": str(base), "labels": labels, "collate": collate_raw})
