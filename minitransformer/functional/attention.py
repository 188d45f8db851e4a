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
from ..autograd.tensor import Tensor
from ..backend import array_module
from .combine import as_mask

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


class Attention(Function):
    """O = dropout(softmax(Q K^T * scale, masked)) V as one op (kernels/attention.py).

    Forward and backward are written out, formula by formula, in kernels/attention.py;
    only P (and the dropout's keep mask) is saved for the backward.
    """

    @staticmethod
    def forward(ctx, q, k, v, mask, scale, dropout_p, kept):
        from ..kernels.attention import attention_forward

        keep = None
        if dropout_p > 0:
            xp = array_module(q)
            lead = backend.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
            shape = (*lead, q.shape[-2], k.shape[-2])
            draw = backend.generator(xp).random(shape, dtype=q.dtype)
            scale_kept = 1.0 / (1.0 - dropout_p) if dropout_p < 1 else 0.0
            keep = (draw >= dropout_p) * q.dtype.type(scale_kept)  # 0 or 1 / (1 - p)
        out, p = attention_forward(q, k, v, mask, scale, keep)
        ctx.save_for_backward(q, k, v, p, keep)
        ctx.scale = scale
        kept["weights"] = p
        return out

    @staticmethod
    def backward(ctx, g):
        from ..kernels.attention import attention_backward

        q, k, v, p, keep = ctx.saved_tensors
        return attention_backward(q, k, v, p, g, scale=ctx.scale, keep=keep)


def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Any = None,
    dropout_p: float = 0.0,
    training: bool = False,
) -> tuple[Tensor, Tensor]:
    """softmax(q k^T / sqrt(d) masked) v  ->  (out (..., Lq, dv), weights (..., Lq, Lk)).

    ``weights`` are the softmax probabilities (before dropout), returned to look at:
    they carry no gradient of their own (the gradient of ``out`` flows through them
    inside the op). ``dropout_p`` drops weights in training, as in the paper.
    """
    m = _check_qkv(q, k, v, mask)
    if not 0.0 <= dropout_p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {dropout_p}")
    kept: dict = {}
    out = Attention.apply(
        q,
        k,
        v,
        mask=m,
        scale=1.0 / math.sqrt(q.shape[-1]) if q.shape[-1] else 1.0,  # d == 0: no scores to scale
        dropout_p=dropout_p if training else 0.0,
        kept=kept,
    )
    return out, Tensor(kept["weights"])


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
