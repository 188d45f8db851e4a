"""Embedding: a lookup table, e = W[id], W of shape (num_embeddings, embedding_dim).

Its gradient is a scatter-add: a token that appears twice in a batch gets the sum
of both gradients in its row. With ``padding_idx``, that row's gradient is zero so
the padding vector never changes.
"""

from __future__ import annotations

import math
from typing import Any

from .. import functional as F
from ..autograd.tensor import Tensor
from . import init
from .module import Module, Parameter


class Embedding(Module):
    def __init__(
        self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None
    ) -> None:
        super().__init__()
        if num_embeddings < 1 or embedding_dim < 1:
            raise ValueError(
                f"Embedding needs positive sizes, got ({num_embeddings}, {embedding_dim})"
            )
        if padding_idx is not None and not 0 <= padding_idx < num_embeddings:
            raise ValueError(
                f"padding_idx {padding_idx} is outside the table of {num_embeddings} rows"
            )
        self.num_embeddings, self.embedding_dim, self.padding_idx = (
            num_embeddings,
            embedding_dim,
            padding_idx,
        )
        weight = init.normal((num_embeddings, embedding_dim), std=1.0 / math.sqrt(embedding_dim))
        if padding_idx is not None:
            weight[padding_idx] = 0
        self.weight = Parameter(weight)  # (num_embeddings, embedding_dim)

    def forward(self, ids: Any) -> Tensor:
        # ids (...) integers -> (..., embedding_dim)
        try:
            return F.embedding(ids, self.weight, padding_idx=self.padding_idx)
        except IndexError as exc:
            raise ValueError(
                f"{exc} (Embedding({self.num_embeddings}, {self.embedding_dim}))"
            ) from None

    def extra_repr(self) -> str:
        pad = f", padding_idx={self.padding_idx}" if self.padding_idx is not None else ""
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}"
