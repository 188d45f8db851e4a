"""The dense attention kernels against the formulas, and the autograd op built on them.

    S = (Q K^T) * scale  (scale = 1 / sqrt(d) unless given),  S_ij = -inf where mask_ij is False
    P = softmax(S) along each row (a row that is all -inf gives zeros, not NaN)
    A = P * keep  (dropout: keep = 0 or 1 / (1 - p); A = P without it),  O = A V

    from G = dL/dO:  dV = A^T G,  dP = (G V^T) * keep,  dS = P * (dP - rowsum(dP * P)),
                     dQ = dS K * scale,  dK = dS^T Q * scale

``attention_forward`` / ``attention_backward`` (blocked: heads a few at a time, on one or
two threads, for NumPy arrays of one float dtype; the formulas otherwise) are checked
against ``attention_reference`` / ``attention_backward_reference``, against the forward
written out here in float64, and against the tape's gradient of the same computation
composed of separate ops (matmul, where, softmax, a multiply, matmul). The leading
axes of q, k and v broadcast; the kernels return gradients in the broadcast shape, which
the tape sums back to each input's shape (``sum_to``).

Values come from a NumPy generator whose seed hypothesis draws: hypothesis draws the
shapes, masks and options, but fills an array of thousands of elements mostly with one
repeated value, and attention over equal keys is uniform, so it would test little.

Tolerances are multiples of the dtype's eps relative to the largest entry compared.
An output is a sum over at most 40 keys of weights times values, and a weight's relative
error is about the absolute error of its score, a dot product of d <= 16 terms of size
<= 9: rounding errors that add up to some tens of eps (over 1000 drawn cases the largest
seen was 15 eps in O and P and 40 eps in the gradients, float32 against float64 math).
"""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import (
    DEFAULT_BOUND,
    broadcastable_shapes,
    check_gradients,
    probability,
    shapes_broadcasting_to,
)

import minitransformer as mt
import minitransformer.functional as F
from minitransformer import backend
from minitransformer.autograd.tape import sum_to
from minitransformer.kernels import attention as attention_module
from minitransformer.kernels._numba import num_threads
from minitransformer.kernels.attention import (
    attention_backward,
    attention_backward_reference,
    attention_forward,
    attention_reference,
)

DTYPES = (np.float32, np.float64)
# Multiples of eps (see the module docstring), about 4x what was measured; the backward's
# sums are longer (over keys, queries and d).
FORWARD_EPS = 64
BACKWARD_EPS = 256


def assert_close(actual, expected, dtype, n_eps=FORWARD_EPS, err_msg=""):
    """|actual - expected| <= n_eps * eps(dtype) * (|expected| + its largest entry)."""
    tol = n_eps * np.finfo(dtype).eps
    size = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * size, err_msg=err_msg)


def plain_attention(q, k, v, mask=None, keep=None, scale=None):
    """(O, P) in float64, written out: masked scores, stable softmax (all-masked rows 0), A V."""
    q, k, v = (np.asarray(t, dtype=np.float64) for t in (q, k, v))
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = (q @ np.swapaxes(k, -1, -2)) * scale
    if mask is not None:
        s = np.where(mask, s, -np.inf)
    m = np.max(s, axis=-1, keepdims=True, initial=-np.inf)
    e = np.exp(s - np.where(np.isneginf(m), 0.0, m))  # an all -inf row: exp(-inf) = 0
    z = np.sum(e, axis=-1, keepdims=True)
    p = e / np.where(z > 0, z, 1.0)
    a = p if keep is None else p * np.asarray(keep, dtype=np.float64)
    return a @ v, p


def composed_attention(q, k, v, mask=None, keep=None):
    """The same computation from separate autograd ops, on tensors."""
    # A 2-D right operand under a batched left one takes MatMul's folded path, which
    # cannot reshape an empty array with an empty last axis (Lk == 0); a leading axis
    # of size 1 sends it down NumPy's own broadcasting matmul instead.
    if k.ndim == 2 and q.ndim > 2:
        k = k.reshape(1, *k.shape)
    if v.ndim == 2 and max(q.ndim, k.ndim) > 2:
        v = v.reshape(1, *v.shape)
    scores = (q @ k.swapaxes(-1, -2)) * (1 / math.sqrt(q.shape[-1]))
    if mask is not None:
        scores = F.where(mask, scores, -math.inf)  # a mask may add leading axes (v's)
    weights = F.softmax(scores, axis=-1)
    if keep is not None:
        weights = weights * mt.tensor(keep)
    return weights @ v


