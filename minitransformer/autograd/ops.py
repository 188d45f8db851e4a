"""The primitive ops: each forward beside its backward, written like the formula.

``g`` is always dL/d(output). Gradients may come back in the broadcast shape; the
tape's ``sum_to`` reduces them to each input's shape. ``xp`` is NumPy or CuPy,
whichever holds the data.
"""

from __future__ import annotations

import math
from typing import Any

from ..backend import array_module, scatter_add
from .function import Function

# ---------------------------------------------------------------- arithmetic


class Add(Function):
    """z = a + b;   dz/da = 1, dz/db = 1"""

    @staticmethod
    def forward(ctx, a, b):
        return a + b

    @staticmethod
    def backward(ctx, g):
        return g, g


class Sub(Function):
    """z = a - b;   dz/da = 1, dz/db = -1"""

    @staticmethod
    def forward(ctx, a, b):
        return a - b

    @staticmethod
    def backward(ctx, g):
        return g, -g


class Mul(Function):
    """z = a * b;   dz/da = b, dz/db = a"""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        return g * b, g * a


class Div(Function):
    """z = a / b;   dz/da = 1/b, dz/db = -a/b^2"""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a / b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        gb = None
        if ctx.needs_input_grad[1]:
            gb = -g * a / (b * b)
        return g / b, gb


class Neg(Function):
    """z = -a;   dz/da = -1"""

    @staticmethod
    def forward(ctx, a):
        return -a

    @staticmethod
    def backward(ctx, g):
        return -g


class PowScalar(Function):
    """z = a^p for a constant p;   dz/da = p a^(p-1)"""

    @staticmethod
    def forward(ctx, a, p):
        ctx.save_for_backward(a)
        ctx.p = p
        return a**p

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        p = ctx.p
        if p == 0:
            return g * 0  # d/da a^0 = 0 everywhere, also at a = 0 where p a^(p-1) is 0 * inf
        return g * p * a ** (p - 1)


class Pow(Function):
    """z = a^b;   dz/da = b a^(b-1),   dz/db = a^b log(a)"""

    @staticmethod
    def forward(ctx, a, b):
        z = a**b
        ctx.save_for_backward(a, b, z)
        return z

    @staticmethod
    def backward(ctx, g):
        a, b, z = ctx.saved_tensors
        xp = array_module(a)
        ga = g * b * a ** (b - 1)
        gb = None
        if ctx.needs_input_grad[1]:
            # a^b log a is defined as 0 where a == 0 (the limit for b > 0)
            safe_a = xp.where(a > 0, a, 1)
            gb = g * z * xp.log(safe_a)
        return ga, gb


def _num_rows(a) -> int:
    """The rows of ``a`` folded to 2-D (not ``reshape(-1, k)``: that fails when k == 0)."""
    return math.prod(a.shape[:-1])


def fold_matmul(a, b):
    """a @ b; a stack (..., n, k) times one matrix (k, m) runs as a single 2-D product.

    NumPy would otherwise issue one small BLAS call per leading index, which is slower
    than one large call over the folded rows, even when folding a strided ``a`` costs
    a copy.
    """
    if b.ndim == 2 and a.ndim > 2:
        rows = a.reshape(_num_rows(a), a.shape[-1])  # (n, k), a copy if a is strided
        return (rows @ b).reshape(*a.shape[:-1], b.shape[-1])
    return a @ b


