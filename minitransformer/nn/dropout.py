"""Dropout: in training, zero each element with probability p and scale the rest by
1/(1-p), so the expected value is unchanged; in eval mode, the identity."""

from __future__ import annotations

from .. import functional as F
from ..autograd.tensor import Tensor
from .module import Module


class Dropout(Module):
    def __init__(self, p: float = 0.1) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, training=self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