def leaf(a) -> mt.Tensor:
    return mt.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


def lead_of(q, k, v) -> tuple[int, ...]:
    return np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])


@st.composite
def attention_cases(
    draw, dtypes=DTYPES, min_len=0, max_len=40, max_dim=16, min_side=0, keep=None, scale=False
):
    """(q, k, v, mask, keep, scale, rng) with broadcasting leading axes (of size 0 when
    ``min_side`` is 0) and Lq, Lk in [min_len, max_len], d, dv in [1, max_dim].

    mask: None, a full (..., Lq, Lk) pattern with now and then a fully masked query row,
    or a smaller shape that broadcasts (a padding mask (Lk,), ...). keep: None or a
    scaled dropout mask (drawn when ``keep`` is None, forced on/off otherwise).
    """
    (q_lead, k_lead, v_lead), lead = draw(
        broadcastable_shapes(num_shapes=3, max_dims=2, min_side=min_side, max_side=3)
    )
    lq, lk = draw(st.integers(min_len, max_len)), draw(st.integers(min_len, max_len))
    d, dv = draw(st.integers(1, max_dim)), draw(st.integers(1, max_dim))
    dtype = draw(st.sampled_from(dtypes))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    bound = draw(st.sampled_from([DEFAULT_BOUND, 0.1]))  # 0.1: nearly uniform weights

    def values(shape):
        return rng.uniform(-bound, bound, shape).astype(dtype)

    q, k, v = values((*q_lead, lq, d)), values((*k_lead, lk, d)), values((*v_lead, lk, dv))
    scores = (*lead, lq, lk)
    mask = None
    kind = draw(st.sampled_from(["none", "full", "broadcast"]))
    if kind != "none":
        shape = scores if kind == "full" else draw(shapes_broadcasting_to(scores))
        mask = rng.random(shape) < draw(st.sampled_from([0.2, 0.6, 0.95]))
        if kind == "full" and lq > 0 and draw(st.booleans()):
            mask[..., draw(st.integers(0, lq - 1)), :] = False  # a query that sees nothing
    use_keep = draw(st.booleans()) if keep is None else keep
    drop = None
    if use_keep:
        p = draw(probability(0.0, 0.9))
        shape = draw(shapes_broadcasting_to(scores))
        drop = np.asarray((rng.random(shape) >= p) / (1 - p), dtype=dtype)  # even 0-d
    sc = draw(st.one_of(st.none(), st.floats(0.05, 2.0))) if scale else None
    return q, k, v, mask, drop, sc, rng


# ---------------------------------------------------------------- forward


@given(attention_cases(scale=True))
@settings(max_examples=150, deadline=None)
def test_forward_matches_reference_and_formula(case):
    q, k, v, mask, keep, scale, _ = case
    dtype = q.dtype.type
    out, p = attention_forward(q, k, v, mask, scale=scale, keep=keep)
    lead, lq, lk, dv = lead_of(q, k, v), q.shape[-2], k.shape[-2], v.shape[-1]
    assert out.shape == (*lead, lq, dv) and p.shape == (*lead, lq, lk)
    assert out.dtype == p.dtype == dtype
    assert np.isfinite(out).all() and np.isfinite(p).all()
    ref_out, ref_p = attention_reference(q, k, v, mask, scale=scale, keep=keep)
    # P depends on q and k alone: the formulas give it their leading shape, the kernel
    # the leading shape of all three (as it saves P for the backward)
    assert_close(p, np.broadcast_to(ref_p, p.shape), dtype, err_msg="P vs reference")
    assert_close(out, ref_out, dtype, err_msg="O vs reference")
    # float32 against float64 arithmetic: the float32 kernel within float32 tolerance
    plain_out, plain_p = plain_attention(q, k, v, mask, keep, scale)
    assert_close(p, np.broadcast_to(plain_p, p.shape), dtype, err_msg="P vs float64 formula")
    assert_close(out, plain_out, dtype, err_msg="O vs float64 formula")
    if mask is not None:  # masking writes -inf: a masked key gets exactly 0
        allowed = np.broadcast_to(mask, p.shape)
        assert (p[~allowed] == 0).all()
        dead = ~allowed.any(axis=-1)  # queries that may attend to nothing
        assert (p[dead] == 0).all() and (out[dead] == 0).all()
        np.testing.assert_allclose(p.sum(axis=-1)[~dead], 1.0, rtol=1e-5)


