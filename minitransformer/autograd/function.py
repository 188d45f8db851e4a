"""``Function``: the pattern every differentiable op follows.

An op is a class with two static methods that sit side by side::

    class Mul(Function):
        '''z = a * b;   dL/da = dL/dz * b,   dL/db = dL/dz * a'''

        @staticmethod
        def forward(ctx, a, b):           # raw arrays in, raw array out
            ctx.save_for_backward(a, b)
            return a * b

        @staticmethod
        def backward(ctx, g):             # dL/dz in, one dL/d(input) per input out
            a, b = ctx.saved_tensors
            return g * b, g * a

``Mul.apply(x, y)`` unwraps the tensors, runs ``forward`` on their arrays, wraps the
result and, when an input needs a gradient and recording is on, writes the node on
the tape. ``backward`` may return gradients in the broadcast shape; the tape sums
them back to each input's shape. ``None`` means "no gradient for this input".
"""

from __future__ import annotations

from typing import Any

from .tape import TAPE, Node

# The Tensor class. ``tensor.py`` imports the ops, which import this module, so it
# cannot be imported here; ``tensor.py`` fills it in once Tensor is defined.
Tensor: Any = None


class Function:
    @staticmethod
    def forward(ctx: Node, *arrays: Any, **params: Any) -> Any:
        raise NotImplementedError

    @staticmethod
    def backward(ctx: Node, grad: Any) -> Any:
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs: Any, **params: Any) -> Any:
        arrays = []
        record = False
        for t in inputs:  # one pass: unwrap the arrays, see whether any needs a gradient
            if t is None:
                arrays.append(None)
            else:
                arrays.append(t.data)
                record = record or t.requires_grad
        record = record and TAPE.enabled
        ctx = Node(cls, inputs if record else None)
        try:
            out = cls.forward(ctx, *arrays, **params)
        except ValueError as exc:
            shapes = ", ".join("None" if a is None else str(tuple(a.shape)) for a in arrays)
            raise ValueError(f"{cls.__name__} on shapes {shapes}: {exc}") from exc
        result = object.__new__(Tensor)
        result.data, result.grad = out, None
        if record:
            ctx.seq = TAPE.next_seq
            TAPE.next_seq += 1
            result.requires_grad, result._node = True, ctx
        else:
            result.requires_grad, result._node = False, None
        return result
