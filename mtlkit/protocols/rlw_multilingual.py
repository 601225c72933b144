"""The RLW paper's multilingual protocol (``rlw.md`` §5.2, §5.6, App. C.6; Tables 3, 11, 12):
one task per language, a pretrained transformer shared by all languages, a linear
output layer per language, Adam (lr 2e-5, weight decay 1e-8), batch 32 per task,
cross-entropy.

=======  ================  ===========  ================================================
problem  languages         kind         metric here (paper)
=======  ================  ===========  ================================================
``pi``   en zh de es       pairs        accuracy (accuracy)                    Table 3
``pos``  en zh te vi       tagging      token macro-F1 over 17 UPOS tags (F1)  Table 3
``nli``  en zh de es       pairs        accuracy (accuracy)                    Table 12
``ner``  en zh de es       tagging      token macro-F1 over 7 BIO tags (F1)    Table 12
=======  ================  ===========  ================================================

XTREME scores NER with entity-level (span) F1; here the trainer's tagging metric is the
token-level macro-F1 over tags (and token accuracy), which ranks methods similarly but is
not the same number.  ``full`` reads the problems that ``data_scripts/xtreme.py`` prepared
and a multilingual transformer by Hugging Face name or local folder (``MODEL``; mBERT,
``bert-base-multilingual-cased``, is the paper's).

The CPU stand-in (``smoke``/``teach``/``paper-cpu``) is **English only**: no multilingual
encoder or XTREME data installs offline.  It takes the embedded MiniLM-L6 (English,
uncased) and the embedded ``sentiment`` tweets, with the four largest of its domains as
the four "languages" (the paper keeps the four languages with the most data): a
sentence-classification problem scored by accuracy, the shape of PI and NLI.

Inputs are tokenised once (:func:`tokenize`) into (N, 2, L) int32 tensors: token ids and
token types (segment ids of a sentence pair); the encoder drops the padding columns of
each batch.  Tagging labels sit on each word's first sub-word; the other sub-words,
special tokens and padding carry the ignore index -1.

Used by ``notebooks/58_benchmark_multilingual_xtreme.ipynb``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtlkit.arch.hps import HPS
from mtlkit.data import registry
from mtlkit.data.base import MTLData
from mtlkit.data.common import ArrayDataset, DataCorrupt, DataUnavailable
from mtlkit.encoders.transformer import TransformerEncoder
from mtlkit.protocols.rlw_classification import RLW6, table_rows, with_overrides

PROBLEMS = ("pi", "pos", "nli", "ner")
TABLE = {"pi": "Table 3", "pos": "Table 3", "nli": "Table 12", "ner": "Table 12"}
#: the metric each problem's table reports (tagging: token macro-F1, see module docstring)
METRIC = {"pi": "acc", "pos": "f1", "nli": "acc", "ner": "f1", "sentiment": "acc"}
#: the four largest domains of the embedded ``sentiment`` data: the stand-in's "languages"
STAND_IN_DOMAINS = ("airline", "deflategate", "coachella", "apple")
#: ``rlw.md`` Table 11: train + validation + test examples per language (thousands)
PAPER_TABLE11 = pd.DataFrame(
    {"ner": ["20.0K+10.0K+10.0K", "20.5K+10.3K+10.3K", "20.0K+10.0K+10.0K",
             "20.0K+10.0K+10.0K", "-", "-"],
     "pos": ["6.9K+1.8K+3.2K", "4.0K+0.5K+2.9K", "-", "-", "1.0K+0.1K+0.1K",
             "1.4K+0.8K+0.8K"],
     "nli": ["392.7K+2.5K+5.0K"] * 4 + ["-", "-"],
     "pi": ["49.4K+2.0K+2.0K"] * 4 + ["-", "-"]},
    index=pd.Index(["en", "zh", "de", "es", "te", "vi"], name="language"))

_ROWS = ["EW", "GradNorm", "UW", "MGDA", "DWA", "PCGrad", "GradDrop", "IMTL", "GradVac", *RLW6]


def _paper(cols: list[str], rows: list[list[float]]) -> pd.DataFrame:
    rows = rows + [[float("nan")] * len(cols)] * (len(_ROWS) - len(rows))
    return pd.DataFrame(rows, index=_ROWS, columns=cols)


#: ``rlw.md`` Tables 3 (POS, PI) and 12 (NLI, NER): per language and average, in %
#: (Table 12's RLW (random Normal) row is missing from the paper's text: NaN)
PAPER_TABLES: dict[str, pd.DataFrame] = {
    "pos": _paper(["en", "zh", "te", "vi", "Avg"], [
        [95.02, 88.89, 91.16, 87.11, 90.55], [95.01, 88.91, 91.88, 87.06, 90.71],
        [94.89, 88.77, 90.96, 87.12, 90.44], [95.08, 88.97, 92.35, 87.12, 90.88],
        [95.02, 89.03, 91.87, 87.27, 90.80], [94.85, 88.42, 90.72, 86.71, 90.18],
        [95.08, 89.06, 90.65, 87.17, 90.49], [94.87, 88.80, 92.18, 86.72, 90.65],
        [94.87, 88.41, 90.62, 86.47, 90.09], [95.06, 89.00, 92.31, 86.93, 90.83],
        [95.01, 88.87, 92.86, 86.85, 90.90], [95.16, 88.96, 91.64, 87.24, 90.75],
        [95.13, 89.10, 91.13, 87.03, 90.60], [94.98, 89.05, 92.33, 86.87, 90.81],
        [95.07, 89.00, 91.10, 87.25, 90.60]]),
    "pi": _paper(["en", "zh", "de", "es", "Avg"], [
        [94.09, 84.59, 89.44, 90.24, 89.59], [94.39, 85.94, 90.99, 91.44, 90.69],
        [93.74, 85.44, 90.24, 91.29, 90.18], [94.64, 84.99, 89.84, 90.89, 90.09],
        [94.69, 84.99, 89.49, 91.44, 90.15], [94.19, 85.49, 89.09, 91.24, 90.00],
        [94.29, 84.44, 89.69, 90.94, 89.84], [94.54, 84.79, 90.14, 90.99, 90.12],
        [94.29, 84.94, 89.19, 90.89, 89.83], [94.69, 85.79, 90.29, 91.94, 90.68],
        [94.39, 85.34, 90.04, 91.84, 90.40], [94.24, 84.39, 89.99, 90.99, 89.90],
        [95.09, 85.89, 90.24, 91.99, 90.80], [94.69, 85.49, 90.19, 90.99, 90.34],
        [94.79, 84.94, 89.54, 90.99, 90.07]]),
    "nli": _paper(["en", "zh", "de", "es", "Avg"], [
        [82.05, 77.04, 77.80, 78.48, 78.84], [83.33, 77.34, 78.20, 79.54, 79.60],
        [82.93, 77.58, 77.96, 79.72, 79.55], [83.11, 77.32, 77.84, 79.02, 79.32],
        [83.17, 77.52, 78.06, 79.56, 79.58], [82.55, 77.06, 78.84, 79.24, 79.42],
        [82.15, 76.10, 77.36, 78.22, 78.46], [82.63, 77.78, 76.56, 79.28, 79.06],
        [81.39, 76.74, 76.94, 78.50, 78.39], [83.21, 78.14, 78.04, 79.58, 79.74],
        [82.63, 76.36, 77.26, 79.24, 78.87], [82.99, 76.92, 77.40, 78.56, 78.97],
        [83.11, 77.52, 78.10, 78.84, 79.39], [82.69, 76.54, 77.74, 78.70, 78.92]]),
    "ner": _paper(["en", "zh", "de", "es", "Avg"], [
        [85.21, 83.61, 90.73, 92.89, 88.11], [85.70, 84.16, 91.13, 93.17, 88.54],
        [85.59, 84.42, 91.14, 93.24, 88.60], [85.68, 84.13, 90.99, 93.28, 88.52],
        [85.55, 84.42, 90.91, 93.22, 88.53], [84.69, 82.26, 90.17, 92.72, 87.46],
        [85.92, 84.45, 91.06, 93.29, 88.68], [84.97, 83.92, 90.82, 92.79, 88.12],
        [84.38, 82.54, 90.03, 92.29, 87.31], [85.48, 84.18, 90.92, 93.30, 88.47],
        [85.25, 83.79, 91.24, 93.30, 88.40], [85.31, 83.97, 91.06, 93.18, 88.38],
        [85.59, 83.84, 91.09, 93.01, 88.38], [85.56, 83.31, 90.98, 92.86, 88.18]]),
}


@dataclass(frozen=True)
class Setting:
    """One profile's settings; notebook parameters override fields."""

    problems: tuple[str, ...]  #: XTREME problems, or ("sentiment",) for the stand-in
    methods: tuple[str, ...]
    epochs: int
    batch_size: int  #: sentences per task and step
    lr: float
    weight_decay: float
    max_length: int  #: longest tokenised input
    model: str  #: Hugging Face name or local folder ("" = the embedded MiniLM)
    pooling: str  #: cls | mean (sentence-level problems)
    n_per_task: int = 0  #: stand-in: examples per domain; XTREME: cap per training split
    n_seeds: int = 3  #: seeds when the notebook gives one (>= 5 in full)
    timing_replicates: int = 3

    def with_overrides(self, **kw: Any) -> Setting:
        """A copy with every given non-empty value replaced (0, "" and [] keep the default)."""
        return with_overrides(self, **kw)


