"""``minitransformer.functional`` (imported as ``F``): stateless ops on tensors."""

from .activations import gelu, log_softmax, relu, sigmoid, softmax, tanh
from .attention import scaled_dot_product_attention, topk_attention
from .combine import as_mask, concat, masked_fill, stack, where
from .layers import dropout, embedding, layer_norm, linear
from .losses import cross_entropy

__all__ = [
    "as_mask",
    "concat",
    "cross_entropy",
    "dropout",
    "embedding",
    "gelu",
    "layer_norm",
    "linear",
    "log_softmax",
    "masked_fill",
    "relu",
    "scaled_dot_product_attention",
    "sigmoid",
    "softmax",
    "stack",
    "tanh",
    "topk_attention",
    "where",
]
