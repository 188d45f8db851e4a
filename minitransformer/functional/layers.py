"""The functional forms of the basic layers.

linear(x, W, b)      = x @ W + b                 W: (in, out), as on the board
embedding(ids, W)    = W[ids]                    backward: scatter-add into W's rows
dropout(x, p)        = x * m / (1 - p),  m_i ~ Bernoulli(1 - p)   (training only)
layer_norm(x, w, b)  = (x - mean) / sqrt(var + eps) * w + b       over the last axis
"""

from __future__ import annotations

import math
from typing import Any

from .. import backend
from ..autograd.function import Function
from ..autograd.ops import fold_matmul
from ..autograd.tensor import Tensor
from ..backend import array_module, scatter_add
from ..kernels.layernorm import layer_norm_backward, layer_norm_forward

__all__ = ["linear", "embedding", "dropout", "layer_norm"]


class Linear(Function):
    """y = x @ W + b   (x: (..., in), W: (in, out), b: (out,))

    dL/dx = G @ W^T
    dL/dW = X^T G      with X, G the inputs and upstream gradients folded to rows
    dL/db = sum of G over rows

    One op rather than MatMul then Add: the bias is added in place to the fresh
    product, and its gradient is one row sum, not a broadcast reduced by the tape.
    """

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        y = fold_matmul(x, weight)  # (..., out)
        if bias is not None:
            if bias.dtype == y.dtype:
                y += bias  # y is a new array: adding in place saves one pass and one copy
            else:
                y = y + bias  # promote as NumPy would (e.g. float32 x, float64 bias)
        return y

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        d_in, d_out = weight.shape
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = fold_matmul(g, weight.T)  # (..., in)
        rows = math.prod(g.shape[:-1])
        g_rows = g.reshape(rows, d_out)  # (rows, out)
        if ctx.needs_input_grad[1]:
            gw = x.reshape(rows, d_in).T @ g_rows  # (in, out)
        if ctx.needs_input_grad[2]:
            gb = g_rows.sum(axis=0)  # (out,)
        return gx, gw, gb


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = x @ W + b with W of shape (in_features, out_features)."""
    if weight.ndim != 2:
        raise ValueError(f"linear: weight must be 2-D (in, out), got shape {weight.shape}")
    if x.shape[-1:] != weight.shape[:1]:
        raise ValueError(
            f"linear: input has {x.shape[-1] if x.ndim else 'no'} features (shape {x.shape}) "
            f"but the weight expects {weight.shape[0]} (weight shape {weight.shape})"
        )
    if bias is not None and bias.shape != weight.shape[1:]:
        raise ValueError(
            f"linear: bias has shape {bias.shape}, expected ({weight.shape[1]},) "
            f"for a weight of shape {weight.shape}"
        )
    if x.ndim == 1:  # one vector (in,) -> (out,)
        return Linear.apply(x.reshape(1, -1), weight, bias).reshape(weight.shape[1:])
    return Linear.apply(x, weight, bias)


class Embedding(Function):
    """z = W[ids];   dL/dW[r] = sum of dL/dz at every position where ids == r"""

    @staticmethod
    def forward(ctx, weight, ids, padding_idx):
        ctx.save_for_backward(ids)
        ctx.shape, ctx.padding_idx = weight.shape, padding_idx
        return weight[ids]

    @staticmethod
    def backward(ctx, g):
        (ids,) = ctx.saved_tensors
        xp = array_module(g)
        gw = xp.zeros(ctx.shape, dtype=g.dtype)
        # a repeated id must receive the sum of its gradients: unbuffered scatter-add
        scatter_add(gw, ids.reshape(-1), g.reshape(-1, ctx.shape[1]))
        if ctx.padding_idx is not None:
            gw[ctx.padding_idx] = 0
        return gw


def embedding(ids: Any, weight: Tensor, padding_idx: int | None = None) -> Tensor:
    """Rows of ``weight`` (num_embeddings, dim) picked by integer ``ids`` of any shape."""
    data = ids.data if isinstance(ids, Tensor) else backend.as_array(ids, device=weight.device)
    if data.dtype.kind not in "iu":
        raise TypeError(f"embedding ids must be integers, got dtype {data.dtype}")
    n = weight.shape[0]
    if data.size:
        lo, hi = int(data.min()), int(data.max())
        if lo < 0 or hi >= n:
            bad = lo if lo < 0 else hi
            raise IndexError(
                f"embedding id {bad} is out of range for a table of {n} rows (valid: 0..{n - 1})"
            )
    return Embedding.apply(weight, ids=data, padding_idx=padding_idx)


class Dropout(Function):
    """z = x * m / (1 - p);   dL/dx = dL/dz * m / (1 - p)"""

    @staticmethod
    def forward(ctx, x, p):
        xp = array_module(x)
        keep = backend.generator(xp).random(x.shape, dtype=x.dtype) >= p
        scale = 1.0 / (1.0 - p) if p < 1 else 0.0
        mask = keep * x.dtype.type(scale)
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, g):
        (mask,) = ctx.saved_tensors
        return g * mask


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """Zero each element with probability p and scale the rest by 1/(1-p) (identity in eval)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    return Dropout.apply(x, p=p)


class LayerNorm(Function):
    """y = xhat * w + b,  xhat = (x - mu) * r,  r = 1 / sqrt(var + eps)  (last axis, size D)

    dL/dxhat = dL/dy * w
    dL/dx    = r * (dL/dxhat - mean(dL/dxhat) - xhat * mean(dL/dxhat * xhat))
    dL/dw    = sum over rows of dL/dy * xhat,    dL/db = sum over rows of dL/dy

    Runs the fused kernels of ``kernels/layernorm.py`` (Numba on the CPU, the xp formula
    elsewhere). The forward saves x and, per row, mu and r; the backward recomputes xhat.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        y, mu, r = layer_norm_forward(x, weight, bias, eps)
        ctx.save_for_backward(x, mu, r, weight)
        return y

    @staticmethod
    def backward(ctx, g):
        x, mu, r, weight = ctx.saved_tensors
        return layer_norm_backward(g, x, mu, r, weight, needs=ctx.needs_input_grad)


def layer_norm(
    x: Tensor, weight: Tensor | None = None, bias: Tensor | None = None, eps: float = 1e-5
) -> Tensor:
    """Normalise the last axis to zero mean and unit (biased) variance; then scale and shift."""
    d = x.shape[-1] if x.ndim else 0
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and p.shape != (d,):
            raise ValueError(
                f"layer_norm: {name} has shape {p.shape}, expected ({d},) for input {x.shape}"
            )
    return LayerNorm.apply(x, weight, bias, eps=eps)
