"""Layer norm over the last axis: the plain reference (any backend) and fused Numba CPU kernels.

    y = xhat * w + b,   xhat = (x - mu) * r,   r = 1 / sqrt(var + eps)
    mu = mean_j x_j,    var = mean_j (x_j - mu)^2              (biased, over the last axis D)
    backward:  gxhat = g * w
               gx = r * (gxhat - mean(gxhat) - xhat * mean(gxhat * xhat))
               gw = sum over rows of g * xhat,   gb = sum over rows of g

``w`` and ``b`` may each be None (scale 1, shift 0).

``layer_norm_reference`` / ``layer_norm_backward_reference`` are the formula written with
``xp``; the kernels are tested against them, and they are what runs on CuPy arrays.
``layer_norm_forward`` / ``layer_norm_backward`` are what the autograd calls: on NumPy
float32/float64 arrays whose weight and bias (and eps, and the incoming gradient) keep x's
dtype they run the fused Numba kernels, on anything else (CuPy, mixed dtypes that NumPy
would promote, ints) the reference. Any C-contiguous x is viewed as (rows, D); a
non-contiguous one is copied first.

    forward, per row:  mu = sum_j x_j / D                         (pass 1)
                       r = 1 / sqrt(sum_j (x_j - mu)^2 / D + eps)  (pass 2, the row is in L1)
                       y_j = (x_j - mu) * r * w_j + b_j            (pass 3)
    backward, per row: xhat_j = (x_j - mu) * r,  gxhat_j = g_j w_j
                       a = sum_j gxhat_j / D,  c = sum_j gxhat_j xhat_j / D       (pass 1)
                       gx_j = r (gxhat_j - a - xhat_j c);  gw_j += g_j xhat_j;  gb_j += g_j

What the forward saves for the backward: x itself (the autograd holds the input anyway, so
it costs no memory and no write) and two float64 numbers per row, mu and r. The backward
recomputes xhat = (x - mu) * r on the fly: two flops per element instead of a saved
(rows, D) array, which the forward would have had to write and the backward to read.

Why it is faster. The xp formula makes about six passes over (rows, D) arrays forward
(the mean, x - mu, its square and mean, the product by r, by w, the sum with b) and ten
backward, most of them reading and writing memory and allocating a temporary. The kernels
read x once and write y once forward, and read g and x once and write gx once backward;
the passes inside a row run over a row that is still in L1.

Accuracy. Every sum is accumulated in float64, for float32 inputs too, and the mean is
subtracted before squaring (two passes, no E[x^2] - E[x]^2 cancellation); mu and r are
kept in float64, and each output is rounded to the row's dtype once at the end. A float32
row 1e4 + small noise therefore normalises as well as in float64: the result is the
float64 answer rounded, within an ulp of it (tests/test_kernel_layernorm.py checks it),
where the float32 formula loses the noise to the rounding of its mean (errors ~1e-2).
The conversions cost nothing measurable: a float32-only version of the forward ran at
the same speed, the kernels wait on memory, not on flops.

Sums over rows (gw, gb). Every row adds into the same D sums, and ``prange`` iterations
writing one shared array would race (lost updates). The backward instead splits the rows
into ``num_threads()`` contiguous chunks, one ``prange`` iteration each; chunk c adds into
row c of (chunks, D) float64 partial sums, which no other iteration touches, and the
chunks' partials are summed after the parallel loop.

Small inputs (< PARALLEL_MIN_ELEMENTS) go to a serial twin of each kernel, where waking
the thread pool would cost more than the work.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit, prange

from ..backend import array_module
from ._numba import CACHE, FASTMATH, PARALLEL_MIN_ELEMENTS, num_threads

__all__ = [
    "layer_norm_reference",
    "layer_norm_backward_reference",
    "layer_norm_forward",
    "layer_norm_backward",
]

Needs = tuple[bool, bool, bool]


# ---------------------------------------------------------------- the reference


def _moments_reference(x: Any, eps: float) -> tuple[Any, Any]:
    """(mu, r) over the last axis, each of shape (..., 1): the mean and 1 / sqrt(var + eps)."""
    xp = array_module(x)
    mu = x.mean(axis=-1, keepdims=True)
    xc = x - mu
    var = (xc * xc).mean(axis=-1, keepdims=True)
    return mu, 1.0 / xp.sqrt(var + eps)


def _scale_shift(xhat: Any, weight: Any, bias: Any) -> Any:
    y = xhat if weight is None else xhat * weight
    return y if bias is None else y + bias


def layer_norm_reference(x: Any, weight: Any, bias: Any, eps: float) -> tuple[Any, Any, Any]:
    """(y, xhat, r) written as the formula; r has shape (..., 1). Any backend, any dtypes."""
    mu, r = _moments_reference(x, eps)
    xhat = (x - mu) * r
    return _scale_shift(xhat, weight, bias), xhat, r


def layer_norm_backward_reference(
    g: Any, xhat: Any, r: Any, weight: Any, needs: Needs = (True, True, True)
) -> tuple[Any, Any, Any]:
    """(gx, gw, gb) from dL/dy = ``g``; an entry is None when ``needs`` says it is not wanted
    (gw is also None when there is no weight)."""
    rows = tuple(range(g.ndim - 1))  # every axis but the last
    gxhat = g if weight is None else g * weight
    gx = None
    if needs[0]:
        gx = r * (
            gxhat
            - gxhat.mean(axis=-1, keepdims=True)
            - xhat * (gxhat * xhat).mean(axis=-1, keepdims=True)
        )
    gw = (g * xhat).sum(axis=rows) if needs[1] and weight is not None else None
    gb = g.sum(axis=rows) if needs[2] else None
    return gx, gw, gb


# ---------------------------------------------------------------- Numba kernels
# x, y, g, gx: (rows, D) in x's dtype; w, b: (D,) in x's dtype; mu, r: (rows,) float64.
# ``np.float64(v)`` widens a float32 element, so every sum and every xhat is float64.


@njit(fastmath=FASTMATH, cache=CACHE)
def _forward_row(x, w, b, y, eps):
    n = x.size
    s = 0.0
    for j in range(n):
        s += np.float64(x[j])
    mu = s / n
    q = 0.0
    for j in range(n):
        d = np.float64(x[j]) - mu
        q += d * d
    r = 1.0 / math.sqrt(q / n + eps)
    for j in range(n):
        y[j] = (np.float64(x[j]) - mu) * r * w[j] + b[j]
    return mu, r


@njit(fastmath=FASTMATH, cache=CACHE)
def _backward_rows(g, x, mu, r, w, gx, gw, gb, row0, row1, need_x, need_params):
    # rows row0:row1; gw, gb: (D,) float64 sums that only this call writes. The second
    # pass writes gx and adds into gw, gb together, so g and x come from memory once.
    n = x.shape[1]
    for i in range(row0, row1):
        xr, gr, m, ri = x[i], g[i], mu[i], r[i]
        if need_x:
            a = 0.0
            c = 0.0
            for j in range(n):
                gh = np.float64(gr[j]) * w[j]
                a += gh
                c += gh * ((np.float64(xr[j]) - m) * ri)
            a /= n
            c /= n
            gxr = gx[i]
            if need_params:
                for j in range(n):
                    gj = np.float64(gr[j])
                    xh = (np.float64(xr[j]) - m) * ri
                    gxr[j] = ri * (gj * w[j] - a - xh * c)
                    gw[j] += gj * xh
                    gb[j] += gj
            else:
                for j in range(n):
                    xh = (np.float64(xr[j]) - m) * ri
                    gxr[j] = ri * (np.float64(gr[j]) * w[j] - a - xh * c)
        elif need_params:
            for j in range(n):
                gj = np.float64(gr[j])
                gw[j] += gj * ((np.float64(xr[j]) - m) * ri)
                gb[j] += gj


# ---------------------------------------------------------------- the launches
# Each pair is the same loop, once with prange (parallel=True) and once serial.


@njit(parallel=True, fastmath=FASTMATH, cache=CACHE)
def _forward_parallel(x, w, b, y, mu, r, eps):
    for i in prange(x.shape[0]):
        mu[i], r[i] = _forward_row(x[i], w, b, y[i], eps)


@njit(fastmath=FASTMATH, cache=CACHE)
def _forward_serial(x, w, b, y, mu, r, eps):
    for i in range(x.shape[0]):
        mu[i], r[i] = _forward_row(x[i], w, b, y[i], eps)


@njit(parallel=True, fastmath=FASTMATH, cache=CACHE)
def _backward_parallel(g, x, mu, r, w, gx, gw_parts, gb_parts, need_x, need_params):
    # one iteration per chunk of rows; chunk c owns row c of the partial sums (no race)
    chunks, rows = gw_parts.shape[0], x.shape[0]
    for c in prange(chunks):
        row0, row1 = c * rows // chunks, (c + 1) * rows // chunks
        _backward_rows(
            g, x, mu, r, w, gx, gw_parts[c], gb_parts[c], row0, row1, need_x, need_params
        )


@njit(fastmath=FASTMATH, cache=CACHE)
def _backward_serial(g, x, mu, r, w, gx, gw_parts, gb_parts, need_x, need_params):
    chunks, rows = gw_parts.shape[0], x.shape[0]
    for c in range(chunks):
        row0, row1 = c * rows // chunks, (c + 1) * rows // chunks
        _backward_rows(
            g, x, mu, r, w, gx, gw_parts[c], gb_parts[c], row0, row1, need_x, need_params
        )


# ---------------------------------------------------------------- public functions


def _kernel_dtype(x: Any, *others: Any, eps: Any = 0.0) -> bool:
    """True when the Numba kernels give NumPy's answer: x is a NumPy float32/float64 array
    with at least one axis and elements, every other array is a NumPy array of x's dtype,
    and eps does not promote x's dtype either (a NumPy float64 eps would, for float32)."""
    if not isinstance(x, np.ndarray) or x.dtype not in (np.float32, np.float64):
        return False
    if x.ndim == 0 or x.size == 0:  # the reference raises / gives what NumPy gives
        return False
    for a in others:
        if a is not None and (not isinstance(a, np.ndarray) or a.dtype != x.dtype):
            return False
    return np.result_type(x, eps) == x.dtype


