"""Cross-entropy, computed stably from log-softmax.

For logits z (..., C), a target class t and label smoothing e:

    log p   = log_softmax(z)
    loss    = (1 - e) * (-log p_t) + e * mean_c(-log p_c)
    dL/dz   = softmax(z) - q,   q = (1 - e) onehot(t) + e / C

Targets equal to ``ignore_index`` contribute nothing; "mean" divides by the number of
targets that are not ignored (as PyTorch does), and gives 0 when all are ignored.
"""

from __future__ import annotations

from typing import Any

from .. import backend
from ..autograd.function import Function
from ..autograd.tensor import Tensor
from ..backend import array_module

__all__ = ["cross_entropy", "nll_from_log_probs"]


class CrossEntropy(Function):
    @staticmethod
    def forward(ctx, logits, targets, ignore_index, label_smoothing, reduction):
        xp = array_module(logits)
        c = logits.shape[-1]
        z = logits.reshape(-1, c)
        t = targets.reshape(-1)
        valid = t != ignore_index
        t_safe = xp.where(valid, t, 0)
        m = z.max(axis=1, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0)
        shifted = z - m
        logp = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
        nll = -xp.take_along_axis(logp, t_safe[:, None], axis=1)[:, 0]
        loss = nll
        if label_smoothing > 0:
            loss = (1 - label_smoothing) * nll - label_smoothing * logp.mean(axis=1)
        loss = xp.where(valid, loss, 0).astype(logits.dtype)
        count = int(valid.sum())
        ctx.save_for_backward(logp, t_safe, valid)
        ctx.c, ctx.eps, ctx.reduction, ctx.count = c, label_smoothing, reduction, count
        ctx.shape = logits.shape
        if reduction == "none":
            return loss.reshape(targets.shape)
        total = xp.asarray(loss.sum())
        return total if reduction == "sum" else total / max(count, 1)

    @staticmethod
    def backward(ctx, g):
        logp, t, valid = ctx.saved_tensors
        xp = array_module(logp)
        n, c = logp.shape
        q = xp.zeros_like(logp)
        q[xp.arange(n), t] = 1.0 - ctx.eps
        q += ctx.eps / c
        dz = xp.exp(logp) - q
        if ctx.reduction == "none":
            per_row = valid * g.reshape(-1)
        elif ctx.reduction == "sum":
            per_row = valid * g
        else:
            per_row = valid * (g / max(ctx.count, 1))
        dz = dz * per_row[:, None]
        return dz.reshape(ctx.shape).astype(logp.dtype), None


def cross_entropy(
    logits: Tensor,
    targets: Any,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> Tensor:
    """Cross-entropy of ``logits`` (..., C) against integer ``targets`` (...)."""
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(
            f"cross_entropy: reduction must be 'mean', 'sum' or 'none', got {reduction!r}"
        )
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    t = (
        targets.data
        if isinstance(targets, Tensor)
        else backend.as_array(targets, device=logits.device)
    )
    if t.dtype.kind not in "iu":
        raise TypeError(
            f"cross_entropy: targets must be integer class indices, got dtype {t.dtype}"
        )
    if logits.ndim < 1 or tuple(t.shape) != logits.shape[:-1]:
        raise ValueError(
            f"cross_entropy: logits of shape {logits.shape} need targets of shape "
            f"{logits.shape[:-1]}, got {tuple(t.shape)}"
        )
    c = logits.shape[-1]
    real = t[t != ignore_index]
    if real.size:
        lo, hi = int(real.min()), int(real.max())
        if lo < 0 or hi >= c:
            bad = lo if lo < 0 else hi
            raise IndexError(
                f"cross_entropy: target class {bad} is out of range for {c} classes "
                f"(valid: 0..{c - 1}, or ignore_index={ignore_index})"
            )
    return CrossEntropy.apply(
        logits,
        targets=t,
        ignore_index=ignore_index,
        label_smoothing=float(label_smoothing),
        reduction=reduction,
    )


def nll_from_log_probs(log_probs: Tensor, targets: Any) -> Tensor:
    """-log p_t for each row of ``log_probs`` (..., C): a gather, for teaching the loss."""
    t = targets.data if isinstance(targets, Tensor) else backend.as_array(targets)
    xp = log_probs.xp
    flat = log_probs.reshape(-1, log_probs.shape[-1])
    picked = flat[xp.arange(flat.shape[0]), t.reshape(-1)]
    return -picked.reshape(tuple(t.shape))
