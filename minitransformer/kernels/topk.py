"""Sparse top-k attention: the plain reference (any backend) and Numba CPU kernels.

For each query i, with scores s_ij = q_i . k_j * scale over the keys j it may attend to:

    K_i   = the top_k allowed keys with the highest s_ij (ties: lower j first)
    p_ij  = exp(s_ij) / sum_{l in K_i} exp(s_il)   for j in K_i, 0 elsewhere
    out_i = sum_{j in K_i} p_ij v_j

top_k >= n_keys keeps every allowed key, which is dense masked attention. A query
with no allowed key gets a zero output and zero weights.

``topk_attention_reference`` builds the dense (Lq, Lk) score matrix; it is for testing
only. ``topk_attention_forward`` / ``topk_attention_backward`` are what the autograd
calls (CuPy arrays go to cuda_topk.py). Memory beyond inputs and outputs stays
O(Lq * top_k) plus one score block per thread (O(Lk)), never O(Lq * Lk):

forward, for each batch entry and each block of ``rows`` queries (rows * Lk * itemsize
    about _SCORE_BLOCK_BYTES, with at least _MIN_BLOCK_ROWS rows):
      S = q_block @ k^T                 BLAS, into the thread's reused (rows, Lk) buffer
                                        (k^T copied once per batch entry into a (d, Lk)
                                        buffer of the thread); masked keys set to -inf
                                        (a broadcast mask is read as the view it is,
                                        never expanded)
      per query row (_attend_row):      scale; keep the top kk = min(top_k, Lk) keys
                                        (_select_row) in a heap stored in the output rows
                                        idx_i / p_i themselves; softmax over them;
                                        out_i = sum_t p_it v[idx_it]
    Blocks run on ``num_threads()`` Python threads, each doing its BLAS call (single-
    threaded) and then a serial ``nogil`` kernel: see ``run_blocks`` in _numba.py for why
    not ``prange``. Only idx (int32) and p are kept for the backward: O(Lq * kk).
    The heap's root is the worst kept key, ranked by (score, key): a lower score is
    worse, and among equal scores the higher key index is worse, which is the
    "lower index first" tie rule. idx lists a query's keys in heap order, -1 in slots
    that no allowed key fills.

backward, from idx and p only (no score is recomputed):
    gp_it = gout_i . v[idx_it],  gs_it = p_it (gp_it - sum_u p_iu gp_iu)
    query-major pass, prange over queries:  gq_i = scale sum_t gs_it k[idx_it]
    key-major pass, prange over keys:       gk_j = scale sum gs_it q_i,
                                            gv_j = sum p_it gout_i,
    summing over the (i, t) with idx_it = j. Many queries keep the same key, so a
    query-major scatter into gk / gv would race between threads. Instead a counting
    sort transposes idx into per-key lists (``_key_lists``, O(Lq * kk + Lk) memory),
    and each key's row of gk / gv is written by exactly one thread: no race, no atomics,
    and the sums come out the same on every run.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit, prange

from ..backend import array_module
from ._numba import CACHE, FASTMATH, PARALLEL_MIN_ELEMENTS, max_of, num_threads, run_blocks

# One (rows, Lk) block of scores per thread: about 2 MiB (it fits in L2), but at least
# _MIN_BLOCK_ROWS queries, so that the score GEMM stays efficient for long rows. At
# n = 8k, 64-row (2 MiB) blocks measured 4-7% slower overall than 128-row (4 MiB) ones;
# at n = 1k, one 4 MiB block per head was 1.5x slower than 2 MiB blocks.
_SCORE_BLOCK_BYTES = 1 << 21
_MIN_BLOCK_ROWS = 128
_GROUP = 16  # scores per group whose maximum is tested against the bar
_BISECT_STEPS = 12  # halvings of the bar's interval


def topk_keep_mask(scores: Any, top_k: int, mask: Any = None) -> Any:
    """Boolean (..., Lq, Lk): True where key j is among query i's top_k allowed keys."""
    xp = array_module(scores)
    lk = scores.shape[-1]
    if mask is None:
        allowed = xp.ones(scores.shape, dtype=bool)
    else:
        allowed = xp.broadcast_to(mask, scores.shape)
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


# ---------------------------------------------------------------- Numba kernels: selection


@njit(fastmath=FASTMATH, cache=CACHE)
def _worse(sa, ia, sb, ib):
    """Is (score sa, key ia) ranked below (sb, ib)? Lower score, or a tie and a higher key.

    Bitwise & and | rather than ``and``/``or``: no short-circuit branches to mispredict.
    """
    return (sa < sb) | ((sa == sb) & (ia > ib))