def layer_norm_forward(x: Any, weight: Any, bias: Any, eps: float) -> tuple[Any, Any, Any]:
    """(y, mu, r): y = layer_norm(x) * weight + bias, and what the backward needs besides x.

    mu and r have shape (..., 1): float64 from the kernels, the reference's dtype otherwise.
    Pass x, mu and r to ``layer_norm_backward``.
    """
    if not _kernel_dtype(x, weight, bias, eps=eps):
        mu, r = _moments_reference(x, eps)
        return _scale_shift((x - mu) * r, weight, bias), mu, r
    d = x.shape[-1]
    lead = x.shape[:-1]
    rows = x.size // d
    x2 = np.ascontiguousarray(x).reshape(rows, d)
    w = np.ones(d, x.dtype) if weight is None else np.ascontiguousarray(weight)
    b = np.zeros(d, x.dtype) if bias is None else np.ascontiguousarray(bias)
    y = np.empty((rows, d), x.dtype)
    mu, r = np.empty(rows), np.empty(rows)
    parallel = x.size >= PARALLEL_MIN_ELEMENTS and num_threads() > 1
    kernel = _forward_parallel if parallel else _forward_serial
    kernel(x2, w, b, y, mu, r, float(eps))
    return y.reshape(x.shape), mu.reshape(*lead, 1), r.reshape(*lead, 1)


