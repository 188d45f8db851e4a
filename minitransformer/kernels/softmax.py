"""Softmax along one axis: the plain reference (any backend) and fused Numba CPU kernels.

    softmax(x)_i = exp(x_i - max_j x_j) / sum_j exp(x_j - max_j x_j)
    backward:  dL/dx = y * (dL/dy - sum_j dL/dy_j * y_j)

Masked entries are -inf and get probability 0; a row whose entries are all -inf
(a query that may attend to nothing) gets all zeros, never NaN.

``softmax_reference`` / ``softmax_backward_reference`` are the formula written with
``xp``; the kernels are tested against them. ``softmax_forward`` / ``softmax_backward``
are what the autograd calls: on a CuPy array they hand over to the CUDA kernels in
cuda_softmax.py, on a NumPy array they run the fused Numba kernels, which read each
row once from memory and write it once:

    forward, per row:  m = max_j x_j                     (a vectorised integer-key max)
                       y_j = exp(x_j - m), s = sum_j y_j (one pass; the row is now in cache)
                       y_j *= 1 / s                      (a pass over the cached row)
    backward, per row: d = sum_j gy_j y_j;  gx_j = y_j (gy_j - d)

Which axis. Any C-contiguous array is viewed, without a copy, as (outer, n, inner):
n is the softmax axis, outer the axes before it, inner the axes after it.
  inner == 1 (the last axis): rows of length n are contiguous; ``prange`` over rows,
      and the loop along a row vectorises. This is the fast path.
  inner > 1 (any other axis): element (o, j, c) sits at o*n*inner + j*inner + c, so the
      softmax runs down columns; the kernel keeps a running max and sum for a strip of
      up to _STRIP neighbouring columns and walks j, vectorising across the strip.
An input that is not C-contiguous is copied to a contiguous one first.

Small inputs (< PARALLEL_MIN_ELEMENTS) go to a serial twin of each kernel, where waking
the thread pool would cost more than the work. ``exp`` and ``max_of`` come from _numba.py,
which explains why they are hand-written.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit, prange

from ..backend import array_module
from ._numba import CACHE, FASTMATH, PARALLEL_MIN_ELEMENTS, exp, max_of, num_threads


def softmax_reference(x: Any, axis: int = -1) -> Any:
    """Stable softmax written as the formula; the kernels are tested against it."""
    xp = array_module(x)
    m = xp.max(x, axis=axis, keepdims=True) if x.size else x.sum(axis=axis, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0)  # an all -inf row: subtract 0, exp gives zeros
    e = xp.exp(x - m)
    s = xp.sum(e, axis=axis, keepdims=True)
    return e / xp.where(s > 0, s, 1)


def softmax_backward_reference(y: Any, gy: Any, axis: int = -1) -> Any:
    """dL/dx = y * (dL/dy - <dL/dy, y>) along ``axis``."""
    xp = array_module(y)
    return y * (gy - xp.sum(gy * y, axis=axis, keepdims=True))


# ---------------------------------------------------------------- Numba kernels

_STRIP = 128  # columns handled together when the axis is not the last one


@njit(fastmath=FASTMATH, cache=CACHE)
def _forward_row(x, y):
    m = max_of(x)
    if m == -np.inf:  # every entry masked (or the row is empty): all zeros, not 0/0
        y[:] = 0
        return
    s = x.dtype.type(0)
    for j in range(x.size):
        e = exp(x[j] - m)
        y[j] = e
        s += e
    inv = x.dtype.type(1) / s
    for j in range(x.size):
        y[j] *= inv


@njit(fastmath=FASTMATH, cache=CACHE)
def _backward_row(y, gy, gx):
    d = y.dtype.type(0)
    for j in range(y.size):
        d += gy[j] * y[j]
    for j in range(y.size):
        gx[j] = y[j] * (gy[j] - d)


@njit(fastmath=FASTMATH, cache=CACHE)
def _forward_strip(x, y, c0, c1):
    # x, y: (n, inner) slices of one outer index; columns c0:c1 form one strip. Each
    # loop runs over a row slice x[j, c0:c1] from index 0: an index like x[j, c0 + c]
    # would make Numba check for negative indices, which blocks vectorisation.
    m = np.full(c1 - c0, -np.inf, dtype=x.dtype)
    for j in range(x.shape[0]):
        xr = x[j, c0:c1]
        for c in range(m.size):
            m[c] = xr[c] if xr[c] > m[c] else m[c]
    for c in range(m.size):
        if m[c] == -np.inf:  # fully masked column: exp(-inf - 0) = 0 below
            m[c] = 0
    s = np.zeros(c1 - c0, dtype=x.dtype)
    for j in range(x.shape[0]):
        xr, yr = x[j, c0:c1], y[j, c0:c1]
        for c in range(m.size):
            e = exp(xr[c] - m[c])
            yr[c] = e
            s[c] += e
    for c in range(s.size):
        s[c] = 1 / s[c] if s[c] > 0 else 0
    for j in range(x.shape[0]):
        yr = y[j, c0:c1]
        for c in range(s.size):
            yr[c] *= s[c]


@njit(fastmath=FASTMATH, cache=CACHE)
def _backward_strip(y, gy, gx, c0, c1):
    d = np.zeros(c1 - c0, dtype=y.dtype)
    for j in range(y.shape[0]):
        yr, gr = y[j, c0:c1], gy[j, c0:c1]
        for c in range(d.size):
            d[c] += gr[c] * yr[c]
    for j in range(y.shape[0]):
        yr, gr, xr = y[j, c0:c1], gy[j, c0:c1], gx[j, c0:c1]
        for c in range(d.size):
            xr[c] = yr[c] * (gr[c] - d[c])


# ---------------------------------------------------------------- the launches
# Each pair is the same loop, once with prange (parallel=True) and once serial.


@njit(parallel=True, fastmath=FASTMATH, cache=CACHE)
def _forward_rows_parallel(x, y):
    for i in prange(x.shape[0]):
        _forward_row(x[i], y[i])


@njit(fastmath=FASTMATH, cache=CACHE)
def _forward_rows_serial(x, y):
    for i in range(x.shape[0]):
        _forward_row(x[i], y[i])


@njit(parallel=True, fastmath=FASTMATH, cache=CACHE)
def _backward_rows_parallel(y, gy, gx):
    for i in prange(y.shape[0]):
        _backward_row(y[i], gy[i], gx[i])


@njit(fastmath=FASTMATH, cache=CACHE)
def _backward_rows_serial(y, gy, gx):
    for i in range(y.shape[0]):
        _backward_row(y[i], gy[i], gx[i])


@njit(parallel=True, fastmath=FASTMATH, cache=CACHE)
def _forward_columns_parallel(x, y):
    strips = (x.shape[2] + _STRIP - 1) // _STRIP
    for t in prange(x.shape[0] * strips):
        o, c0 = t // strips, (t % strips) * _STRIP
        _forward_strip(x[o], y[o], c0, min(c0 + _STRIP, x.shape[2]))


@njit(fastmath=FASTMATH, cache=CACHE)
def _forward_columns_serial(x, y):
    strips = (x.shape[2] + _STRIP - 1) // _STRIP
    for t in range(x.shape[0] * strips):
        o, c0 = t // strips, (t % strips) * _STRIP
        _forward_strip(x[o], y[o], c0, min(c0 + _STRIP, x.shape[2]))


@njit(parallel=True, fastmath=FASTMATH, cache=CACHE)
def _backward_columns_parallel(y, gy, gx):
    strips = (y.shape[2] + _STRIP - 1) // _STRIP
    for t in prange(y.shape[0] * strips):
        o, c0 = t // strips, (t % strips) * _STRIP
        _backward_strip(y[o], gy[o], gx[o], c0, min(c0 + _STRIP, y.shape[2]))


@njit(fastmath=FASTMATH, cache=CACHE)
def _backward_columns_serial(y, gy, gx):
    strips = (y.shape[2] + _STRIP - 1) // _STRIP
    for t in range(y.shape[0] * strips):
        o, c0 = t // strips, (t % strips) * _STRIP
        _backward_strip(y[o], gy[o], gx[o], c0, min(c0 + _STRIP, y.shape[2]))


# ---------------------------------------------------------------- public functions


def softmax_forward(x: Any, axis: int = -1, *, out: np.ndarray | None = None) -> Any:
    """Softmax of ``x`` along ``axis``: float32/float64, any shape; same shape and dtype.

    -inf entries get probability 0; a slice that is all -inf gives zeros. ``out`` (NumPy
    only) receives the result when given: a C-contiguous array of x's shape and dtype.
    """
    if array_module(x) is not np:
        if out is not None:
            raise TypeError("softmax_forward: out= is only supported for NumPy arrays")
        from .cuda_softmax import cuda_softmax_forward  # noqa: PLC0415 - GPU only

        return cuda_softmax_forward(x, axis)
    x = _check_float("softmax_forward", "x", x)
    outer, n, inner = _split_shape("softmax_forward", x.shape, axis)
    y = _output("softmax_forward", x, out)
    if x.size == 0:
        return y
    x = np.ascontiguousarray(x)
    parallel = x.size >= PARALLEL_MIN_ELEMENTS and num_threads() > 1
    if inner == 1:
        kernel = _forward_rows_parallel if parallel else _forward_rows_serial
        kernel(x.reshape(outer, n), y.reshape(outer, n))
    else:
        kernel = _forward_columns_parallel if parallel else _forward_columns_serial
        kernel(x.reshape(outer, n, inner), y.reshape(outer, n, inner))
    return y


def softmax_backward(y: Any, gy: Any, axis: int = -1, *, out: np.ndarray | None = None) -> Any:
    """dL/dx = y * (gy - sum(gy * y, axis)) from the softmax output ``y`` and ``gy = dL/dy``."""
    if array_module(y) is not np:
        if out is not None:
            raise TypeError("softmax_backward: out= is only supported for NumPy arrays")
        from .cuda_softmax import cuda_softmax_backward  # noqa: PLC0415 - GPU only

        return cuda_softmax_backward(y, gy, axis)
    y = _check_float("softmax_backward", "y", y)
    gy = _check_float("softmax_backward", "gy", gy)
    if gy.shape != y.shape or gy.dtype != y.dtype:
        raise ValueError(
            f"softmax_backward: gy must match y, got gy {gy.shape} {gy.dtype} "
            f"and y {y.shape} {y.dtype}"
        )
    outer, n, inner = _split_shape("softmax_backward", y.shape, axis)
    gx = _output("softmax_backward", y, out)
    if y.size == 0:
        return gx
    y, gy = np.ascontiguousarray(y), np.ascontiguousarray(gy)
    parallel = y.size >= PARALLEL_MIN_ELEMENTS and num_threads() > 1
    if inner == 1:
        kernel = _backward_rows_parallel if parallel else _backward_rows_serial
        kernel(y.reshape(outer, n), gy.reshape(outer, n), gx.reshape(outer, n))
    else:
        kernel = _backward_columns_parallel if parallel else _backward_columns_serial
        shape3 = (outer, n, inner)
        kernel(y.reshape(shape3), gy.reshape(shape3), gx.reshape(shape3))
    return gx


def _check_float(fn: str, name: str, a: Any) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{fn}: {name} must be a NumPy or CuPy array, got {type(a).__name__}")
    if a.dtype not in (np.float32, np.float64):
        raise TypeError(f"{fn}: {name} must be float32 or float64, got {a.dtype}")
    return a


def _split_shape(fn: str, shape: tuple[int, ...], axis: int) -> tuple[int, int, int]:
    """(outer, n, inner): the sizes before, along and after ``axis``."""
    ndim = len(shape)
    if not -ndim <= axis < ndim:
        raise IndexError(f"{fn}: axis {axis} is out of range for an array of shape {shape}")
    axis %= ndim
    return math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1 :])


def _output(fn: str, x: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    if out is None:
        return np.empty(x.shape, dtype=x.dtype)
    if out.shape != x.shape or out.dtype != x.dtype or not out.flags.c_contiguous:
        raise ValueError(
            f"{fn}: out must be a C-contiguous {x.dtype} array of shape {x.shape}, "
            f"got {out.dtype} {out.shape} (c_contiguous={out.flags.c_contiguous})"
        )
    return out
