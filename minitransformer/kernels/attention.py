"""Dense attention as one op: the plain reference (any backend) and a blocked CPU version.

    S = (Q K^T) * scale,   S_ij = -inf where the mask says "may not attend"
    P = softmax(S)          (row-wise; an all -inf row gives zeros)
    A = P * keep            (dropout: keep = Bernoulli(1 - p) / (1 - p), or A = P)
    O = A V

    backward, from G = dL/dO:
    dV = A^T G
    dA = G V^T,   dP = dA * keep
    dS = P * (dP - rowsum(dP * P))          (the softmax backward of kernels/softmax.py)
    dQ = dS K * scale,   dK = dS^T Q * scale

Composed from separate ops (a matmul, a multiply by the scale, a masked fill, a softmax,
a dropout, a matmul) the same computation writes and re-reads a (..., Lq, Lk) array at
every step, and its batched matmuls run as one small multi-threaded BLAS call per head.
Here ``attention_forward`` / ``attention_backward`` take the heads a few at a time
(a *block*: the scores of a block fit in the CPU's L2 cache) and run every step of a
block back to back while its scores are still in cache: the matmuls as single-threaded
BLAS calls, the softmax as a serial ``nogil`` Numba kernel. Two Python threads take
blocks in turn (``run_blocks`` in _numba.py), so both cores work. What is saved for the
backward is P (and the dropout's keep mask): the same O(Lq Lk) memory as the composed ops.

``attention_reference`` / ``attention_backward_reference`` are the formulas with ``xp``
(NumPy or CuPy), the kernels' test oracle. On CuPy arrays the public functions run the
same formulas with the CUDA softmax kernel of cuda_softmax.py.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

from ..backend import array_module, broadcast_shapes
from ._numba import CACHE, FASTMATH, num_threads, run_blocks
from .softmax import (
    _backward_row,
    _forward_row,
    softmax_backward,
    softmax_backward_reference,
    softmax_forward,
    softmax_reference,
)

__all__ = [
    "attention_reference",
    "attention_backward_reference",
    "attention_forward",
    "attention_backward",
]

# Scores per block: 64k entries (256 KB in float32) stay in a core's L2 cache.
_BLOCK_SCORES = 1 << 16
# From this many scores (all heads together) the blocks are shared between threads.
_PARALLEL_SCORES = 4 * _BLOCK_SCORES


# ---------------------------------------------------------------- the formulas, with xp


def _forward_xp(q, k, v, mask, scale, keep, softmax) -> tuple[Any, Any]:
    xp = array_module(q)
    lead = broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    s = (q @ xp.swapaxes(k, -1, -2)) * scale  # (..., Lq, Lk)
    s = xp.broadcast_to(s, (*lead, *s.shape[-2:]))  # P has v's leading axes too
    if mask is not None:
        s = xp.where(mask, s, -xp.inf)
    p = softmax(s, axis=-1)
    a = p if keep is None else p * keep
    return a @ v, p


def _backward_xp(q, k, v, p, g, scale, keep, softmax_bwd) -> tuple[Any, Any, Any]:
    xp = array_module(q)
    a = p if keep is None else p * keep
    gv = xp.swapaxes(a, -1, -2) @ g  # (..., Lk, dv)
    gp = g @ xp.swapaxes(v, -1, -2)  # (..., Lq, Lk)
    if keep is not None:
        gp = gp * keep
    dt = xp.result_type(p, gp)  # P float32 but V float64 makes dP float64: one dtype for both
    gs = softmax_bwd(p.astype(dt, copy=False), gp.astype(dt, copy=False), axis=-1) * scale
    return gs @ k, xp.swapaxes(gs, -1, -2) @ q, gv


def attention_reference(
    q: Any, k: Any, v: Any, mask: Any = None, scale: float | None = None, keep: Any = None
) -> tuple[Any, Any]:
    """(O, P) from the formulas above; ``mask`` (True = may attend) and ``keep`` broadcast
    to the scores' shape (..., Lq, Lk)."""
    scale = _scale(q.shape[-1], scale)
    return _forward_xp(q, k, v, mask, scale, keep, softmax_reference)


def attention_backward_reference(
    q: Any, k: Any, v: Any, p: Any, gout: Any, scale: float | None = None, keep: Any = None
) -> tuple[Any, Any, Any]:
    """(dQ, dK, dV) from the formulas above, given P from the forward and G = dL/dO."""
    scale = _scale(q.shape[-1], scale)
    return _backward_xp(q, k, v, p, gout, scale, keep, softmax_backward_reference)


# ---------------------------------------------------------------- serial nogil kernels


# Both write to an array other than the one they read: in place, LLVM cannot rule out
# that a store changes a later load, and the row loops ran 4x slower (not vectorised).


