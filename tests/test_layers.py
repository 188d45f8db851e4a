"""Each layer against its formula, written plainly here in NumPy.

Weights are random (biases and LayerNorm scales too, so a forgotten bias or scale is
caught), inputs and shapes are drawn by hypothesis; the reference below reads like
the formula on the board:

    Linear          y = x W + b
    Embedding       e = W[id]
    LayerNorm       y = (x - mean) / sqrt(var + eps) * w + b      biased var, eps inside
    FeedForward     FFN(x) = act(x W1 + b1) W2 + b2                act = relu | gelu
    Attention       softmax(Q K^T / sqrt(d_k), -inf where masked) V
    MultiHead       Concat(head_1..head_H) W_o,  head_h = Attention(Q W_q^h, K W_k^h, V W_v^h)
    PE              PE[pos, 2i] = sin(pos / 10000^(2i/d)),  PE[pos, 2i+1] = cos(same)
    post-norm       x = norm(x + sublayer(x))
    pre-norm        x = x + sublayer(norm(x))

Then gradient checks (float64, ``mt.gradcheck``) of every layer's inputs and
parameters, and the errors bad input must raise.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import bool_masks, float_arrays, index_arrays

import minitransformer as mt
from minitransformer import functional as F
from minitransformer import nn

TOL = dict(rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------- helpers


def randomise(module: nn.Module, seed: int) -> nn.Module:
    """float64, and every parameter random: weights ~ N(0, 0.5), LayerNorm scales ~ 1 +- 0.2."""
    module.double()
    rng = np.random.default_rng(seed)
    for p in module.parameters():
        p.data = 0.5 * rng.standard_normal(p.shape)
    for m in module.modules():
        if isinstance(m, nn.LayerNorm):
            m.weight.data = 1.0 + 0.2 * rng.standard_normal(m.weight.shape)
    return module


def params_of(module: nn.Module, prefix: str = "") -> dict[str, np.ndarray]:
    """NumPy copies of the parameters whose names start with ``prefix`` (prefix removed)."""
    return {
        name[len(prefix) :]: p.numpy()
        for name, p in module.named_parameters()
        if name.startswith(prefix)
    }


def t64(a) -> mt.Tensor:
    return mt.tensor(np.asarray(a, dtype=np.float64))


def lengths_to_mask(lengths: np.ndarray, n: int) -> np.ndarray:
    """(B, 1, 1, n): key j of sequence b is real when j < lengths[b]."""
    return (np.arange(n)[None, :] < np.asarray(lengths)[:, None])[:, None, None, :]


def causal(n: int) -> np.ndarray:
    """(1, 1, n, n): query i may see keys j <= i."""
    return np.tril(np.ones((n, n), dtype=bool))[None, None]


@st.composite
def lengths(draw, batch: int, n: int, min_len: int = 1) -> np.ndarray:
    return np.array(draw(st.lists(st.integers(min_len, n), min_size=batch, max_size=batch)))


# ---------------------------------------------------------------- NumPy references


def np_gelu(x):
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def np_relu(x):
    return np.maximum(x, 0.0)


ACT = {"relu": np_relu, "gelu": np_gelu}


def np_linear(P, name, x):
    y = x @ P[f"{name}.weight"]
    return y + P[f"{name}.bias"] if f"{name}.bias" in P else y


def np_layer_norm(x, w, b, eps=1e-5):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def np_ffn(P, x, act="relu"):
    return np_linear(P, "linear2", ACT[act](np_linear(P, "linear1", x)))


def np_masked_softmax(scores, mask):
    """softmax over the last axis with -inf where mask is False; an all-masked row -> 0."""
    s = np.where(mask, scores, -np.inf)
    row_max = s.max(axis=-1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)
    e = np.exp(s - row_max)  # exp(-inf) = 0
    z = e.sum(axis=-1, keepdims=True)
    return np.divide(e, z, out=np.zeros_like(e), where=z > 0)


def np_attention(q, k, v, mask=None):
    scores = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    if mask is None:
        mask = np.ones(scores.shape, dtype=bool)
    w = np_masked_softmax(scores, np.broadcast_to(mask, scores.shape))
    return w @ v, w


def np_mha(P, query, key, value, heads, mask=None):
    """Multi-head attention by hand: one head at a time, on its slice of d_k columns."""
    d = query.shape[-1]
    dk = d // heads
    Q, K, V = (
        np_linear(P, "q_proj", query),
        np_linear(P, "k_proj", key),
        np_linear(P, "v_proj", value),
    )
    if mask is not None:
        mask = np.asarray(mask)
        mask = mask.reshape(mask.shape[0], *mask.shape[-2:]) if mask.ndim == 4 else mask
    outs, weights = [], []
    for h in range(heads):
        cols = slice(h * dk, (h + 1) * dk)
        # the (B, 1, Lq, Lk) mask is the same for every head
        o, w = np_attention(Q[..., cols], K[..., cols], V[..., cols], mask)
        outs.append(o)
        weights.append(w)
    concat = np.concatenate(outs, axis=-1)  # (B, Lq, d)
    return np_linear(P, "out_proj", concat), np.stack(weights, axis=1)  # weights (B, H, Lq, Lk)


def sub(P, prefix):
    return {k[len(prefix) :]: v for k, v in P.items() if k.startswith(prefix)}


def np_ln(P, name, x):
    return np_layer_norm(x, P[f"{name}.weight"], P[f"{name}.bias"])


def np_encoder_layer(P, x, heads, mask=None, norm_first=False, act="relu"):
    def self_attn(h):
        return np_mha(sub(P, "self_attn."), h, h, h, heads, mask)[0]

    def ffn(h):
        return np_ffn(sub(P, "feed_forward."), h, act)

    if norm_first:
        x = x + self_attn(np_ln(P, "norm1", x))
        return x + ffn(np_ln(P, "norm2", x))
    x = np_ln(P, "norm1", x + self_attn(x))
    return np_ln(P, "norm2", x + ffn(x))


def np_decoder_layer(P, y, memory, heads, tgt_mask, memory_mask, norm_first=False, act="relu"):
    def self_attn(h):
        return np_mha(sub(P, "self_attn."), h, h, h, heads, tgt_mask)[0]

    def cross_attn(h):
        return np_mha(sub(P, "cross_attn."), h, memory, memory, heads, memory_mask)[0]

    def ffn(h):
        return np_ffn(sub(P, "feed_forward."), h, act)

    if norm_first:
        y = y + self_attn(np_ln(P, "norm1", y))
        y = y + cross_attn(np_ln(P, "norm2", y))
        return y + ffn(np_ln(P, "norm3", y))
    y = np_ln(P, "norm1", y + self_attn(y))
    y = np_ln(P, "norm2", y + cross_attn(y))
    return np_ln(P, "norm3", y + ffn(y))


def paper_pe(max_len, d):
    """The table of section 3.5, element by element."""
    pe = np.zeros((max_len, d))
    for pos in range(max_len):
        for i in range((d + 1) // 2):
            pe[pos, 2 * i] = math.sin(pos / 10000 ** (2 * i / d))
            if 2 * i + 1 < d:
                pe[pos, 2 * i + 1] = math.cos(pos / 10000 ** (2 * i / d))
    return pe


# a drawn model shape: heads that divide d_model, by construction
model_dims = st.tuples(st.integers(1, 4), st.integers(1, 4))  # (d_head, heads)
seeds = st.integers(0, 2**31 - 1)


# ---------------------------------------------------------------- Linear, Embedding, LayerNorm


@given(
    lead=st.lists(st.integers(1, 3), max_size=2),
    n_in=st.integers(1, 5),
    n_out=st.integers(1, 5),
    bias=st.booleans(),
    data=st.data(),
)
@settings(deadline=None)
def test_linear_is_x_w_plus_b(lead, n_in, n_out, bias, data):
    x = data.draw(float_arrays((*lead, n_in)))
    lin = randomise(nn.Linear(n_in, n_out, bias=bias), data.draw(seeds))
    P = params_of(lin)
    expected = x @ P["weight"] + (P["bias"] if bias else 0.0)
    np.testing.assert_allclose(lin(t64(x)).numpy(), expected, **TOL)


@given(num=st.integers(1, 8), dim=st.integers(1, 5), data=st.data())
@settings(deadline=None)
def test_embedding_is_a_row_lookup_and_its_gradient_a_scatter_add(num, dim, data):
    ids = data.draw(index_arrays(num, st.tuples(st.integers(1, 3), st.integers(1, 4))))
    emb = randomise(nn.Embedding(num, dim), data.draw(seeds))
    W = emb.weight.numpy()
    out = emb(ids)
    np.testing.assert_array_equal(out.numpy(), W[ids])
    g = np.random.default_rng(0).standard_normal(out.shape)
    out.backward(g)
    expected = np.zeros_like(W)
    for pos in np.ndindex(ids.shape):  # a repeated id receives the sum of its gradients
        expected[ids[pos]] += g[pos]
    np.testing.assert_allclose(emb.weight.grad, expected, **TOL)


def test_embedding_padding_row_is_zero_and_gets_no_gradient():
    emb = nn.Embedding(5, 3, padding_idx=2).double()
    ids = np.array([[2, 1, 2], [0, 2, 4]])
    out = emb(ids)
    np.testing.assert_array_equal(out.numpy()[ids == 2], 0.0)
    out.backward(np.ones(out.shape))
    np.testing.assert_array_equal(emb.weight.grad[2], 0.0)
    np.testing.assert_array_equal(emb.weight.grad[1], 1.0)  # id 1 appears once


@given(
    lead=st.lists(st.integers(1, 3), max_size=2),
    d=st.integers(2, 6),
    eps=st.sampled_from([1e-5, 1e-3, 0.5]),
    data=st.data(),
)
@settings(deadline=None)
def test_layer_norm_is_the_standard_formula(lead, d, eps, data):
    x = data.draw(float_arrays((*lead, d)))
    ln = randomise(nn.LayerNorm(d, eps=eps), data.draw(seeds))
    expected = np_layer_norm(x, ln.weight.numpy(), ln.bias.numpy(), eps)
    np.testing.assert_allclose(ln(t64(x)).numpy(), expected, rtol=1e-9, atol=1e-9)


def test_layer_norm_of_a_constant_row_is_its_bias():
    # var = 0: eps inside the square root keeps it finite, and x - mean = 0 leaves b
    ln = randomise(nn.LayerNorm(4), 1)
    out = ln(t64(np.full((2, 4), 3.0))).numpy()
    np.testing.assert_allclose(out, np.broadcast_to(ln.bias.numpy(), (2, 4)), atol=1e-12)


# ---------------------------------------------------------------- FeedForward, Dropout


@given(
    shape=st.tuples(st.integers(1, 3), st.integers(1, 4)),
    d=st.integers(1, 5),
    d_ff=st.integers(1, 7),
    act=st.sampled_from(["relu", "gelu"]),
    data=st.data(),
)
@settings(deadline=None)
def test_feed_forward_relu_and_gelu(shape, d, d_ff, act, data):
    x = data.draw(float_arrays((*shape, d)))
    ffn = randomise(nn.FeedForward(d, d_ff, activation=act), data.draw(seeds))
    expected = np_ffn(params_of(ffn), x, act)
    np.testing.assert_allclose(ffn(t64(x)).numpy(), expected, **TOL)


def test_the_gelu_reference_and_unknown_activations():
    # guards the reference itself: GELU(x) = x Phi(x) and Phi(x) + Phi(-x) = 1 give
    # GELU(x) - GELU(-x) = x; and unlike ReLU, GELU is negative just left of 0
    x = np.linspace(-3, 3, 13)
    np.testing.assert_allclose(np_gelu(x) - np_gelu(-x), x, atol=1e-15)
    assert np_gelu(np.array([-1.0]))[0] < 0 == np_relu(np.array([-1.0]))[0]
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        nn.FeedForward(4, 8, activation="swish")


def test_dropout_zeroes_with_probability_p_and_rescales_the_rest():
    p = 0.3
    drop = nn.Dropout(p)
    x = np.random.default_rng(0).uniform(1, 2, size=(200, 100))
    mt.manual_seed(0)
    y = drop(t64(x)).numpy()
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / (1 - p), rtol=1e-12)
    # 20000 Bernoulli(0.3) draws: std of the fraction is sqrt(0.21 / 20000) = 0.003
    assert abs((~kept).mean() - p) < 0.015
    drop.eval()
    np.testing.assert_array_equal(drop(t64(x)).numpy(), x)
    assert np.array_equal(nn.Dropout(0.0)(t64(x)).numpy(), x)
    with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\], got 1.5"):
        nn.Dropout(1.5)


# ---------------------------------------------------------------- attention


@given(
    lead=st.tuples(st.integers(1, 2), st.integers(1, 3)),
    lq=st.integers(1, 4),
    lk=st.integers(1, 4),
    d=st.integers(1, 4),
    dv=st.integers(1, 4),
    mask_kind=st.sampled_from(["none", "lengths", "random"]),
    data=st.data(),
)
@settings(deadline=None)
def test_scaled_dot_product_attention(lead, lq, lk, d, dv, mask_kind, data):
    q = data.draw(float_arrays((*lead, lq, d)))
    k = data.draw(float_arrays((*lead, lk, d)))
    v = data.draw(float_arrays((*lead, lk, dv)))
    if mask_kind == "none":
        mask = None
    elif mask_kind == "lengths":  # lengths may be 0: whole rows masked
        mask = lengths_to_mask(data.draw(lengths(lead[0], lk, min_len=0)), lk)
    else:
        mask = data.draw(bool_masks((lq, lk)))  # any pattern, empty rows included
    out, w = F.scaled_dot_product_attention(t64(q), t64(k), t64(v), mask=mask)
    expected_out, expected_w = np_attention(q, k, v, mask)
    np.testing.assert_allclose(w.numpy(), expected_w, **TOL)
    np.testing.assert_allclose(out.numpy(), expected_out, **TOL)
    assert np.all(np.isfinite(out.numpy()))


def test_masking_sets_scores_to_minus_infinity_not_zero():
    # one key has a very negative score: masking it (weight 0) is not the same as
    # setting its score to 0 (which would give it the largest weight)
    q = t64([[1.0]])
    k = t64([[1.0], [-50.0]])
    v = t64([[1.0], [10.0]])
    out, w = F.scaled_dot_product_attention(q, k, v, mask=np.array([[True, False]]))
    np.testing.assert_array_equal(w.numpy(), [[1.0, 0.0]])
    np.testing.assert_array_equal(out.numpy(), [[1.0]])


@given(
    dims=model_dims,
    batch=st.integers(1, 3),
    lq=st.integers(1, 4),
    lk=st.integers(1, 4),
    mask_kind=st.sampled_from(["none", "padding", "causal", "causal+padding"]),
    bias=st.booleans(),
    data=st.data(),
)
@settings(deadline=None)
def test_multi_head_attention_against_a_hand_written_one(
    dims, batch, lq, lk, mask_kind, bias, data
):
    d_head, heads = dims
    d = d_head * heads
    if "causal" in mask_kind:
        lk = lq  # self-attention
    query = data.draw(float_arrays((batch, lq, d)))
    key = data.draw(float_arrays((batch, lk, d)))
    value = data.draw(float_arrays((batch, lk, d)))
    mask = None
    if "padding" in mask_kind:
        mask = lengths_to_mask(data.draw(lengths(batch, lk)), lk)
    if "causal" in mask_kind:
        mask = causal(lq) if mask is None else mask & causal(lq)
    mha = randomise(nn.MultiHeadAttention(d, heads, bias=bias), data.draw(seeds))
    out = mha(t64(query), t64(key), t64(value), mask)
    expected, expected_w = np_mha(params_of(mha), query, key, value, heads, mask)
    np.testing.assert_allclose(out.numpy(), expected, **TOL)
    np.testing.assert_allclose(mha.last_weights.numpy(), expected_w, **TOL)
    assert mha.last_weights.shape == (batch, heads, lq, lk)


def np_topk_attention(q, k, v, top_k, mask=None):
    """Keep each query's top_k allowed keys (ties: lower index), softmax over those alone."""
    scores = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    allowed = np.ones(scores.shape, bool) if mask is None else np.broadcast_to(mask, scores.shape)
    keep = np.zeros(scores.shape, dtype=bool)
    for idx in np.ndindex(scores.shape[:-1]):
        order = sorted(
            (j for j in range(scores.shape[-1]) if allowed[idx][j]), key=lambda j: -scores[idx][j]
        )
        keep[idx][order[:top_k]] = True
    w = np_masked_softmax(scores, keep)
    return w @ v, w