#: the CPU rows: all fifteen, gradient baselines on the representation (GradDrop on the
#: parameters: one representation per language's batch, see ``table_rows``)
_CPU_ROWS = tuple(table_rows("rep", per_task_inputs=True))
SETTINGS: dict[str, Setting] = {
    "smoke": Setting(("sentiment",), ("EW", "RLW-normal"), 1, 4, 1e-4, 1e-8, 16, "", "mean",
                     n_per_task=24, n_seeds=1, timing_replicates=2),
    "teach": Setting(("sentiment",), ("EW", "RLW-normal", "RLW-bernoulli"), 2, 8, 1e-4, 1e-8,
                     32, "", "mean", n_per_task=120),
    "paper-cpu": Setting(("sentiment",), _CPU_ROWS, 2, 8, 1e-4, 1e-8, 32, "", "mean",
                         n_per_task=120),
    "full": Setting(("pi", "pos"), tuple(table_rows("auto", per_task_inputs=True)), 5, 32, 2e-5,
                    1e-8, 128,
                    "bert-base-multilingual-cased", "cls", n_seeds=5, timing_replicates=5),
}


def setting(profile: str, **overrides: Any) -> Setting:
    """The :class:`Setting` of ``profile`` with notebook overrides."""
    if profile not in SETTINGS:
        raise ValueError(f"unknown profile {profile!r}; choose one of {list(SETTINGS)}")
    s = SETTINGS[profile].with_overrides(**overrides)
    bad = [p for p in s.problems if p not in (*PROBLEMS, "sentiment")]
    if bad:
        raise ValueError(f"unknown problem(s) {bad}; choose from {list(PROBLEMS)} or "
                         "'sentiment' (the English stand-in)")
    return s