# ---------------------------------------------------------------- backward


@given(attention_cases(scale=True))
@settings(max_examples=150, deadline=None)
def test_backward_matches_reference(case):
    q, k, v, mask, keep, scale, rng = case
    dtype = q.dtype.type
    out, p = attention_forward(q, k, v, mask, scale=scale, keep=keep)
    gout = rng.standard_normal(out.shape).astype(dtype)
    grads = attention_backward(q, k, v, p, gout, scale=scale, keep=keep)
    expected = attention_backward_reference(q, k, v, p, gout, scale=scale, keep=keep)
    # and from float64 arithmetic throughout (P of the float64 formula)
    _, p64 = plain_attention(q, k, v, mask, keep, scale)
    as64 = [a.astype(np.float64) for a in (q, k, v)]
    keep64 = None if keep is None else keep.astype(np.float64)
    exact = attention_backward_reference(*as64, p64, gout.astype(np.float64), scale, keep64)
    lead = lead_of(q, k, v)
    for name, g, e, x, x64 in zip("qkv", grads, expected, (q, k, v), exact):
        assert g.shape == (*lead, *x.shape[-2:]) and g.dtype == dtype, name
        assert np.isfinite(g).all(), name
        assert_close(g, e, dtype, BACKWARD_EPS, err_msg=f"d{name} vs reference")
        assert_close(g, x64, dtype, BACKWARD_EPS, err_msg=f"d{name} vs float64")


@given(attention_cases(dtypes=(np.float64,), max_len=12, max_dim=6))
@settings(max_examples=60, deadline=None)
def test_backward_matches_the_tape_through_composed_ops(case):
    q, k, v, mask, keep, _, rng = case
    out, p = attention_forward(q, k, v, mask, keep=keep)
    gout = rng.standard_normal(out.shape)
    grads = attention_backward(q, k, v, p, gout, keep=keep)

    composed = [leaf(a) for a in (q, k, v)]
    c_out = composed_attention(*composed, mask=mask, keep=keep)
    np.testing.assert_allclose(out, c_out.data, rtol=1e-12, atol=1e-13)
    c_out.backward(gout)
    for name, g, t in zip("qkv", grads, composed):
        grad = np.zeros(t.shape) if t.grad is None else t.grad
        assert_close(sum_to(g, t.shape), grad, np.float64, BACKWARD_EPS, err_msg=name)

    if keep is None:  # the autograd op itself, on leaves of their own shapes
        leaves = [leaf(a) for a in (q, k, v)]
        o, _ = F.scaled_dot_product_attention(*leaves, mask=mask)
        np.testing.assert_array_equal(o.data, out)
        o.backward(gout)
        for name, t, c in zip("qkv", leaves, composed):
            assert t.grad.shape == t.shape, name
            grad = np.zeros(t.shape) if c.grad is None else c.grad
            assert_close(t.grad, grad, np.float64, BACKWARD_EPS, err_msg=name)


def test_backward_is_the_gradient():
    # central differences of L = sum(O * w) through the op, a fully masked row included,
    # with q, k, v leading axes that broadcast against each other
    rng = np.random.default_rng(0)
    q, k, v = rng.normal(size=(2, 1, 3, 4)), rng.normal(size=(1, 2, 5, 4)), rng.normal(size=(5, 3))
    mask = rng.random((2, 2, 3, 5)) < 0.6
    mask[1, 0, 2] = False
    mask[0, 1, 0] = [True, False, False, False, False]  # one key: a weight of exactly 1
    assert check_gradients(
        lambda a, b, c: F.scaled_dot_product_attention(a, b, c, mask=mask)[0], q, k, v
    )


@given(
    attention_cases(dtypes=(np.float64,), min_len=1, max_len=4, max_dim=3, min_side=1, keep=False)
)
@settings(max_examples=15, deadline=None)
def test_gradcheck_on_drawn_cases(case):
    q, k, v, mask, *_ = case
    assert check_gradients(
        lambda a, b, c: F.scaled_dot_product_attention(a, b, c, mask=mask)[0], q, k, v
    )


# ---------------------------------------------------------------- the blocks and threads


