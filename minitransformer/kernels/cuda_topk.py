"""Sparse top-k attention on an NVIDIA GPU, written with Numba's CUDA target.

For each query i of batch b, with scores s_ij = (q_i . k_j) * scale over its allowed keys j:

    K_i    = the top_k allowed keys with the highest s_ij (ties: lower j first),
             held in slots t = 0, 1, ... as j_0, j_1, ... in descending score order
    p_it   = exp(s_i,j_t - s_i,j_0) / sum_u exp(s_i,j_u - s_i,j_0)    (u over the kept slots)
    out_i  = sum_t p_it v_{j_t}

returned as out (B, Lq, dv), idx (B, Lq, kk) int32 with the kept keys in descending score
order (-1 in unused slots) and p (B, Lq, kk) (0 in unused slots), kk = min(top_k, Lk).
Memory is O(B * Lq * kk): no (Lq, Lk) score matrix is ever stored. The semantics are those
of ``topk_attention_reference``; top_k >= Lk is dense masked attention, and a query with no
allowed key gets zeros.

Backward, from dL/dout = gout and the forward's idx and p, with g_t = gout_i . v_{j_t}:

    gs_t        = p_t * (g_t - sum_u p_u g_u)          (softmax backward over the kept slots)
    dL/dq_i     = scale * sum_t gs_t k_{j_t}
    dL/dk_{j_t} += scale * gs_t q_i                    (every query that kept key j adds)
    dL/dv_{j_t} += p_t gout_i

Many queries may keep the same key, so the dK/dV scatter uses ``cuda.atomic.add``: the
additions to one element never race, but their order varies from run to run, so dK and dV
can differ in the last bits between runs (float addition is not associative). float64
atomic addition needs a GPU of compute capability 6.0 (Pascal) or newer.

Launch configuration (forward and backward)
    grid  = one block per query: B * Lq blocks; block r handles b = r // Lq, i = r % Lq
    block = T threads, the smallest power of two >= max(Lk, dv) (forward) or max(kk, d, dv)
            (backward), at most ``MAX_THREADS`` (128), or ``threads_per_block`` when given
Forward, per block:
    1. scores, a tile of T keys at a time: thread t computes s for key start + t (a d-long
       dot product) into shared memory. This is the O(Lk * d) bulk of the work, in parallel.
    2. selection: thread 0 inserts the tile's allowed scores, in key order, into a sorted
       buffer of kk (score, key) pairs in shared memory. A score that does not beat the
       current kk-th is dropped after one comparison, so the serial pass is O(Lk) compares
       plus O(kk) shifts per key that enters. Keys arrive in index order and an entry
       only moves past strictly lower scores, so of equal scores the lower key index stays
       ahead, and is the one kept when the buffer is full. (A faster selection would keep
       candidates per warp in registers and merge them with shuffles; this one is meant
       to be read, and the dot products it leaves parallel dominate for d >> 1.)
    3. softmax over the buffer: the max is its first entry (it is sorted); the sum is a
       shared-memory tree reduction (``block_sum``). Threads write idx and p slot by slot.
    4. out: thread c computes column c of sum_t p_t v_{j_t} (reads of v rows are coalesced).
Backward, per block: threads compute g_t over slots, a tree reduction gives sum_u p_u g_u,
then thread c accumulates column c of dq and atomically adds column c of every kept key's
dk and dv (neighbouring threads hit neighbouring addresses).
Shared-memory arrays are sized at compile time: the forward's three selection arrays hold
``MAX_TOP_K`` = 128 entries (a larger kk raises ValueError) and its three tile/reduction
arrays ``MAX_THREADS`` = 128, about 5 KB per block in float64 and 3 KB in float32.

Arrays get in as in ``cuda_softmax``: CuPy arrays (``__cuda_array_interface__``) go to the
kernels without a copy and outputs are allocated with the input's array module; under
Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) the same code runs on NumPy arrays.
A mask is passed as given, padded to 3-d with size-1 axes, and a size-1 axis is read at
index 0, so a (B, 1, Lk) padding mask is never expanded to (B, Lq, Lk).
"""

from __future__ import annotations

