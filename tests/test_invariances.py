"""Properties a transformer must have, whatever its weights.

- Without positional encoding, self-attention treats its input as a set: permuting
  the positions permutes the output the same way (permutation equivariance). That is
  why the model needs the positional encoding at all.
- A causal decoder's output at position t depends only on tokens 0..t.
- Padding is invisible: adding padding tokens does not change any output at a real
  position (encoder states, Transformer logits, classifier logits).
- A query that may attend to nothing gets zero weights and a zero attention output,
  not NaN (softmax of an all -inf row would be 0/0).
- Decoding one token at a time with a key/value cache gives the same logits as
  decoding the whole target at once.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minitransformer as mt
from minitransformer import functional as F
from minitransformer import nn

TOL = dict(rtol=1e-10, atol=1e-10)
seeds = st.integers(0, 2**31 - 1)


def randomise(module: nn.Module, seed: int) -> nn.Module:
    """float64 with every parameter random (biases and LayerNorm scales included)."""
    module.double()
    rng = np.random.default_rng(seed)
    for p in module.parameters():
        p.data = 0.5 * rng.standard_normal(p.shape)
    for m in module.modules():
        if isinstance(m, nn.LayerNorm):
            m.weight.data = 1.0 + 0.2 * rng.standard_normal(m.weight.shape)
    return module


def t64(a) -> mt.Tensor:
    return mt.tensor(np.asarray(a, dtype=np.float64))


def ids_with_lengths(rng, vocab: int, lengths, width: int, pad: int = 0) -> np.ndarray:
    """(B, width) ids: sequence b has lengths[b] real tokens (1..vocab-1), then padding."""
    ids = np.full((len(lengths), width), pad)
    for b, n in enumerate(lengths):
        ids[b, :n] = rng.integers(1, vocab, size=n)
    return ids


def small_transformer(seed: int, norm_first: bool = False) -> nn.Transformer:
    model = nn.Transformer(
        9,
        11,
        d_model=8,
        num_heads=2,
        num_encoder_layers=2,
        num_decoder_layers=2,
        d_ff=16,
        dropout=0.0,
        max_len=16,
        norm_first=norm_first,
    )
    randomise(model, seed)
    for emb in (model.src_embed, model.tgt_embed):
        emb.weight.data[0] = 0.0  # the padding row, as the constructor leaves it
    return model


# ---------------------------------------------------------------- permutation equivariance


@given(
    heads=st.integers(1, 3),
    d_head=st.integers(1, 3),
    seq=st.integers(2, 6),
    padded=st.booleans(),
    perm_seed=seeds,
    seed=seeds,
)
@settings(deadline=None)
def test_self_attention_is_permutation_equivariant(heads, d_head, seq, padded, perm_seed, seed):
    d = heads * d_head
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, seq, d))
    perm = np.random.default_rng(perm_seed).permutation(seq)
    # a key padding mask is a property of each token, so it moves with its token
    real = rng.random((2, seq)) < 0.7 if padded else np.ones((2, seq), dtype=bool)
    real[:, 0] = True
    mha = randomise(nn.MultiHeadAttention(d, heads), seed)
    layer = randomise(nn.EncoderLayer(d, heads, 5, dropout=0.0), seed + 1)
    for f in (
        lambda x, m: mha(x, x, x, m),
        lambda x, m: layer(x, m),
    ):
        out = f(t64(x), real[:, None, None, :]).numpy()
        out_perm = f(t64(x[:, perm]), real[:, perm][:, None, None, :]).numpy()
        np.testing.assert_allclose(out_perm, out[:, perm], **TOL)


def test_positional_encoding_breaks_the_equivariance():
    # the same check fails once positions are encoded: the model can now tell order
    d, seq = 4, 4
    x = np.random.default_rng(0).standard_normal((1, seq, d))
    perm = np.array([1, 0, 3, 2])
    pos = nn.SinusoidalPositionalEncoding(d, max_len=8).double()
    layer = randomise(nn.EncoderLayer(d, 2, 5, dropout=0.0), 1)
    out = layer(pos(t64(x))).numpy()
    out_perm = layer(pos(t64(x[:, perm]))).numpy()
    assert not np.allclose(out_perm, out[:, perm], atol=1e-3)


# ---------------------------------------------------------------- causality


@given(
    t=st.integers(0, 4),
    norm_first=st.booleans(),
    seed=seeds,
    data=st.data(),
)
@settings(max_examples=15, deadline=None)
def test_decoder_output_at_t_ignores_later_target_tokens(t, norm_first, seed, data):
    rng = np.random.default_rng(seed)
    model = small_transformer(seed, norm_first)
    src = ids_with_lengths(rng, 9, [4, 2], 4)
    tgt = ids_with_lengths(rng, 11, [6, 6], 6)
    memory = model.encode(src)
    # replace every token after t by anything, padding included
    later = data.draw(st.lists(st.integers(0, 10), min_size=2 * (5 - t), max_size=2 * (5 - t)))
    changed = tgt.copy()
    changed[:, t + 1 :] = np.array(later).reshape(2, 5 - t)
    before = model.decode(tgt, memory, src).numpy()
    after = model.decode(changed, memory, src).numpy()
    np.testing.assert_allclose(after[:, : t + 1], before[:, : t + 1], **TOL)


def test_decoder_output_at_t_does_see_token_t():
    # the check above can fail: changing token t itself changes the output at t
    rng = np.random.default_rng(0)
    model = small_transformer(1)
    src, tgt = ids_with_lengths(rng, 9, [3], 3), np.array([[1, 2, 3, 4]])
    memory = model.encode(src)
    changed = tgt.copy()
    changed[0, 2] = 5
    before, after = model.decode(tgt, memory, src).numpy(), model.decode(changed, memory, src)
    np.testing.assert_allclose(after.numpy()[:, :2], before[:, :2], **TOL)
    assert not np.allclose(after.numpy()[:, 2], before[:, 2])


# ---------------------------------------------------------------- padding is invisible


@st.composite
def padded_batches(draw, vocab: int, max_len: int = 5):
    """Token sequences (no padding) of lengths 1..max_len, and how much extra padding."""
    lengths = draw(st.lists(st.integers(1, max_len), min_size=1, max_size=3))
    extra = draw(st.integers(0, 3))
    seqs = [
        np.array(draw(st.lists(st.integers(1, vocab - 1), min_size=n, max_size=n))) for n in lengths
    ]
    return seqs, extra


def pad_batch(seqs, width: int) -> np.ndarray:
    ids = np.zeros((len(seqs), width), dtype=np.int64)
    for b, s in enumerate(seqs):
        ids[b, : len(s)] = s
    return ids


@given(batch=padded_batches(9), norm_first=st.booleans(), seed=seeds)
@settings(max_examples=15, deadline=None)
def test_padding_does_not_change_the_encoder_at_real_positions(batch, norm_first, seed):
    seqs, extra = batch
    model = small_transformer(seed, norm_first)
    width = max(len(s) for s in seqs) + extra
    memory = model.encode(pad_batch(seqs, width)).numpy()
    for b, s in enumerate(seqs):
        alone = model.encode(s[None]).numpy()[0]  # the sequence by itself, no padding
        np.testing.assert_allclose(memory[b, : len(s)], alone, **TOL)


@given(src=padded_batches(9), tgt=padded_batches(11), norm_first=st.booleans(), seed=seeds)
@settings(max_examples=15, deadline=None)
def test_padding_does_not_change_transformer_logits_at_real_positions(src, tgt, norm_first, seed):
    (src_seqs, src_extra), (tgt_seqs, tgt_extra) = src, tgt
    n = min(len(src_seqs), len(tgt_seqs))
    src_seqs, tgt_seqs = src_seqs[:n], tgt_seqs[:n]
    model = small_transformer(seed, norm_first)
    src_ids = pad_batch(src_seqs, max(map(len, src_seqs)) + src_extra)
    tgt_ids = pad_batch(tgt_seqs, max(map(len, tgt_seqs)) + tgt_extra)
    logits = model(src_ids, tgt_ids).numpy()
    for b in range(n):
        alone = model(src_seqs[b][None], tgt_seqs[b][None]).numpy()[0]
        np.testing.assert_allclose(logits[b, : len(tgt_seqs[b])], alone, **TOL)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
@given(batch=padded_batches(9), seed=seeds)
@settings(max_examples=15, deadline=None)
def test_padding_does_not_change_classifier_logits(pooling, batch, seed):
    seqs, extra = batch
    clf = nn.TransformerClassifier(
        9,
        3,
        d_model=8,
        num_heads=2,
        num_layers=2,
        d_ff=16,
        dropout=0.0,
        max_len=16,
        pooling=pooling,
    )
    randomise(clf, seed)
    ids = pad_batch(seqs, max(map(len, seqs)) + extra)
    logits = clf(ids).numpy()
    with_mask = clf(ids, attention_mask=(ids != 0).astype(np.int64)).numpy()
    np.testing.assert_allclose(with_mask, logits, **TOL)
    for b, s in enumerate(seqs):
        np.testing.assert_allclose(logits[b], clf(s[None]).numpy()[0], **TOL)


# ---------------------------------------------------------------- a query with nothing to see


def test_sdpa_fully_masked_row_gives_zeros_not_nan():
    rng = np.random.default_rng(0)
    q = mt.tensor(rng.standard_normal((2, 3, 4)), requires_grad=True)
    k = mt.tensor(rng.standard_normal((2, 5, 4)), requires_grad=True)
    v = mt.tensor(rng.standard_normal((2, 5, 4)), requires_grad=True)
    mask = np.ones((2, 3, 5), dtype=bool)
    mask[1, 2] = False  # query 2 of batch 1 may attend to no key
    out, w = F.scaled_dot_product_attention(q, k, v, mask)
    assert np.array_equal(w.numpy()[1, 2], np.zeros(5))
    assert np.array_equal(out.numpy()[1, 2], np.zeros(4))
    np.testing.assert_allclose(w.numpy()[mask.any(-1)].sum(-1), 1.0, rtol=1e-12)
    out.sum().backward()
    for t in (q, k, v):
        assert np.all(np.isfinite(t.grad))
    assert np.array_equal(q.grad[1, 2], np.zeros(4))  # nothing flows through an empty row


@pytest.mark.parametrize("top_k", [None, 2])
def test_mha_fully_masked_row_gives_zero_weights_and_attention_output(top_k):
    mha = randomise(nn.MultiHeadAttention(4, 2, top_k=top_k), 0)
    x = t64(np.random.default_rng(1).standard_normal((2, 3, 4)))
    mask = np.ones((2, 1, 3, 3), dtype=bool)
    mask[0, 0, 1] = False
    out = mha(x, x, x, mask).numpy()
    assert np.all(np.isfinite(out))
    assert np.array_equal(mha.last_weights.numpy()[0, :, 1], np.zeros((2, 3)))
    # the concatenated heads are zero there, so the output is out_proj(0) = its bias
    np.testing.assert_allclose(out[0, 1], mha.out_proj.bias.numpy(), **TOL)


# ---------------------------------------------------------------- incremental decoding


@pytest.mark.parametrize("norm_first", [False, True])
def test_cached_decoding_token_by_token_matches_full_decoding(norm_first):
    rng = np.random.default_rng(3)
    model = small_transformer(4, norm_first)
    src = ids_with_lengths(rng, 9, [5, 3, 1], 5)
    tgt = ids_with_lengths(rng, 11, [6, 6, 6], 6)
    memory = model.encode(src)
    full = model.decode(tgt, memory, src).numpy()  # (B, T, vocab)
    cache = model.new_cache()
    assert len(cache) == 2
    for t in range(tgt.shape[1]):
        step = model.decode(tgt[:, t : t + 1], memory, src, cache=cache, offset=t).numpy()
        np.testing.assert_allclose(step[:, 0], full[:, t], **TOL)
    # the self-attention cache has grown to all T keys, per layer
    assert cache[0]["self"]["k"].shape == (3, 2, 6, 4)


def test_cached_decoding_of_a_several_token_prompt_matches_full_decoding():
    rng = np.random.default_rng(5)
    model = small_transformer(6)
    src = ids_with_lengths(rng, 9, [4, 2], 4)
    tgt = ids_with_lengths(rng, 11, [5, 5], 5)
    memory = model.encode(src)
    full = model.decode(tgt, memory, src).numpy()
    cache = model.new_cache()
    prompt = model.decode(tgt[:, :3], memory, src, cache=cache, offset=0).numpy()
    np.testing.assert_allclose(prompt, full[:, :3], **TOL)
    for t in (3, 4):
        step = model.decode(tgt[:, t : t + 1], memory, src, cache=cache, offset=t).numpy()
        np.testing.assert_allclose(step[:, 0], full[:, t], **TOL)
