"""Attention as a function: dense scaled dot-product and sparse top-k.

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k) + M) V

with M = 0 where the mask is True ("may attend") and -inf where it is False. Shapes:
q (..., Lq, d), k (..., Lk, d), v (..., Lk, dv) -> out (..., Lq, dv) and weights
(..., Lq, Lk). A query row whose keys are all masked gets zero weights and a zero
output (the softmax kernel returns zeros for an all -inf row), never NaN.

The scores are masked by *setting them to -inf before the softmax*, never by zeroing
them: a score of 0 still gets weight exp(0) / Z > 0.
"""

from __future__ import annotations

import math
from typing import Any

from .. import backend
from ..autograd.function import Function
from ..autograd.tensor import Tensor, matmul
from ..backend import array_module
from .activations import softmax
from .combine import as_mask, masked_fill
from .layers import dropout

__all__ = ["scaled_dot_product_attention", "topk_attention"]


def _check_qkv(q: Tensor, k: Tensor, v: Tensor, mask: Any) -> Any:
    if q.ndim < 2 or k.ndim < 2 or v.ndim < 2:
        raise ValueError(
            f"attention needs q, k, v of at least 2 dims, got {q.shape}, {k.shape}, {v.shape}"
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"attention: queries have size {q.shape[-1]} (q {q.shape}) but keys have "
            f"size {k.shape[-1]} (k {k.shape}); they must match for q . k"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"attention: {k.shape[-2]} keys (k {k.shape}) but {v.shape[-2]} values (v {v.shape})"
        )
    lead = backend.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    scores_shape = (*lead, q.shape[-2], k.shape[-2])
    if mask is None:
        return None
    m = as_mask(mask, q.device)
    try:
        ok = backend.broadcast_shapes(tuple(m.shape), scores_shape) == scores_shape
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(
            f"attention mask of shape {tuple(m.shape)} does not broadcast to the scores' "
            f"shape {scores_shape} (batch..., q_len, k_len)"
        )
    return m


def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Any = None,
    dropout_p: float = 0.0,
    training: bool = False,
) -> tuple[Tensor, Tensor]:
    """softmax(q k^T / sqrt(d) masked) v  ->  (out (..., Lq, dv), weights (..., Lq, Lk))."""
    m = _check_qkv(q, k, v, mask)
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = matmul(q * scale, k.swapaxes(-1, -2))  # (..., Lq, Lk); scaling q is the cheaper side
    if m is not None:
        scores = masked_fill(scores, ~m, -math.inf)
    weights = softmax(scores, axis=-1)  # all-masked rows -> zeros
    attended = dropout(weights, dropout_p, training) if dropout_p > 0 else weights
    return matmul(attended, v), weights


class TopKAttention(Function):
    """out_i = sum over the top_k kept keys j of p_ij v_j (see kernels/topk.py for the kernel)

    Only the kept (index, probability) pairs are saved for the backward: O(n * top_k).
    """

    @staticmethod
    def forward(ctx, q, k, v, top_k, mask, scale, kept):
        from ..kernels.topk import topk_attention_forward

        out, idx, p = topk_attention_forward(q, k, v, top_k, mask=mask, scale=scale)
        ctx.save_for_backward(q, k, v, idx, p)
        ctx.scale = scale
        kept["idx"], kept["p"] = idx, p
        return out

    @staticmethod
    def backward(ctx, g):
        from ..kernels.topk import topk_attention_backward

        q, k, v, idx, p = ctx.saved_tensors
        xp = array_module(g)
        return topk_attention_backward(q, k, v, idx, p, xp.ascontiguousarray(g), scale=ctx.scale)


def topk_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    top_k: int,
    mask: Any = None,
    need_weights: bool = True,
) -> tuple[Tensor, Tensor | None]:
    """Each query keeps its top_k highest-scoring allowed keys; softmax over those alone.

    Returns (out, weights) where weights is dense (..., Lq, Lk) with zeros off the kept
    keys (not differentiable; pass ``need_weights=False`` to skip building it, which
    keeps memory O(n * top_k)). ``top_k >= Lk`` gives exactly dense attention.
    """
    if not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"topk_attention: top_k must be a positive integer, got {top_k!r}")
    m = _check_qkv(q, k, v, mask)
    lead = backend.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    lq, lk, d, dv = q.shape[-2], k.shape[-2], q.shape[-1], v.shape[-1]
    b = 1
    for n in lead:
        b *= n
    xp = q.xp

    def flat(t: Tensor, rows: int, cols: int) -> Tensor:
        if t.shape[:-2] != lead:
            t = t + t.xp.zeros((*lead, rows, cols), dtype=t.dtype)  # broadcast, keeping the tape
        return t.reshape(b, rows, cols)

    qf, kf, vf = flat(q, lq, d), flat(k, lk, d), flat(v, lk, dv)
    mf = None
    if m is not None:
        mf = xp.broadcast_to(m, (*lead, lq, lk)).reshape(b, lq, lk)
    kept: dict = {}
    out = TopKAttention.apply(
        qf, kf, vf, top_k=top_k, mask=mf, scale=1.0 / math.sqrt(d), kept=kept
    ).reshape(*lead, lq, dv)
    if not need_weights:
        return out, None
    idx, p = kept["idx"], kept["p"]
    w = xp.zeros((b, lq, lk + 1), dtype=q.dtype)  # column lk catches the -1 "no key" slots
    rows = xp.arange(b)[:, None, None], xp.arange(lq)[None, :, None]
    w[rows[0], rows[1], xp.where(idx < 0, lk, idx)] = p
    return out, Tensor(w[..., :lk].reshape(*lead, lq, lk))