import functools
import math
from types import ModuleType
from typing import Any

from ..backend import array_module
from .cuda_softmax import (
    MAX_THREADS,
    block_reductions,
    block_size,
    check_float,
    cuda_module,
    launch_stream,
)

__all__ = ["cuda_topk_attention_forward", "cuda_topk_attention_backward", "MAX_TOP_K"]

# The sorted selection buffer lives in shared memory, sized at compile time.
MAX_TOP_K = 128

# numba.cuda, bound on first use; kernels must see it as a module global (see cuda_softmax).
cuda: ModuleType | None = None


@functools.cache
def _topk_kernels(dtype: Any) -> tuple[Any, Any]:
    """The forward and backward kernels for one float dtype (it types the shared buffers)."""
    import numba  # noqa: PLC0415

    global cuda
    cuda = cuda_module()
    _, block_sum = block_reductions()
    real = numba.from_dtype(dtype)
    int32 = numba.int32
    zero = real(0.0)

    @cuda.jit(device=True)
    def insert_sorted(best_s, best_j, n, cap, s, j):
        """Insert (s, j) into best_s[:n], sorted by descending score; keep at most cap.

        Returns the new count. An entry only moves past strictly lower scores, so among
        equal scores the one inserted first (the lower key index) stays first.
        """
        if n == cap and not s > best_s[cap - 1]:
            return n
        pos = n if n < cap else cap - 1  # a full buffer drops its last entry
        while pos > 0 and s > best_s[pos - 1]:
            best_s[pos] = best_s[pos - 1]
            best_j[pos] = best_j[pos - 1]
            pos -= 1
        best_s[pos] = s
        best_j[pos] = j
        return min(n + 1, cap)

    @cuda.jit
    def forward(q, k, v, mask, scale, out, idx, p):
        best_s = cuda.shared.array(MAX_TOP_K, real)
        best_j = cuda.shared.array(MAX_TOP_K, int32)
        best_p = cuda.shared.array(MAX_TOP_K, real)
        tile_s = cuda.shared.array(MAX_THREADS, real)
        tile_ok = cuda.shared.array(MAX_THREADS, int32)
        red = cuda.shared.array(MAX_THREADS, real)
        kept = cuda.shared.array(1, int32)

        tid = cuda.threadIdx.x
        width = cuda.blockDim.x
        lq, lk, d, dv, kk = q.shape[1], k.shape[1], q.shape[2], v.shape[2], idx.shape[2]
        b = cuda.blockIdx.x // lq
        i = cuda.blockIdx.x % lq
        mb = b if mask.shape[0] > 1 else 0
        mi = i if mask.shape[1] > 1 else 0

        n = 0  # entries in the buffer; only thread 0 keeps it
        for start in range(0, lk, width):
            j = start + tid
            tile_ok[tid] = 0
            if j < lk and mask[mb, mi, j if mask.shape[2] > 1 else 0]:
                s = zero
                for c in range(d):
                    s += q[b, i, c] * k[b, j, c]
                tile_s[tid] = s * scale
                tile_ok[tid] = 1
            cuda.syncthreads()  # the tile's scores are in shared memory
            if tid == 0:
                for t in range(min(width, lk - start)):
                    if tile_ok[t]:
                        n = insert_sorted(best_s, best_j, n, kk, tile_s[t], start + t)
            cuda.syncthreads()  # thread 0 is done with the tile before it is overwritten
        if tid == 0:
            kept[0] = n
        cuda.syncthreads()
        n = kept[0]

        m = best_s[0] if n > 0 else zero
        if not math.isfinite(m):
            m = zero  # only -inf scores kept: their weights are exp(-inf) = 0
        z = zero
        for t in range(tid, n, width):
            z += math.exp(best_s[t] - m)
        red[tid] = z
        z = block_sum(red, tid, width)

        for t in range(tid, kk, width):
            if t < n:
                best_p[t] = math.exp(best_s[t] - m) / z if z > zero else zero
                idx[b, i, t] = best_j[t]
                p[b, i, t] = best_p[t]
            else:
                idx[b, i, t] = -1
                p[b, i, t] = zero
        cuda.syncthreads()  # best_p is complete

        for c in range(tid, dv, width):
            acc = zero
            for t in range(n):
                acc += best_p[t] * v[b, best_j[t], c]
            out[b, i, c] = acc

    @cuda.jit
    def backward(q, k, v, idx, p, gout, scale, gq, gk, gv):
        gs = cuda.shared.array(MAX_TOP_K, real)
        red = cuda.shared.array(MAX_THREADS, real)

        tid = cuda.threadIdx.x
        width = cuda.blockDim.x
        lq, d, dv, kk = q.shape[1], q.shape[2], v.shape[2], idx.shape[2]
        b = cuda.blockIdx.x // lq
        i = cuda.blockIdx.x % lq

        part = zero  # this thread's share of sum_u p_u g_u
        for t in range(tid, kk, width):
            j = idx[b, i, t]
            g = zero
            if j >= 0:
                for c in range(dv):
                    g += gout[b, i, c] * v[b, j, c]
            gs[t] = g
            part += p[b, i, t] * g
        red[tid] = part
        pg = block_sum(red, tid, width)
        for t in range(tid, kk, width):
            gs[t] = p[b, i, t] * (gs[t] - pg)
        cuda.syncthreads()  # gs is complete

        for c in range(tid, d, width):
            acc = zero
            qc = q[b, i, c] * scale
            for t in range(kk):
                j = idx[b, i, t]
                if j >= 0:
                    acc += gs[t] * k[b, j, c]
                    cuda.atomic.add(gk, (b, j, c), gs[t] * qc)
            gq[b, i, c] = acc * scale
        for c in range(tid, dv, width):
            go = gout[b, i, c]
            for t in range(kk):
                j = idx[b, i, t]
                if j >= 0:
                    cuda.atomic.add(gv, (b, j, c), p[b, i, t] * go)

    return forward, backward


