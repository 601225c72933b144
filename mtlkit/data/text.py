"""Text pipeline: tokenizer, vocabulary (built on the training split only), fixed-length
token-id tensors, and an on-disk cache keyed by a hash of everything that goes in.

The tokenizer, :class:`Vocab` and GloVe reader live in :mod:`mtlkit.encoders.text`
(one place for each thing); this module adds splitting, padding and caching.

``build_text_data`` turns ``{task: (texts, labels)}`` into a homogeneous
:class:`~mtlkit.data.base.MTLData` whose inputs are ``LongTensor(max_len)`` token ids
(``0`` = padding, ``1`` = unknown).  The raw strings stay available through
``TextDataset.texts`` (for MiniLM/BERT tokenizers and for showing examples).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mtlkit.data.base import MTLData, TaskSpec
from mtlkit.data.common import (
    ArrayDataset,
    DataCorrupt,
    cached,
    hash_key,
    read_text,
    stratified_split,
    stratified_subset,
)
from mtlkit.encoders.text import Vocab, embedding_matrix, load_glove

PIPELINE_VERSION = 3  # bump whenever tokenising, vocabulary building or splitting changes
_URL = re.compile(r"https?://\S+|www\.\S+")


def strip_urls(text: str) -> str:
    """Remove URLs (tweets end with a link that only identifies the outlet)."""
    return _URL.sub(" ", text).strip()


class TextDataset(ArrayDataset):
    """Token ids ``x`` (N, max_len), labels ``y`` (N,), and the raw ``texts``.

    ``output="ids"`` (default) yields ``(ids, y)``; ``output="text"`` yields
    ``(text, y)`` for a pretrained tokenizer.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, texts: list[str],
                 output: str = "ids") -> None:
        super().__init__(x, y)
        if output not in ("ids", "text"):
            raise ValueError(f"output={output!r}; choose 'ids' or 'text'")
        self.texts, self.output = texts, output

    def __getitem__(self, i: int):
        return (self.texts[i] if self.output == "text" else self.x[i]), self.y[i]


