"""Selecting and joining tensors.

masked_fill(x, mask, v) = v where mask else x      dL/dx = dL/dz where not mask
where(c, a, b)          = a where c else b         dL/da = dL/dz * c, dL/db = dL/dz * (1 - c)
concat / stack          join along an axis         dL/dx_i = its slice of dL/dz
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import backend
from ..autograd.function import Function
from ..autograd.tensor import Tensor
from ..backend import array_module

__all__ = ["masked_fill", "where", "concat", "stack", "as_mask"]


def as_mask(mask: Any, device: str = "cpu") -> Any:
    """A boolean array from a bool/0-1 Tensor or array (True = 'may attend' / 'selected')."""
    data = mask.data if isinstance(mask, Tensor) else backend.as_array(mask, device=device)
    if data.dtype.kind == "b":
        return data
    if data.dtype.kind in "iu":
        return data != 0
    raise TypeError(f"a mask must be boolean (or 0/1 integers), got dtype {data.dtype}")


class MaskedFill(Function):
    @staticmethod
    def forward(ctx, x, mask, value):
        xp = array_module(x)
        ctx.mask = mask
        return xp.where(mask, x.dtype.type(value), x)

    @staticmethod
    def backward(ctx, g):
        return array_module(g).where(ctx.mask, 0, g)


def masked_fill(x: Tensor, mask: Any, value: float) -> Tensor:
    """Put ``value`` where ``mask`` is True (mask broadcasts against x)."""
    m = as_mask(mask, x.device)
    if backend.broadcast_shapes(m.shape, x.shape) != x.shape:
        raise ValueError(
            f"masked_fill: mask of shape {tuple(m.shape)} does not broadcast "
            f"to the tensor's shape {x.shape}"
        )
    return MaskedFill.apply(x, mask=m, value=value)


class Where(Function):
    @staticmethod
    def forward(ctx, a, b, cond):
        ctx.cond = cond
        return array_module(a).where(cond, a, b)

    @staticmethod
    def backward(ctx, g):
        xp = array_module(g)
        return xp.where(ctx.cond, g, 0), xp.where(ctx.cond, 0, g)


def where(cond: Any, a: Any, b: Any) -> Tensor:
    """Elementwise ``a if cond else b`` with broadcasting; gradients flow to a and b."""
    if not isinstance(a, Tensor):
        a = b._lift(a) if isinstance(b, Tensor) else Tensor(a)
    if not isinstance(b, Tensor):
        b = a._lift(b)
    return Where.apply(a, b, cond=as_mask(cond, a.device))


class Concat(Function):
    @staticmethod
    def forward(ctx, *arrays, axis):
        ctx.axis = axis
        ctx.sizes = [a.shape[axis] for a in arrays]
        return array_module(arrays[0]).concatenate(arrays, axis=axis)

    @staticmethod
    def backward(ctx, g):
        grads, start = [], 0
        for n in ctx.sizes:
            index = [slice(None)] * g.ndim
            index[ctx.axis] = slice(start, start + n)
            grads.append(g[tuple(index)])
            start += n
        return tuple(grads)


def _check_join(tensors: Sequence[Tensor], name: str) -> list[Tensor]:
    tensors = list(tensors)
    if not tensors:
        raise ValueError(f"{name} needs at least one tensor")
    return [t if isinstance(t, Tensor) else Tensor(t) for t in tensors]


def concat(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    tensors = _check_join(tensors, "concat")
    nd = tensors[0].ndim
    axis = axis % nd
    for t in tensors[1:]:
        if t.ndim != nd or any(
            a != b for i, (a, b) in enumerate(zip(t.shape, tensors[0].shape)) if i != axis
        ):
            raise ValueError(
                f"concat along axis {axis}: shapes {tensors[0].shape} and {t.shape} "
                "differ off that axis"
            )
    return Concat.apply(*tensors, axis=axis)


class Stack(Function):
    @staticmethod
    def forward(ctx, *arrays, axis):
        ctx.axis = axis
        return array_module(arrays[0]).stack(arrays, axis=axis)

    @staticmethod
    def backward(ctx, g):
        xp = array_module(g)
        return tuple(xp.take(g, i, axis=ctx.axis) for i in range(g.shape[ctx.axis]))


def stack(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    tensors = _check_join(tensors, "stack")
    for t in tensors[1:]:
        if t.shape != tensors[0].shape:
            raise ValueError(f"stack needs equal shapes, got {tensors[0].shape} and {t.shape}")
    return Stack.apply(*tensors, axis=axis % (tensors[0].ndim + 1))
