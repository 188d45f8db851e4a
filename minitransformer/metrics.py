"""Evaluation metrics: accuracy, token accuracy, exact match and BLEU.

- ``accuracy``: the share of scored positions where the predicted class equals the
  target, ``(1/N) sum_i [pred_i == target_i]`` over the ``N`` positions whose target
  is not ``ignore_index``. ``pred`` is either class ids of the target's shape or
  scores with one more trailing axis ``(..., C)``, whose argmax is taken.
- ``token_accuracy``: accuracy of padded ``(B, T)`` id arrays with padding ignored.
- ``exact_match``: the share of sequences predicted entirely right.
- ``bleu``: corpus BLEU (Papineni et al. 2002) as computed by sacrebleu,
  ``BP * exp(sum_{n=1}^{4} log(p_n) / 4)`` with modified n-gram precisions ``p_n``
  summed over the corpus and brevity penalty ``BP = min(1, exp(1 - r / c))``, on a
  0-100 scale with sacrebleu's standard "13a" tokenisation, so numbers compare with
  published ones.

Each returns a Python float. Inputs may be NumPy or CuPy arrays, lists, or
minitransformer Tensors; metrics are computed on the host. Nothing to score (no
examples, or every position ignored) raises ValueError rather than returning NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .backend import to_numpy

__all__ = ["accuracy", "token_accuracy", "exact_match", "bleu"]


def _host(x: Any) -> np.ndarray:
    if not isinstance(x, np.ndarray) and callable(getattr(x, "numpy", None)):
        return np.asarray(x.numpy())  # a Tensor, on whichever device
    return to_numpy(x)


def accuracy(pred: Any, target: Any, ignore_index: int | None = None) -> float:
    """Share of positions (target != ignore_index) where the predicted class is the target."""
    pred, target = _host(pred), _host(target)
    if target.dtype.kind not in "iu":
        raise TypeError(f"target must hold integer class ids, got dtype {target.dtype}")
    if pred.ndim == target.ndim + 1:
        pred = pred.argmax(axis=-1)  # scores (..., C) -> class ids (...)
    if pred.shape != target.shape:
        raise ValueError(
            f"pred must have the target's shape {target.shape} (class ids) or "
            f"{target.shape + ('C',)} (scores), got {pred.shape}"
        )
    scored = np.ones(target.shape, dtype=bool) if ignore_index is None else target != ignore_index
    count = int(scored.sum())
    if count == 0:
        raise ValueError(
            f"nothing to score: target has {target.size} positions, none of them "
            f"other than ignore_index={ignore_index}"
        )
    return float(((pred == target) & scored).sum() / count)


def token_accuracy(pred_ids: Any, target_ids: Any, pad_id: int) -> float:
    """Accuracy of padded id arrays ``(B, T)``, ignoring positions where the target is pad_id.

    ``pred_ids`` may also be logits ``(B, T, vocab)``.
    """
    return accuracy(pred_ids, target_ids, ignore_index=pad_id)


def exact_match(pred_seqs: Sequence[Any], target_seqs: Sequence[Any]) -> float:
    """Share of predictions equal to their target in full (same length, same items).

    Items are strings or id sequences; cut generated ids at </s> and drop padding
    before calling, since one extra token makes a sequence wrong.
    """
    if len(pred_seqs) != len(target_seqs):
        raise ValueError(f"got {len(pred_seqs)} predictions but {len(target_seqs)} targets")
    if len(target_seqs) == 0:
        raise ValueError("exact_match needs at least one sequence")

    def same(p: Any, t: Any) -> bool:
        if isinstance(p, str) or isinstance(t, str):
            return p == t
        return [int(x) for x in _host(p).ravel()] == [int(x) for x in _host(t).ravel()]

    return sum(same(p, t) for p, t in zip(pred_seqs, target_seqs)) / len(target_seqs)


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (0-100) of detokenised hypotheses against one reference each.

    As BLEU multiplies the 1- to 4-gram precisions, a corpus with no 4-gram at all
    (every sentence shorter than 4 tokens) scores 0 even when it is exactly right.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"got {len(hypotheses)} hypotheses but {len(references)} references")
    if len(references) == 0:
        raise ValueError("bleu needs at least one sentence")
    for name, texts in (("hypotheses", hypotheses), ("references", references)):
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"{name}[{i}] must be a str, got {type(text).__name__}")
    try:
        import sacrebleu
    except ImportError:
        raise ImportError(
            "bleu needs the sacrebleu package: pip install 'sacrebleu>=2.4'"
        ) from None
    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score)
