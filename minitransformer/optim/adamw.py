"""AdamW (Loshchilov & Hutter, 2019): Adam with decoupled weight decay (PyTorch's rule).

One step, with the notation of ``adam.py``:

    t <- t + 1
    p <- p * (1 - lr * lambda)                 (decay the weights directly)
    m <- beta1 * m + (1 - beta1) * g
    v <- beta2 * v + (1 - beta2) * g * g
    p <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

Adam's L2 decay adds lambda * p to g, so the decay is rescaled by 1 / sqrt(v) like the
gradient and large-gradient weights barely shrink. Here every weight shrinks by the
same factor (1 - lr * lambda) per step, whatever its gradient history. The decay
follows lr, so a schedule that lowers lr also lowers the decay.
"""

from __future__ import annotations

from typing import Any

from .adam import Adam

__all__ = ["AdamW"]


class AdamW(Adam):
    """``AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)``."""

    decoupled_weight_decay = True

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
    ) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