@njit(fastmath=FASTMATH, cache=CACHE)
def _sift_down(hs, hi, node, size):
    """Restore the heap below ``node``; the root hs[0], hi[0] is the WORST kept entry."""
    score, key = hs[node], hi[node]
    while True:
        child = 2 * node + 1
        if child >= size:
            break
        if child + 1 < size:  # take the worse of the two children
            child += _worse(hs[child + 1], hi[child + 1], hs[child], hi[child])
        if not _worse(hs[child], hi[child], score, key):
            break
        hs[node], hi[node] = hs[child], hi[child]  # move the worse child up into the hole
        node = child
    hs[node], hi[node] = score, key


@njit(fastmath=FASTMATH, cache=CACHE)
def _scale_and_group_max(seg, scale, best):
    """seg *= scale; best[g] = max(best[g], seg[g])."""
    for g in range(seg.size):
        v = seg[g] * scale
        seg[g] = v
        best[g] = v if v > best[g] else best[g]


@njit(fastmath=FASTMATH, cache=CACHE)
def _count_at_least(a, bar):
    count = 0
    for g in range(a.size):
        count += a[g] >= bar
    return count


@njit(fastmath=FASTMATH, cache=CACHE)
def _select_row(s, scale, hs, hi):
    """Scale the raw scores ``s`` in place; keep the best len(hs) in (hs, hi).

    Masked keys arrive as -inf and are never kept. Returns how many keys were kept
    (fewer than kk = len(hs) when fewer are allowed); hs[:count] / hi[:count] then hold
    them, in heap order.

    Most scores cannot be in the top kk; the work is arranged to skip them cheaply.
    1. One vectorised pass scales the row and takes group maxima: with
       G = ceil(n / _GROUP) groups (at least 4 kk, at most n), group g holds the keys
       j with j % G == g, so
       ``best[g] = max(best[g], s[j])`` runs over contiguous g (no horizontal work).
    2. A bar: the kk largest group maxima are kk distinct scores, so the kk-th best
       score is at least any value ``bar`` with count(best >= bar) >= kk. Bisection
       between the smallest and largest finite group maximum finds a bar close to the
       kk-th largest group maximum, each step a vectorised count over G values.
    3. Only groups whose max reaches the bar are looked into (about kk of the G), and
       their scores >= bar go through a heap of the kk best seen so far.
    Groups are visited out of key order, so the heap compares (score, key) in full.
    """
    kk = hs.size
    n = s.size
    neg_inf = s.dtype.type(-np.inf)
    # At least 4 kk groups, so the kk-th largest group max is a tight bar for short rows.
    n_groups = min(n, max((n + _GROUP - 1) // _GROUP, 4 * kk))
    best = np.full(n_groups, neg_inf)
    for g0 in range(0, n, n_groups):
        # A slice, so the loop index starts at 0: an index like s[g0 + g] makes Numba
        # check for negative (wrap-around) indices, which blocks vectorisation.
        _scale_and_group_max(s[g0 : g0 + n_groups], scale, best)

    bar = neg_inf  # fewer than kk groups hold an allowed key: every allowed key may enter
    if _count_at_least(best, np.nextafter(neg_inf, 0)) >= kk:
        low = high = max_of(best)
        for g in range(n_groups):  # the smallest finite group max: count(best >= low) >= kk
            if best[g] > neg_inf and best[g] < low:
                low = best[g]
        for _ in range(_BISECT_STEPS):  # keep count(best >= low) >= kk
            mid = low + (high - low) / 2
            if _count_at_least(best, mid) >= kk:
                low = mid
            else:
                high = mid
        bar = low

    count = 0
    for g in range(n_groups):
        if best[g] < bar or best[g] == neg_inf:
            continue
        for j in range(g, n, n_groups):
            v = s[j]
            if v < bar or v == neg_inf:
                continue
            if count < kk:
                hs[count], hi[count] = v, j
                count += 1
                if count == kk:  # full: arrange as a heap, worst at the root
                    for node in range(kk // 2 - 1, -1, -1):
                        _sift_down(hs, hi, node, kk)
            elif _worse(hs[0], hi[0], v, j):  # better than the worst kept: replace it
                hs[0], hi[0] = v, j
                _sift_down(hs, hi, 0, kk)
    return count


@njit(fastmath=FASTMATH, cache=CACHE)
def _attend_row(s, scale, v, idx, p, out):
    """One query: top-k of its score row, softmax over them, out = sum_k p_k v[idx_k]."""
    count = _select_row(s, scale, p, idx)
    out[:] = 0
    idx[count:] = -1  # slots no allowed key fills
    p[count:] = 0
    if count == 0:
        return
    top = max_of(p[:count])  # the best score: subtracted so exp never overflows
    total = p.dtype.type(0)
    for t in range(count):
        p[t] = math.exp(p[t] - top)
        total += p[t]
    for t in range(count):
        p[t] /= total
        w = p[t]
        row = v[idx[t]]
        for c in range(out.size):
            out[c] += w * row[c]


@njit(nogil=True, fastmath=FASTMATH, cache=CACHE)
def _attend_block(s, scale, v, idx, p, out):
    """A block of queries, serially; ``nogil`` so worker threads run blocks side by side."""
    for i in range(s.shape[0]):
        _attend_row(s[i], scale, v, idx[i], p[i], out[i])


# ---------------------------------------------------------------- Numba kernels: backward


@njit(fastmath=FASTMATH, cache=CACHE)
def _grad_query_row(k, v, idx, p, gout, scale, gs, gq):
    """One query i: gs_t = dL/ds for its kept keys, and gq = scale * sum_t gs_t k[idx_t]."""
    d = p.dtype.type(0)
    for t in range(idx.size):
        j = idx[t]
        if j < 0:
            gs[t] = 0
            continue
        dot = p.dtype.type(0)  # dL/dp_t = gout . v_j
        for c in range(gout.size):
            dot += gout[c] * v[j, c]
        gs[t] = dot
        d += p[t] * dot
    gq[:] = 0
    for t in range(idx.size):
        j = idx[t]
        if j < 0:
            continue
        gs[t] = p[t] * (gs[t] - d)  # the softmax backward over the kept scores
        w = gs[t] * scale
        for c in range(gq.size):
            gq[c] += w * k[j, c]


@njit(parallel=True, fastmath=FASTMATH, cache=CACHE)
def _grad_queries(k, v, idx, p, gout, scale, gs, gq):
    lq = idx.shape[1]
    for r in prange(idx.shape[0] * lq):
        b, i = r // lq, r % lq
        _grad_query_row(k[b], v[b], idx[b, i], p[b, i], gout[b, i], scale, gs[b, i], gq[b, i])


@njit(cache=CACHE)
def _key_lists(idx, start, entries):
    """Transpose the kept lists: for key j of batch b, the (query, slot) pairs that kept it.

    idx (B, Lq, kk) -> start (B, Lk + 1), entries (B, Lq * kk): the pairs keeping key j
    are entries[b, start[b, j]:start[b, j + 1]], each stored as i * kk + t, in
    increasing order. A counting sort: O(Lq * kk + Lk) work, serial (it is cheap).
    """
    lq, kk = idx.shape[1], idx.shape[2]
    lk = start.shape[1] - 1
    for b in range(idx.shape[0]):
        start[b, :] = 0
        for i in range(lq):
            for t in range(kk):
                if idx[b, i, t] >= 0:
                    start[b, idx[b, i, t] + 1] += 1
        for j in range(lk):
            start[b, j + 1] += start[b, j]
        cursor = start[b, :lk].copy()
        for i in range(lq):
            for t in range(kk):
                j = idx[b, i, t]
                if j >= 0:
                    entries[b, cursor[j]] = i * kk + t
                    cursor[j] += 1


@njit(fastmath=FASTMATH, cache=CACHE)
def _grad_key(q, gout, gs, p, entries, kk, scale, gk, gv):
    """One key j: gk = scale sum gs_it q_i, gv = sum p_it gout_i over its (i, t) entries.

    q, gout: (Lq, d) / (Lq, dv); gs, p: (Lq * kk,) flat; entries: this key's flat i*kk+t.
    """
    gk[:] = 0
    gv[:] = 0
    for f in entries:
        i = f // kk
        a = gs[f] * scale
        for c in range(gk.size):
            gk[c] += a * q[i, c]
        w = p[f]
        for c in range(gv.size):
            gv[c] += w * gout[i, c]


@njit(parallel=True, fastmath=FASTMATH, cache=CACHE)
def _grad_keys(q, gout, gs, p, start, entries, kk, scale, gk, gv):
    lk = gk.shape[1]
    for r in prange(gk.shape[0] * lk):
        b, j = r // lk, r % lk
        mine = entries[b, start[b, j] : start[b, j + 1]]
        _grad_key(q[b], gout[b], gs[b], p[b], mine, kk, scale, gk[b, j], gv[b, j])


# ---------------------------------------------------------------- public functions


def topk_attention_forward(
    q: Any, k: Any, v: Any, top_k: int, mask: Any = None, scale: float | None = None
) -> tuple[Any, Any, Any]:
    """Sparse top-k attention: returns (out (..., Lq, dv), idx (..., Lq, kk), p (..., Lq, kk)).

    q (..., Lq, d), k (..., Lk, d), v (..., Lk, dv) share dtype (float32/float64) and
    leading axes; mask is None or a bool array broadcastable to (..., Lq, Lk), True =
    may attend (a broadcast view is read in place, never expanded). kk = min(top_k, Lk).
    idx (int32) lists each query's kept keys best first, -1 in slots it cannot fill;
    p holds their probabilities, 0 in those slots.
    """
    if array_module(q) is not np:
        from .cuda_topk import cuda_topk_attention_forward  # noqa: PLC0415 - GPU only

        return cuda_topk_attention_forward(q, k, v, top_k, mask, scale)
    q, k, v = _check_qkv("topk_attention_forward", q, k, v)
    lead, lq, lk, d, dv = q.shape[:-2], q.shape[-2], k.shape[-2], q.shape[-1], v.shape[-1]
    if not isinstance(top_k, (int, np.integer)) or isinstance(top_k, bool) or top_k < 1:
        raise ValueError(f"topk_attention_forward: top_k must be an integer >= 1, got {top_k!r}")
    kk = min(int(top_k), lk)
    scale = q.dtype.type(_scale("topk_attention_forward", d, scale))
    allowed = _broadcast_mask(mask, (*lead, lq, lk))
    nb = math.prod(lead)
    q3, k3 = q.reshape(nb, lq, d), k.reshape(nb, lk, d)
    v3 = np.ascontiguousarray(v.reshape(nb, lk, dv))
    out = np.zeros((nb, lq, dv), dtype=q.dtype)
    idx = np.full((nb, lq, kk), -1, dtype=np.int32)
    p = np.zeros((nb, lq, kk), dtype=q.dtype)
    if nb == 0 or lq == 0 or kk == 0:
        return out.reshape(*lead, lq, dv), idx.reshape(*lead, lq, kk), p.reshape(*lead, lq, kk)
    rows = max(1, min(lq, max(_MIN_BLOCK_ROWS, _SCORE_BLOCK_BYTES // (lk * q.itemsize))))

    def make_scratch() -> dict:
        # a score block, and k[b]^T laid out contiguously (BLAS runs faster on it than
        # on the strided view k[b].T), redone when the thread moves to another b
        return {
            "scores": np.empty((rows, lk), dtype=q.dtype),
            "kt": np.empty((d, lk), dtype=q.dtype),
            "b": -1,
        }

    def attend(block: tuple[int, int], scratch: dict) -> None:
        b, i0 = block
        i1 = min(i0 + rows, lq)
        if scratch["b"] != b:
            np.copyto(scratch["kt"], k3[b].T)
            scratch["b"] = b
        s = scratch["scores"][: i1 - i0]
        np.matmul(q3[b, i0:i1], scratch["kt"], out=s)
        if allowed is not None:  # -inf where a key is masked (-inf * scale stays -inf)
            np.copyto(s, -np.inf, where=~allowed[np.unravel_index(b, lead)][i0:i1])
        _attend_block(s, scale, v3[b], idx[b, i0:i1], p[b, i0:i1], out[b, i0:i1])

    blocks = [(b, i0) for b in range(nb) for i0 in range(0, lq, rows)]
    workers = 1 if lq * lk * nb < PARALLEL_MIN_ELEMENTS else num_threads()
    run_blocks(attend, blocks, workers, make_scratch)
    return out.reshape(*lead, lq, dv), idx.reshape(*lead, lq, kk), p.reshape(*lead, lq, kk)


def topk_attention_backward(
    q: Any, k: Any, v: Any, idx: Any, p: Any, gout: Any, scale: float | None = None
) -> tuple[Any, Any, Any]:
    """Gradients (gq, gk, gv) of ``topk_attention_forward``'s out, from its idx and p.

    Only kept entries carry gradient: with gp_t = gout_i . v_{idx_t} and
    gs_t = p_t (gp_t - sum_u p_u gp_u),  gq_i = scale sum_t gs_t k_{idx_t},
    gk_j = scale sum_{(i,t): idx_it = j} gs_it q_i,  gv_j = sum_{(i,t): idx_it = j} p_it gout_i.
    """
    if array_module(q) is not np:
        from .cuda_topk import cuda_topk_attention_backward  # noqa: PLC0415 - GPU only

        return cuda_topk_attention_backward(q, k, v, idx, p, gout, scale)
    fn = "topk_attention_backward"
    q, k, v = _check_qkv(fn, q, k, v)
    lead, lq, lk, d, dv = q.shape[:-2], q.shape[-2], k.shape[-2], q.shape[-1], v.shape[-1]
    if not isinstance(idx, np.ndarray) or idx.dtype.kind not in "iu":
        raise TypeError(
            f"{fn}: idx must be an integer NumPy array, got {getattr(idx, 'dtype', type(idx))}"
        )
    kk = idx.shape[-1] if idx.ndim else -1
    for name, a, want in (
        ("idx", idx, (*lead, lq, kk)),
        ("p", p, (*lead, lq, kk)),
        ("gout", gout, (*lead, lq, dv)),
    ):
        if not isinstance(a, np.ndarray) or a.shape != want:
            raise ValueError(
                f"{fn}: {name} must have shape {want}, got {getattr(a, 'shape', type(a))}"
            )
    if p.dtype != q.dtype or gout.dtype != q.dtype:
        raise TypeError(
            f"{fn}: p and gout must be {q.dtype} like q, got {p.dtype} and {gout.dtype}"
        )
    scale = q.dtype.type(_scale(fn, d, scale))
    nb = math.prod(lead)
    q3, k3, v3, g3 = (np.ascontiguousarray(a.reshape(nb, *a.shape[-2:])) for a in (q, k, v, gout))
    if idx.size and (idx.max() >= lk or idx.min() < -1):
        raise IndexError(
            f"{fn}: idx must lie in [-1, {lk}), got values in [{idx.min()}, {idx.max()}]"
        )
    # int32 whatever idx came as: one compiled version of each kernel per float dtype
    idx3 = np.ascontiguousarray(idx.reshape(nb, lq, kk), dtype=np.int32)
    p3 = np.ascontiguousarray(p.reshape(nb, lq, kk))
    gq = np.empty_like(q3)
    gk = np.empty_like(k3)
    gv = np.empty((nb, lk, dv), dtype=q.dtype)
    gs = np.empty_like(p3)
    _grad_queries(k3, v3, idx3, p3, g3, scale, gs, gq)
    start = np.empty((nb, lk + 1), dtype=np.int64)
    entries = np.empty((nb, lq * kk), dtype=np.int32 if lq * kk < 2**31 else np.int64)
    _key_lists(idx3, start, entries)
    _grad_keys(
        q3, g3, gs.reshape(nb, lq * kk), p3.reshape(nb, lq * kk), start, entries, kk, scale, gk, gv
    )
    return gq.reshape(q.shape), gk.reshape(k.shape), gv.reshape(v.shape)


def _check_qkv(fn: str, q: Any, k: Any, v: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    for name, a in (("q", q), ("k", k), ("v", v)):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{fn}: {name} must be a NumPy or CuPy array, got {type(a).__name__}")
        if a.ndim < 2:
            raise ValueError(
                f"{fn}: {name} needs at least 2 axes (..., L, features), got {a.shape}"
            )
    if q.dtype not in (np.float32, np.float64) or k.dtype != q.dtype or v.dtype != q.dtype:
        raise TypeError(
            f"{fn}: q, k, v must all be float32 or all float64, got {q.dtype}, {k.dtype}, {v.dtype}"
        )
    if not (q.shape[:-2] == k.shape[:-2] == v.shape[:-2]):
        raise ValueError(
            f"{fn}: q, k, v must share leading axes, got {q.shape}, {k.shape}, {v.shape}"
        )
    if k.shape[-1] != q.shape[-1] or v.shape[-2] != k.shape[-2]:
        raise ValueError(
            f"{fn}: need q (..., Lq, d), k (..., Lk, d), v (..., Lk, dv), "
            f"got {q.shape}, {k.shape}, {v.shape}"
        )
    return q, k, v


def _scale(fn: str, d: int, scale: float | None) -> float:
    if scale is None:
        if d == 0:
            raise ValueError(f"{fn}: the default scale 1/sqrt(d) needs d >= 1, got d = 0")
        return 1.0 / math.sqrt(d)
    if not (math.isfinite(scale) and scale > 0):
        # > 0 keeps the order of the scores, and -inf (masked) * scale stays -inf
        raise ValueError(f"{fn}: scale must be a finite number > 0, got {scale}")
    return float(scale)


def _broadcast_mask(mask: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    if mask is None:
        return None
    if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
        raise TypeError(
            "topk_attention_forward: mask must be a bool NumPy array, "
            f"got {getattr(mask, 'dtype', type(mask))}"
        )
    try:
        return np.broadcast_to(mask, shape)  # a view: broadcast axes get stride 0
    except ValueError:
        raise ValueError(
            f"topk_attention_forward: mask of shape {mask.shape} does not broadcast to {shape}"
        ) from None
