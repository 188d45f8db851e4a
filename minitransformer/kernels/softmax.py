"""Softmax along one axis: the plain reference (any backend, via ``xp``).

    softmax(x)_i = exp(x_i - max_j x_j) / sum_j exp(x_j - max_j x_j)
    backward:  dL/dx = y * (dL/dy - sum_j dL/dy_j * y_j)

Masked entries are -inf and get probability 0; a row whose entries are all -inf
(a query that may attend to nothing) gets all zeros, never NaN.
"""

from __future__ import annotations

from typing import Any

from ..backend import array_module


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
