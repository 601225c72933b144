"""Text pipeline: tokenizer, vocabulary (built on the training split only), fixed-length
token-id tensors, and an on-disk cache keyed by a hash of everything that goes in.

``build_text_data`` turns ``{task: (texts, labels)}`` into a homogeneous
:class:`~mtlkit.data.base.MTLData` whose inputs are ``LongTensor(max_len)`` token ids
(``0`` = padding, ``1`` = unknown).  The raw strings stay available through
``TextDataset.texts`` (for MiniLM/BERT tokenizers and for showing examples).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mtlkit.data.base import MTLData, TaskSpec
from mtlkit.data.common import ArrayDataset, cached, hash_key, stratified_split, stratified_subset

PIPELINE_VERSION = 1
PAD, UNK = "<pad>", "<unk>"
_URL = re.compile(r"https?://\S+|www\.\S+")
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


def strip_urls(text: str) -> str:
    """Remove URLs (tweets end with a link that only identifies the outlet)."""
    return _URL.sub(" ", text).strip()


def tokenize(text: str) -> list[str]:
    """Lower-case word/number/punctuation tokens (GloVe-6B style: ``don't`` stays whole,
    ``@united`` -> ``@``, ``united``)."""
    return _TOKEN.findall(strip_urls(text).lower())


@dataclass
class Vocab:
    """Token <-> id maps; id 0 is padding and 1 is the unknown token."""

    itos: list[str]

    def __post_init__(self) -> None:
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]], min_freq: int = 2,
              max_size: int | None = 20000) -> Vocab:
        """Most frequent tokens with count >= ``min_freq`` (ties broken alphabetically)."""
        counts = Counter(tok for toks in token_lists for tok in toks)
        words = sorted((w for w, c in counts.items() if c >= min_freq),
                       key=lambda w: (-counts[w], w))
        if max_size is not None:
            words = words[: max(0, max_size - 2)]
        return cls([PAD, UNK, *words])

    def encode(self, tokens: Sequence[str], max_len: int) -> list[int]:
        """Ids of ``tokens`` truncated / right-padded with 0 to ``max_len``."""
        ids = [self.stoi.get(t, 1) for t in tokens[:max_len]]
        return ids + [0] * (max_len - len(ids))


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
    if not texts:
        return torch.zeros(0, max_len, dtype=torch.long)
    return torch.tensor([vocab.encode(tokenize(t), max_len) for t in texts], dtype=torch.long)


def _build(task_data: dict[str, tuple[list[str], list[int]]], fractions, seed, n_per_task,
           max_len, min_freq, max_vocab) -> dict:
    splits: dict[str, dict[str, tuple[list[str], np.ndarray]]] = {"train": {}, "val": {},
                                                                  "test": {}}
    for task, (texts, labels) in task_data.items():
        labels = np.asarray(labels, dtype=np.int64)
        keep = stratified_subset(labels, n_per_task, seed)
        texts = [texts[i] for i in keep]
        labels = labels[keep]
        for name, idx in zip(("train", "val", "test"),
                             stratified_split(labels, fractions, seed)):
            splits[name][task] = ([texts[i] for i in idx], labels[idx])
    vocab = Vocab.build((tokenize(t) for txts, _ in splits["train"].values() for t in txts),
                        min_freq=min_freq, max_size=max_vocab)
    out: dict = {"itos": vocab.itos}
    for name, per_task in splits.items():
        out[name] = {t: (encode_texts(txts, vocab, max_len), torch.as_tensor(y), txts)
                     for t, (txts, y) in per_task.items()}
    return out


def build_text_data(name: str, task_data: dict[str, tuple[list[str], list[int]]],
                    num_classes: dict[str, int], *, source_key: str, seed: int = 0,
                    fractions: Sequence[float] = (0.7, 0.15, 0.15),
                    n_per_task: int | None = None, max_len: int = 32, min_freq: int = 2,
                    max_vocab: int | None = 20000, output: str = "ids", cache: bool = True,
                    stands_in_for: str = "", differences: str = "",
                    meta: dict | None = None) -> MTLData:
    """Split each task (stratified, deterministic), build the vocabulary on the training
    split of all tasks together, encode, and cache the result on disk.

    ``source_key`` identifies the raw input (e.g. the sha256 of the source file and the
    loader's own options); together with every argument here it forms the cache key.
    """
    if max_len < 1:
        raise ValueError(f"max_len={max_len} must be >= 1")
    key = hash_key(PIPELINE_VERSION, name, source_key, sorted(task_data), seed,
                   list(fractions), n_per_task, max_len, min_freq, max_vocab)
    built = cached(f"text-{name}", key, lambda: _build(task_data, fractions, seed, n_per_task,
                                                       max_len, min_freq, max_vocab), cache)
    vocab = Vocab(built["itos"])
    parts = {s: {t: TextDataset(x, y, txts, output) for t, (x, y, txts) in built[s].items()}
             for s in ("train", "val", "test")}
    tasks = [TaskSpec(t, "classification", num_classes[t]) for t in task_data]
    return MTLData(name, tasks, True, parts["train"], parts["val"], parts["test"],
                   stands_in_for=stands_in_for, differences=differences,
                   meta={"vocab": vocab, "max_len": max_len, "seed": seed,
                         "fractions": list(fractions), "cache_key": key, **(meta or {})})