# ---------------------------------------------------------------- wrappers


def _check_qkv(q: Any, k: Any, v: Any) -> None:
    for name, a in (("q", q), ("k", k), ("v", v)):
        check_float(a, name)
        if a.ndim != 3:
            raise ValueError(f"{name} must be 3-d (batch, seq, features), got shape {a.shape}")
    if not q.dtype == k.dtype == v.dtype:
        raise TypeError(f"q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if k.shape[0] != q.shape[0] or v.shape[0] != q.shape[0]:
        raise ValueError(
            f"q, k, v must have the same batch size, got {q.shape}, {k.shape}, {v.shape}"
        )
    if k.shape[2] != q.shape[2]:
        raise ValueError(f"q and k must have the same feature size, got {q.shape} and {k.shape}")
    if v.shape[1] != k.shape[1]:
        raise ValueError(f"k and v must have the same number of keys, got {k.shape} and {v.shape}")


def _scale(scale: float | None, d: int, dtype: Any) -> Any:
    """The score scale in the arrays' dtype (1 / sqrt(d) by default)."""
    if scale is None:
        if d == 0:
            raise ValueError("q and k have 0 features: the default scale 1/sqrt(d) is undefined")
        scale = 1.0 / math.sqrt(d)
    return dtype.type(scale)


def _mask_3d(mask: Any, xp: ModuleType, shape: tuple[int, int, int]) -> Any:
    """The mask with size-1 axes prepended to 3-d, checked to broadcast to ``shape``."""
    if mask is None:
        return xp.ones((1, 1, 1), dtype=bool)
    if str(getattr(mask, "dtype", None)) != "bool":
        raise TypeError(f"mask must be a boolean array, got {getattr(mask, 'dtype', type(mask))}")
    if mask.ndim > 3:
        raise ValueError(f"mask must have at most 3 dimensions, got shape {mask.shape}")
    m = mask.reshape((1,) * (3 - mask.ndim) + tuple(mask.shape))
    if any(ms not in (1, s) for ms, s in zip(m.shape, shape)):
        raise ValueError(f"mask of shape {mask.shape} does not broadcast to (B, Lq, Lk) {shape}")
    return m


def cuda_topk_attention_forward(
    q: Any,
    k: Any,
    v: Any,
    top_k: int,
    mask: Any = None,
    scale: float | None = None,
    *,
    threads_per_block: int | None = None,
) -> tuple[Any, Any, Any]:
    """Top-k attention on the GPU -> (out (B, Lq, dv), idx (B, Lq, kk) int32, p (B, Lq, kk)).

    q (B, Lq, d), k (B, Lk, d), v (B, Lk, dv), float32 or float64, all one dtype; mask None
    or boolean, broadcastable to (B, Lq, Lk), True where a query may attend to a key;
    scale defaults to 1/sqrt(d). kk = min(top_k, Lk) must be at most MAX_TOP_K (128).
    """
    _check_qkv(q, k, v)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    bsz, lq, d = q.shape
    lk, dv = v.shape[1], v.shape[2]
    kk = min(top_k, lk)
    if kk > MAX_TOP_K:
        raise ValueError(
            f"the CUDA top-k kernel keeps at most MAX_TOP_K={MAX_TOP_K} keys per query, "
            f"got top_k={top_k} with {lk} keys"
        )
    xp = array_module(q)
    scale = _scale(scale, d, q.dtype)
    mask3 = _mask_3d(mask, xp, (bsz, lq, lk))
    out = xp.zeros((bsz, lq, dv), dtype=q.dtype)
    idx = xp.full((bsz, lq, kk), -1, dtype=xp.int32)
    p = xp.zeros((bsz, lq, kk), dtype=q.dtype)
    if bsz * lq == 0 or kk == 0:
        return out, idx, p  # no query, or no key to attend to: nothing to launch
    threads = block_size(max(lk, dv), threads_per_block)
    forward, _ = _topk_kernels(q.dtype)
    forward[bsz * lq, threads, launch_stream(xp)](q, k, v, mask3, scale, out, idx, p)
    return out, idx, p


def cuda_topk_attention_backward(
    q: Any,
    k: Any,
    v: Any,
    idx: Any,
    p: Any,
    gout: Any,
    scale: float | None = None,
    *,
    threads_per_block: int | None = None,
) -> tuple[Any, Any, Any]:
    """Gradients (gq, gk, gv) of top-k attention, from the forward's ``idx`` and ``p``.

    ``gout`` is dL/dout, (B, Lq, dv); ``scale`` must be the one the forward used.
    """
    _check_qkv(q, k, v)
    check_float(p, "p")
    check_float(gout, "gout")
    bsz, lq, d = q.shape
    dv = v.shape[2]
    if str(getattr(idx, "dtype", None)) != "int32":
        raise TypeError(f"idx must be an int32 array, got dtype {getattr(idx, 'dtype', None)}")
    if idx.ndim != 3 or idx.shape[:2] != (bsz, lq) or p.shape != idx.shape:
        raise ValueError(
            f"idx and p must both have shape (B, Lq, kk) with (B, Lq) = {(bsz, lq)}, "
            f"got {idx.shape} and {p.shape}"
        )
    if idx.shape[2] > MAX_TOP_K:
        raise ValueError(f"kk = {idx.shape[2]} exceeds MAX_TOP_K={MAX_TOP_K}")
    if gout.shape != (bsz, lq, dv):
        raise ValueError(f"gout must have shape (B, Lq, dv) = {(bsz, lq, dv)}, got {gout.shape}")
    if p.dtype != q.dtype or gout.dtype != q.dtype:
        raise TypeError(f"p and gout must have q's dtype {q.dtype}, got {p.dtype}, {gout.dtype}")
    xp = array_module(q)
    scale = _scale(scale, d, q.dtype)
    gq = xp.zeros(q.shape, dtype=q.dtype)
    gk = xp.zeros(k.shape, dtype=q.dtype)  # zeroed: the kernel adds into it
    gv = xp.zeros(v.shape, dtype=q.dtype)
    kk = idx.shape[2]
    if bsz * lq == 0 or kk == 0:
        return gq, gk, gv
    threads = block_size(max(kk, d, dv), threads_per_block)
    _, backward = _topk_kernels(q.dtype)
    backward[bsz * lq, threads, launch_stream(xp)](q, k, v, idx, p, gout, scale, gq, gk, gv)
    return gq, gk, gv
