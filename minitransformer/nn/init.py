"""Parameter initialisation, drawn from the generator that ``mt.manual_seed`` seeds.

Linear weights use Xavier/Glorot uniform, W ~ U(-a, a) with a = sqrt(6 / (fan_in + fan_out)),
as the paper's reference code (tensor2tensor) and the Annotated Transformer do: it keeps
the variance of activations and of gradients roughly constant from layer to layer,
so a stack of post-norm layers trains without a carefully tuned learning rate.
Biases start at 0, LayerNorm at weight 1 / bias 0 (the identity).

Embeddings use N(0, 1/d_model): the model multiplies them by sqrt(d_model), which
brings them to unit scale, the same scale as the sinusoidal positional encoding
added next, so neither drowns the other.
"""

from __future__ import annotations

import math
from typing import Any

from .. import backend

__all__ = ["xavier_uniform", "normal", "zeros", "ones"]


def _dtype(dtype: Any) -> Any:
    return backend.resolve_dtype(dtype) if dtype is not None else backend.get_default_dtype()


def xavier_uniform(fan_in: int, fan_out: int, dtype: Any = None) -> Any:
    """A (fan_in, fan_out) array ~ U(-a, a), a = sqrt(6 / (fan_in + fan_out))."""
    a = math.sqrt(6.0 / (fan_in + fan_out))
    return backend.generator().uniform(-a, a, size=(fan_in, fan_out)).astype(_dtype(dtype))


def normal(shape: tuple[int, ...], std: float, dtype: Any = None) -> Any:
    return (backend.generator().standard_normal(shape) * std).astype(_dtype(dtype))


def zeros(shape: tuple[int, ...], dtype: Any = None) -> Any:
    return backend.module_for("cpu").zeros(shape, dtype=_dtype(dtype))


def ones(shape: tuple[int, ...], dtype: Any = None) -> Any:
    return backend.module_for("cpu").ones(shape, dtype=_dtype(dtype))
