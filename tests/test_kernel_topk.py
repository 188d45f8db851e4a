"""The Numba top-k attention kernels against the dense reference, the tie rule and memory.

For each query i the kernels keep K_i, the top_k allowed keys by s_ij = q_i . k_j * scale
(ties: lower j first), and compute p_ij = softmax over K_i, out_i = sum_{j in K_i} p_ij v_j.
They return (out, idx, p): the kept key indices and their probabilities, -1 / 0 in the
slots of a query with fewer than top_k allowed keys. The backward sends gradient through
the kept entries only. Comparisons scatter (idx, p) into a dense (Lq, Lk) weight matrix.
"""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from strategies import float_arrays

from minitransformer.kernels import topk as topk_module
from minitransformer.kernels._numba import num_threads
from minitransformer.kernels.softmax import softmax_reference
from minitransformer.kernels.topk import (
    topk_attention_backward,
    topk_attention_backward_reference,
    topk_attention_forward,
    topk_attention_reference,
    topk_keep_mask,
)

DTYPES = (np.float32, np.float64)
TOL = {np.float32: dict(rtol=1e-4, atol=1e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}


def dense_weights(idx: np.ndarray, p: np.ndarray, n_keys: int) -> np.ndarray:
    """Scatter the kept (idx, p) of shape (..., Lq, kk) into (..., Lq, n_keys)."""
    w = np.zeros((*idx.shape[:-1], n_keys), dtype=p.dtype)
    kept = idx >= 0
    rows = np.nonzero(kept)[:-1]  # the (..., i) of every kept slot
    w[(*rows, idx[kept])] = p[kept]
    return w


@st.composite
def attention_cases(draw, integer_scores=False):
    """q, k, v, top_k, mask, scale over small shapes, float32 or float64.

    integer_scores: q and k hold small integers and scale = 1, so every score is an exact
    integer, computed identically by any summation order, and ties are frequent.
    """
    lead = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3))
    lq, lk = draw(st.integers(1, 6)), draw(st.integers(1, 12))
    d, dv = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dtype = draw(st.sampled_from(DTYPES))
    if integer_scores:
        ints = st.integers(-2, 2).map(float)
        q = draw(hnp.arrays(np.float64, (*lead, lq, d), elements=ints))
        k = draw(hnp.arrays(np.float64, (*lead, lk, d), elements=ints))
        scale = 1.0
    else:
        q = draw(float_arrays((*lead, lq, d)))
        k = draw(float_arrays((*lead, lk, d)))
        scale = draw(st.one_of(st.none(), st.floats(0.1, 2.0)))
    v = draw(float_arrays((*lead, lk, dv)))
    top_k = draw(st.integers(1, lk + 2))
    mask = None
    kind = draw(st.sampled_from(["none", "full", "keys", "queries"]))
    if kind == "full":  # any pattern, with fully masked query rows now and then
        mask = draw(hnp.arrays(np.bool_, (*lead, lq, lk), elements=st.booleans()))
    elif kind == "keys":  # a padding mask (..., 1, Lk), read through a broadcast
        mask = draw(hnp.arrays(np.bool_, (*lead, 1, lk), elements=st.booleans()))
    elif kind == "queries":  # (Lq, 1): whole query rows allowed or not
        mask = draw(hnp.arrays(np.bool_, (lq, 1), elements=st.booleans()))
    return q.astype(dtype), k.astype(dtype), v.astype(dtype), top_k, mask, scale


def check_forward(q, k, v, top_k, mask, scale):
    out, idx, p = topk_attention_forward(q, k, v, top_k, mask, scale)
    ref_out, ref_w, ref_keep = topk_attention_reference(q, k, v, top_k, mask, scale)
    lq, lk, dv = q.shape[-2], k.shape[-2], v.shape[-1]
    kk = min(top_k, lk)
    assert out.shape == (*q.shape[:-2], lq, dv) and out.dtype == q.dtype
    assert idx.shape == p.shape == (*q.shape[:-2], lq, kk)
    assert idx.dtype == np.int32 and p.dtype == q.dtype
    w = dense_weights(idx, p, lk)
    np.testing.assert_array_equal(w > 0, ref_keep)  # the same keys, exactly
    assert ((idx >= 0) == (p > 0)).all()  # empty slots: idx -1 and p 0, together
    assert (idx < lk).all()
    np.testing.assert_allclose(w, ref_w, **TOL[q.dtype.type])
    np.testing.assert_allclose(out, ref_out, **TOL[q.dtype.type])
    return out, idx, p, ref_w, ref_keep


@given(attention_cases())
def test_forward_matches_reference(case):
    check_forward(*case)


@given(attention_cases(integer_scores=True))
def test_ties_break_toward_the_lower_key(case):
    # exact integer scores with many ties: the kept set must still equal the reference's
    check_forward(*case)