@given(
    dims=model_dims,
    batch=st.integers(1, 2),
    lq=st.integers(1, 4),
    lk=st.integers(1, 5),
    top_k=st.integers(1, 6),
    padded=st.booleans(),
    data=st.data(),
)
@settings(max_examples=15, deadline=None)
def test_multi_head_attention_top_k(dims, batch, lq, lk, top_k, padded, data):
    d_head, heads = dims
    d = d_head * heads
    rng = np.random.default_rng(data.draw(seeds))  # continuous values: no tied scores
    query, key = rng.standard_normal((batch, lq, d)), rng.standard_normal((batch, lk, d))
    value = rng.standard_normal((batch, lk, d))
    mask = lengths_to_mask(data.draw(lengths(batch, lk)), lk) if padded else None
    mha = randomise(nn.MultiHeadAttention(d, heads, top_k=top_k), data.draw(seeds))
    P = params_of(mha)
    out = mha(t64(query), t64(key), t64(value), mask)

    def split(x):
        return x.reshape(batch, -1, heads, d_head).transpose(0, 2, 1, 3)

    Q, K, V = (
        split(np_linear(P, n, x))
        for n, x in (("q_proj", query), ("k_proj", key), ("v_proj", value))
    )
    o, w = np_topk_attention(Q, K, V, top_k, mask)
    expected = np_linear(P, "out_proj", o.transpose(0, 2, 1, 3).reshape(batch, lq, d))
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(mha.last_weights.numpy(), w, rtol=1e-9, atol=1e-9)
    if top_k >= lk:  # keeping every key is dense attention
        dense = nn.MultiHeadAttention(d, heads).double()
        dense.load_state_dict(mha.state_dict())
        np.testing.assert_allclose(
            dense(t64(query), t64(key), t64(value), mask).numpy(),
            out.numpy(),
            rtol=1e-9,
            atol=1e-9,
        )


