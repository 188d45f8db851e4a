"""Position-wise feed-forward network:

    FFN(x) = act(x W1 + b1) W2 + b2,    act = ReLU (the paper) or GELU (BERT)

applied to each position separately: x (..., d_model) -> (..., d_ff) -> (..., d_model).
Dropout, when set, acts on the hidden layer (as in PyTorch's TransformerEncoderLayer).
"""

from __future__ import annotations

from .. import functional as F
from ..autograd.tensor import Tensor
from .dropout import Dropout
from .linear import Linear
from .module import Module

ACTIVATIONS = ("relu", "gelu", "gelu_tanh")


def activation_fn(name: str):
    if name == "relu":
        return F.relu
    if name == "gelu":
        return F.gelu
    if name == "gelu_tanh":
        return lambda x: F.gelu(x, approximate="tanh")
    raise ValueError(f"unknown activation {name!r}; expected one of {ACTIVATIONS}")


class FeedForward(Module):
    def __init__(
        self, d_model: int, d_ff: int, dropout: float = 0.0, activation: str = "relu"
    ) -> None:
        super().__init__()
        self.act = activation_fn(activation)
        self.activation = activation
        self.linear1 = Linear(d_model, d_ff)  # W1 (d_model, d_ff)
        self.linear2 = Linear(d_ff, d_model)  # W2 (d_ff, d_model)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        h = self.act(self.linear1(x))  # (..., d_ff)
        return self.linear2(self.dropout(h))  # (..., d_model)

    def extra_repr(self) -> str:
        return f"activation={self.activation!r}"