@njit(nogil=True, fastmath=FASTMATH, cache=CACHE)
def _softmax_block(s, p):
    """p = softmax of every row of the (heads, Lq, Lk) scores s."""
    for h in range(s.shape[0]):
        for i in range(s.shape[1]):
            _forward_row(s[h, i], p[h, i])


@njit(nogil=True, fastmath=FASTMATH, cache=CACHE)
def _softmax_backward_block(p, gp, gs):
    """gs = p * (gp - rowsum(gp * p)) for every row of a (heads, Lq, Lk) block."""
    for h in range(p.shape[0]):
        for i in range(p.shape[1]):
            _backward_row(p[h, i], gp[h, i], gs[h, i])


# ---------------------------------------------------------------- public functions


def attention_forward(
    q: Any, k: Any, v: Any, mask: Any = None, scale: float | None = None, keep: Any = None
) -> tuple[Any, Any]:
    """O (..., Lq, dv) and P (..., Lq, Lk) of dense attention.

    q (..., Lq, d), k (..., Lk, d), v (..., Lk, dv) with leading axes that broadcast;
    ``mask`` None or bool, True = may attend; ``keep`` None or the dropout's scaled keep
    mask; both broadcast to (..., Lq, Lk). ``scale`` defaults to 1 / sqrt(d).
    """
    lead, lq, lk, d, dv = _shapes(q, k, v)
    scale = _scale(d, scale)
    if not _blocked(q, k, v, keep):
        return _forward_xp(q, k, v, mask, scale, keep, softmax_forward)
    nb = math.prod(lead)
    q3, k3, v3 = (_flat(t, lead) for t in (q, k, v))
    keep3 = None if keep is None else _flat(np.asarray(keep, dtype=q.dtype), lead, (lq, lk))
    # True = masked; one byte per score, flattened like the scores (a copy if it broadcasts)
    blocked = None if mask is None else _flat(~np.asarray(mask, dtype=bool), lead, (lq, lk))
    out = np.empty((nb, lq, dv), dtype=q.dtype)
    p = np.empty((nb, lq, lk), dtype=q.dtype)
    if p.size == 0:
        out.fill(0)  # no keys (or no queries): zero outputs
        return out.reshape(*lead, lq, dv), p.reshape(*lead, lq, lk)
    if out.size == 0:  # values of size 0: P is still defined
        return _forward_xp(q, k, v, mask, scale, keep, softmax_forward)
    workers = _workers(p.size)
    heads = _heads_per_block(nb, lq * lk, workers)

    def make_scratch() -> dict:
        return {
            "q": np.empty((heads, lq, d), dtype=q.dtype),
            "s": np.empty((heads, lq, lk), dtype=q.dtype),
            "a": np.empty((heads, lq, lk), dtype=q.dtype) if keep is not None else None,
        }

    def attend(block: tuple[int, int], scratch: dict) -> None:
        b0, b1 = block
        qs = np.multiply(q3[b0:b1], scale, out=scratch["q"][: b1 - b0])  # Q * scale
        s = np.matmul(qs, k3[b0:b1].transpose(0, 2, 1), out=scratch["s"][: b1 - b0])
        if blocked is not None:
            np.copyto(s, -np.inf, where=blocked[b0:b1])
        a = p[b0:b1]
        _softmax_block(s, a)
        if keep3 is not None:
            a = np.multiply(a, keep3[b0:b1], out=scratch["a"][: b1 - b0])
        np.matmul(a, v3[b0:b1], out=out[b0:b1])

    run_blocks(attend, _blocks(nb, heads), workers, make_scratch)
    return out.reshape(*lead, lq, dv), p.reshape(*lead, lq, lk)


