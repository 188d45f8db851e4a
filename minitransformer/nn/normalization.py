"""Layer normalisation over the last axis (Ba, Kiros & Hinton 2016):

    y = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias

with the biased variance var(x) = mean((x - mean(x))^2), per position. This is the
standard formula (PyTorch's ``nn.LayerNorm``): eps goes *inside* the square root, and
the variance is not Bessel-corrected (some tutorials use std with n-1 and add eps to
the std; that is a different function).
"""

from __future__ import annotations

from .. import functional as F
from ..autograd.tensor import Tensor
from . import init
from .module import Module, Parameter


class LayerNorm(Module):
    def __init__(self, d: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.d, self.eps = d, eps
        self.weight = Parameter(init.ones((d,)))  # (d,)
        self.bias = Parameter(init.zeros((d,)))  # (d,)

    def forward(self, x: Tensor) -> Tensor:
        # x (..., d) -> (..., d)
        if x.shape[-1:] != (self.d,):
            raise ValueError(
                f"LayerNorm({self.d}) got input of shape {x.shape}: last axis must be {self.d}"
            )
        return F.layer_norm(x, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.d}, eps={self.eps}"
