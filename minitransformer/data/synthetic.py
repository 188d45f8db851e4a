"""Synthetic sequence-to-sequence tasks, generated on the fly from a seed.

Each task returns ``(source, target)`` pairs of strings, words separated by single
spaces, so the same tokenizers, batching and CLI code serve synthetic and real data.

- ``copy``:     ``"3 1 4 1"`` -> ``"3 1 4 1"``. The target is the source.
- ``reverse``:  ``"3 1 4 1"`` -> ``"1 4 1 3"``. Target position ``t`` of a length-``n``
  source reads source position ``n - 1 - t``: the cross-attention map is the
  anti-diagonal.
- ``translation``: the toy English -> pseudo-French grammar of
  ``minitransformer.data.toy_translation``.

Copy and reverse sequences have a length drawn uniformly from ``[min_len, max_len]``
and tokens drawn uniformly from the integers ``0 .. vocab_size - 1`` (written in
decimal). There are ``sum_{L=min_len}^{max_len} vocab_size^L`` different sequences.
"""

from __future__ import annotations

from collections.abc import Callable

from .seeding import Seed, as_generator
from .toy_translation import toy_translation_pairs

__all__ = [
    "copy_pairs",
    "reverse_pairs",
    "sequence_count",
    "synthetic_pairs",
    "SYNTHETIC_TASKS",
]


def sequence_count(vocab_size: int, min_len: int, max_len: int) -> int:
    """How many different integer sequences have a length in ``[min_len, max_len]``."""
    return sum(vocab_size**length for length in range(min_len, max_len + 1))


def _integer_pairs(
    num_examples: int,
    seed: Seed,
    vocab_size: int,
    min_len: int,
    max_len: int,
    unique: bool,
    reverse: bool,
) -> list[tuple[str, str]]:
    if vocab_size < 1:
        raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
    if not 1 <= min_len <= max_len:
        raise ValueError(f"need 1 <= min_len <= max_len, got min_len={min_len}, max_len={max_len}")
    if num_examples < 0:
        raise ValueError(f"num_examples must be >= 0, got {num_examples}")
    if unique and num_examples > sequence_count(vocab_size, min_len, max_len):
        raise ValueError(
            f"asked for {num_examples} different sequences, but vocab_size={vocab_size} and "
            f"lengths {min_len}..{max_len} give only "
            f"{sequence_count(vocab_size, min_len, max_len)}"
        )
    rng = as_generator(seed)
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    while len(pairs) < num_examples:
        length = int(rng.integers(min_len, max_len + 1))
        tokens = [str(t) for t in rng.integers(vocab_size, size=length)]
        source = " ".join(tokens)
        if unique:
            if source in seen:
                continue
            seen.add(source)
        target = " ".join(reversed(tokens)) if reverse else source
        pairs.append((source, target))
    return pairs


def copy_pairs(
    num_examples: int,
    seed: Seed = 0,
    *,
    vocab_size: int = 10,
    min_len: int = 3,
    max_len: int = 10,
    unique: bool = True,
) -> list[tuple[str, str]]:
    """``num_examples`` (sequence, same sequence) pairs; with ``unique`` no source repeats."""
    return _integer_pairs(num_examples, seed, vocab_size, min_len, max_len, unique, reverse=False)


def reverse_pairs(
    num_examples: int,
    seed: Seed = 0,
    *,
    vocab_size: int = 10,
    min_len: int = 3,
    max_len: int = 10,
    unique: bool = True,
) -> list[tuple[str, str]]:
    """``num_examples`` (sequence, reversed sequence) pairs; with ``unique`` no source repeats."""
    return _integer_pairs(num_examples, seed, vocab_size, min_len, max_len, unique, reverse=True)


SYNTHETIC_TASKS: dict[str, Callable[..., list[tuple[str, str]]]] = {
    "copy": copy_pairs,
    "reverse": reverse_pairs,
    "translation": toy_translation_pairs,
}


def synthetic_pairs(
    task: str, num_examples: int, seed: Seed = 0, **options
) -> list[tuple[str, str]]:
    """Pairs of the task named ``task`` (a key of ``SYNTHETIC_TASKS``); options go to it."""
    if task not in SYNTHETIC_TASKS:
        raise ValueError(
            f"unknown synthetic task {task!r}; choose one of {sorted(SYNTHETIC_TASKS)}"
        )
    return SYNTHETIC_TASKS[task](num_examples, seed, **options)
