"""Sinusoidal positional encoding (Vaswani et al. 2017, section 3.5):

    PE[pos, 2i]   = sin(pos / 10000^(2i / d_model))
    PE[pos, 2i+1] = cos(pos / 10000^(2i / d_model))

Dimension j uses the frequency of its pair index i = j // 2, so sin and cos of the
same frequency sit side by side (and an odd d_model simply ends on a sine). A common
mistake is to use the raw index j in the exponent (10000^(j/d)): the cosine channels
then get a different frequency from their sine partner, and PE[pos + k] is no
longer a rotation of PE[pos].

``forward(x)`` adds PE[:seq] to x (batch, seq, d_model), then applies dropout.
"""

from __future__ import annotations

import math

from .. import backend
from ..autograd.tensor import Tensor
from .dropout import Dropout
from .module import Module


def sinusoidal_table(max_len: int, d_model: int, dtype=None):
    """The (max_len, d_model) PE table, computed on the CPU."""
    xp = backend.module_for("cpu")
    pos = xp.arange(max_len, dtype=xp.float64)[:, None]  # (max_len, 1)
    i = xp.arange(d_model) // 2  # pair index of each dimension
    angle = pos / xp.power(10000.0, 2.0 * i / d_model)[None, :]  # (max_len, d_model)
    table = xp.where(xp.arange(d_model) % 2 == 0, xp.sin(angle), xp.cos(angle))
    return table.astype(dtype or backend.get_default_dtype())


class SinusoidalPositionalEncoding(Module):
    def __init__(self, d_model: int, max_len: int = 5000, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model < 1 or max_len < 1:
            raise ValueError(f"need positive d_model and max_len, got {d_model}, {max_len}")
        self.d_model, self.max_len = d_model, max_len
        # kept in float64 so a float64 model adds the exact table; forward casts the slice
        self.register_buffer("pe", sinusoidal_table(max_len, d_model, dtype="float64"))
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        """x (B, L, d_model) + PE[offset : offset + L]; ``offset`` is used while decoding."""
        if x.ndim != 3 or x.shape[-1] != self.d_model:
            raise ValueError(
                f"positional encoding expects (batch, seq, {self.d_model}), got {x.shape}"
            )
        n = x.shape[1]
        if offset + n > self.max_len:
            raise ValueError(
                f"sequence of length {offset + n} is longer than max_len={self.max_len} "
                "of the positional encoding; build the model with a larger max_len"
            )
        pe = self.pe[offset : offset + n]
        if pe.dtype != x.dtype:
            pe = pe.astype(x.dtype)
        return self.dropout(x + Tensor(pe))

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, max_len={self.max_len}"


def scale_embedding(e: Tensor, d_model: int) -> Tensor:
    """Embeddings are multiplied by sqrt(d_model) before the positional encoding is added."""
    return e * math.sqrt(d_model)
