"""Encoders and heads: TextCNN (GloVe), transformer encoders, ResNet / DeepLabV3+ heads."""

from mtlkit.encoders.text import GloVe, TextCNN, Vocab, load_glove, tokenize
from mtlkit.encoders.transformer import TransformerEncoder, load_pretrained
from mtlkit.encoders.vision import ASPPHead, LinearHead, SmallCNN, resnet_encoder

__all__ = ["ASPPHead", "GloVe", "LinearHead", "SmallCNN", "TextCNN", "TransformerEncoder",
           "Vocab", "load_glove", "load_pretrained", "resnet_encoder", "tokenize"]
