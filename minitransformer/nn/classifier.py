"""A Transformer encoder that classifies a sequence:

h      = Encoder(PE(sqrt(d) * E[ids]), padding mask)          (B, L, d_model)
pooled = h[:, 0]                            pooling="cls"  (the [CLS] token)
       = sum_j m_j h_j / sum_j m_j          pooling="mean" (real tokens only)
logits = pooled W + b                                         (B, num_classes)
"""

from __future__ import annotations

import math
from typing import Any

from .. import backend
from ..autograd.tensor import Tensor
from .embedding import Embedding
from .linear import Linear
from .module import Module
from .positional import SinusoidalPositionalEncoding
from .transformer import Encoder

POOLINGS = ("cls", "mean")


class TransformerClassifier(Module):
    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        d_model: int = 128,
        num_heads: int = 4,
        num_layers: int = 2,
        d_ff: int = 512,
        dropout: float = 0.1,
        max_len: int = 512,
        pooling: str = "cls",
        pad_id: int = 0,
        norm_first: bool = False,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.d_model, self.pooling, self.pad_id = d_model, pooling, pad_id
        self.config = dict(
            vocab_size=vocab_size,
            num_classes=num_classes,
            d_model=d_model,
            num_heads=num_heads,
            num_layers=num_layers,
            d_ff=d_ff,
            dropout=dropout,
            max_len=max_len,
            pooling=pooling,
            pad_id=pad_id,
            norm_first=norm_first,
            activation=activation,
        )
        self.embed = Embedding(vocab_size, d_model, padding_idx=pad_id)
        self.pos = SinusoidalPositionalEncoding(d_model, max_len, dropout)
        self.encoder = Encoder(
            num_layers, d_model, num_heads, d_ff, dropout, activation, norm_first
        )
        self.head = Linear(d_model, num_classes)

    def forward(self, ids: Any, attention_mask: Any = None) -> Tensor:
        """ids (B, L) integers, attention_mask (B, L) with 1 = real token -> logits (B, C)."""
        ids_data = ids.data if isinstance(ids, Tensor) else backend.as_array(ids)
        if attention_mask is None:
            real = ids_data != self.pad_id
        else:
            real = (
                attention_mask.data
                if isinstance(attention_mask, Tensor)
                else backend.as_array(attention_mask)
            )
            if tuple(real.shape) != tuple(ids_data.shape):
                raise ValueError(
                    f"attention_mask shape {tuple(real.shape)} != ids shape {tuple(ids_data.shape)}"
                )
            real = real != 0
        x = self.pos(self.embed(ids_data) * math.sqrt(self.d_model))
        h = self.encoder(x, real[:, None, None, :])  # (B, L, d_model)
        if self.pooling == "cls":
            pooled = h[:, 0]
        else:
            m = Tensor(real[:, :, None].astype(h.dtype))  # (B, L, 1)
            count = m.sum(axis=1)  # (B, 1)
            pooled = (h * m).sum(axis=1) / (count + (count.data == 0))  # an empty row pools to 0
        self.last_pooled = pooled.detach()
        return self.head(pooled)