# ---------------------------------------------------------------- positional encoding


@given(d=st.integers(1, 17), max_len=st.integers(1, 30))
@settings(deadline=None)
def test_sinusoidal_table_is_the_papers_formula_even_and_odd_d_model(d, max_len):
    pos = nn.SinusoidalPositionalEncoding(d, max_len=max_len)
    np.testing.assert_allclose(pos.pe, paper_pe(max_len, d), rtol=1e-6, atol=1e-6)  # float32
    np.testing.assert_allclose(
        nn.sinusoidal_table(max_len, d, dtype=np.float64),
        paper_pe(max_len, d),
        rtol=1e-12,
        atol=1e-12,
    )


def test_sine_and_cosine_share_a_frequency():
    # the classic bug uses 10000^(j/d) with the raw index j: then PE[:, 1] would be
    # cos(pos / 10000^(1/d)) instead of cos(pos / 10000^0) = cos(pos)
    table = nn.sinusoidal_table(50, 6, dtype=np.float64)
    np.testing.assert_allclose(table[:, 1], np.cos(np.arange(50)), atol=1e-12)
    np.testing.assert_allclose(table[:, 0] ** 2 + table[:, 1] ** 2, 1.0, atol=1e-12)


@given(
    batch=st.integers(1, 3),
    seq=st.integers(1, 6),
    d=st.integers(1, 7),
    offset=st.integers(0, 4),
    data=st.data(),
)
@settings(deadline=None)
def test_positional_encoding_adds_the_rows_from_offset(batch, seq, d, offset, data):
    x = data.draw(float_arrays((batch, seq, d)))
    pos = nn.SinusoidalPositionalEncoding(d, max_len=10).double()
    out = pos(t64(x), offset=offset).numpy()
    # the table is built in the default float32 (see the precision test below): 1e-7
    np.testing.assert_allclose(out, x + paper_pe(10, d)[offset : offset + seq], atol=1e-7)


