"""Activations and softmax, each forward beside its backward.

    relu(x)      = max(x, 0)
    gelu(x)      = x * Phi(x) = x/2 * (1 + erf(x / sqrt 2))                     (exact)
                 ~ x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))           ("tanh")
    softmax(x)_i = exp(x_i - m) / sum_j exp(x_j - m),  m = max_j x_j           (stable)
    log_softmax(x)_i = x_i - m - log sum_j exp(x_j - m)

Softmax runs the fused kernel of ``kernels/softmax.py`` (Numba on the CPU, CUDA on
the GPU). Masked entries (-inf) get probability 0; a row that is all -inf gives zeros.
The exact gelu runs the fused kernels of ``kernels/elementwise.py`` (Numba on the CPU).
"""

from __future__ import annotations

import math

from ..autograd import ops
from ..autograd.function import Function
from ..autograd.tensor import Tensor
from ..backend import array_module
from ..kernels.elementwise import gelu_backward, gelu_forward
from ..kernels.softmax import softmax_backward, softmax_forward

__all__ = ["relu", "gelu", "softmax", "log_softmax", "tanh", "sigmoid"]


def relu(x: Tensor) -> Tensor:
    return ops.Relu.apply(x)


def tanh(x: Tensor) -> Tensor:
    return ops.Tanh.apply(x)


def sigmoid(x: Tensor) -> Tensor:
    """1 / (1 + e^-x), written through tanh so it never overflows: (1 + tanh(x/2)) / 2."""
    return (ops.Tanh.apply(x * 0.5) + 1.0) * 0.5


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


class Gelu(Function):
    """z = x Phi(x);   dz/dx = Phi(x) + x phi(x), with phi the standard normal density

    Both directions run the fused kernels of ``kernels/elementwise.py`` (one pass each on
    NumPy; the formula on CuPy). The forward saves Phi(x), so the backward needs no erf.
    """

    @staticmethod
    def forward(ctx, x):
        y, cdf = gelu_forward(x)
        ctx.save_for_backward(x, cdf)
        return y

    @staticmethod
    def backward(ctx, g):
        x, cdf = ctx.saved_tensors
        return gelu_backward(x, cdf, g)


class GeluTanh(Function):
    """z = x/2 (1 + t), t = tanh(u), u = sqrt(2/pi)(x + 0.044715 x^3);
    dz/dx = (1 + t)/2 + x/2 (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)"""

    @staticmethod
    def forward(ctx, x):
        xp = array_module(x)
        t = xp.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x))
        ctx.save_for_backward(x, t)
        return 0.5 * x * (1.0 + t)

    @staticmethod
    def backward(ctx, g):
        x, t = ctx.saved_tensors
        du = _SQRT_2_OVER_PI * (1.0 + 3 * 0.044715 * x * x)
        return g * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du)


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    if approximate == "none":
        return Gelu.apply(x)
    if approximate == "tanh":
        return GeluTanh.apply(x)
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


class Softmax(Function):
    """y = softmax(x) along ``axis``;   dL/dx = y * (dL/dy - sum(dL/dy * y))"""

    @staticmethod
    def forward(ctx, x, axis):
        y = softmax_forward(x, axis=axis)
        ctx.save_for_backward(y)
        ctx.axis = axis
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return softmax_backward(y, g, axis=ctx.axis)


def _check_axis(x: Tensor, axis: int, name: str) -> int:
    if not -x.ndim <= axis < max(x.ndim, 1):
        raise ValueError(f"{name}: axis {axis} is out of range for a tensor of shape {x.shape}")
    if x.dtype.kind != "f":
        raise TypeError(f"{name} needs a floating-point tensor, got {x.dtype}")
    return axis


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    return Softmax.apply(x, axis=_check_axis(x, axis, "softmax"))


class LogSoftmax(Function):
    """y = x - m - log sum exp(x - m);   dL/dx = dL/dy - softmax(x) * sum(dL/dy)

    With m the row max, the sum is at least 1, so the log never sees 0 (an all -inf
    row gives -inf, not NaN).
    """

    @staticmethod
    def forward(ctx, x, axis):
        xp = array_module(x)
        m = xp.max(x, axis=axis, keepdims=True) if x.size else x.sum(axis=axis, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0)
        shifted = x - m
        s = xp.sum(xp.exp(shifted), axis=axis, keepdims=True)
        y = shifted - xp.log(xp.where(s > 0, s, 1))
        ctx.save_for_backward(y)
        ctx.axis = axis
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        xp = array_module(y)
        return g - xp.exp(y) * xp.sum(g, axis=ctx.axis, keepdims=True)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    return LogSoftmax.apply(x, axis=_check_axis(x, axis, "log_softmax"))
