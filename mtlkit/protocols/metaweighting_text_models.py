"""The models of the MetaWeighting paper's text experiments (``metaweighting.txt`` §6.3,
App. B–C), and the rule that a method trains the architecture it is defined on.

* Encoders: TextCNN (kernels 3/5/7, 100 filters in App. B) over GloVe vectors read from a
  path (the paper's 300-d table) or the embedded 50-d table; a pretrained BERT-style
  transformer (App. C: BERT-base) by name or local path, fine-tuned whole
  (``train_layers=0``), or, for CPU budgets, its top ``train_layers`` layers fine-tuned over
  the cached hidden states of the frozen layers below (:class:`TopLayers`).
* Architectures: hard parameter sharing (:class:`~mtlkit.arch.hps.HPS`, §6.3) for every
  method but AdvMTL and TchebycheffAdv, which are defined on the shared-private model with
  a task discriminator (:class:`~mtlkit.arch.shared_private.SharedPrivate`, Liu et al.
  2017).  :func:`required_arch` reads a strategy's ``arch`` attribute and
  :func:`check_model` refuses a model of another architecture, so a method/architecture
  mismatch cannot train silently.

Used by ``notebooks/50_benchmark_text_classification.ipynb``, 52, 53 and 54.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mtlkit import weighting as W
from mtlkit.arch.hps import HPS
from mtlkit.arch.shared_private import SharedPrivate
from mtlkit.data.base import MTLData
from mtlkit.data.common import ArrayDataset
from mtlkit.encoders.text import GloVe, TextCNN, load_glove

ARCHS = ("HPS", "SharedPrivate")
EncoderFactory = Callable[[int], nn.Module]


# ------------------------------------------------------------ method -> architecture
def required_arch(method: Any) -> str:
    """The architecture ``method`` (a spec string or an ``experiments.Method``) is defined
    on: its strategy's ``arch`` attribute (AdvMTL, TchebycheffAdv: ``"SharedPrivate"``),
    else ``"HPS"`` (§6.3: hard parameter sharing)."""
    from mtlkit.experiments import parse_method

    m = parse_method(method) if isinstance(method, str) else method
    arch = getattr(type(W.get(m.name)), "arch", None) or "HPS"
    if arch not in ARCHS:
        raise ValueError(f"{m.name} is defined on {arch!r}, which this protocol cannot build; "
                         f"it builds {ARCHS}")
    return arch


def check_model(method: Any, model: nn.Module) -> None:
    """Raise ``ValueError`` unless ``model`` is the architecture ``method`` is defined on
    (both ways: AdvMTL on HPS would train EW without its adversary; EW on SharedPrivate
    would train AdvMTL under another name)."""
    arch = required_arch(method)
    name = getattr(method, "label", method)
    is_sp = isinstance(model, SharedPrivate)
    if arch == "SharedPrivate" and not is_sp:
        raise ValueError(f"{name} is defined on the shared-private model with a task "
                         f"discriminator (mtlkit.arch.SharedPrivate), got "
                         f"{type(model).__name__}: build it with model_factory('SharedPrivate',"
                         " ...), or compare Tchebycheff (no adversary) on HPS as App. C does")
    if arch == "HPS" and is_sp:
        raise ValueError(f"{name} is defined on hard parameter sharing (HPS), got SharedPrivate, "
                         "whose adversarial terms would train it as AdvMTL under another name")


# ------------------------------------------------------------ TextCNN over GloVe
def glove_vectors(path: str | Path | None, dim: int) -> GloVe:
    """GloVe from ``path`` (a ``word v_1 ... v_dim`` text file, App. B: 300-d), or the
    embedded 50-d table when ``path`` is empty or ``"embedded"``."""
    if not path or str(path) == "embedded":
        return load_glove(None)
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"GLOVE_PATH={str(path)!r} is not a file. App. B uses pretrained 300-d GloVe: "
            "download glove.840B.300d.zip or glove.6B.zip from https://nlp.stanford.edu/"
            "projects/glove/, unzip it and pass the .txt file with GLOVE_DIM=300; or pass "
            "GLOVE_PATH='embedded' for the embedded 50-d table")
    return load_glove(path, dim=dim)


def textcnn_factory(vocab, glove: GloVe, num_filters: int = 100,
                    kernel_sizes: tuple[int, ...] = (3, 5, 7), dropout: float = 0.5
                    ) -> EncoderFactory:
    """``seed -> TextCNN`` whose embedding rows are ``glove``'s vectors of ``vocab``'s words
    (unknown words drawn with ``seed``); App. B: kernels 3, 5, 7."""
    def make(seed: int) -> TextCNN:
        torch.manual_seed(seed)
        return TextCNN.from_glove(vocab, glove, seed=seed, num_filters=num_filters,
                                  kernel_sizes=kernel_sizes, dropout=dropout)
    return make


# ------------------------------------------------------------ architectures
def model_factory(arch: str, data: MTLData, encoder: EncoderFactory,
                  adv_weight: float = 0.05, orth_weight: float = 0.01
                  ) -> Callable[[int], nn.Module]:
    """``seed -> model``: ``HPS`` (shared encoder, a linear softmax head per task, §6.3) or
    ``SharedPrivate`` (shared and one private encoder per task, heads on their
    concatenation, a linear task discriminator behind a gradient reversal layer; Liu et al.
    2017 weights 0.05 and 0.01).  ``encoder(seed)`` builds one fresh encoder with an
    ``out_features`` attribute."""
    if arch not in ARCHS:
        raise ValueError(f"arch={arch!r}; choose one of {ARCHS}")
    tasks = {s.name: s.num_classes for s in data.tasks}

    def make(seed: int) -> nn.Module:
        shared = encoder(seed)
        d = int(shared.out_features)
        if arch == "HPS":
            torch.manual_seed(seed)
            return HPS(shared, {t: nn.Linear(d, k) for t, k in tasks.items()})
        private = {t: encoder(seed * 1_000 + i + 1) for i, t in enumerate(tasks)}
        torch.manual_seed(seed)
        heads = {t: nn.Linear(d + int(private[t].out_features), k) for t, k in tasks.items()}
        return SharedPrivate(shared, private, heads, shared_dim=d, adv_weight=adv_weight,
                             orth_weight=orth_weight)
    return make


def checked_factory(method: Any, factories: Mapping[str, Callable[[int], nn.Module]]
                    ) -> Callable[[int], nn.Module]:
    """The factory of the architecture ``method`` is defined on, wrapped so that every
    model it builds passes :func:`check_model`."""
    arch = required_arch(method)
    if arch not in factories:
        raise ValueError(f"{getattr(method, 'label', method)} needs a {arch} model, and no "
                         f"{arch} factory was given (have {sorted(factories)})")

    def make(seed: int) -> nn.Module:
        model = factories[arch](seed)
        check_model(method, model)
        return model
    return make


# ------------------------------------------------------------ transformer (App. C)
def cls_layer(layer: nn.Module, h: Tensor, ext_mask: Tensor) -> Tensor:
    """A BERT layer's output at the first ([CLS]) position only, (B, H): its query attends
    to every position's keys and values, then the attention output and feed-forward blocks
    run for that one position.  The same numbers as ``layer(h)[0][:, 0]`` at a fraction of
    the cost (the other positions' outputs are never computed)."""
    att = layer.attention.self
    b, n, d = h.shape
    heads, size = att.num_attention_heads, att.attention_head_size
    q = att.query(h[:, :1]).view(b, 1, heads, size).transpose(1, 2)
    k = att.key(h).view(b, n, heads, size).transpose(1, 2)
    v = att.value(h).view(b, n, heads, size).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / math.sqrt(size) + ext_mask
    ctx = (att.dropout(scores.softmax(dim=-1)) @ v).transpose(1, 2).reshape(b, 1, d)
    a = layer.attention.output(ctx, h[:, :1])
    return layer.output(layer.intermediate(a), a)[:, 0]


class TopLayers(nn.Module):
    """The top ``k`` layers of a BERT-style encoder, over cached hidden states of the
    frozen layers below; ``r`` = the last layer's [CLS] state (as
    :class:`~mtlkit.encoders.transformer.TransformerEncoder` with ``pooling='cls'``), which
    :func:`cls_layer` computes for that position only.

    Input: a packed (B, L, H + 1) tensor, the hidden states after layer ``n - k`` and, in
    the last channel, the attention mask (1 = token, 0 = padding), so that one tensor goes
    in, as the gradient engine expects.  Equal to the full model's [CLS] state when the
    bottom layers run in eval mode (checked in ``tests/test_protocols_text.py``).
    """

    def __init__(self, bert: nn.Module, k: int) -> None:
        super().__init__()
        layers = bert.encoder.layer
        if not 1 <= k <= len(layers):
            raise ValueError(f"train_layers={k}: the model has {len(layers)} layers")
        if getattr(bert.config, "position_embedding_type", "absolute") != "absolute":
            raise ValueError("TopLayers supports absolute position embeddings only")
        self.layers = nn.ModuleList(copy.deepcopy(m) for m in layers[len(layers) - k:])
        self.out_features = int(bert.config.hidden_size)

    def forward(self, packed: Tensor) -> Tensor:
        h, mask = packed[..., :-1], packed[..., -1]
        ext = (1.0 - mask[:, None, None, :]) * torch.finfo(h.dtype).min
        for layer in self.layers[:-1]:
            out = layer(h, attention_mask=ext)
            h = out[0] if isinstance(out, tuple) else out
        return cls_layer(self.layers[-1], h, ext)


@torch.no_grad()
def bottom_states(bert: nn.Module, tokenizer: Any, texts: list[str], below: int,
                  max_length: int, batch_size: int = 64) -> Tensor:
    """Packed (N, max_length, H + 1) inputs of :class:`TopLayers`: the hidden states after
    layer ``below`` (0 = the embeddings) in eval mode, and the attention mask."""
    bert.eval()
    parts = []
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(texts[i:i + batch_size], padding="max_length", truncation=True,
                        max_length=max_length, return_tensors="pt")
        out = bert(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                   output_hidden_states=True)
        h = out.hidden_states[below]
        parts.append(torch.cat([h, enc["attention_mask"].to(h.dtype)[..., None]], dim=-1))
    return torch.cat(parts) if parts else torch.zeros(0, max_length, 1)


def cached_transformer(data: MTLData, name_or_path: str | None, train_layers: int,
                       max_length: int) -> tuple[MTLData, EncoderFactory]:
    """(data whose inputs are the packed states of the frozen bottom layers, ``seed ->
    TopLayers``).  ``data`` must yield raw texts (loaders' ``output="text"``)."""
    from mtlkit.encoders.transformer import load_pretrained

    bert, tok = load_pretrained(name_or_path)
    n = len(bert.encoder.layer)
    if not 1 <= train_layers <= n:
        raise ValueError(f"TRAIN_LAYERS={train_layers}: the model has {n} layers (0 fine-tunes "
                         "all of them on raw text)")
    every = [x for split in (data.train, data.val, data.test) for ds in split.values()
             for x in _texts(ds)]
    longest = max((len(ids) for ids in tok(every, truncation=True,
                                           max_length=max_length)["input_ids"]), default=2)
    max_length = min(max_length, longest)  # pad to the longest text, not beyond

    def convert(split: Mapping[str, Any]) -> dict[str, ArrayDataset]:
        out = {}
        for t, ds in split.items():
            texts = _texts(ds)
            y = getattr(ds, "y", None)
            y = torch.as_tensor(y if y is not None else [int(ds[i][1]) for i in range(len(ds))])
            out[t] = ArrayDataset(bottom_states(bert, tok, texts, n - train_layers,
                                                max_length), y)
        return out

    cached = replace(data, train=convert(data.train), val=convert(data.val),
                     test=convert(data.test))

    def make(seed: int) -> TopLayers:
        torch.manual_seed(seed)
        return TopLayers(bert, train_layers)
    return cached, make


def _texts(ds: Any) -> list[str]:
    texts = getattr(ds, "texts", None)
    return list(texts) if texts is not None else [ds[i][0] for i in range(len(ds))]


def transformer_factory(name_or_path: str | None, max_length: int) -> EncoderFactory:
    """``seed -> TransformerEncoder`` fine-tuned whole (App. C: BERT-base, max length 256)."""
    from mtlkit.encoders.transformer import TransformerEncoder

    def make(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return TransformerEncoder(name_or_path, pooling="cls", max_length=max_length)
    return make


def textcnn_factories(data: MTLData, glove: GloVe, num_filters: int = 100,
                      kernel_sizes: tuple[int, ...] = (3, 5, 7), dropout: float = 0.5,
                      adv_weight: float = 0.05, orth_weight: float = 0.01
                      ) -> dict[str, Callable[[int], nn.Module]]:
    """``{arch: seed -> model}`` for both architectures over one TextCNN recipe (App. B);
    the shared-private model with the adversarial and orthogonality weights given."""
    enc = textcnn_factory(data.meta["vocab"], glove, num_filters, kernel_sizes, dropout)
    return {"HPS": model_factory("HPS", data, enc),
            "SharedPrivate": model_factory("SharedPrivate", data, enc, adv_weight, orth_weight)}


def transformer_factories(data: MTLData, model: str, train_layers: int, max_length: int
                          ) -> tuple[MTLData, dict[str, Callable[[int], nn.Module]]]:
    """``(data to train on, {"HPS": seed -> model})`` over a pretrained transformer (App. C:
    hard parameter sharing only; AdvMTL and TchebycheffAdv are "not available for BERT", so
    there is no SharedPrivate factory and :func:`checked_factory` refuses them).
    ``train_layers=0`` fine-tunes every layer on the raw texts of ``data``; ``k > 0`` the
    top k over cached states of the frozen layers below (:func:`cached_transformer`)."""
    name = None if model in ("", "minilm") else model
    if train_layers == 0:
        return data, {"HPS": model_factory("HPS", data, transformer_factory(name, max_length))}
    cached, enc = cached_transformer(data, name, train_layers, max_length)
    return cached, {"HPS": model_factory("HPS", cached, enc)}


def relative_orth_weight(data: MTLData, encoder: EncoderFactory, relative: float = 0.01,
                         batch_size: int = 32, seed: int = 0) -> float:
    """The orthogonality weight gamma at which gamma * sum_t ||S_t^T P_t||_F^2 equals
    ``relative`` times the mean task loss at initialisation, on one training batch per task.

    Liu et al. (2017) set gamma = 0.01 for LSTM states, which are bounded by tanh; max-pooled
    ReLU features of a TextCNN are not, and on them the same gamma makes the penalty ~1e4
    times the task loss, which then drives training (accuracy collapses, measured in
    notebook 50).  Read as "the penalty at 1% of the task loss", gamma carries over."""
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    model = model_factory("SharedPrivate", data, encoder, adv_weight=0.0, orth_weight=1.0)(seed)
    model.eval()  # no dropout: the same weight for the same data and seed
    losses = []
    with torch.no_grad():
        for t in model.tasks:
            x, y = next(iter(DataLoader(data.train[t], batch_size=batch_size, shuffle=False)))
            losses.append(float(F.cross_entropy(model(x, [t])[t], y)))
        orth = model.auxiliary_loss()
    if orth is None or not float(orth) > 0:
        raise ValueError("the orthogonality term is zero at initialisation; set the weight")
    return relative * (sum(losses) / len(losses)) / float(orth)