def big_case(dtype, masked, dropped, seed=0):
    """16 heads of 128 x 128 scores: 2^18 in all, enough for both worker threads."""
    rng = np.random.default_rng(seed)
    q = rng.uniform(-3, 3, (2, 8, 128, 16)).astype(dtype)
    k = rng.uniform(-3, 3, (2, 1, 128, 16)).astype(dtype)  # one k for all heads: broadcast
    v = rng.uniform(-3, 3, (8, 128, 8)).astype(dtype)
    mask = keep = None
    if masked:
        mask = rng.random((2, 8, 128, 128)) < 0.7
        mask[1, 3, 7] = False
    if dropped:
        keep = ((rng.random((8, 128, 128)) >= 0.25) / 0.75).astype(dtype)
    gout = rng.standard_normal((2, 8, 128, 8)).astype(dtype)
    return q, k, v, mask, keep, gout


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("dropped", [False, True])
def test_two_workers_and_any_blocking_give_the_same_bits(dtype, masked, dropped, monkeypatch):
    q, k, v, mask, keep, gout = big_case(dtype, masked, dropped)
    calls = []
    run_blocks = attention_module.run_blocks

    def recording_run_blocks(work, blocks, workers, make_scratch):
        threads = set()

        def recorded(block, scratch):
            threads.add(threading.get_ident())
            work(block, scratch)

        calls.append((workers, len(blocks), threads))
        run_blocks(recorded, blocks, workers, make_scratch)

    monkeypatch.setattr(attention_module, "run_blocks", recording_run_blocks)
    out, p = attention_forward(q, k, v, mask, keep=keep)
    grads = attention_backward(q, k, v, p, gout, keep=keep)
    # (if the threshold for a second thread rises above 2^18 scores, enlarge big_case)
    assert [c[0] for c in calls] == [num_threads()] * 2, "expected the blocks on all threads"
    assert all(c[1] >= 4 for c in calls)  # at least two blocks per thread
    if num_threads() > 1:  # the blocks ran on the pool's threads, not this one
        assert all(threading.get_ident() not in c[2] for c in calls)

    ref_out, ref_p = attention_reference(q, k, v, mask, keep=keep)
    assert_close(out, ref_out, dtype)
    assert_close(p, ref_p, dtype)
    for g, e in zip(grads, attention_backward_reference(q, k, v, p, gout, keep=keep)):
        assert_close(g, e, dtype, BACKWARD_EPS)

    # Each head's result depends on that head alone (one BLAS call per head, row-wise
    # softmax), so one worker, or blocks of other sizes, give exactly the same bits.
    monkeypatch.setattr(attention_module, "_workers", lambda scores: 1)
    heads_per_block = attention_module._heads_per_block
    for heads in (None, 1, 3, 16):
        if heads is not None:
            monkeypatch.setattr(attention_module, "_heads_per_block", lambda *a, h=heads: h)
        else:
            monkeypatch.setattr(attention_module, "_heads_per_block", heads_per_block)
        out1, p1 = attention_forward(q, k, v, mask, keep=keep)
        np.testing.assert_array_equal(out1, out)
        np.testing.assert_array_equal(p1, p)
        for g1, g in zip(attention_backward(q, k, v, p, gout, keep=keep), grads):
            np.testing.assert_array_equal(g1, g)
    assert [c[0] for c in calls[2:]] == [1] * 8


def test_small_attention_runs_on_one_worker(monkeypatch):
    calls = []
    run_blocks = attention_module.run_blocks

    def recording_run_blocks(work, blocks, workers, make_scratch):
        calls.append(workers)
        run_blocks(work, blocks, workers, make_scratch)

    monkeypatch.setattr(attention_module, "run_blocks", recording_run_blocks)
    x = np.ones((2, 5, 3), np.float32)
    out, p = attention_forward(x, x, x)
    attention_backward(x, x, x, p, np.ones_like(out))
    assert calls == [1, 1]
    np.testing.assert_allclose(p, 0.2, rtol=1e-6)  # equal keys: uniform weights
    np.testing.assert_allclose(out, 1.0, rtol=1e-6)


# ---------------------------------------------------------------- dropout in the autograd op


