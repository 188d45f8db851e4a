"""Truncation and padding: turning token-id lists of different lengths into one array.

A batch of B texts becomes two int64 arrays of shape (B, L):

    input_ids[i]      = ids_i + [pad_id] * (L - len(ids_i))
    attention_mask[i] = [1] * len(ids_i) + [0] * (L - len(ids_i))

L is the longest row (``padding=True``, "longest") or a fixed ``max_length``
(``padding="max_length"``). Padding is on the right, as in BERT and Hugging Face.

Truncation keeps the *front* of each text and always keeps the special tokens: with
``n`` special tokens added, the text itself may keep ``max_length - n`` tokens.
For a pair (A, B) the Hugging Face strategies share that budget:

- ``"only_first"`` / ``"only_second"``: cut one side only;
- ``"longest_first"`` (the default for ``truncation=True``): cut the longer side
  first. With ``n1 <= n2`` the lengths of the shorter and longer side and ``m`` the
  budget, the shorter side keeps ``n1`` and the longer ``max(n1, m - n1)``; if that
  still does not fit, both are cut to ``m // 2`` and the longer side gets the odd
  token, ``m // 2 + m % 2`` (the rule of the ``tokenizers`` library).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PADDING_STRATEGIES = (True, False, "longest", "max_length", "do_not_pad")
TRUNCATION_STRATEGIES = (
    True,
    False,
    "longest_first",
    "only_first",
    "only_second",
    "do_not_truncate",
)


def check_padding(padding: bool | str) -> str:
    """Name the padding strategy: "longest", "max_length" or "do_not_pad"."""
    if isinstance(padding, bool):
        return "longest" if padding else "do_not_pad"
    if padding in ("longest", "max_length", "do_not_pad"):
        return padding
    raise ValueError(f"padding must be one of {PADDING_STRATEGIES}, got {padding!r}")


def check_truncation(truncation: bool | str) -> str:
    """Name the truncation strategy; True means "longest_first"."""
    if isinstance(truncation, bool):
        return "longest_first" if truncation else "do_not_truncate"
    if truncation in ("longest_first", "only_first", "only_second", "do_not_truncate"):
        return truncation
    raise ValueError(f"truncation must be one of {TRUNCATION_STRATEGIES}, got {truncation!r}")


def truncate_pair(
    ids_a: list[int], ids_b: list[int] | None, budget: int, strategy: str
) -> tuple[list[int], list[int] | None]:
    """Cut ``ids_a`` (and ``ids_b``) so that together they keep at most ``budget`` tokens."""
    if budget < 0:
        raise ValueError(f"the token budget must be >= 0, got {budget}")
    if ids_b is None:
        if strategy == "only_second":
            raise ValueError('truncation="only_second" needs a text pair')
        return ids_a[:budget], None
    n_a, n_b = len(ids_a), len(ids_b)
    if n_a + n_b <= budget:
        return ids_a, ids_b
    if strategy == "only_first":
        if n_b > budget:
            raise ValueError(
                f'truncation="only_first" cannot fit the pair into {budget} tokens: '
                f"the second text alone has {n_b}"
            )
        return ids_a[: budget - n_b], ids_b
    if strategy == "only_second":
        if n_a > budget:
            raise ValueError(
                f'truncation="only_second" cannot fit the pair into {budget} tokens: '
                f"the first text alone has {n_a}"
            )
        return ids_a, ids_b[: budget - n_a]
    short, long = sorted((n_a, n_b))
    keep_short = short
    keep_long = short if short > budget else max(short, budget - short)
    if keep_short + keep_long > budget:
        keep_short = budget // 2
        keep_long = keep_short + budget % 2
    # Ties go to the second text: A is "the shorter" unless it is strictly longer.
    if n_a > n_b:
        return ids_a[:keep_long], ids_b[:keep_short]
    return ids_a[:keep_short], ids_b[:keep_long]


def pad_batch(
    rows: Sequence[Sequence[int]],
    pad_value: int,
    strategy: str,
    max_length: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pad ``rows`` on the right into ``(values, attention_mask)``, two int64 arrays (B, L).

    ``strategy`` is "longest", "max_length" (needs ``max_length``) or "do_not_pad"
    (every row must already have the same length).
    """
    lengths = [len(row) for row in rows]
    longest = max(lengths, default=0)
    if strategy == "longest":
        width = longest
    elif strategy == "max_length":
        if max_length is None:
            raise ValueError('padding="max_length" needs max_length')
        if longest > max_length:
            raise ValueError(
                f'padding="max_length" to {max_length} tokens, but a row has {longest}; '
                "pass truncation=True to cut it"
            )
        width = max_length
    elif strategy == "do_not_pad":
        if len(set(lengths)) > 1:
            raise ValueError(
                f"padding=False needs rows of one length to make an array, got lengths from "
                f"{min(lengths)} to {longest}; pass padding=True"
            )
        width = longest
    else:
        raise ValueError(f"unknown padding strategy {strategy!r}")
    values = np.full((len(rows), width), pad_value, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        values[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return values, mask