def attention_backward(
    q: Any,
    k: Any,
    v: Any,
    p: Any,
    gout: Any,
    scale: float | None = None,
    keep: Any = None,
) -> tuple[Any, Any, Any]:
    """(dQ, dK, dV) of ``attention_forward``'s O, from its P and G = dL/dO.

    The gradients have the broadcast leading shape (the autograd tape sums them back to
    each input's own shape).
    """
    lead, lq, lk, d, dv = _shapes(q, k, v)
    scale = _scale(d, scale)
    if not _blocked(q, k, v, keep) or gout.dtype != q.dtype or p.dtype != q.dtype:
        return _backward_xp(q, k, v, p, gout, scale, keep, softmax_backward)
    nb = math.prod(lead)
    q3, k3, v3 = (_flat(t, lead) for t in (q, k, v))
    p3 = _flat(p, lead, (lq, lk))
    g3 = _flat(gout, lead, (lq, dv))
    keep3 = None if keep is None else _flat(np.asarray(keep, dtype=q.dtype), lead, (lq, lk))
    gq = np.zeros((nb, lq, d), dtype=q.dtype)
    gk = np.zeros((nb, lk, d), dtype=q.dtype)
    gv = np.zeros((nb, lk, dv), dtype=q.dtype)
    if p3.size and gq.size + gk.size + gv.size:
        workers = _workers(p3.size)
        heads = _heads_per_block(nb, lq * lk, workers)

        def make_scratch() -> dict:
            return {
                "gp": np.empty((heads, lq, lk), dtype=q.dtype),
                "gs": np.empty((heads, lq, lk), dtype=q.dtype),
                "a": np.empty((heads, lq, lk), dtype=q.dtype) if keep is not None else None,
            }

        def attend_back(block: tuple[int, int], scratch: dict) -> None:
            b0, b1 = block
            pb, gb = p3[b0:b1], g3[b0:b1]
            gp = scratch["gp"][: b1 - b0]
            np.matmul(gb, v3[b0:b1].transpose(0, 2, 1), out=gp)  # dA = G V^T
            if keep3 is None:
                np.matmul(pb.transpose(0, 2, 1), gb, out=gv[b0:b1])  # dV = P^T G
            else:
                a = np.multiply(pb, keep3[b0:b1], out=scratch["a"][: b1 - b0])
                np.matmul(a.transpose(0, 2, 1), gb, out=gv[b0:b1])  # dV = A^T G
                gp *= keep3[b0:b1]  # dP = dA * keep
            gs = scratch["gs"][: b1 - b0]
            _softmax_backward_block(pb, gp, gs)  # dS
            np.matmul(gs, k3[b0:b1], out=gq[b0:b1])  # dQ = dS K scale
            np.matmul(gs.transpose(0, 2, 1), q3[b0:b1], out=gk[b0:b1])  # dK = dS^T Q scale
            gq[b0:b1] *= scale  # (scaling the (Lq, d) results, not the (Lq, Lk) dS)
            gk[b0:b1] *= scale

        run_blocks(attend_back, _blocks(nb, heads), workers, make_scratch)
    return gq.reshape(*lead, lq, d), gk.reshape(*lead, lk, d), gv.reshape(*lead, lk, dv)


# ---------------------------------------------------------------- helpers


def _shapes(q: Any, k: Any, v: Any) -> tuple[tuple[int, ...], int, int, int, int]:
    if q.ndim < 2 or k.ndim < 2 or v.ndim < 2:
        raise ValueError(f"attention needs q, k, v of at least 2 dims, got {q.shape}, {k.shape}")
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"attention: q {q.shape}, k {k.shape}, v {v.shape} do not fit "
            "(need q.shape[-1] == k.shape[-1] and k.shape[-2] == v.shape[-2])"
        )
    lead = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    return lead, q.shape[-2], k.shape[-2], q.shape[-1], v.shape[-1]


def _scale(d: int, scale: float | None) -> float:
    if scale is None:
        return 1.0 / math.sqrt(d) if d > 0 else 1.0
    return float(scale)


def _blocked(q: Any, k: Any, v: Any, keep: Any) -> bool:
    """Whether the blocked NumPy path applies: NumPy arrays of one float dtype."""
    arrays = (q, k, v) if keep is None else (q, k, v, keep)
    return (
        all(isinstance(a, np.ndarray) for a in arrays)
        and q.dtype in (np.float32, np.float64)
        and k.dtype == q.dtype
        and v.dtype == q.dtype
    )


def _flat(t: np.ndarray, lead: tuple[int, ...], last: tuple[int, int] | None = None) -> Any:
    """t broadcast to (*lead, *last) and viewed (or, if it must be, copied) as (nb, *last)."""
    last = tuple(t.shape[-2:]) if last is None else last
    full = np.broadcast_to(t, (*lead, *last))
    return np.ascontiguousarray(full.reshape(math.prod(lead), *last))


def _heads_per_block(nb: int, scores_per_head: int, workers: int) -> int:
    """As many heads as fit _BLOCK_SCORES, but at least two blocks per worker when the
    heads allow it, so that no thread waits for the other at the end."""
    return max(1, min(_BLOCK_SCORES // scores_per_head, -(-nb // (2 * workers))))


def _blocks(nb: int, heads: int) -> list[tuple[int, int]]:
    return [(b0, min(b0 + heads, nb)) for b0 in range(0, nb, heads)]


def _workers(scores: int) -> int:
    """One thread for small attention (handing blocks to a second thread costs some
    tens of microseconds), all of them from _PARALLEL_SCORES scores up."""
    return 1 if scores < _PARALLEL_SCORES else num_threads()