def sdpa_case(dtype, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(2, 3, 5, 4)).astype(dtype)
    k = rng.normal(size=(3, 6, 4)).astype(dtype)  # broadcast over the batch
    v = rng.normal(size=(1, 6, 2)).astype(dtype)
    mask = rng.random((2, 1, 5, 6)) < 0.7
    mask[0, 0, 4] = False  # query 4 of batch 0 sees nothing, in every head
    return q, k, v, mask


@pytest.mark.parametrize("dtype", DTYPES)
def test_training_dropout_is_the_reference_with_the_same_draw(dtype):
    q, k, v, mask = sdpa_case(dtype)
    scores = (2, 3, 5, 6)
    rate = 0.3
    leaves = [mt.tensor(a, requires_grad=True) for a in (q, k, v)]
    mt.manual_seed(7)
    out, weights = F.scaled_dot_product_attention(*leaves, mask=mask, dropout_p=rate, training=True)
    # the op draws its keep mask from the seeded generator: one uniform per score
    mt.manual_seed(7)
    draw = backend.generator(np).random(scores, dtype=dtype)
    keep = (draw >= rate) * dtype(1 / (1 - rate))
    assert 0 < (keep == 0).mean() < 1
    ref_out, ref_p = attention_reference(q, k, v, mask, keep=keep)
    assert out.dtype == weights.dtype == dtype
    assert_close(out.data, ref_out, dtype)
    assert_close(weights.data, ref_p, dtype)  # weights: before dropout
    # every output row is the combination of v's rows with weights P * keep
    combo = np.einsum("...qk,...kd->...qd", weights.data.astype(np.float64) * keep, v)
    assert_close(out.data, combo, dtype)

    gout = np.random.default_rng(1).normal(size=out.shape).astype(dtype)
    out.backward(gout)
    expected = attention_backward_reference(q, k, v, ref_p, gout, keep=keep)
    for name, t, e in zip("qkv", leaves, expected):
        assert_close(t.grad, sum_to(e, t.shape), dtype, BACKWARD_EPS, err_msg=name)
    np.testing.assert_array_equal(leaves[0].grad[0, :, 4], 0)  # the query that sees nothing

    # a second call draws a new mask
    out2, _ = F.scaled_dot_product_attention(*leaves, mask=mask, dropout_p=rate, training=True)
    assert not np.array_equal(out2.data, out.data)