def encode_texts(texts: Sequence[str], vocab: Vocab, max_len: int) -> torch.Tensor:
    """(N, max_len) LongTensor of token ids."""
    out = torch.zeros(len(texts), max_len, dtype=torch.long)
    for i, t in enumerate(texts):
        ids = vocab.encode(t, max_len)
        out[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


Split = tuple[list[str], list[int]]


def _build(task_data: dict[str, Split | dict[str, Split]], fractions, seed, n_per_task,
           max_len, min_freq, max_vocab) -> dict:
    splits: dict[str, dict[str, tuple[list[str], np.ndarray]]] = {"train": {}, "val": {},
                                                                  "test": {}}
    for task, data in task_data.items():
        if isinstance(data, dict):  # fixed splits given by the source
            total = sum(len(data[s][1]) for s in splits)
            for name in splits:
                texts, labels = data[name][0], np.asarray(data[name][1], dtype=np.int64)
                n = None if n_per_task is None else max(1, round(n_per_task * len(labels) / total))
                keep = stratified_subset(labels, n, seed)
                splits[name][task] = ([texts[i] for i in keep], labels[keep])
            continue
        labels = np.asarray(data[1], dtype=np.int64)
        keep = stratified_subset(labels, n_per_task, seed)
        texts = [data[0][i] for i in keep]
        labels = labels[keep]
        for name, idx in zip(("train", "val", "test"),
                             stratified_split(labels, fractions, seed)):
            splits[name][task] = ([texts[i] for i in idx], labels[idx])
    vocab = Vocab.build((t for txts, _ in splits["train"].values() for t in txts),
                        min_freq=min_freq, max_size=max_vocab)
    out: dict = {"itos": vocab.itos}
    for name, per_task in splits.items():
        out[name] = {t: (encode_texts(txts, vocab, max_len), torch.as_tensor(y), txts)
                     for t, (txts, y) in per_task.items()}
    return out


def valid_text_entry(built: dict, tasks: list[str], max_len: int) -> bool:
    """A cached text build: a vocabulary of strings, and per split and task token ids
    (N, max_len) within the vocabulary, N labels and N raw texts."""
    itos = built["itos"]
    if not (isinstance(itos, list) and all(isinstance(w, str) for w in itos)):
        return False
    for split in ("train", "val", "test"):
        if sorted(built[split]) != sorted(tasks):
            return False
        for x, y, texts in built[split].values():
            n = len(texts)
            if (x.dtype != torch.long or tuple(x.shape) != (n, max_len) or tuple(y.shape) != (n,)
                    or not all(isinstance(t, str) for t in texts)):
                return False
            if n and (int(x.min()) < 0 or int(x.max()) >= len(itos)):
                return False
    return True


def build_text_data(name: str, task_data: dict[str, Split | dict[str, Split]],
                    num_classes: dict[str, int], *, source_key: str, seed: int = 0,
                    fractions: Sequence[float] = (0.7, 0.15, 0.15),
                    n_per_task: int | None = None, max_len: int = 32, min_freq: int = 2,
                    max_vocab: int | None = 20000, output: str = "ids", cache: bool = True,
                    stands_in_for: str = "", differences: str = "",
                    meta: dict | None = None) -> MTLData:
    """Split each task (stratified, deterministic), build the vocabulary on the training
    split of all tasks together, encode, and cache the result on disk.

    A task given as ``{"train"|"val"|"test": (texts, labels)}`` keeps those fixed splits
    (``fractions`` does not apply; ``n_per_task`` keeps that share of each split).

    ``source_key`` identifies the raw input (e.g. the sha256 of the source file and the
    loader's own options); together with every argument here it forms the cache key.
    """
    if max_len < 1:
        raise ValueError(f"max_len={max_len} must be >= 1")
    key = hash_key(PIPELINE_VERSION, name, source_key, sorted(task_data), seed,
                   list(fractions), n_per_task, max_len, min_freq, max_vocab)
    built = cached(f"text-{name}", key, lambda: _build(task_data, fractions, seed, n_per_task,
                                                       max_len, min_freq, max_vocab), cache,
                   validate=lambda b: valid_text_entry(b, list(task_data), max_len))
    vocab = Vocab(built["itos"])
    parts = {s: {t: TextDataset(x, y, txts, output) for t, (x, y, txts) in built[s].items()}
             for s in ("train", "val", "test")}
    tasks = [TaskSpec(t, "classification", num_classes[t]) for t in task_data]
    return MTLData(name, tasks, True, parts["train"], parts["val"], parts["test"],
                   stands_in_for=stands_in_for, differences=differences,
                   meta={"vocab": vocab, "max_len": max_len, "seed": seed,
                         "fractions": list(fractions), "cache_key": key, **(meta or {})})


def glove_embeddings(data: MTLData, seed: int = 0) -> tuple[torch.Tensor, float]:
    """``(E, coverage)``: the GloVe-50d matrix aligned to ``data.meta["vocab"]`` (rows of
    unknown words ~ N(0, 0.1^2), padding row 0) and the fraction of words found."""
    return embedding_matrix(data.meta["vocab"], load_glove(), seed=seed)


def write_tsv(path, rows) -> None:
    """``label<TAB>text`` lines (whitespace in ``text`` collapsed to single spaces): the
    on-disk format of the prepared text benchmarks (Amazon, 20 Newsgroups)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for label, text in rows:
            f.write(f"{int(label)}\t{' '.join(str(text).split())}\n")


def read_tsv(path, num_classes: int, howto: str = "") -> tuple[list[str], list[int]]:
    """Read :func:`write_tsv` files; a malformed line or bytes that are not UTF-8 raise
    ``DataCorrupt`` (``howto`` says how to get a good copy)."""
    lines = read_text(path, howto).split("\n")
    if lines[-1] == "":  # the newline that ends the last line
        lines.pop()
    texts, labels = [], []
    for n, line in enumerate(lines, 1):
        label, sep, text = line.partition("\t")
        if not sep or not (label.isascii() and label.isdigit()) or int(label) >= num_classes:
            raise DataCorrupt(f"{path}:{n} is not `label<TAB>text` with a label in "
                              f"0..{num_classes - 1}")
        labels.append(int(label))
        texts.append(text)
    return texts, labels
