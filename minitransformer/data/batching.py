"""Padding, masks and length bucketing: from lists of token ids to rectangular batches.

Padding. A batch of sequences with lengths ``l_1 .. l_B`` becomes an int64 array
``ids (B, L)`` with ``L = max_b l_b``; row ``b`` holds the ``l_b`` real ids followed
by ``L - l_b`` copies of ``pad_id``. The boolean mask ``(B, L)`` is True exactly at
the real positions (``mask[b, t] = t < l_b``), the convention of the attention
masks ("True may attend"). Masks come from the lengths, never from comparing ids
with ``pad_id``, so a real token that happens to equal ``pad_id`` stays real.

Sequence-to-sequence batches use teacher forcing: for a target ``y_1 .. y_m`` the
decoder reads ``tgt_in = <s> y_1 .. y_m`` and is trained to predict
``tgt_out = y_1 .. y_m </s>``; both have ``m + 1`` real positions and share one mask.

Bucketing. Padding is wasted work: a batch costs ``B * L`` positions but holds only
``sum_b l_b`` real tokens, and

    padding fraction = 1 - (real tokens) / (positions)

over all batches. Random batches of a corpus whose lengths vary a lot are mostly
padding; batches of similar lengths are not. ``batch_indices`` therefore

1. shuffles the example order (seeded),
2. cuts it into pools of ``pool_size`` examples and sorts each pool by length,
3. cuts each sorted pool greedily into batches of at most ``batch_size`` examples
   and at most ``max_tokens`` padded positions (``B * L`` over the batch's longest
   row, so short sentences get larger batches),
4. shuffles the order of the batches (seeded),

so every epoch sees different batches, each of nearly equal lengths, while training
does not see all short sentences first. With ``bucket=False`` step 2 is skipped:
plain random batches, for comparison.

Everything here is host-side NumPy (int64 ids, bool masks) and deterministic given
the seed; the training loop moves the arrays to the device.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .seeding import Seed, as_generator

__all__ = [
    "Batch",
    "ClassificationBatch",
    "pad_sequences",
    "collate_seq2seq",
    "collate_classification",
    "batch_indices",
    "make_batches",
    "make_classification_batches",
    "padding_fraction",
]


@dataclass(frozen=True, eq=False)
class Batch:
    """A padded sequence-to-sequence batch of B examples.

    src_ids  (B, S) int64   source ids, padded with pad_id
    tgt_in   (B, T) int64   <s> followed by the target ids: the decoder's input
    tgt_out  (B, T) int64   the target ids followed by </s>: what the decoder predicts
    src_mask (B, S) bool    True at real source tokens
    tgt_mask (B, T) bool    True at real positions of tgt_in and tgt_out
    indices  (B,)   int64   which examples of the data set the rows are
    """

    src_ids: np.ndarray
    tgt_in: np.ndarray
    tgt_out: np.ndarray
    src_mask: np.ndarray
    tgt_mask: np.ndarray
    indices: np.ndarray

    @property
    def size(self) -> int:
        return int(self.src_ids.shape[0])

    @property
    def num_src_tokens(self) -> int:
        """Real (non-padding) source tokens in the batch."""
        return int(self.src_mask.sum())

    @property
    def num_tgt_tokens(self) -> int:
        """Real target positions, i.e. the number of tokens the loss is averaged over."""
        return int(self.tgt_mask.sum())


@dataclass(frozen=True, eq=False)
class ClassificationBatch:
    """A padded classification batch of B examples.

    ids            (B, L) int64   token ids, padded with pad_id
    attention_mask (B, L) bool    True at real tokens
    labels         (B,)   int64   class ids
    indices        (B,)   int64   which examples of the data set the rows are
    """

    ids: np.ndarray
    attention_mask: np.ndarray
    labels: np.ndarray
    indices: np.ndarray

    @property
    def size(self) -> int:
        return int(self.ids.shape[0])

    @property
    def num_tokens(self) -> int:
        """Real (non-padding) tokens in the batch."""
        return int(self.attention_mask.sum())


def _flat_ids(seqs: Sequence[Sequence[int]], what: str) -> np.ndarray:
    """All ids of ``seqs`` concatenated as int64, refusing floats, nesting and negative ids."""
    flat = np.asarray(list(itertools.chain.from_iterable(seqs)))
    if flat.size == 0:
        return np.zeros(0, dtype=np.int64)
    if flat.ndim != 1 or flat.dtype.kind not in "iu":
        # Find the offending row for the message; the common path stays one conversion.
        for row, seq in enumerate(seqs):
            arr = np.asarray(seq)
            if arr.size and (arr.ndim != 1 or arr.dtype.kind not in "iu"):
                raise TypeError(
                    f"{what} {row} must be a flat sequence of integer token ids, got an array "
                    f"of shape {arr.shape} and dtype {arr.dtype}"
                )
        raise TypeError(f"{what}s must be flat sequences of integer token ids")
    if flat.min() < 0:
        lengths = [len(seq) for seq in seqs]
        row = int(np.searchsorted(np.cumsum(lengths), int(flat.argmin()), side="right"))
        raise ValueError(f"{what} {row} has a negative token id {int(flat.min())}")
    return flat.astype(np.int64, copy=False)


def pad_sequences(
    seqs: Sequence[Sequence[int]],
    pad_id: int,
    *,
    prefix: Sequence[int] = (),
    suffix: Sequence[int] = (),
    allow_empty: bool = True,
    what: str = "sequence",
) -> tuple[np.ndarray, np.ndarray]:
    """``(ids (B, L) int64, mask (B, L) bool)`` for ``prefix + seq + suffix`` of each seq.

    ``L`` is the longest such row. With ``allow_empty=False`` an empty ``seq`` (before
    the prefix and suffix) raises ValueError naming its row.
    """
    if len(seqs) == 0:
        raise ValueError(f"cannot pad an empty list of {what}s")
    lengths = np.array([len(seq) for seq in seqs], dtype=np.int64)
    if not allow_empty and (lengths == 0).any():
        raise ValueError(f"{what} {int(np.argmin(lengths))} is empty")
    flat = _flat_ids(seqs, what)
    p, q = len(prefix), len(suffix)
    width = p + int(lengths.max()) + q
    positions = np.arange(width)[None, :]
    out = np.full((len(seqs), width), pad_id, dtype=np.int64)
    # Row-major order of the body positions is the order of `flat`, since every row's
    # real ids form one run starting at column p.
    out[(positions >= p) & (positions < p + lengths[:, None])] = flat
    out[:, :p] = np.asarray(prefix, dtype=np.int64)
    rows = np.arange(len(seqs))
    for k, token in enumerate(suffix):
        out[rows, p + lengths + k] = token
    mask = positions < (p + lengths + q)[:, None]
    return out, mask


def _check_special(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a token id >= 0, got {value!r}")


def collate_seq2seq(
    src_seqs: Sequence[Sequence[int]],
    tgt_seqs: Sequence[Sequence[int]],
    *,
    pad_id: int,
    bos_id: int,
    eos_id: int,
    indices: Sequence[int] | None = None,
) -> Batch:
    """One ``Batch`` from the token ids of its sources and targets (without <s> and </s>)."""
    for name, value in (("pad_id", pad_id), ("bos_id", bos_id), ("eos_id", eos_id)):
        _check_special(name, value)
    if len(src_seqs) != len(tgt_seqs):
        raise ValueError(
            f"got {len(src_seqs)} source sequences but {len(tgt_seqs)} target sequences"
        )
    src_ids, src_mask = pad_sequences(src_seqs, pad_id, allow_empty=False, what="source")
    tgt_in, tgt_mask = pad_sequences(tgt_seqs, pad_id, prefix=(bos_id,), what="target")
    tgt_out, _ = pad_sequences(tgt_seqs, pad_id, suffix=(eos_id,), what="target")
    return Batch(src_ids, tgt_in, tgt_out, src_mask, tgt_mask, _indices(indices, len(src_seqs)))


def collate_classification(
    seqs: Sequence[Sequence[int]],
    labels: Sequence[int],
    *,
    pad_id: int,
    indices: Sequence[int] | None = None,
) -> ClassificationBatch:
    """One ``ClassificationBatch`` from the token ids of its texts and their class ids."""
    _check_special("pad_id", pad_id)
    if len(seqs) != len(labels):
        raise ValueError(f"got {len(seqs)} sequences but {len(labels)} labels")
    ids, mask = pad_sequences(seqs, pad_id, allow_empty=False, what="text")
    label_arr = np.asarray(labels)
    if label_arr.ndim != 1 or label_arr.dtype.kind not in "iu" or label_arr.min() < 0:
        raise ValueError(f"labels must be integer class ids >= 0, got {list(labels)[:10]!r}")
    return ClassificationBatch(ids, mask, label_arr.astype(np.int64), _indices(indices, len(seqs)))


def _indices(indices: Sequence[int] | None, count: int) -> np.ndarray:
    if indices is None:
        return np.arange(count, dtype=np.int64)
    arr = np.asarray(indices, dtype=np.int64)
    if arr.shape != (count,):
        raise ValueError(f"indices must have shape ({count},), got {arr.shape}")
    return arr


def _cut(
    pool: np.ndarray, cost: np.ndarray, batch_size: int | None, max_tokens: int | None
) -> list[np.ndarray]:
    """Cut ``pool`` (example ids, in order) greedily into batches within both limits."""
    batches: list[np.ndarray] = []
    start, longest = 0, 0
    for end, example in enumerate(pool):
        grown = max(longest, int(cost[example]))
        count = end - start + 1
        full = (batch_size is not None and count > batch_size) or (
            max_tokens is not None and count * grown > max_tokens
        )
        if full and end > start:
            batches.append(pool[start:end])
            start, grown = end, int(cost[example])
        longest = grown
    if len(pool) > start:
        batches.append(pool[start:])
    return batches


def batch_indices(
    lengths: Sequence[int] | Sequence[Sequence[int]] | np.ndarray,
    *,
    batch_size: int | None = None,
    max_tokens: int | None = None,
    bucket: bool = True,
    shuffle: bool = True,
    pool_size: int = 4096,
    seed: Seed = 0,
) -> list[np.ndarray]:
    """Group examples into batches; returns one int64 array of example indices per batch.

    ``lengths`` is ``(N,)`` or ``(N, k)`` (e.g. the padded source and target lengths of
    each example). Bucketing sorts by the first column, then the next, and so on; the
    cost of an example for ``max_tokens`` is the largest entry of its row. Every
    example lands in exactly one batch.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.ndim == 1:
        lengths = lengths[:, None]
    if lengths.ndim != 2 or lengths.shape[0] == 0:
        raise ValueError(f"lengths must have shape (N,) or (N, k) with N >= 1, got {lengths.shape}")
    if batch_size is None and max_tokens is None:
        raise ValueError("give batch_size, max_tokens or both")
    limits = {"batch_size": batch_size, "max_tokens": max_tokens, "pool_size": pool_size}
    for name, value in limits.items():
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    cost = lengths.max(axis=1)
    if max_tokens is not None and cost.max() > max_tokens:
        worst = int(cost.argmax())
        raise ValueError(
            f"example {worst} needs {int(cost[worst])} positions, more than "
            f"max_tokens={max_tokens}; raise max_tokens or truncate the data"
        )
    rng = as_generator(seed)
    order = rng.permutation(len(cost)) if shuffle else np.arange(len(cost))
    batches: list[np.ndarray] = []
    if bucket:
        for start in range(0, len(order), pool_size):
            pool = order[start : start + pool_size]
            # np.lexsort sorts by its last key first; it is stable, so ties keep the
            # shuffled order and equal-length batches still differ between seeds.
            pool = pool[np.lexsort(lengths[pool].T[::-1])]
            batches.extend(_cut(pool, cost, batch_size, max_tokens))
    else:
        batches = _cut(order, cost, batch_size, max_tokens)
    if shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return [b.astype(np.int64) for b in batches]