class MatMul(Function):
    """Z = A @ B (batched over leading axes);   dL/dA = G @ B^T,   dL/dB = A^T @ G"""

    @staticmethod
    def forward(ctx, a, b):
        if a.ndim < 2 or b.ndim < 2:
            raise ValueError("MatMul needs arrays of at least 2 dimensions")
        if a.shape[-1] != b.shape[-2]:
            raise ValueError(
                f"matmul shapes {tuple(a.shape)} and {tuple(b.shape)} do not align: "
                f"{a.shape[-1]} (last axis of the first) != {b.shape[-2]} "
                "(second-to-last axis of the second)"
            )
        ctx.save_for_backward(a, b)
        return fold_matmul(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        xp = array_module(a)
        ga = gb = None
        if ctx.needs_input_grad[0]:
            ga = fold_matmul(g, xp.swapaxes(b, -1, -2))
        if ctx.needs_input_grad[1]:
            if b.ndim == 2 and a.ndim > 2:
                # x (..., n, k) @ W (k, m): fold the batch into rows instead of
                # building a (batch, k, m) gradient and summing it afterwards
                gb = a.reshape(_num_rows(a), a.shape[-1]).T @ g.reshape(_num_rows(g), g.shape[-1])
            else:
                gb = xp.swapaxes(a, -1, -2) @ g
        return ga, gb


# ---------------------------------------------------------------- elementwise functions


class Exp(Function):
    """z = e^a;   dz/da = e^a = z"""

    @staticmethod
    def forward(ctx, a):
        z = array_module(a).exp(a)
        ctx.save_for_backward(z)
        return z

    @staticmethod
    def backward(ctx, g):
        (z,) = ctx.saved_tensors
        return g * z


class Log(Function):
    """z = log a;   dz/da = 1/a"""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return array_module(a).log(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g / a


class Sqrt(Function):
    """z = sqrt(a);   dz/da = 1 / (2 sqrt(a))"""

    @staticmethod
    def forward(ctx, a):
        z = array_module(a).sqrt(a)
        ctx.save_for_backward(z)
        return z

    @staticmethod
    def backward(ctx, g):
        (z,) = ctx.saved_tensors
        return g / (2 * z)


class Tanh(Function):
    """z = tanh a;   dz/da = 1 - z^2"""

    @staticmethod
    def forward(ctx, a):
        z = array_module(a).tanh(a)
        ctx.save_for_backward(z)
        return z

    @staticmethod
    def backward(ctx, g):
        (z,) = ctx.saved_tensors
        return g * (1 - z * z)


class Relu(Function):
    """z = max(a, 0);   dz/da = 1 where a > 0, else 0"""

    @staticmethod
    def forward(ctx, a):
        z = array_module(a).maximum(a, 0)
        ctx.save_for_backward(a)
        return z

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g * (a > 0)


class Cast(Function):
    """z = a converted to another float dtype;   dz/da = 1 (cast back)"""

    @staticmethod
    def forward(ctx, a, dtype):
        ctx.dtype_in = a.dtype
        return a.astype(dtype)

    @staticmethod
    def backward(ctx, g):
        return g.astype(ctx.dtype_in)


# ---------------------------------------------------------------- reductions


def _normalize_axis(axis: Any, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    out = []
    for ax in axes:
        if not -ndim <= ax < max(ndim, 1):
            raise ValueError(f"axis {ax} is out of range for an array of {ndim} dimensions")
        out.append(ax % ndim if ndim else 0)
    return tuple(out)


def _expand_reduced(g: Any, in_shape: tuple, axes: tuple, keepdims: bool) -> Any:
    """Put back the reduced axes (as size 1) so ``g`` broadcasts against the input."""
    if keepdims:
        return g
    shape = list(in_shape)
    for ax in axes:
        shape[ax] = 1
    return g.reshape(shape)


class Sum(Function):
    """z = sum_i a_i over ``axis``;   dz/da_i = 1"""

    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        ctx.shape = a.shape
        ctx.axes = _normalize_axis(axis, a.ndim)
        ctx.keepdims = keepdims
        # a full reduction gives a NumPy scalar: keep it a 0-d array like every other result
        return array_module(a).asarray(a.sum(axis=ctx.axes, keepdims=keepdims))

    @staticmethod
    def backward(ctx, g):
        g = _expand_reduced(g, ctx.shape, ctx.axes, ctx.keepdims)
        return array_module(g).broadcast_to(g, ctx.shape)


class Mean(Function):
    """z = (1/n) sum_i a_i over ``axis``;   dz/da_i = 1/n"""

    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        ctx.shape = a.shape
        ctx.axes = _normalize_axis(axis, a.ndim)
        ctx.keepdims = keepdims
        n = 1
        for ax in ctx.axes:
            n *= a.shape[ax]
        ctx.n = n
        return array_module(a).asarray(a.mean(axis=ctx.axes, keepdims=keepdims))

    @staticmethod
    def backward(ctx, g):
        g = _expand_reduced(g, ctx.shape, ctx.axes, ctx.keepdims) / ctx.n
        return array_module(g).broadcast_to(g, ctx.shape)


class Max(Function):
    """z = max_i a_i over ``axis``;   dz/da_i = 1/count where a_i is the max, else 0

    Ties share the gradient equally (as ``torch.amax``), so the gradient of the
    maximum of equal values is well defined.
    """

    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        axes = _normalize_axis(axis, a.ndim)
        if any(a.shape[ax] == 0 for ax in axes):
            raise ValueError(
                f"max over an empty axis is undefined (shape {tuple(a.shape)}, axis {axis})"
            )
        z = a.max(axis=axes, keepdims=True)
        ctx.save_for_backward(a, z)
        ctx.axes, ctx.keepdims = axes, keepdims
        if keepdims:
            return z
        return z.reshape([n for i, n in enumerate(a.shape) if i not in axes])

    @staticmethod
    def backward(ctx, g):
        a, z = ctx.saved_tensors
        g = _expand_reduced(g, a.shape, ctx.axes, ctx.keepdims)
        winners = a == z
        count = winners.sum(axis=ctx.axes, keepdims=True)
        return g * winners / count


# ---------------------------------------------------------------- shapes and indexing


class Reshape(Function):
    """z = a viewed with a new shape;   dL/da = dL/dz reshaped back"""

    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = a.shape
        try:
            return a.reshape(shape)
        except ValueError as exc:
            raise ValueError(f"cannot reshape {tuple(a.shape)} (size {a.size}) to {shape}") from exc

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.shape)


class Transpose(Function):
    """z = a with its axes permuted;   dL/da = dL/dz with the inverse permutation"""

    @staticmethod
    def forward(ctx, a, axes):
        if sorted(axes) != list(range(a.ndim)):
            raise ValueError(f"axes {axes} are not a permutation of the {a.ndim} axes of {a.shape}")
        ctx.axes = axes
        return a.transpose(axes)

    @staticmethod
    def backward(ctx, g):
        inverse = [0] * len(ctx.axes)
        for i, ax in enumerate(ctx.axes):
            inverse[ax] = i
        return g.transpose(inverse)


def _is_basic_index(index: Any) -> bool:
    """Ints, slices, None and Ellipsis only: each element is read at most once."""
    items = index if isinstance(index, tuple) else (index,)
    return all(isinstance(i, (int, slice)) or i is None or i is Ellipsis for i in items)


class GetItem(Function):
    """z = a[index];   dL/da = zeros with dL/dz added at ``index`` (repeats summed)"""

    @staticmethod
    def forward(ctx, a, index):
        ctx.shape, ctx.dtype, ctx.index = a.shape, a.dtype, index
        return a[index]

    @staticmethod
    def backward(ctx, g):
        xp = array_module(g)
        ga = xp.zeros(ctx.shape, dtype=ctx.dtype)
        if _is_basic_index(ctx.index):
            ga[ctx.index] = g
        else:
            scatter_add(ga, ctx.index, g)
        return ga
