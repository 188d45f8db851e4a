"""Attention masks. One rule everywhere: **True means "may attend"**.

A mask broadcasts to the attention scores' shape (batch, heads, q_len, k_len):

    padding_mask(ids, pad_id)   (B, 1, 1, L)   key j is a real token
    causal_mask(L)              (1, 1, L, L)   j <= i: no peeking at later tokens
    decoder_mask(ids, pad_id)   (B, 1, L, L)   both: causal AND key is real

Drawn for L = 4 with the last token padding (rows: queries, columns: keys):

    padding        causal         decoder
    1 1 1 0        1 0 0 0        1 0 0 0
    1 1 1 0        1 1 0 0        1 1 0 0
    1 1 1 0        1 1 1 0        1 1 1 0
    1 1 1 0        1 1 1 1        1 1 1 0
"""

from __future__ import annotations

from typing import Any

from .. import backend
from ..autograd.tensor import Tensor

__all__ = ["padding_mask", "lengths_mask", "causal_mask", "decoder_mask"]


def _ids(ids: Any) -> Any:
    data = ids.data if isinstance(ids, Tensor) else backend.as_array(ids)
    if data.ndim != 2:
        raise ValueError(f"token ids must be (batch, seq), got shape {tuple(data.shape)}")
    return data


def padding_mask(ids: Any, pad_id: int = 0) -> Any:
    """(B, 1, 1, L) boolean: True where the key is a real token (not ``pad_id``)."""
    data = _ids(ids)
    return (data != pad_id)[:, None, None, :]


def lengths_mask(lengths: Any, max_len: int | None = None, device: str = "cpu") -> Any:
    """(B, 1, 1, L) boolean from sequence lengths: key j is real when j < length."""
    xp = backend.module_for(device)
    lengths = xp.asarray(lengths)
    if lengths.ndim != 1:
        raise ValueError(f"lengths must be 1-D (batch,), got shape {tuple(lengths.shape)}")
    n = int(lengths.max()) if max_len is None else max_len
    if lengths.size and (int(lengths.min()) < 0 or int(lengths.max()) > n):
        raise ValueError(
            f"lengths must lie in [0, {n}], got min {int(lengths.min())}, max {int(lengths.max())}"
        )
    return (xp.arange(n)[None, :] < lengths[:, None])[:, None, None, :]


def causal_mask(length: int, device: str = "cpu") -> Any:
    """(1, 1, L, L) boolean lower triangle: query i may attend to keys j <= i."""
    xp = backend.module_for(device)
    return xp.tril(xp.ones((length, length), dtype=bool))[None, None]


def decoder_mask(ids: Any, pad_id: int = 0) -> Any:
    """(B, 1, L, L): causal AND the key is not padding (the decoder's self-attention mask)."""
    data = _ids(ids)
    return causal_mask(data.shape[1], backend.device_of(data)) & padding_mask(data, pad_id)
