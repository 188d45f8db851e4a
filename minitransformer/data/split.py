"""A seeded, deterministic split of a data set into training and validation parts.

With ``n`` items and a fraction ``f``, the validation part gets
``n_val = floor(f * n + 1/2)`` items, clipped to ``[1, n - 1]`` so that neither part
is empty. Which items go where is decided by one random permutation drawn from
``seed``; both parts keep the items in their original relative order.

Real corpora repeat themselves: Tatoeba lists "Run!" with two French translations.
A plain split can put one of them in each part, and the model is then scored on a
sentence it was trained on. Pass ``key`` (e.g. ``key=lambda pair: pair[0]``) to keep
every group of items with the same key on one side; the fraction then applies to
the number of groups, not of items.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

from .seeding import Seed, as_generator

__all__ = ["train_val_split"]

T = TypeVar("T")


def _num_val(count: int, val_fraction: float, what: str) -> int:
    if count < 2:
        raise ValueError(f"need at least 2 {what} to split into two non-empty parts, got {count}")
    return min(max(math.floor(val_fraction * count + 0.5), 1), count - 1)


def train_val_split(
    items: Sequence[T],
    val_fraction: float,
    seed: Seed = 0,
    key: Callable[[T], Hashable] | None = None,
) -> tuple[list[T], list[T]]:
    """``(train, val)``: a disjoint, complete split of ``items``, the same for the same seed."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be strictly between 0 and 1, got {val_fraction}")
    rng = as_generator(seed)
    if key is None:
        n_val = _num_val(len(items), val_fraction, "items")
        in_val = [False] * len(items)
        for i in rng.permutation(len(items))[:n_val]:
            in_val[i] = True
    else:
        keys = [key(item) for item in items]
        groups = list(dict.fromkeys(keys))  # distinct keys, in order of first appearance
        n_val = _num_val(len(groups), val_fraction, "distinct keys")
        val_keys = {groups[i] for i in rng.permutation(len(groups))[:n_val]}
        in_val = [k in val_keys for k in keys]
    train = [item for item, v in zip(items, in_val) if not v]
    val = [item for item, v in zip(items, in_val) if v]
    return train, val