def layer_norm_backward(
    g: Any, x: Any, mu: Any, r: Any, weight: Any, needs: Needs = (True, True, True)
) -> tuple[Any, Any, Any]:
    """(gx, gw, gb) from dL/dy = ``g`` and the forward's input ``x`` and its (mu, r).

    Entries ``needs`` does not ask for are None (gw also when weight is None). gw and gb
    have x's dtype, like the reference's.
    """
    need_x = bool(needs[0])
    need_w = bool(needs[1]) and weight is not None
    need_b = bool(needs[2])
    stats64 = isinstance(mu, np.ndarray) and mu.dtype == np.float64 == r.dtype
    if not (stats64 and _kernel_dtype(x, g, weight) and g.shape == x.shape):
        xhat = (x - mu) * r  # the reference's xhat, recomputed; NumPy promotion throughout
        return layer_norm_backward_reference(g, xhat, r, weight, (need_x, need_w, need_b))
    d = x.shape[-1]
    rows = x.size // d
    x2 = np.ascontiguousarray(x).reshape(rows, d)
    g2 = np.ascontiguousarray(g).reshape(rows, d)
    w = np.ones(d, x.dtype) if weight is None else np.ascontiguousarray(weight)
    gx = np.empty((rows, d), x.dtype) if need_x else np.empty((0, d), x.dtype)
    parallel = x.size >= PARALLEL_MIN_ELEMENTS and num_threads() > 1
    chunks = min(num_threads(), rows) if parallel else 1
    need_params = need_w or need_b
    parts = np.zeros((2, chunks, d))  # gw and gb: one row of partial sums per chunk
    kernel = _backward_parallel if parallel else _backward_serial
    if need_params or need_x:
        kernel(
            g2,
            x2,
            np.ascontiguousarray(mu).reshape(rows),
            np.ascontiguousarray(r).reshape(rows),
            w,
            gx,
            parts[0],
            parts[1],
            need_x,
            need_params,
        )
    sums = parts.sum(axis=1).astype(x.dtype)  # add up the chunks' partial sums
    return (
        gx.reshape(x.shape) if need_x else None,
        sums[0] if need_w else None,
        sums[1] if need_b else None,
    )