def test_tie_rule_on_a_row_of_equal_scores():
    q = np.ones((1, 1, 2))
    k = np.ones((1, 6, 2))  # every key scores 2
    v = np.arange(6.0).reshape(1, 6, 1)
    out, idx, p = topk_attention_forward(q, k, v, top_k=3, scale=1.0)
    assert sorted(idx[0, 0]) == [0, 1, 2]
    np.testing.assert_allclose(p, 1 / 3)
    np.testing.assert_allclose(out[0, 0, 0], (0 + 1 + 2) / 3)


@given(attention_cases(), st.data())
def test_all_keys_kept_is_dense_masked_attention(case, data):
    q, k, v, _, mask, scale = case
    lk = k.shape[-2]
    top_k = data.draw(st.integers(lk, lk + 3))
    out, _, _ = topk_attention_forward(q, k, v, top_k, mask, scale)
    # dense attention written out: softmax of the masked scores, times v
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = (q @ np.swapaxes(k, -1, -2)) * scale
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    expected = softmax_reference(scores.astype(np.float64)) @ v.astype(np.float64)
    np.testing.assert_allclose(out, expected, **TOL[q.dtype.type])


def test_rows_with_few_or_no_allowed_keys():
    rng = np.random.default_rng(0)
    q, k, v = rng.standard_normal((1, 3, 4)), rng.standard_normal((1, 5, 4)), np.ones((1, 5, 2))
    mask = np.array([[True] * 5, [True, False, True, False, False], [False] * 5])
    out, idx, p = topk_attention_forward(q, k, v, top_k=4, mask=mask)
    assert (idx[0, 0] >= 0).all()
    assert sorted(idx[0, 1][idx[0, 1] >= 0]) == [0, 2] and (idx[0, 1] == -1).sum() == 2
    assert (idx[0, 2] == -1).all() and (p[0, 2] == 0).all() and (out[0, 2] == 0).all()
    np.testing.assert_allclose(p.sum(-1), [[1, 1, 0]])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("top_k", [1, 7, 64])
@pytest.mark.parametrize("masked", [False, True])
def test_long_rows(dtype, top_k, masked):
    # long enough for the group / bisection path and for the worker threads
    rng = np.random.default_rng(top_k)
    nb, lq, lk, d = 2, 40, 1500, 16
    q, k = (rng.standard_normal((nb, n, d)).astype(dtype) for n in (lq, lk))
    v = rng.standard_normal((nb, lk, 8)).astype(dtype)
    mask = None
    if masked:  # causal-like (query i sees keys up to 30 i) plus a padded tail of keys
        mask = np.arange(lk)[None, :] <= 30 * np.arange(lq)[:, None]
        mask = mask & (np.arange(lk) < lk - 100)
    check_forward(q, k, v, top_k, mask, None)


def test_long_rows_with_heavy_ties():
    # scores in {0, 1, 2}: thousands of ties around the cut
    rng = np.random.default_rng(5)
    q = np.ones((1, 30, 1))
    k = rng.integers(0, 3, (1, 2000, 1)).astype(np.float64)
    v = rng.standard_normal((1, 2000, 3))
    check_forward(q, k, v, 50, None, 1.0)


# ---------------------------------------------------------------- backward


@given(attention_cases(), st.data())
def test_backward_matches_reference(case, data):
    q, k, v, top_k, mask, scale = case
    out, idx, p = topk_attention_forward(q, k, v, top_k, mask, scale)
    _, ref_w, ref_keep = topk_attention_reference(q, k, v, top_k, mask, scale)
    assume((dense_weights(idx, p, k.shape[-2]) > 0).tolist() == ref_keep.tolist())
    gout = data.draw(float_arrays(out.shape)).astype(q.dtype)
    grads = topk_attention_backward(q, k, v, idx, p, gout, scale)
    expected = topk_attention_backward_reference(q, k, v, ref_w, ref_keep, gout, scale)
    for name, g, e, x in zip(("gq", "gk", "gv"), grads, expected, (q, k, v)):
        assert g.shape == x.shape and g.dtype == x.dtype, name
        np.testing.assert_allclose(g, e, err_msg=name, **TOL[q.dtype.type])


def test_backward_is_the_gradient():
    # central differences of L = sum(out * w) in float64; the scores are well separated,
    # so a small step never changes which keys are kept
    rng = np.random.default_rng(6)
    q, k, v = (
        rng.standard_normal((2, 3, 4)),
        rng.standard_normal((2, 7, 4)),
        rng.standard_normal((2, 7, 2)),
    )
    w = rng.standard_normal((2, 3, 2))
    mask = rng.random((2, 3, 7)) < 0.8

    def loss(q, k, v):
        return np.sum(topk_attention_forward(q, k, v, 3, mask)[0] * w)

    _, idx, p = topk_attention_forward(q, k, v, 3, mask)
    grads = topk_attention_backward(q, k, v, idx, p, w)
    eps = 1e-6
    for which, g in enumerate(grads):
        args = [q, k, v]
        numeric = np.zeros_like(args[which])
        for i in np.ndindex(numeric.shape):
            plus = [a.copy() for a in args]
            minus = [a.copy() for a in args]
            plus[which][i] += eps
            minus[which][i] -= eps
            numeric[i] = (loss(*plus) - loss(*minus)) / (2 * eps)
        np.testing.assert_allclose(g, numeric, rtol=1e-6, atol=1e-8, err_msg="qkv"[which])