def test_training_dropout_gradient_matches_composed_ops():
    q, k, v, mask = sdpa_case(np.float64, seed=2)
    rate = 0.4
    leaves = [leaf(a) for a in (q, k, v)]
    mt.manual_seed(3)
    out, _ = F.scaled_dot_product_attention(*leaves, mask=mask, dropout_p=rate, training=True)
    mt.manual_seed(3)
    keep = (backend.generator(np).random((2, 3, 5, 6)) >= rate) / (1 - rate)
    composed = [leaf(a) for a in (q, k, v)]
    c_out = composed_attention(*composed, mask=mask, keep=keep)
    np.testing.assert_allclose(out.data, c_out.data, rtol=1e-12, atol=1e-14)
    gout = np.random.default_rng(4).normal(size=out.shape)
    out.backward(gout)
    c_out.backward(gout)
    for name, t, c in zip("qkv", leaves, composed):
        assert_close(t.grad, c.grad, np.float64, BACKWARD_EPS, err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_no_dropout_unless_training_with_positive_rate(dtype):
    q, k, v, mask = sdpa_case(dtype)
    t = [mt.tensor(a) for a in (q, k, v)]
    evaluated, w_eval = F.scaled_dot_product_attention(*t, mask=mask)
    mt.manual_seed(0)
    state = backend.get_rng_state()
    zero_rate, _ = F.scaled_dot_product_attention(*t, mask=mask, dropout_p=0.0, training=True)
    not_training, w = F.scaled_dot_product_attention(*t, mask=mask, dropout_p=0.5, training=False)
    np.testing.assert_array_equal(zero_rate.data, evaluated.data)
    np.testing.assert_array_equal(not_training.data, evaluated.data)
    np.testing.assert_array_equal(w.data, w_eval.data)
    # nothing was drawn: the generator is where it was
    assert backend.get_rng_state()["cpu"] == state["cpu"]


def test_dropout_of_everything_gives_zero_output_and_gradients():
    q, k, v, mask = sdpa_case(np.float64)
    leaves = [leaf(a) for a in (q, k, v)]
    out, weights = F.scaled_dot_product_attention(*leaves, mask=mask, dropout_p=1.0, training=True)
    assert (out.data == 0).all()
    _, p = plain_attention(q, k, v, mask)
    np.testing.assert_allclose(weights.data, p, rtol=1e-12, atol=1e-15)
    out.backward(np.ones(out.shape))
    for t in leaves:
        assert (t.grad == 0).all()


@pytest.mark.parametrize("rate", [-0.1, 1.5, math.nan])
@pytest.mark.parametrize("training", [True, False])
def test_dropout_rate_outside_0_1_raises(rate, training):
    x = mt.tensor(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\]"):
        F.scaled_dot_product_attention(x, x, x, dropout_p=rate, training=training)


# ---------------------------------------------------------------- edge cases


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lq, lk", [(0, 5), (4, 0), (0, 0)])
def test_no_queries_or_no_keys(dtype, lq, lk):
    rng = np.random.default_rng(0)
    q = rng.normal(size=(2, 3, lq, 4)).astype(dtype)
    k = rng.normal(size=(3, lk, 4)).astype(dtype)
    v = rng.normal(size=(2, 1, lk, 6)).astype(dtype)
    out, p = attention_forward(q, k, v, mask=np.ones((lq, lk), bool))
    assert out.shape == (2, 3, lq, 6) and p.shape == (2, 3, lq, lk)
    assert out.dtype == p.dtype == dtype
    assert (out == 0).all() and (p == 0).all()  # no key: zero output, never NaN
    gq, gk, gv = attention_backward(q, k, v, p, np.ones_like(out))
    assert (gq.shape, gk.shape, gv.shape) == ((2, 3, lq, 4), (2, 3, lk, 4), (2, 3, lk, 6))
    assert not (gq.any() or gk.any() or gv.any())

    leaves = [mt.tensor(a, requires_grad=True) for a in (q, k, v)]
    o, w = F.scaled_dot_product_attention(*leaves)
    assert o.shape == (2, 3, lq, 6) and w.shape == (2, 3, lq, lk)
    o.backward(np.ones(o.shape, dtype))
    for t in leaves:
        assert t.grad.shape == t.shape and not t.grad.any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_fully_masked_query_gets_zeros_and_sends_no_gradient(dtype):
    rng = np.random.default_rng(1)
    q = rng.normal(size=(2, 4, 3)).astype(dtype)
    k = rng.normal(size=(2, 5, 3)).astype(dtype)
    v = rng.normal(size=(2, 5, 2)).astype(dtype)
    mask = rng.random((2, 4, 5)) < 0.7
    mask[:, :, 0] = True
    mask[1, 2] = False
    out, p = attention_forward(q, k, v, mask)
    assert (out[1, 2] == 0).all() and (p[1, 2] == 0).all()
    gout = rng.normal(size=out.shape).astype(dtype)
    gq, gk, gv = attention_backward(q, k, v, p, gout)
    assert (gq[1, 2] == 0).all()
    # the dead query contributes nothing to dK, dV: they equal those without that query
    keep_rows = [0, 1, 3]
    _, p_rest = attention_forward(q[1:, keep_rows], k[1:], v[1:], mask[1:, keep_rows])
    _, gk_rest, gv_rest = attention_backward(
        q[1:, keep_rows], k[1:], v[1:], p_rest, gout[1:, keep_rows]
    )
    assert_close(gk[1:], gk_rest, dtype, BACKWARD_EPS)
    assert_close(gv[1:], gv_rest, dtype, BACKWARD_EPS)


@pytest.mark.parametrize(
    "dtypes",
    [
        ("float32", "float64", "float64"),
        ("float64", "float32", "float32"),
        ("float32", "float32", "float64"),  # float32 scores and P, float64 O and dP
    ],
)
def test_mixed_dtypes_take_the_formulas_and_promote(dtypes, monkeypatch):
    def no_blocks(*args):
        raise AssertionError("mixed dtypes must not take the blocked path")

    monkeypatch.setattr(attention_module, "run_blocks", no_blocks)
    rng = np.random.default_rng(2)
    q, k, v = (
        rng.normal(size=s).astype(dt) for s, dt in zip([(2, 3, 4), (2, 5, 4), (2, 5, 3)], dtypes)
    )
    mask = rng.random((3, 5)) < 0.6
    mask[1] = False
    out, p = attention_forward(q, k, v, mask)
    # NumPy's promotion, step by step: S and P in the type of q and k, O in that of all
    scores_dtype = np.result_type(q, k).type
    assert p.dtype == scores_dtype and out.dtype == np.result_type(q, k, v) == np.float64
    assert (out[:, 1] == 0).all() and (p[:, 1] == 0).all()
    plain_out, plain_p = plain_attention(q, k, v, mask)  # float64 arithmetic throughout
    assert_close(out, plain_out, scores_dtype)
    assert_close(p, plain_p, scores_dtype)
    gout = rng.normal(size=out.shape)
    grads = attention_backward(q, k, v, p, gout)
    as64 = [a.astype(np.float64) for a in (q, k, v)]
    for g, e in zip(grads, attention_backward_reference(*as64, plain_p, gout)):
        assert g.dtype == np.float64
        assert_close(g, e, scores_dtype, BACKWARD_EPS)

    leaves = [mt.tensor(a, requires_grad=True) for a in (q, k, v)]
    o, w = F.scaled_dot_product_attention(*leaves, mask=mask)
    assert o.dtype == np.float64 and w.dtype == scores_dtype
    o.backward(gout)
    for t, e in zip(leaves, attention_backward_reference(*as64, plain_p, gout)):
        assert t.grad.dtype == t.dtype  # the tape casts a leaf's gradient to its dtype
        assert_close(t.grad, e, np.float32, BACKWARD_EPS)


@pytest.mark.parametrize("dtype", DTYPES)
def test_output_gradient_of_another_dtype(dtype):
    # an op whose output meets a tensor of another dtype can get dL/dO in that dtype (the
    # tape does not cast it; through the tape below only when the op is float32); the
    # backward then takes the formulas, in the promoted dtype
    other = np.float64 if dtype == np.float32 else np.float32
    x = np.random.default_rng(5).normal(size=(2, 3, 4)).astype(dtype)
    out, p = attention_forward(x, x, x)
    g = np.random.default_rng(6).normal(size=out.shape)
    grads = attention_backward(x, x, x, p, g.astype(other))
    for a, e in zip(grads, attention_backward(x, x, x, p, g.astype(dtype))):
        assert_close(a, e, np.float32, BACKWARD_EPS)
    t = mt.tensor(x, requires_grad=True)
    o, _ = F.scaled_dot_product_attention(t, t, t)
    (o * mt.tensor(g, dtype=other.__name__)).sum().backward()
    assert t.grad.dtype == dtype
    expected = sum(attention_backward(x, x, x, p, g.astype(dtype)))
    assert_close(t.grad, expected, np.float32, BACKWARD_EPS)


@pytest.mark.parametrize("dtype", DTYPES)
def test_split_heads_views_give_the_same_bits_as_copies(dtype):
    # MultiHeadAttention splits (B, L, H * d) into heads with a reshape and a transpose
    rng = np.random.default_rng(3)
    b, lq, lk, h, d = 2, 7, 9, 4, 5

    def heads(n):
        return (
            rng.normal(size=(b, n, h * d)).astype(dtype).reshape(b, n, h, d).transpose(0, 2, 1, 3)
        )

    q, k, v = heads(lq), heads(lk), heads(lk)
    assert not q.flags.c_contiguous
    mask = (rng.random((b, 1, lk, lq)) < 0.7).transpose(0, 1, 3, 2)  # a view too
    keep = ((rng.random((lk, b * h, lq)) >= 0.2) / 0.8).astype(dtype).transpose(1, 2, 0)
    keep = keep.reshape(b, h, lq, lk)
    gout = rng.normal(size=(b, lq, h, d)).astype(dtype).transpose(0, 2, 1, 3)
    copies = [np.ascontiguousarray(a) for a in (q, k, v, keep, gout)]
    out, p = attention_forward(q, k, v, mask, keep=keep)
    out_c, p_c = attention_forward(*copies[:3], mask, keep=copies[3])
    np.testing.assert_array_equal(out, out_c)
    np.testing.assert_array_equal(p, p_c)
    p_view = np.asfortranarray(p)  # P itself need not be contiguous either
    grads = attention_backward(q, k, v, p_view, gout, keep=keep)
    grads_c = attention_backward(*copies[:3], p_c, copies[4], keep=copies[3])
    for g, gc in zip(grads, grads_c):
        np.testing.assert_array_equal(g, gc)
    assert_close(out, plain_attention(q, k, v, mask, keep)[0], dtype)


def test_shape_errors_name_the_shapes():
    q = np.zeros((2, 3, 4))
    with pytest.raises(ValueError, match=r"\(2, 3, 4\), k \(2, 5, 3\)"):
        attention_forward(q, np.zeros((2, 5, 3)), np.zeros((2, 5, 6)))
    with pytest.raises(ValueError, match="k.shape\\[-2\\] == v.shape\\[-2\\]"):
        attention_forward(q, np.zeros((2, 5, 4)), np.zeros((2, 4, 6)))
    with pytest.raises(ValueError, match="at least 2 dims"):
        attention_forward(np.zeros(4), np.zeros((5, 4)), np.zeros((5, 6)))
    with pytest.raises(ValueError):  # leading axes that do not broadcast
        attention_forward(q, np.zeros((3, 5, 4)), np.zeros((3, 5, 6)))


# ---------------------------------------------------------------- the returned weights


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [False, True])
def test_weights_sum_to_one_or_zero_and_carry_no_gradient(dtype, training):
    q, k, v, mask = sdpa_case(dtype, seed=5)
    leaves = [mt.tensor(a, requires_grad=True) for a in (q, k, v)]
    out, weights = F.scaled_dot_product_attention(
        *leaves, mask=mask, dropout_p=0.5, training=training
    )
    assert out.requires_grad
    assert not weights.requires_grad and weights._node is None
    assert weights.shape == (2, 3, 5, 6) and weights.dtype == dtype
    total = weights.data.sum(axis=-1)
    dead = ~np.broadcast_to(mask, weights.shape).any(axis=-1)
    assert dead.any() and (total[dead] == 0).all()
    # dropout (training) acts after the weights: they are still P, summing to 1 over 6
    # keys each within a few eps
    np.testing.assert_allclose(total[~dead], 1.0, rtol=6 * 4 * np.finfo(dtype).eps)
    assert (weights.data[~np.broadcast_to(mask, weights.shape)] == 0).all()
    with pytest.raises(RuntimeError, match="does not require grad"):
        weights.sum().backward()


