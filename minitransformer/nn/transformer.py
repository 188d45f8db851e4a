"""Encoder and decoder layers, their stacks, and the encoder-decoder Transformer.

Each sub-layer (self-attention, cross-attention, feed-forward) is wrapped in a
residual connection and a LayerNorm, in one of two orders:

    post-norm (the paper, default):   x = norm(x + dropout(sublayer(x)))
    pre-norm  (norm_first=True):      x = x + dropout(sublayer(norm(x)))

Pre-norm keeps an un-normalised residual path from input to output, which trains
more stably in deep stacks; it needs a final LayerNorm after the stack
(``Encoder.norm`` / ``Decoder.norm``), which post-norm stacks do not have.

    EncoderLayer:  x = block(x, self_attn(x, x, x, src_mask));   x = block(x, ffn(x))
    DecoderLayer:  y = block(y, self_attn(y, y, y, tgt_mask))           causal
                   y = block(y, cross_attn(y, memory, memory, memory_mask))
                   y = block(y, ffn(y))

Shapes: x (B, S, d_model), y (B, T, d_model), memory (B, S, d_model).
"""

from __future__ import annotations

import math
from typing import Any

from .. import backend
from ..autograd.tensor import Tensor
from .attention import MultiHeadAttention
from .dropout import Dropout
from .embedding import Embedding
from .feedforward import FeedForward
from .linear import Linear
from .masks import decoder_mask, padding_mask
from .module import Module
from .normalization import LayerNorm
from .positional import SinusoidalPositionalEncoding


class EncoderLayer(Module):
    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_ff: int,
        dropout: float = 0.1,
        activation: str = "relu",
        norm_first: bool = False,
        eps: float = 1e-5,
        top_k: int | None = None,
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout=dropout, top_k=top_k)
        self.feed_forward = FeedForward(d_model, d_ff, dropout=dropout, activation=activation)
        self.norm1 = LayerNorm(d_model, eps=eps)
        self.norm2 = LayerNorm(d_model, eps=eps)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)

    def forward(self, x: Tensor, mask: Any = None) -> Tensor:
        # x (B, S, d_model); mask broadcasts to (B, H, S, S)
        if self.norm_first:
            h = self.norm1(x)
            x = x + self.dropout1(self.self_attn(h, h, h, mask))
            x = x + self.dropout2(self.feed_forward(self.norm2(x)))
        else:
            x = self.norm1(x + self.dropout1(self.self_attn(x, x, x, mask)))
            x = self.norm2(x + self.dropout2(self.feed_forward(x)))
        return x

    def extra_repr(self) -> str:
        return f"norm_first={self.norm_first}"


class DecoderLayer(Module):
    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_ff: int,
        dropout: float = 0.1,
        activation: str = "relu",
        norm_first: bool = False,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout=dropout)
        self.cross_attn = MultiHeadAttention(d_model, num_heads, dropout=dropout)
        self.feed_forward = FeedForward(d_model, d_ff, dropout=dropout, activation=activation)
        self.norm1 = LayerNorm(d_model, eps=eps)
        self.norm2 = LayerNorm(d_model, eps=eps)
        self.norm3 = LayerNorm(d_model, eps=eps)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.dropout3 = Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        tgt_mask: Any = None,
        memory_mask: Any = None,
        cache: dict | None = None,
    ) -> Tensor:
        """x (B, T, d_model), memory (B, S, d_model) -> (B, T, d_model).

        ``cache`` (a dict, filled on the first call) holds this layer's past keys and
        values so that decoding one new token at a time costs O(T), not O(T^2).
        """
        self_cache = cross_cache = None
        if cache is not None:
            self_cache = cache.setdefault("self", {})
            cross_cache = cache.setdefault("cross", {})
        if self.norm_first:
            h = self.norm1(x)
            x = x + self.dropout1(self.self_attn(h, h, h, tgt_mask, cache=self_cache))
            h = self.norm2(x)
            x = x + self.dropout2(
                self.cross_attn(h, memory, memory, memory_mask, cache=cross_cache, static_kv=True)
            )
            x = x + self.dropout3(self.feed_forward(self.norm3(x)))
        else:
            x = self.norm1(x + self.dropout1(self.self_attn(x, x, x, tgt_mask, cache=self_cache)))
            x = self.norm2(
                x
                + self.dropout2(
                    self.cross_attn(
                        x, memory, memory, memory_mask, cache=cross_cache, static_kv=True
                    )
                )
            )
            x = self.norm3(x + self.dropout3(self.feed_forward(x)))
        return x

    def extra_repr(self) -> str:
        return f"norm_first={self.norm_first}"