def make_batches(
    src_seqs: Sequence[Sequence[int]],
    tgt_seqs: Sequence[Sequence[int]],
    *,
    pad_id: int,
    bos_id: int,
    eos_id: int,
    batch_size: int | None = None,
    max_tokens: int | None = None,
    bucket: bool = True,
    shuffle: bool = True,
    pool_size: int = 4096,
    seed: Seed = 0,
) -> list[Batch]:
    """Sequence-to-sequence batches of a whole data set (see ``batch_indices``).

    The token budget counts the padded source width and the padded target width
    (target length + 1 for <s> or </s>), whichever is larger.
    """
    if len(src_seqs) != len(tgt_seqs):
        raise ValueError(
            f"got {len(src_seqs)} source sequences but {len(tgt_seqs)} target sequences"
        )
    for i, seq in enumerate(src_seqs):
        if len(seq) == 0:
            raise ValueError(f"source sequence {i} is empty")
    lengths = [(len(s), len(t) + 1) for s, t in zip(src_seqs, tgt_seqs)]
    groups = batch_indices(
        lengths,
        batch_size=batch_size,
        max_tokens=max_tokens,
        bucket=bucket,
        shuffle=shuffle,
        pool_size=pool_size,
        seed=seed,
    )
    return [
        collate_seq2seq(
            [src_seqs[i] for i in g],
            [tgt_seqs[i] for i in g],
            pad_id=pad_id,
            bos_id=bos_id,
            eos_id=eos_id,
            indices=g,
        )
        for g in groups
    ]


