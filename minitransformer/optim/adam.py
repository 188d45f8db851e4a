"""Adam (Kingma & Ba, 2015), with PyTorch's L2 weight decay and bias correction.

For a parameter p with gradient g, step count t (1 on the first update), learning rate
lr, betas (beta1, beta2), eps and weight decay lambda, one step is

    t <- t + 1
    g <- g + lambda * p                        (L2 decay, only if lambda != 0)
    m <- beta1 * m + (1 - beta1) * g           (first moment, m_0 = 0)
    v <- beta2 * v + (1 - beta2) * g * g       (second moment, v_0 = 0)
    p <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

i.e. the paper's p - lr * m_hat / (sqrt(v_hat) + eps'), with m_hat = m / (1 - beta1^t),
v_hat = v / (1 - beta2^t) and eps added to sqrt(v_hat) exactly where PyTorch adds it.
The bias corrections undo the pull of m_0 = v_0 = 0 toward zero in the first steps.

Because the decay term lambda * p goes through m and v, a parameter with large
gradients is decayed less than one with small gradients; AdamW (``adamw.py``) decouples
the two. State per parameter: ``"step"`` (int), ``"exp_avg"`` (m), ``"exp_avg_sq"`` (v).
"""

from __future__ import annotations

from typing import Any

from .. import backend
from .optimizer import Optimizer, positive, unit_interval

__all__ = ["Adam"]


class Adam(Optimizer):
    """``Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)``."""

    state_names = ("step", "exp_avg", "exp_avg_sq")
    # AdamW sets this: decay p directly instead of adding lambda * p to the gradient.
    decoupled_weight_decay = False

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults)

    def _check_hyperparameters(self, hyper: dict[str, Any]) -> dict[str, Any]:
        out = super()._check_hyperparameters(hyper)
        betas = hyper["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        out["betas"] = (unit_interval("beta1", betas[0]), unit_interval("beta2", betas[1]))
        out["eps"] = positive("eps", hyper["eps"])
        return out

    def _update(self, p: Any, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> None:
        xp = backend.array_module(p.data)
        lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
        beta1, beta2 = group["betas"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p.data)
            state["exp_avg_sq"] = xp.zeros_like(p.data)
        state["step"] += 1
        t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]

        if wd != 0:
            if self.decoupled_weight_decay:
                p.data *= 1 - lr * wd
            else:
                grad = grad + wd * p.data
        m *= beta1
        m += (1 - beta1) * grad
        v *= beta2
        v += (1 - beta2) * grad * grad

        step_size = lr / (1 - beta1**t)
        denom = xp.sqrt(v) / (1 - beta2**t) ** 0.5 + eps
        p.data -= step_size * m / denom