@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_long_rows(dtype):
    rng = np.random.default_rng(7)
    nb, lq, lk, d = 2, 50, 1200, 8
    q, k = (rng.standard_normal((nb, n, d)).astype(dtype) for n in (lq, lk))
    v = rng.standard_normal((nb, lk, 4)).astype(dtype)
    gout = rng.standard_normal((nb, lq, 4)).astype(dtype)
    out, idx, p = topk_attention_forward(q, k, v, 16)
    _, ref_w, ref_keep = topk_attention_reference(q, k, v, 16)
    grads = topk_attention_backward(q, k, v, idx, p, gout)
    expected = topk_attention_backward_reference(q, k, v, ref_w, ref_keep, gout)
    for g, e in zip(grads, expected):
        np.testing.assert_allclose(g, e, **TOL[dtype])


# ---------------------------------------------------------------- memory


def test_memory_grows_with_n_top_k_not_n_squared():
    # at n = 4096 one dense (n, n) float32 score matrix is 64 MiB; the kernels may use
    # O(n * top_k) plus a fixed score block per worker thread
    n, d, top_k = 4096, 16, 16
    rng = np.random.default_rng(8)
    q, k, v = (rng.standard_normal((1, n, d), dtype=np.float32) for _ in range(3))
    gout = rng.standard_normal((1, n, d), dtype=np.float32)
    padding = np.broadcast_to(np.arange(n) < n - 10, (1, n, n))  # a view, never expanded
    topk_attention_forward(q[:, :64], k, v, top_k, padding[:, :64])  # compile outside the trace
    tracemalloc.start()
    try:
        out, idx, p = topk_attention_forward(q, k, v, top_k, padding)
        topk_attention_backward(q, k, v, idx, p, gout)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    dense = n * n * 4
    # the fixed part: each worker's score block and its copy of k^T (d, n)
    block = max(topk_module._SCORE_BLOCK_BYTES, topk_module._MIN_BLOCK_ROWS * n * 4)
    fixed = num_threads() * (block + d * n * 4)
    # the O(n * top_k) part, generously: idx, p, the backward's per-key lists and gs
    # (4-byte entries, a few arrays of n * top_k), and O(n * d) outputs and gradients
    linear = n * top_k * 4 * 8 + n * d * 4 * 8
    assert peak < fixed + linear, (
        f"peak {peak / 2**20:.1f} MiB > fixed {fixed / 2**20:.1f} + linear {linear / 2**20:.1f} MiB"
    )
    assert peak < dense / 4, f"peak {peak / 2**20:.1f} MiB vs dense scores {dense / 2**20:.0f} MiB"


# ---------------------------------------------------------------- errors


def test_errors_name_the_problem():
    q = np.zeros((2, 3, 4), np.float32)
    k = np.zeros((2, 5, 4), np.float32)
    v = np.zeros((2, 5, 6), np.float32)
    with pytest.raises(ValueError, match="top_k must be an integer >= 1, got 0"):
        topk_attention_forward(q, k, v, 0)
    with pytest.raises(TypeError, match="float32, float64, float32"):
        topk_attention_forward(q, k.astype(np.float64), v, 2)
    with pytest.raises(ValueError, match="need q .*\\(2, 3, 4\\), \\(2, 5, 3\\)"):
        topk_attention_forward(q, k[..., :3], v, 2)
    with pytest.raises(ValueError, match="mask of shape \\(4,\\) does not broadcast"):
        topk_attention_forward(q, k, v, 2, np.ones(4, bool))
    with pytest.raises(TypeError, match="mask must be a bool"):
        topk_attention_forward(q, k, v, 2, np.ones(5))
    _, idx, p = topk_attention_forward(q, k, v, 2)
    with pytest.raises(IndexError, match="idx must lie in \\[-1, 5\\)"):
        topk_attention_backward(q, k, v, idx + 10, p, np.zeros((2, 3, 6), np.float32))
    with pytest.raises(ValueError, match="gout must have shape \\(2, 3, 6\\)"):
        topk_attention_backward(q, k, v, idx, p, np.zeros((2, 3, 4), np.float32))


def test_reference_keep_mask_tie_rule():
    # the reference's own rule, checked on a row written out by hand
    scores = np.array([[3.0, 1.0, 3.0, 2.0, 3.0]])
    np.testing.assert_array_equal(topk_keep_mask(scores, 2), [[True, False, True, False, False]])