# --------------------------------------------------------------------------- data
def load_problem(problem: str, s: Setting, root: str | Path | None = None) -> MTLData:
    """Raw text of one problem: the stand-in (``"sentiment"``) or an XTREME problem prepared
    under ``root``; ``s.n_per_task`` caps the stand-in's domains / XTREME's training splits."""
    if problem == "sentiment":
        data = registry.load("sentiment", tasks=list(STAND_IN_DOMAINS),
                             n_per_task=s.n_per_task or None, output="text")
        data.stands_in_for = ("an XTREME problem's four languages (rlw.md §5.6, Tables 3 and "
                              "12), as a sentence-classification problem like PI and NLI")
        data.differences = ("English only: four domains of CrowdFlower sentiment tweets "
                            f"({', '.join(STAND_IN_DOMAINS)}) as the four 'languages'; binary "
                            "labels; a few hundred tweets per domain; the embedded MiniLM-L6 "
                            "instead of mBERT")
        return data
    data = registry.load(f"xtreme_{problem}", root=root or None)
    if s.n_per_task:
        for ds in data.train.values():
            n = min(len(ds), s.n_per_task)
            ds.items, ds.labels = ds.items[:n], ds.labels[:n]
            if ds.y is not None:
                ds.y = ds.y[:n]
    return data


def split_sizes(data: MTLData) -> pd.Series:
    """Per task, ``"train+val+test"`` example counts as Table 11 writes them (``6.9K``)."""
    def k(n: int) -> str:
        return f"{n / 1000:.1f}K" if n >= 1000 else str(n)

    sz = data.sizes()
    return pd.Series({t: "+".join(k(sz[s][t]) for s in ("train", "val", "test"))
                      for t in data.task_names})


def table11(root: str | Path | None = None,
            problems: Sequence[str] = ("ner", "pos", "nli", "pi")) -> pd.DataFrame:
    """``rlw.md`` Table 11 from the loader: the split sizes of every prepared problem
    (a problem that is not prepared under ``root`` is a column of ``"not prepared"``)."""
    cols = {}
    for p in problems:
        try:
            cols[p] = split_sizes(registry.load(f"xtreme_{p}", root=root or None))
        except (DataUnavailable, DataCorrupt):
            cols[p] = pd.Series(dtype=object)
    table = pd.DataFrame(cols).reindex(PAPER_TABLE11.index).fillna("-")
    for p, c in cols.items():
        if c.empty:
            table[p] = "not prepared"
    return table


def _items(ds) -> tuple[list, list]:
    if hasattr(ds, "items") and hasattr(ds, "labels"):
        return list(ds.items), list(ds.labels)
    pairs = [ds[i] for i in range(len(ds))]
    return [x for x, _ in pairs], [int(y) for _, y in pairs]


