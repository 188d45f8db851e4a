"""Linear layer:  y = x @ W + b,  W of shape (in_features, out_features).

The weight is stored the way the formula is written on the board (input dimension
first), the transpose of PyTorch's ``nn.Linear.weight``; the converters transpose.
"""

from __future__ import annotations

from .. import functional as F
from ..autograd.tensor import Tensor
from . import init
from .module import Module, Parameter


class Linear(Module):
    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(f"Linear needs positive sizes, got ({in_features}, {out_features})")
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(init.xavier_uniform(in_features, out_features))  # (in, out)
        self.bias = Parameter(init.zeros((out_features,))) if bias else None  # (out,)

    def forward(self, x: Tensor) -> Tensor:
        # x (..., in) -> (..., out)
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        bias = self.bias is not None
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={bias}"
