"""Tests of the metrics against plain re-statements of their definitions.

BLEU is checked twice: against sacrebleu called directly, and against the formula
of Papineni et al. written out below for sentences where every n-gram precision is
non-zero (so no smoothing is involved).
"""

from __future__ import annotations

import math
import sys
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from minitransformer.data import toy_translation_pairs
from minitransformer.metrics import accuracy, bleu, exact_match, token_accuracy

shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), shape=shapes, classes=st.integers(1, 5))
def test_accuracy_is_the_share_of_equal_positions(data, shape, classes):
    ids = hnp.arrays(np.int64, shape, elements=st.integers(0, classes - 1))
    pred, target = data.draw(ids), data.draw(ids)
    pairs = list(zip(pred.ravel().tolist(), target.ravel().tolist()))
    assert accuracy(pred, target) == pytest.approx(sum(p == t for p, t in pairs) / len(pairs))
    ignore = data.draw(st.integers(0, classes - 1))
    kept = [(p, t) for p, t in pairs if t != ignore]
    if kept:
        expected = sum(p == t for p, t in kept) / len(kept)
        assert accuracy(pred, target, ignore_index=ignore) == pytest.approx(expected)
    else:
        with pytest.raises(ValueError, match="nothing to score"):
            accuracy(pred, target, ignore_index=ignore)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), shape=shapes, classes=st.integers(2, 6))
def test_accuracy_takes_the_argmax_of_scores(data, shape, classes):
    chosen = data.draw(hnp.arrays(np.int64, shape, elements=st.integers(0, classes - 1)))
    target = data.draw(hnp.arrays(np.int64, shape, elements=st.integers(0, classes - 1)))
    noise = data.draw(hnp.arrays(np.float64, shape + (classes,), elements=st.floats(-0.4, 0.4)))
    # One-hot of `chosen` plus noise smaller than 1/2: the argmax is `chosen`.
    scores = np.eye(classes)[chosen] + noise
    assert accuracy(scores, target) == accuracy(chosen, target)


def test_token_accuracy_ignores_padding():
    target = np.array([[5, 6, 2, 0, 0], [7, 2, 0, 0, 0]])
    pred = np.array([[5, 9, 2, 0, 4], [7, 2, 3, 3, 3]])
    # Real positions: 5 6 2 | 7 2 -> 4 of 5 right; what is predicted on padding never counts.
    assert token_accuracy(pred, target, pad_id=0) == pytest.approx(4 / 5)
    logits = np.eye(10)[pred]
    assert token_accuracy(logits, target, pad_id=0) == pytest.approx(4 / 5)


def test_accuracy_accepts_objects_with_a_numpy_method():
    class Boxed:
        def __init__(self, a):
            self.a = np.asarray(a)

        def numpy(self):
            return self.a

    assert accuracy(Boxed([1, 2, 3]), Boxed([1, 0, 3])) == pytest.approx(2 / 3)


def test_accuracy_errors():
    with pytest.raises(ValueError, match=r"target's shape \(3,\)"):
        accuracy(np.array([1, 2]), np.array([1, 2, 3]))
    with pytest.raises(TypeError, match="integer class ids"):
        accuracy(np.array([1.0]), np.array([1.0]))
    with pytest.raises(ValueError, match="nothing to score"):
        token_accuracy(np.array([[1, 1]]), np.array([[0, 0]]), pad_id=0)


@settings(max_examples=40, deadline=None)
@given(
    seqs=st.lists(st.lists(st.integers(0, 9), max_size=6), min_size=1, max_size=10), data=st.data()
)
def test_exact_match(seqs, data):
    assert exact_match(seqs, seqs) == 1.0
    i = data.draw(st.integers(0, len(seqs) - 1))
    broken = [list(s) for s in seqs]
    broken[i] = broken[i] + [0]  # one extra token makes that sequence wrong
    assert exact_match(broken, seqs) == pytest.approx((len(seqs) - 1) / len(seqs))
    as_arrays = [np.array(s, dtype=np.int64) for s in seqs]
    assert exact_match(as_arrays, seqs) == 1.0


def test_exact_match_strings_and_errors():
    assert exact_match(["le chat dort", "un chien"], ["le chat dort", "un chien court"]) == 0.5
    with pytest.raises(ValueError, match="2 predictions but 1 targets"):
        exact_match(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="at least one"):
        exact_match([], [])


def plain_bleu(hypotheses: list[str], references: list[str]) -> float:
    """Corpus BLEU-4 with uniform weights, clipped counts and the brevity penalty."""
    log_precision = 0.0
    for n in range(1, 5):
        matched = total = 0
        for hyp, ref in zip(hypotheses, references):
            h, r = hyp.split(), ref.split()
            h_grams = Counter(tuple(h[i : i + n]) for i in range(len(h) - n + 1))
            r_grams = Counter(tuple(r[i : i + n]) for i in range(len(r) - n + 1))
            matched += sum(min(c, r_grams[g]) for g, c in h_grams.items())
            total += sum(h_grams.values())
        log_precision += math.log(matched / total) / 4
    c = sum(len(h.split()) for h in hypotheses)
    r = sum(len(ref.split()) for ref in references)
    brevity = 1.0 if c > r else math.exp(1 - r / c)
    return 100 * brevity * math.exp(log_precision)


def test_bleu_matches_the_formula():
    references = ["the cat sat on the mat today", "a dog runs in the park every morning"]
    hypotheses = ["the cat sat on the mat", "a dog runs in the big park every morning"]
    assert bleu(hypotheses, references) == pytest.approx(plain_bleu(hypotheses, references))


def test_identical_text_scores_100():
    french = [f for _, f in toy_translation_pairs(50, 0)]
    assert bleu(french, french) == pytest.approx(100.0)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31), drop=st.integers(0, 9))
def test_bleu_agrees_with_sacrebleu(seed, drop):
    sacrebleu = pytest.importorskip("sacrebleu")
    references = [f for _, f in toy_translation_pairs(30, seed)]
    # Damage the hypotheses a little: drop one word of every sentence.
    hypotheses = [
        " ".join(w for j, w in enumerate(r.split()) if j != drop % len(r.split()))
        for r in references
    ]
    expected = sacrebleu.corpus_bleu(hypotheses, [references]).score
    got = bleu(hypotheses, references)
    assert got == pytest.approx(expected)
    assert 0.0 <= got < 100.0


def test_bleu_errors(monkeypatch):
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        bleu(["a b", "c d"], ["a b"])
    with pytest.raises(ValueError, match="at least one"):
        bleu([], [])
    with pytest.raises(TypeError, match=r"hypotheses\[0\] must be a str"):
        bleu([["le", "chat"]], ["le chat"])
    monkeypatch.setitem(sys.modules, "sacrebleu", None)  # makes `import sacrebleu` fail
    with pytest.raises(ImportError, match="pip install"):
        bleu(["a b c d"], ["a b c d"])
