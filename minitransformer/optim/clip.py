"""Gradient clipping by the global L2 norm (as ``torch.nn.utils.clip_grad_norm_``).

All gradients are seen as one long vector g = (g_1, ..., g_n):

    norm = sqrt(sum_i sum(g_i ** 2))
    c    = max_norm / (norm + 1e-6)
    g_i <- g_i * c        for every i, when c < 1 (i.e. norm > max_norm, up to the 1e-6)

Scaling all gradients by one factor keeps the direction of the update and only caps
its length, which keeps a single bad batch (e.g. a huge loss early in training) from
throwing the parameters far away. The 1e-6 keeps c finite when the norm is 0.
"""

from __future__ import annotations

import math
from typing import Any

from .. import backend

__all__ = ["clip_grad_norm"]


def clip_grad_norm(params: Any, max_norm: float, error_if_nonfinite: bool = True) -> float:
    """Clip the gradients of ``params`` (a tensor or an iterable of tensors) to a total L2
    norm of at most ``max_norm``; return the norm before clipping, as a Python float.

    Parameters whose grad is None are skipped. Clipped gradients are new arrays
    (``p.grad`` is replaced, never written into), so an array that someone else holds
    does not change under them.

    A non-finite norm (a NaN or inf in some gradient) raises ValueError by default,
    naming the parameters at fault. Clipping cannot repair it: the factor c would be 0
    (inf norm) or NaN, which zeroes or poisons every gradient, and the optimizer step
    that follows would then silently ruin all parameters and Adam's moment estimates.
    Stopping there points at the cause (too high a learning rate, an overflowing
    float16 loss, a log of 0). Pass ``error_if_nonfinite=False`` to get PyTorch's
    behaviour (return the non-finite norm and scale anyway), e.g. to skip such steps.
    """
    # inf is allowed: it only measures the norm (a common way to log it).
    if isinstance(max_norm, bool) or not isinstance(max_norm, (int, float)) or not max_norm > 0:
        raise ValueError(f"max_norm must be a number > 0 (inf allowed), got {max_norm!r}")
    params = [params] if hasattr(params, "requires_grad") else list(params)
    with_grad = [(i, p) for i, p in enumerate(params) if p.grad is not None]
    if not with_grad:
        return 0.0

    squares = []
    for _, p in with_grad:
        xp = backend.array_module(p.grad)
        # Summed in float64: a float32 gradient entry of 1e20 squares to inf in float32.
        g = p.grad.astype(xp.float64, copy=False)
        squares.append(xp.sum(g * g))
    norm = math.sqrt(float(sum(squares)))

    if not math.isfinite(norm) and error_if_nonfinite:
        bad = [
            f"{i} (shape {tuple(p.grad.shape)})"
            for i, p in with_grad
            if not bool(backend.array_module(p.grad).isfinite(p.grad).all())
        ]
        raise ValueError(
            f"the total gradient norm is {norm}: non-finite gradients in parameters "
            f"{', '.join(bad)}; lower the learning rate or check the loss for inf/NaN"
        )

    coef = max_norm / (norm + 1e-6)
    # A NaN norm (only reached with error_if_nonfinite=False) scales too, as in PyTorch.
    if coef < 1 or math.isnan(coef):
        for _, p in with_grad:
            p.grad = p.grad * coef
    return norm