# ---------------------------------------------------------------- once-found problems


def test_formula_path_with_values_that_have_more_leading_axes():
    # Off the blocked path (here: mixed dtypes) P once got the leading shape of q and k
    # only, (3, 5), while dL/dO and so dP = G V^T get v's too, (2, 3, 5): softmax_backward
    # wants equal shapes. Both paths must return P of shape (2, 3, 5).
    rng = np.random.default_rng(7)
    q = rng.normal(size=(3, 4)).astype(np.float32)
    k, v = rng.normal(size=(5, 4)), rng.normal(size=(2, 5, 3))
    out, p = attention_forward(q, k, v)
    assert out.shape == (2, 3, 3)
    gout = rng.normal(size=out.shape)
    grads = attention_backward(q, k, v, p, gout)
    expected = attention_backward_reference(q.astype(np.float64), k, v, p, gout)
    for g, e in zip(grads, expected):
        assert_close(g, e, np.float64, BACKWARD_EPS)
    assert p.shape == (2, 3, 5)


def test_weights_without_value_features():
    # O is empty when dv == 0 but P is not: its rows should still sum to 1
    rng = np.random.default_rng(6)
    q, k = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 5, 4))
    _, p = attention_forward(q, k, np.zeros((2, 5, 0)))
    np.testing.assert_allclose(p, attention_reference(q, k, np.zeros((2, 5, 0)))[1])


def test_run_blocks_gives_the_process_its_blas_threads_back():
    """OpenBLAS has one thread count per process. run_blocks lowers it to 1 while its
    blocks run (each block's BLAS call stays on its own core) and must set it back: a
    version that did not left every later matmul of the process on one core."""
    from minitransformer.kernels import _numba

    before = _numba._set_blas_threads(2)  # also reads the count: set 2, get the old one
    if before == 0:
        pytest.skip("NumPy does not use OpenBLAS here")
    try:
        seen = []

        def work(block, scratch):
            seen.append(_numba._set_blas_threads(1))  # the count inside a block

        _numba.run_blocks(work, list(range(8)), 2, dict)
        _numba.run_blocks(work, list(range(3)), 1, dict)
        assert seen == [1] * 11
        assert _numba._set_blas_threads(2) == 2  # given back
    finally:
        _numba._set_blas_threads(before)
