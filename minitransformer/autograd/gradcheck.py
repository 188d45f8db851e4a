"""``gradcheck``: compare the tape's gradients with central differences.

For L = fn(*inputs).sum() and every input x that requires grad, element by element:

    numeric  dL/dx_i ~ (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)
    analytic dL/dx_i  = what backward() put in x.grad

and require |analytic - numeric| <= atol + rtol * |numeric|. Central differences
have error O(eps^2), so this only works in float64: in float32 the rounding error of
L itself (~1e-7 |L|) divided by 2 eps swamps the comparison.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import backend
from .tape import no_grad
from .tensor import Tensor

__all__ = ["GradcheckError", "gradcheck"]


class GradcheckError(AssertionError):
    """A gradient from the tape disagrees with the numerical one; the message says where."""


def gradcheck(
    fn: Callable[..., Tensor],
    *inputs: Any,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-4,
) -> bool:
    """True if the tape's gradients of ``fn(*inputs).sum()`` match central differences.

    Raises ``GradcheckError`` naming the input, the element index and both values at
    the first mismatch.
    """
    checked = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad, so there is nothing to check")
    for i in checked:
        if inputs[i].dtype != backend.resolve_dtype("float64"):
            raise ValueError(
                f"gradcheck: input {i} is {inputs[i].dtype}; use float64 inputs "
                "(central differences are too noisy in lower precision)"
            )

    saved_grads = [inputs[i].grad for i in checked]
    for i in checked:
        inputs[i].grad = None
    out = fn(*inputs)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
    out.sum().backward()
    analytic = {}
    for i in checked:
        x = inputs[i]
        analytic[i] = x.grad if x.grad is not None else x.xp.zeros_like(x.data)

    def loss() -> float:
        with no_grad():
            return float(fn(*inputs).sum().item())

    try:
        for i in checked:
            x = inputs[i]
            if not x.data.flags.c_contiguous:
                x.data = x.xp.ascontiguousarray(x.data)
            flat = x.data.reshape(-1)  # a view: writing into it perturbs x in place
            a_flat = backend.to_numpy(analytic[i]).reshape(-1)
            for j in range(flat.size):
                original = flat[j].item()
                flat[j] = original + eps
                plus = loss()
                flat[j] = original - eps
                minus = loss()
                flat[j] = original
                numeric = (plus - minus) / (2 * eps)
                got = float(a_flat[j])
                if not abs(got - numeric) <= atol + rtol * abs(numeric):
                    index = tuple(int(k) for k in _unravel(j, x.shape))
                    raise GradcheckError(
                        f"gradient of input {i} (shape {x.shape}) is wrong at index {index}: "
                        f"the tape gives {got:.10g}, central differences give {numeric:.10g} "
                        f"(difference {got - numeric:.3g}, "
                        f"allowed {atol + rtol * abs(numeric):.3g})"
                    )
    finally:
        for i, g in zip(checked, saved_grads):
            inputs[i].grad = g
    return True


def _unravel(j: int, shape: tuple[int, ...]) -> list[int]:
    index = []
    for n in reversed(shape):
        index.append(j % n)
        j //= n
    return list(reversed(index))