def test_a_float64_model_adds_the_float64_table():
    pos = nn.SinusoidalPositionalEncoding(6, max_len=20).double()
    np.testing.assert_allclose(pos.pe, paper_pe(20, 6), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- encoder and decoder layers


@given(
    dims=model_dims,
    batch=st.integers(1, 3),
    seq=st.integers(1, 4),
    d_ff=st.integers(1, 6),
    norm_first=st.booleans(),
    act=st.sampled_from(["relu", "gelu"]),
    padded=st.booleans(),
    data=st.data(),
)
@settings(deadline=None)
def test_encoder_layer_post_norm_and_pre_norm(
    dims, batch, seq, d_ff, norm_first, act, padded, data
):
    d_head, heads = dims
    d = d_head * heads
    x = data.draw(float_arrays((batch, seq, d)))
    mask = lengths_to_mask(data.draw(lengths(batch, seq)), seq) if padded else None
    layer = nn.EncoderLayer(d, heads, d_ff, dropout=0.0, activation=act, norm_first=norm_first)
    randomise(layer, data.draw(seeds))
    expected = np_encoder_layer(params_of(layer), x, heads, mask, norm_first, act)
    np.testing.assert_allclose(layer(t64(x), mask).numpy(), expected, rtol=1e-9, atol=1e-9)


@given(
    dims=model_dims,
    batch=st.integers(1, 2),
    tgt_len=st.integers(1, 4),
    src_len=st.integers(1, 4),
    d_ff=st.integers(1, 6),
    norm_first=st.booleans(),
    act=st.sampled_from(["relu", "gelu"]),
    data=st.data(),
)
@settings(deadline=None)
def test_decoder_layer_post_norm_and_pre_norm(
    dims, batch, tgt_len, src_len, d_ff, norm_first, act, data
):
    d_head, heads = dims
    d = d_head * heads
    y = data.draw(float_arrays((batch, tgt_len, d)))
    memory = data.draw(float_arrays((batch, src_len, d)))
    tgt_mask = causal(tgt_len) & lengths_to_mask(data.draw(lengths(batch, tgt_len)), tgt_len)
    memory_mask = lengths_to_mask(data.draw(lengths(batch, src_len)), src_len)
    layer = nn.DecoderLayer(d, heads, d_ff, dropout=0.0, activation=act, norm_first=norm_first)
    randomise(layer, data.draw(seeds))
    expected = np_decoder_layer(
        params_of(layer), y, memory, heads, tgt_mask, memory_mask, norm_first, act
    )
    got = layer(t64(y), t64(memory), tgt_mask, memory_mask).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("norm_first", [False, True])
def test_stacks_chain_their_layers_and_pre_norm_ends_with_a_norm(norm_first):
    rng = np.random.default_rng(0)
    d, heads = 4, 2
    enc = randomise(nn.Encoder(3, d, heads, 6, dropout=0.0, norm_first=norm_first), 1)
    dec = randomise(nn.Decoder(2, d, heads, 6, dropout=0.0, norm_first=norm_first), 2)
    assert (enc.norm is not None) == norm_first and (dec.norm is not None) == norm_first
    x, y = rng.standard_normal((2, 3, d)), rng.standard_normal((2, 4, d))
    src_mask = lengths_to_mask([3, 2], 3)
    tgt_mask = causal(4) & lengths_to_mask([4, 3], 4)

    P = params_of(enc)
    h = x
    for i in range(3):
        h = np_encoder_layer(sub(P, f"layers.{i}."), h, heads, src_mask, norm_first)
    if norm_first:
        h = np_ln(P, "norm", h)
    np.testing.assert_allclose(enc(t64(x), src_mask).numpy(), h, rtol=1e-9, atol=1e-9)

    P = params_of(dec)
    g = y
    for i in range(2):
        g = np_decoder_layer(sub(P, f"layers.{i}."), g, h, heads, tgt_mask, src_mask, norm_first)
    if norm_first:
        g = np_ln(P, "norm", g)
    got = dec(t64(y), t64(h), tgt_mask, src_mask).numpy()
    np.testing.assert_allclose(got, g, rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------- whole models


def _ids(rng, vocab, lens, width, pad=0):
    ids = np.full((len(lens), width), pad)
    for b, n in enumerate(lens):
        ids[b, :n] = rng.integers(1, vocab, size=n)
    return ids


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_scales_embeddings_by_sqrt_d_model(norm_first):
    rng = np.random.default_rng(0)
    d, heads = 8, 2
    model = nn.Transformer(
        11,
        13,
        d_model=d,
        num_heads=heads,
        num_encoder_layers=2,
        num_decoder_layers=2,
        d_ff=16,
        dropout=0.0,
        max_len=12,
        norm_first=norm_first,
    )
    randomise(model, 3)
    src, tgt = _ids(rng, 11, [5, 3], 5), _ids(rng, 13, [4, 2], 4)
    pe = model.pos.pe  # its formula is tested above; here: that it is added after scaling
    src_in = math.sqrt(d) * model.src_embed.weight.numpy()[src] + pe[:5]
    tgt_in = math.sqrt(d) * model.tgt_embed.weight.numpy()[tgt] + pe[:4]
    src_mask = (src != 0)[:, None, None, :]
    tgt_mask = causal(4) & (tgt != 0)[:, None, None, :]

    memory = model.encoder(t64(src_in), src_mask)
    np.testing.assert_allclose(model.encode(src).numpy(), memory.numpy(), rtol=1e-6, atol=1e-6)
    hidden = model.decoder(t64(tgt_in), memory, tgt_mask, src_mask)
    logits = hidden.numpy() @ model.generator.weight.numpy() + model.generator.bias.numpy()
    np.testing.assert_allclose(model(src, tgt).numpy(), logits, rtol=1e-6, atol=1e-6)
    assert model(src, tgt).shape == (2, 4, 13)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_classifier_pooling(pooling):
    rng = np.random.default_rng(1)
    d = 8
    clf = nn.TransformerClassifier(
        10,
        3,
        d_model=d,
        num_heads=2,
        num_layers=2,
        d_ff=16,
        dropout=0.0,
        max_len=9,
        pooling=pooling,
    )
    randomise(clf, 4)
    ids = _ids(rng, 10, [6, 2, 4], 6)
    real = ids != 0
    x = math.sqrt(d) * clf.embed.weight.numpy()[ids] + clf.pos.pe[:6]
    h = clf.encoder(t64(x), real[:, None, None, :]).numpy()
    if pooling == "cls":
        pooled = h[:, 0]
    else:  # the mean over real tokens only
        pooled = (h * real[:, :, None]).sum(axis=1) / real.sum(axis=1, keepdims=True)
    expected = pooled @ clf.head.weight.numpy() + clf.head.bias.numpy()
    np.testing.assert_allclose(clf(ids).numpy(), expected, rtol=1e-9, atol=1e-9)
    # an explicit attention_mask (1 = real token) gives the same
    np.testing.assert_allclose(
        clf(ids, real.astype(np.int64)).numpy(), expected, rtol=1e-9, atol=1e-9
    )


# ---------------------------------------------------------------- gradient checks


def assert_gradcheck(fn, *tensors, seed=0):
    """gradcheck of sum(w * fn(...)) with fixed random w: every output element counts
    differently (a plain sum of a LayerNorm's outputs would have zero gradient)."""
    with mt.no_grad():
        shape = fn(*tensors).shape
    w = t64(np.random.default_rng(seed).standard_normal(shape))
    assert mt.gradcheck(lambda *ts: fn(*ts) * w, *tensors)


def leaf(a) -> mt.Tensor:
    return mt.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


RNG = np.random.default_rng(1234)


def test_gradcheck_linear_and_layer_norm():
    lin = randomise(nn.Linear(3, 4), 0)
    x = leaf(RNG.standard_normal((2, 3)))
    assert_gradcheck(lambda x, *_: lin(x), x, *lin.parameters())
    ln = randomise(nn.LayerNorm(5), 2)
    x = leaf(RNG.standard_normal((2, 3, 5)))
    assert_gradcheck(lambda x, *_: ln(x), x, *ln.parameters())


def test_gradcheck_embedding_without_padding():
    emb = randomise(nn.Embedding(5, 3), 1)
    ids = np.array([[1, 2, 1], [4, 0, 3]])
    assert_gradcheck(lambda *_: emb(ids), emb.weight)


@pytest.mark.parametrize("act", ["relu", "gelu"])
def test_gradcheck_feed_forward(act):
    ffn = randomise(nn.FeedForward(3, 5, activation=act), 3)
    x = leaf(RNG.standard_normal((2, 2, 3)))
    assert_gradcheck(lambda x, *_: ffn(x), x, *ffn.parameters())


@pytest.mark.parametrize("top_k", [None, 2])
def test_gradcheck_multi_head_attention(top_k):
    mha = randomise(nn.MultiHeadAttention(4, 2, top_k=top_k), 4)
    q = leaf(RNG.standard_normal((2, 2, 4)))
    kv = RNG.standard_normal((2, 3, 4))
    k, v = leaf(kv), leaf(kv + 0.5 * RNG.standard_normal(kv.shape))
    mask = lengths_to_mask([3, 2], 3)
    assert_gradcheck(lambda q, k, v, *_: mha(q, k, v, mask), q, k, v, *mha.parameters())


def test_gradcheck_scaled_dot_product_attention_with_a_fully_masked_row():
    q, k, v = (leaf(RNG.standard_normal(s)) for s in ((2, 3, 2), (2, 4, 2), (2, 4, 3)))
    mask = RNG.random((2, 3, 4)) < 0.6
    mask[0, 1] = False  # a row with no allowed key: zero output, zero gradient
    assert_gradcheck(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, mask)[0], q, k, v)


def test_gradcheck_positional_encoding_passes_the_gradient_through():
    pos = nn.SinusoidalPositionalEncoding(5, max_len=6).double()
    x = leaf(RNG.standard_normal((2, 4, 5)))
    assert_gradcheck(lambda x: pos(x, offset=1), x)


@pytest.mark.parametrize("norm_first", [False, True])
def test_gradcheck_encoder_layer(norm_first):
    layer = randomise(nn.EncoderLayer(4, 2, 6, dropout=0.0, norm_first=norm_first), 5)
    x = leaf(RNG.standard_normal((2, 3, 4)))
    mask = lengths_to_mask([3, 2], 3)
    assert_gradcheck(lambda x, *_: layer(x, mask), x, *layer.parameters())


@pytest.mark.parametrize("norm_first", [False, True])
def test_gradcheck_decoder_layer(norm_first):
    layer = randomise(
        nn.DecoderLayer(4, 2, 6, dropout=0.0, activation="gelu", norm_first=norm_first), 6
    )
    y, memory = leaf(RNG.standard_normal((2, 3, 4))), leaf(RNG.standard_normal((2, 2, 4)))
    tgt_mask = causal(3) & lengths_to_mask([3, 2], 3)
    memory_mask = lengths_to_mask([2, 1], 2)
    assert_gradcheck(
        lambda y, m, *_: layer(y, m, tgt_mask, memory_mask), y, memory, *layer.parameters()
    )


def test_gradcheck_pre_norm_stacks_final_norm():
    enc = randomise(nn.Encoder(2, 4, 2, 4, dropout=0.0, norm_first=True), 7)
    x = leaf(RNG.standard_normal((1, 3, 4)))
    assert_gradcheck(
        lambda x, *_: enc(x), x, enc.norm.weight, enc.norm.bias, enc.layers[0].norm1.weight
    )


def test_gradcheck_transformer_and_classifier_embeddings_and_heads():
    model = nn.Transformer(
        6,
        7,
        d_model=4,
        num_heads=2,
        num_encoder_layers=1,
        num_decoder_layers=1,
        d_ff=4,
        dropout=0.0,
        max_len=5,
    )
    randomise(model, 8)
    # The padding rows of the embeddings get no gradient from the tape. That is right
    # for the source: a padded position is a masked key everywhere, so it cannot reach
    # the logits. A padded *target* position still produces (ignored) logits, so the
    # target here has no padding and row 0 of tgt_embed is simply unused.
    src, tgt = np.array([[1, 2, 3], [4, 5, 0]]), np.array([[1, 2], [3, 6]])
    params = [
        model.src_embed.weight,
        model.tgt_embed.weight,
        model.generator.weight,
        model.generator.bias,
        model.decoder.layers[0].cross_attn.k_proj.weight,
    ]
    assert_gradcheck(lambda *_: model(src, tgt), *params)
    clf = nn.TransformerClassifier(
        6,
        3,
        d_model=4,
        num_heads=2,
        num_layers=1,
        d_ff=4,
        dropout=0.0,
        max_len=5,
        pooling="mean",
    )
    randomise(clf, 9)
    ids = np.array([[1, 2, 3], [4, 5, 0]])
    params = [
        clf.embed.weight,
        clf.head.weight,
        clf.head.bias,
        clf.encoder.layers[0].feed_forward.linear1.weight,
    ]
    assert_gradcheck(lambda *_: clf(ids), *params)


# ---------------------------------------------------------------- bad input


def test_d_model_not_divisible_by_heads():
    with pytest.raises(ValueError, match=r"d_model=10 is not divisible by num_heads=3"):
        nn.MultiHeadAttention(10, 3)
    with pytest.raises(ValueError, match=r"d_model=6 is not divisible by num_heads=4"):
        nn.EncoderLayer(6, 4, 8)
    with pytest.raises(ValueError, match=r"d_model=6 is not divisible by num_heads=4"):
        nn.Transformer(5, 5, d_model=6, num_heads=4)


def test_mismatched_query_key_value_shapes():
    mha = nn.MultiHeadAttention(4, 2)
    x = mt.randn(2, 3, 4)
    with pytest.raises(ValueError, match=r"key must be \(batch, seq, 4\), got \(2, 3, 6\)"):
        mha(x, mt.randn(2, 3, 6), x)
    with pytest.raises(ValueError, match=r"key \(2, 3, 4\) and value \(2, 5, 4\)"):
        mha(x, x, mt.randn(2, 5, 4))
    with pytest.raises(ValueError, match=r"query batch 2 != key batch 1"):
        mha(x, mt.randn(1, 3, 4), mt.randn(1, 3, 4))
    with pytest.raises(ValueError, match=r"query must be \(batch, seq, 4\), got \(3, 4\)"):
        mha(mt.randn(3, 4), x, x)
    with pytest.raises(ValueError, match=r"queries have size 3 .* keys have size 2"):
        F.scaled_dot_product_attention(mt.randn(2, 3), mt.randn(4, 2), mt.randn(4, 2))
    with pytest.raises(ValueError, match=r"4 keys .* but 5 values"):
        F.scaled_dot_product_attention(mt.randn(2, 3), mt.randn(4, 3), mt.randn(5, 2))


def test_mask_that_does_not_broadcast():
    mha = nn.MultiHeadAttention(4, 2)
    x = mt.randn(2, 3, 4)
    bad = np.ones((2, 1, 1, 4), dtype=bool)  # 4 keys, but there are 3
    with pytest.raises(
        ValueError,
        match=r"mask of shape \(2, 1, 1, 4\) does not broadcast .*"
        r"\(2, 2, 3, 3\)",
    ):
        mha(x, x, x, bad)
    with pytest.raises(ValueError, match=r"mask of shape \(3, 2\) does not broadcast"):
        F.scaled_dot_product_attention(
            mt.randn(2, 4), mt.randn(3, 4), mt.randn(3, 4), mask=np.ones((3, 2), dtype=bool)
        )


def test_token_ids_past_the_vocabulary():
    with pytest.raises(ValueError, match=r"embedding id 5 is out of range for a table of 5 rows"):
        nn.Embedding(5, 3)(np.array([[0, 5]]))
    with pytest.raises(ValueError, match=r"embedding id -1 is out of range"):
        nn.Embedding(5, 3)(np.array([[-1, 2]]))
    model = nn.Transformer(
        6, 7, d_model=4, num_heads=2, num_encoder_layers=1, num_decoder_layers=1, d_ff=4, max_len=8
    )
    with pytest.raises(ValueError, match=r"embedding id 9 is out of range for a table of 6 rows"):
        model(np.array([[1, 9]]), np.array([[1, 2]]))
    with pytest.raises(ValueError, match=r"embedding id 7 is out of range for a table of 7 rows"):
        model(np.array([[1, 2]]), np.array([[1, 7]]))
    clf = nn.TransformerClassifier(6, 2, d_model=4, num_heads=2, num_layers=1, d_ff=4)
    with pytest.raises(ValueError, match=r"embedding id 6 is out of range for a table of 6 rows"):
        clf(np.array([[1, 6]]))


def test_sequences_past_max_len():
    model = nn.Transformer(
        6, 7, d_model=4, num_heads=2, num_encoder_layers=1, num_decoder_layers=1, d_ff=4, max_len=3
    )
    with pytest.raises(ValueError, match=r"sequence of length 4 is longer than max_len=3"):
        model(np.array([[1, 2, 3, 4]]), np.array([[1]]))
    with pytest.raises(ValueError, match=r"sequence of length 5 is longer than max_len=3"):
        model(np.array([[1]]), np.array([[1, 2, 3, 4, 5]]))
    clf = nn.TransformerClassifier(6, 2, d_model=4, num_heads=2, num_layers=1, d_ff=4, max_len=2)
    with pytest.raises(ValueError, match=r"sequence of length 3 is longer than max_len=2"):
        clf(np.array([[1, 2, 3]]))


def test_other_bad_sizes():
    with pytest.raises(ValueError, match=r"LayerNorm\(4\) got input of shape \(2, 5\)"):
        nn.LayerNorm(4)(mt.randn(2, 5))
    with pytest.raises(ValueError, match=r"linear: input has 3 features .* expects 4"):
        nn.Linear(4, 2)(mt.randn(2, 3))
    with pytest.raises(ValueError, match=r"padding_idx 5 is outside the table of 5 rows"):
        nn.Embedding(5, 2, padding_idx=5)
    with pytest.raises(ValueError, match=r"attention_mask shape \(1, 2\) != ids shape \(1, 3\)"):
        nn.TransformerClassifier(6, 2, d_model=4, num_heads=2, num_layers=1, d_ff=4)(
            np.array([[1, 2, 3]]), np.array([[1, 1]])
        )
    with pytest.raises(ValueError, match=r"pooling must be one of \('cls', 'mean'\), got 'max'"):
        nn.TransformerClassifier(6, 2, d_model=4, num_heads=2, pooling="max")