def tokenize_split(items: Sequence, labels: Sequence, tokenizer, max_length: int,
                   tagging: bool) -> tuple[Tensor, Tensor]:
    """``(x (N, 2, L) int32 = [token ids, token types], y)``; ``y`` is (N,) class ids or,
    for tagging, (N, L) tag ids on each word's first sub-word and -1 elsewhere."""
    kw = {"truncation": True, "max_length": max_length, "padding": "longest",
          "return_token_type_ids": True}
    if tagging:
        enc = tokenizer([list(t) for t in items], is_split_into_words=True, **kw)
    elif items and isinstance(items[0], (tuple, list)):
        enc = tokenizer([a for a, _ in items], [b for _, b in items], **kw)
    else:
        enc = tokenizer([str(t) for t in items], **kw)
    ids = torch.tensor(enc["input_ids"], dtype=torch.int32)
    types = torch.tensor(enc["token_type_ids"], dtype=torch.int32)
    x = torch.stack([ids, types], dim=1)
    if not tagging:
        return x, torch.tensor([int(v) for v in labels], dtype=torch.long)
    y = torch.full(ids.shape, -1, dtype=torch.long)
    for i, tags in enumerate(labels):
        prev = None
        for j, w in enumerate(enc.word_ids(i)):
            if w is not None and w != prev:
                y[i, j] = int(tags[w])
            prev = w
    return x, y


def tokenize(data: MTLData, tokenizer, max_length: int) -> MTLData:
    """``data`` with every split tokenised once (:func:`tokenize_split`)."""
    tagging = data.tasks[0].kind == "tagging"
    parts: dict[str, dict[str, ArrayDataset]] = {}
    for split in ("train", "val", "test"):
        parts[split] = {}
        for t, ds in data.split(split).items():
            items, labels = _items(ds)
            parts[split][t] = ArrayDataset(*tokenize_split(items, labels, tokenizer,
                                                           max_length, tagging))
    meta = {k: v for k, v in data.meta.items() if k != "collate"}
    return MTLData(data.name, list(data.tasks), True, parts["train"], parts["val"],
                   parts["test"], stands_in_for=data.stands_in_for,
                   differences=data.differences,
                   meta={**meta, "tokenizer": getattr(tokenizer, "name_or_path", ""),
                         "max_length": max_length})


# --------------------------------------------------------------------------- model
class PairEncoder(TransformerEncoder):
    """A :class:`~mtlkit.encoders.transformer.TransformerEncoder` on tokenised (B, 2, L)
    input (token ids, token types).  ``tokens=False``: one pooled vector per input (B, H);
    ``tokens=True``: one vector per token (B, L, H) for tagging heads.  Columns that are
    padding in the whole batch are not run through the transformer."""

    def __init__(self, name_or_path: str | Path | None = None, pooling: str = "cls",
                 max_length: int = 128, tokens: bool = False,
                 allow_download: bool = False) -> None:
        super().__init__(name_or_path, pooling=pooling, max_length=max_length,
                         allow_download=allow_download)
        self.tokens = tokens
        self.use_types = int(getattr(self.model.config, "type_vocab_size", 1) or 1) > 1

    def forward(self, x: Tensor | Sequence[str]) -> Tensor:
        if not isinstance(x, Tensor) or x.dim() != 3:
            return super().forward(x)
        x = x.to(next(self.model.parameters()).device).long()
        ids, types = x[:, 0], x[:, 1]
        mask = ids != self.pad_id
        n = max(1, int(mask.sum(1).max()))
        h = self.model(input_ids=ids[:, :n], attention_mask=mask[:, :n].long(),
                       token_type_ids=types[:, :n] if self.use_types else None
                       ).last_hidden_state
        if self.tokens:
            return F.pad(h, (0, 0, 0, ids.shape[1] - n))
        if self.pooling == "cls":
            return h[:, 0]
        m = mask[:, :n].unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp_min(1.0)


def model_factory(data: MTLData, s: Setting) -> tuple[Callable[[int], HPS], Any]:
    """``(make_model(seed), tokenizer)``: the shared transformer (loaded once, copied per
    run) and a linear output layer per task (language)."""
    tagging = data.tasks[0].kind == "tagging"
    base = PairEncoder(s.model or None, pooling=s.pooling, max_length=s.max_length,
                       tokens=tagging)
    outputs = {t.name: int(t.num_classes) for t in data.tasks}

    def make(seed: int) -> HPS:
        torch.manual_seed(seed)
        enc = copy.deepcopy(base)
        return HPS(enc, {t: nn.Linear(enc.out_features, n) for t, n in outputs.items()})

    return make, base.tokenizer
