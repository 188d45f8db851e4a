"""Sparse top-k attention: the plain reference (any backend, via ``xp``).

For each query i, with scores s_ij = q_i . k_j * scale over the keys j it may attend to:

    K_i   = the top_k allowed keys with the highest s_ij (ties: lower j first)
    p_ij  = exp(s_ij) / sum_{l in K_i} exp(s_il)   for j in K_i, 0 elsewhere
    out_i = sum_{j in K_i} p_ij v_j

top_k >= n_keys keeps every allowed key, which is dense masked attention. A query
with no allowed key gets a zero output and zero weights.

This reference builds the dense (Lq, Lk) score matrix; it is for testing only.
"""

from __future__ import annotations

import math
from typing import Any

from ..backend import array_module


def topk_keep_mask(scores: Any, top_k: int, mask: Any = None) -> Any:
    """Boolean (..., Lq, Lk): True where key j is among query i's top_k allowed keys."""
    xp = array_module(scores)
    lk = scores.shape[-1]
    allowed = xp.ones(scores.shape, dtype=bool) if mask is None else xp.broadcast_to(mask, scores.shape)
    s = xp.where(allowed, scores, -xp.inf)
    # stable sort on -s: equal scores keep their order, so the lower key index wins ties
    order = xp.argsort(-s, axis=-1, kind="stable")
    rank = xp.empty_like(order)
    xp.put_along_axis(rank, order, xp.broadcast_to(xp.arange(lk), order.shape), axis=-1)
    return (rank < top_k) & allowed


def topk_attention_reference(
    q: Any, k: Any, v: Any, top_k: int, mask: Any = None, scale: float | None = None
) -> tuple[Any, Any, Any]:
    """Returns (out (..., Lq, dv), dense weights (..., Lq, Lk), keep mask (..., Lq, Lk))."""
    xp = array_module(q)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = (q @ xp.swapaxes(k, -1, -2)) * scale
    keep = topk_keep_mask(scores, top_k, mask)
    s = xp.where(keep, scores, -xp.inf)
    m = xp.max(s, axis=-1, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0)
    e = xp.where(keep, xp.exp(s - m), 0)
    z = xp.sum(e, axis=-1, keepdims=True)
    w = e / xp.where(z > 0, z, 1)
    return w @ v, w, keep


def topk_attention_backward_reference(
    q: Any, k: Any, v: Any, w: Any, keep: Any, gout: Any, scale: float | None = None
) -> tuple[Any, Any, Any]:
    """Gradients (gq, gk, gv) of out = w @ v, w = softmax over the kept scores only."""
    xp = array_module(q)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    gw = gout @ xp.swapaxes(v, -1, -2)  # (..., Lq, Lk)
    gs = w * (gw - xp.sum(gw * w, axis=-1, keepdims=True))
    gs = xp.where(keep, gs, 0)
    gq = (gs @ k) * scale
    gk = (xp.swapaxes(gs, -1, -2) @ q) * scale
    gv = xp.swapaxes(w, -1, -2) @ gout
    return gq, gk, gv
