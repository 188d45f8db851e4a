"""``minitransformer.nn``: modules (layers) with parameters, one file per concept."""

from . import init
from .attention import MultiHeadAttention
from .classifier import TransformerClassifier
from .dropout import Dropout
from .embedding import Embedding
from .feedforward import FeedForward
from .linear import Linear
from .masks import causal_mask, decoder_mask, lengths_mask, padding_mask
from .module import Module, ModuleList, Parameter
from .normalization import LayerNorm
from .positional import SinusoidalPositionalEncoding, sinusoidal_table
from .transformer import Decoder, DecoderLayer, Encoder, EncoderLayer, Transformer

__all__ = [
    "Decoder",
    "DecoderLayer",
    "Dropout",
    "Embedding",
    "Encoder",
    "EncoderLayer",
    "FeedForward",
    "LayerNorm",
    "Linear",
    "Module",
    "ModuleList",
    "MultiHeadAttention",
    "Parameter",
    "SinusoidalPositionalEncoding",
    "Transformer",
    "TransformerClassifier",
    "causal_mask",
    "decoder_mask",
    "init",
    "lengths_mask",
    "padding_mask",
    "sinusoidal_table",
]
