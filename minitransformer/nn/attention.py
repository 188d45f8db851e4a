"""Multi-head attention (Vaswani et al. 2017, section 3.2.2):

    head_h = Attention(Q W_q^h, K W_k^h, V W_v^h)
    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V
    MultiHead(Q, K, V) = Concat(head_1, ..., head_H) W_o

with d_k = d_model / H. The H projections of size d_k are computed as one
(d_model, d_model) projection and split into heads by a reshape:

    query (B, Lq, d_model) -> q_proj -> (B, Lq, H, d_k) -> (B, H, Lq, d_k)

Parameters: 4 weight matrices of d_model^2 and 4 biases of d_model: 4d^2 + 4d.

With ``top_k``, each query attends only to its top_k highest-scoring keys
(``F.topk_attention``, a sparse Numba kernel). ``cache`` enables incremental decoding:
the keys and values of earlier steps are kept and only the new query is projected.
"""

from __future__ import annotations

from typing import Any

from .. import functional as F
from ..autograd.tensor import Tensor
from .dropout import Dropout
from .linear import Linear
from .module import Module


class MultiHeadAttention(Module):
    def __init__(
        self,
        d_model: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        top_k: int | None = None,
    ) -> None:
        super().__init__()
        if num_heads < 1 or d_model % num_heads != 0:
            raise ValueError(
                f"d_model={d_model} is not divisible by num_heads={num_heads}: "
                "each head needs d_model / num_heads dimensions"
            )
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be a positive integer or None, got {top_k}")
        self.d_model, self.num_heads, self.d_head = d_model, num_heads, d_model // num_heads
        self.top_k = top_k
        self.q_proj = Linear(d_model, d_model, bias=bias)
        self.k_proj = Linear(d_model, d_model, bias=bias)
        self.v_proj = Linear(d_model, d_model, bias=bias)
        self.out_proj = Linear(d_model, d_model, bias=bias)
        self.attn_dropout = Dropout(dropout)
        self.last_weights: Tensor | None = None

    def _split_heads(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        return x.reshape(b, n, self.num_heads, self.d_head).transpose(0, 2, 1, 3)  # (B, H, n, d_k)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        mask: Any = None,
        cache: dict | None = None,
        static_kv: bool = False,
    ) -> Tensor:
        """query (B, Lq, d_model), key/value (B, Lk, d_model) -> (B, Lq, d_model).

        ``mask`` broadcasts to (B, H, Lq, Lk), True = may attend. With a ``cache`` dict,
        new keys/values are appended to the cached ones (self-attention while decoding);
        with ``static_kv=True`` they are computed once and reused (cross-attention).
        """
        for name, t in (("query", query), ("key", key), ("value", value)):
            if t.ndim != 3 or t.shape[-1] != self.d_model:
                raise ValueError(
                    f"MultiHeadAttention(d_model={self.d_model}): {name} must be "
                    f"(batch, seq, {self.d_model}), got {t.shape}"
                )
        if key.shape[:2] != value.shape[:2]:
            raise ValueError(
                f"key {key.shape} and value {value.shape} must have the same batch and length"
            )
        if query.shape[0] != key.shape[0]:
            raise ValueError(f"query batch {query.shape[0]} != key batch {key.shape[0]}")

        q = self._split_heads(self.q_proj(query))  # (B, H, Lq, d_k)
        if cache is not None and static_kv and "k" in cache:
            k, v = cache["k"], cache["v"]
        else:
            k = self._split_heads(self.k_proj(key))  # (B, H, Lk, d_k)
            v = self._split_heads(self.v_proj(value))  # (B, H, Lk, d_k)
            if cache is not None:
                if not static_kv and "k" in cache:
                    k = F.concat([cache["k"], k], axis=2)
                    v = F.concat([cache["v"], v], axis=2)
                cache["k"], cache["v"] = k, v

        if self.top_k is None:
            out, weights = F.scaled_dot_product_attention(
                q, k, v, mask=mask, dropout_p=self.attn_dropout.p, training=self.training
            )
            self.last_weights = weights.detach()  # (B, H, Lq, Lk)
        else:
            out, weights = F.topk_attention(q, k, v, self.top_k, mask=mask)
            self.last_weights = weights
        b, _, lq, _ = out.shape
        out = out.transpose(0, 2, 1, 3).reshape(
            b, lq, self.d_model
        )  # concat heads: (B, Lq, d_model)
        return self.out_proj(out)

    def extra_repr(self) -> str:
        extra = f", top_k={self.top_k}" if self.top_k is not None else ""
        return f"d_model={self.d_model}, num_heads={self.num_heads}{extra}"