def make_classification_batches(
    seqs: Sequence[Sequence[int]],
    labels: Sequence[int],
    *,
    pad_id: int,
    batch_size: int | None = None,
    max_tokens: int | None = None,
    bucket: bool = True,
    shuffle: bool = True,
    pool_size: int = 4096,
    seed: Seed = 0,
) -> list[ClassificationBatch]:
    """Classification batches of a whole data set (see ``batch_indices``)."""
    if len(seqs) != len(labels):
        raise ValueError(f"got {len(seqs)} sequences but {len(labels)} labels")
    for i, seq in enumerate(seqs):
        if len(seq) == 0:
            raise ValueError(f"text {i} is empty")
    groups = batch_indices(
        [len(s) for s in seqs],
        batch_size=batch_size,
        max_tokens=max_tokens,
        bucket=bucket,
        shuffle=shuffle,
        pool_size=pool_size,
        seed=seed,
    )
    return [
        collate_classification(
            [seqs[i] for i in g], [labels[i] for i in g], pad_id=pad_id, indices=g
        )
        for g in groups
    ]


def padding_fraction(batches: Iterable[Batch | ClassificationBatch]) -> float:
    """The share of all padded positions that are padding: ``1 - real / positions``.

    A seq2seq batch counts its source positions and its target positions (tgt_in and
    tgt_out share one mask, so they count once).
    """
    real = positions = 0
    for batch in batches:
        if isinstance(batch, Batch):
            masks = (batch.src_mask, batch.tgt_mask)
        elif isinstance(batch, ClassificationBatch):
            masks = (batch.attention_mask,)
        else:
            raise TypeError(
                f"padding_fraction expects Batch or ClassificationBatch items, "
                f"got {type(batch).__name__}"
            )
        for mask in masks:
            real += int(mask.sum())
            positions += mask.size
    if positions == 0:
        raise ValueError("padding_fraction needs at least one non-empty batch")
    return 1.0 - real / positions
