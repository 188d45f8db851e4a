"""Decoding: the key/value cache changes the cost, never the tokens.

An untrained model with random weights has peaked but arbitrary next-token
distributions, a good adversary: any mismatch between the cached and the uncached
decoder shows up as a different token somewhere.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minitransformer as mt
from minitransformer import nn
from minitransformer.decoding import beam_search, greedy_decode, length_penalty, sample_decode

BOS, EOS, PAD = 1, 2, 0


def make_model(seed: int = 0, vocab: int = 12) -> nn.Transformer:
    mt.manual_seed(seed)
    model = nn.Transformer(
        vocab,
        vocab,
        d_model=16,
        num_heads=2,
        num_encoder_layers=2,
        num_decoder_layers=2,
        d_ff=32,
        dropout=0.0,
        max_len=32,
    )
    # sharpen the output layer so the argmax is decisive rather than a near tie
    model.generator.weight.data *= 8
    return model.eval()


def sources(seed: int, batch: int = 3, length: int = 6, vocab: int = 12) -> np.ndarray:
    rng = np.random.default_rng(seed)
    src = rng.integers(3, vocab, (batch, length))
    src[0, length - 2 :] = PAD  # one padded row
    return src


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_greedy_cached_equals_uncached(seed):
    model, src = make_model(seed % 5), sources(seed)
    cached = greedy_decode(model, src, BOS, EOS, max_len=10, use_cache=True)
    plain = greedy_decode(model, src, BOS, EOS, max_len=10, use_cache=False)
    assert cached == plain


def test_greedy_matches_step_by_step_argmax_of_full_decode():
    """Greedy picks argmax of the full (uncached) decoder's last position at each step."""
    model, src = make_model(1), sources(1, batch=1)
    out = greedy_decode(model, src, BOS, EOS, max_len=8, use_cache=True)[0]
    ys = [BOS]
    with mt.no_grad():
        memory = model.encode(src)
        for _ in range(8):
            logits = model.decode(np.array([ys]), memory, src).numpy()[0, -1]
            nxt = int(logits.argmax())
            ys.append(nxt)
            if nxt == EOS:
                break
    expected = ys[1:]
    expected = expected[: expected.index(EOS)] if EOS in expected else expected
    assert out == expected


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 10_000), beam=st.integers(1, 4))
def test_beam_cached_equals_uncached(seed, beam):
    model, src = make_model(seed % 5), sources(seed, batch=2)
    a = beam_search(model, src, BOS, EOS, beam_size=beam, max_len=8, use_cache=True)
    b = beam_search(model, src, BOS, EOS, beam_size=beam, max_len=8, use_cache=False)
    assert a == b


def test_beam_of_one_is_greedy():
    model, src = make_model(2), sources(2)
    assert beam_search(model, src, BOS, EOS, beam_size=1, max_len=10, alpha=0.0) == greedy_decode(
        model, src, BOS, EOS, max_len=10
    )


def sequence_logprob(model, src_row, seq) -> float:
    """log p(seq + </s> | src) under the model, by teacher forcing (the plain definition)."""
    ys = [BOS, *seq]
    with mt.no_grad():
        logits = model(src_row[None], np.array([ys])).numpy()[0]
    logp = logits - logits.max(axis=-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(axis=-1, keepdims=True))
    targets = [*seq, EOS]
    return float(sum(logp[t, w] for t, w in enumerate(targets)))


def test_beam_finds_a_sequence_at_least_as_likely_as_greedy():
    """With alpha = 0 beams rank by raw log-probability, so a wider beam never does worse."""
    model, src = make_model(3), sources(3, batch=3)
    for i in range(src.shape[0]):
        g = greedy_decode(model, src[i : i + 1], BOS, EOS, max_len=10)[0]
        b = beam_search(model, src[i : i + 1], BOS, EOS, beam_size=4, max_len=10, alpha=0.0)[0]
        if len(g) < 10 and len(b) < 10:  # both finished with </s>
            assert sequence_logprob(model, src[i], b) >= sequence_logprob(model, src[i], g) - 1e-4


def test_length_penalty_formula():
    assert length_penalty(1, 0.0) == 1.0
    assert math.isclose(length_penalty(7, 0.6), ((5 + 7) / 6) ** 0.6)


def test_sampling_is_seeded_and_cache_independent():
    model, src = make_model(4), sources(4)
    a = sample_decode(model, src, BOS, EOS, max_len=10, temperature=1.0, seed=7, use_cache=True)
    b = sample_decode(model, src, BOS, EOS, max_len=10, temperature=1.0, seed=7, use_cache=False)
    c = sample_decode(model, src, BOS, EOS, max_len=10, temperature=1.0, seed=7)
    assert a == b == c


def test_sampling_with_top_k_one_is_greedy():
    model, src = make_model(5), sources(5)
    assert sample_decode(model, src, BOS, EOS, max_len=10, top_k=1, seed=0) == greedy_decode(
        model, src, BOS, EOS, max_len=10
    )


def test_low_temperature_sampling_is_greedy():
    model, src = make_model(6), sources(6)
    assert sample_decode(
        model, src, BOS, EOS, max_len=10, temperature=1e-4, seed=1
    ) == greedy_decode(model, src, BOS, EOS, max_len=10)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_k": 0}, "top_k"),
        ({"max_len": 0}, "max_len"),
        ({"max_len": 100}, "max_len"),
    ],
)
def test_sampling_rejects_bad_settings(kwargs, match):
    model, src = make_model(0), sources(0)
    with pytest.raises(ValueError, match=match):
        sample_decode(model, src, BOS, EOS, **kwargs)


def test_beam_rejects_bad_beam_size():
    model, src = make_model(0), sources(0)
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(model, src, BOS, EOS, beam_size=0)
