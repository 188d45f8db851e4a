"""Stochastic gradient descent, with momentum and Nesterov momentum (PyTorch's rule).

For a parameter p with gradient g, learning rate lr, momentum mu, dampening tau and
weight decay lambda, one step is

    g <- g + lambda * p                       (L2 weight decay, only if lambda != 0)
    b <- g                                    (first step: the buffer starts at g, undamped)
    b <- mu * b + (1 - tau) * g               (later steps)
    d <- g + mu * b   if nesterov  else  b    (only if mu != 0; otherwise d = g)
    p <- p - lr * d

With mu = 0 this is plain gradient descent, p <- p - lr * g. The momentum buffer b is
the state ``"momentum_buffer"`` (shape of p, on p's device).
"""

from __future__ import annotations

from typing import Any

from .optimizer import Optimizer, non_negative

__all__ = ["SGD"]


class SGD(Optimizer):
    """``SGD(params, lr, momentum=0.0, weight_decay=0.0, nesterov=False, dampening=0.0)``.

    Nesterov momentum needs ``momentum > 0`` and ``dampening == 0`` (as in PyTorch).
    """

    state_names = ("momentum_buffer",)

    def __init__(
        self,
        params: Any,
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        dampening: float = 0.0,
    ) -> None:
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
        }
        super().__init__(params, defaults)

    def _check_hyperparameters(self, hyper: dict[str, Any]) -> dict[str, Any]:
        out = super()._check_hyperparameters(hyper)
        out["momentum"] = non_negative("momentum", hyper["momentum"])
        out["dampening"] = non_negative("dampening", hyper["dampening"])
        if out["dampening"] > 1:
            raise ValueError(f"dampening must be in [0, 1], got {hyper['dampening']!r}")
        if not isinstance(hyper["nesterov"], bool):
            raise TypeError(f"nesterov must be True or False, got {hyper['nesterov']!r}")
        if hyper["nesterov"] and (out["momentum"] <= 0 or out["dampening"] != 0):
            raise ValueError(
                "nesterov=True needs momentum > 0 and dampening == 0, got "
                f"momentum={hyper['momentum']!r}, dampening={hyper['dampening']!r}"
            )
        return out

    def _update(self, p: Any, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> None:
        lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
        if wd != 0:
            grad = grad + wd * p.data
        if mu != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                # A copy: the buffer is updated in place later and must not alias p.grad.
                buf = state["momentum_buffer"] = grad.copy()
            else:
                buf *= mu
                buf += (1 - group["dampening"]) * grad
            grad = grad + mu * buf if group["nesterov"] else buf
        p.data -= lr * grad