class Encoder(Module):
    """N encoder layers; a final LayerNorm when ``norm_first`` (pre-norm), else none."""

    def __init__(
        self,
        num_layers: int,
        d_model: int,
        num_heads: int,
        d_ff: int,
        dropout: float = 0.1,
        activation: str = "relu",
        norm_first: bool = False,
        eps: float = 1e-5,
        top_k: int | None = None,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        self.layers = [
            EncoderLayer(d_model, num_heads, d_ff, dropout, activation, norm_first, eps, top_k)
            for _ in range(num_layers)
        ]
        self.norm = LayerNorm(d_model, eps=eps) if norm_first else None

    def forward(self, x: Tensor, mask: Any = None) -> Tensor:
        for layer in self.layers:
            x = layer(x, mask)
        return x if self.norm is None else self.norm(x)


class Decoder(Module):
    """N decoder layers; a final LayerNorm when ``norm_first`` (pre-norm), else none."""

    def __init__(
        self,
        num_layers: int,
        d_model: int,
        num_heads: int,
        d_ff: int,
        dropout: float = 0.1,
        activation: str = "relu",
        norm_first: bool = False,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        self.layers = [
            DecoderLayer(d_model, num_heads, d_ff, dropout, activation, norm_first, eps)
            for _ in range(num_layers)
        ]
        self.norm = LayerNorm(d_model, eps=eps) if norm_first else None

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        tgt_mask: Any = None,
        memory_mask: Any = None,
        cache: list | None = None,
    ) -> Tensor:
        """``cache``: a list with one dict per layer (see DecoderLayer), or None."""
        for i, layer in enumerate(self.layers):
            x = layer(x, memory, tgt_mask, memory_mask, cache=None if cache is None else cache[i])
        return x if self.norm is None else self.norm(x)


class Transformer(Module):
    """The encoder-decoder of "Attention Is All You Need".

        memory = Encoder(PE(sqrt(d) * E_src[src]))
        logits = Generator(Decoder(PE(sqrt(d) * E_tgt[tgt]), memory))

    ``forward(src_ids, tgt_ids)`` -> logits (B, T, tgt_vocab). Masks are built from
    ``pad_id``: source padding for the encoder and cross-attention, causal AND target
    padding for the decoder's self-attention.
    """

    def __init__(
        self,
        src_vocab: int,
        tgt_vocab: int,
        d_model: int = 512,
        num_heads: int = 8,
        num_encoder_layers: int = 6,
        num_decoder_layers: int = 6,
        d_ff: int = 2048,
        dropout: float = 0.1,
        max_len: int = 5000,
        norm_first: bool = False,
        pad_id: int = 0,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.d_model, self.pad_id = d_model, pad_id
        self.config = dict(
            src_vocab=src_vocab,
            tgt_vocab=tgt_vocab,
            d_model=d_model,
            num_heads=num_heads,
            num_encoder_layers=num_encoder_layers,
            num_decoder_layers=num_decoder_layers,
            d_ff=d_ff,
            dropout=dropout,
            max_len=max_len,
            norm_first=norm_first,
            pad_id=pad_id,
            activation=activation,
        )
        self.src_embed = Embedding(src_vocab, d_model, padding_idx=pad_id)
        self.tgt_embed = Embedding(tgt_vocab, d_model, padding_idx=pad_id)
        self.pos = SinusoidalPositionalEncoding(d_model, max_len, dropout)
        self.encoder = Encoder(
            num_encoder_layers, d_model, num_heads, d_ff, dropout, activation, norm_first
        )
        self.decoder = Decoder(
            num_decoder_layers, d_model, num_heads, d_ff, dropout, activation, norm_first
        )
        self.generator = Linear(d_model, tgt_vocab)

    def embed(self, embedding: Embedding, ids: Any, offset: int = 0) -> Tensor:
        # ids (B, L) -> (B, L, d_model), scaled by sqrt(d_model), plus positions
        return self.pos(embedding(ids) * math.sqrt(self.d_model), offset=offset)

    def encode(self, src_ids: Any) -> Tensor:
        """src_ids (B, S) -> memory (B, S, d_model)."""
        return self.encoder(self.embed(self.src_embed, src_ids), padding_mask(src_ids, self.pad_id))

    def decode(
        self,
        tgt_ids: Any,
        memory: Tensor,
        src_ids: Any,
        cache: list | None = None,
        offset: int = 0,
    ) -> Tensor:
        """tgt_ids (B, T), memory (B, S, d_model), src_ids (B, S) -> logits (B, T, tgt_vocab).

        For incremental decoding pass ``cache=model.new_cache()`` and feed one new token
        per call with ``offset`` = the number of tokens already decoded.
        """
        if cache is None:
            tgt_mask = decoder_mask(tgt_ids, self.pad_id)
        else:
            # new token i (at position offset + i) may attend to every cached key and to
            # the new tokens up to itself: the causal mask shifted by ``offset``
            n = tgt_ids.shape[1]
            xp = backend.array_module(tgt_ids.data if isinstance(tgt_ids, Tensor) else tgt_ids)
            tgt_mask = xp.tril(xp.ones((n, offset + n), dtype=bool), k=offset)[None, None]
        y = self.decoder(
            self.embed(self.tgt_embed, tgt_ids, offset=offset),
            memory,
            tgt_mask,
            padding_mask(src_ids, self.pad_id),
            cache=cache,
        )
        return self.generator(y)

    def new_cache(self) -> list[dict]:
        """An empty key/value cache: one dict per decoder layer."""
        return [{} for _ in self.decoder.layers]

    def forward(self, src_ids: Any, tgt_ids: Any) -> Tensor:
        return self.decode(tgt_ids, self.encode(src_ids), src_ids)
