"""The CUDA top-k attention kernels, run on NumPy arrays by Numba's CUDA simulator.

Checked against ``topk_attention_reference`` / ``topk_attention_backward_reference``,
which build the dense (Lq, Lk) scores. Inputs are drawn from the grid {-1, -1/2, 0, 1/2, 1}
so that scores are exact in both (a sum of a few products of halves, times one rounding
of the scale) and ties are common: which keys are kept must then agree exactly.

The simulator runs blocks one after another, so it cannot show a race between blocks: the
backward's dK/dV scatter is checked for its sums here, and relies on ``cuda.atomic.add``
for being race-free on a GPU (the gpu tests in tests/test_cuda_kernels.py run it there).
"""

from __future__ import annotations

import math
import os

import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    pytest.skip(
        "needs NUMBA_ENABLE_CUDASIM=1; tests/test_cuda_kernels.py runs it in a subprocess",
        allow_module_level=True,
    )

import numpy as np  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from minitransformer.kernels.cuda_topk import (  # noqa: E402
    cuda_topk_attention_backward,
    cuda_topk_attention_forward,
)
from minitransformer.kernels.softmax import softmax_reference  # noqa: E402
from minitransformer.kernels.topk import (  # noqa: E402
    topk_attention_backward_reference,
    topk_attention_reference,
)

# A NaN or an overflow inside a kernel (exp(-inf - -inf), say) is a bug even when a later
# guard hides it from the result; the simulator computes in NumPy scalars, which warn.
pytestmark = [pytest.mark.cudasim, pytest.mark.filterwarnings("error::RuntimeWarning")]

TOL = {np.float32: {"rtol": 1e-5, "atol": 1e-6}, np.float64: {"rtol": 1e-12, "atol": 1e-14}}
GRID = [-1.0, -0.5, 0.0, 0.5, 1.0]


def _normal(*shapes, seed=0):
    rng = np.random.default_rng(seed)
    return tuple(rng.normal(size=shape) for shape in shapes)


def dense_weights(idx, p, lk):
    """Scatter the kernel's (idx, p) slots into a dense (B, Lq, Lk) weight matrix."""
    w = np.zeros(idx.shape[:2] + (lk,), dtype=p.dtype)
    for b, i, t in np.ndindex(idx.shape):
        if idx[b, i, t] >= 0:
            w[b, i, idx[b, i, t]] += p[b, i, t]
    return w


@st.composite
def attention_problems(draw):
    """(q, k, v, top_k, mask) with small sides, grid values (so, ties) and masks that
    broadcast from (B or 1, Lq or 1, Lk), sometimes with a query that may attend to nothing."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    b, lq, lk = draw(st.integers(1, 2)), draw(st.integers(1, 4)), draw(st.integers(1, 8))
    d, dv = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    top_k = draw(st.integers(1, lk + 1))
    grid = st.sampled_from(GRID)
    q = draw(hnp.arrays(dtype, (b, lq, d), elements=grid))
    k = draw(hnp.arrays(dtype, (b, lk, d), elements=grid))
    v = draw(hnp.arrays(dtype, (b, lk, dv), elements=st.floats(-2, 2, width=32)))
    mask = None
    if draw(st.booleans()):
        shape = (draw(st.sampled_from([1, b])), draw(st.sampled_from([1, lq])), lk)
        mask = draw(hnp.arrays(np.bool_, shape, elements=st.booleans()))
        if draw(st.booleans()):
            mask = np.broadcast_to(mask, (b, lq, lk)).copy()
            mask[0, 0, :] = False
    return q, k, v, top_k, mask


@settings(max_examples=40, deadline=None)
@given(attention_problems(), st.data())
def test_forward_and_backward_match_references(problem, data):
    q, k, v, top_k, mask = problem
    tol = TOL[q.dtype.type]
    lk = k.shape[1]
    out, idx, p = cuda_topk_attention_forward(q, k, v, top_k, mask)
    ref_out, ref_w, keep = topk_attention_reference(q, k, v, top_k, mask)

    kk = min(top_k, lk)
    assert out.dtype == q.dtype and p.dtype == q.dtype and idx.dtype == np.int32
    assert idx.shape == p.shape == (q.shape[0], q.shape[1], kk)
    assert not np.isnan(out).any() and not np.isnan(p).any()
    np.testing.assert_allclose(out, ref_out, **tol)
    np.testing.assert_allclose(dense_weights(idx, p, lk), ref_w, **tol)

    # the kept keys are the reference's, best score first, ties to the lower key index;
    # unused slots hold -1 and weight 0
    scores = (q @ k.transpose(0, 2, 1)) * (1 / math.sqrt(q.shape[-1]))
    for b, i in np.ndindex(q.shape[:2]):
        kept = idx[b, i][idx[b, i] >= 0]
        expected = sorted(np.flatnonzero(keep[b, i]), key=lambda j: (-scores[b, i, j], j))
        assert kept.tolist() == expected
        assert np.all(idx[b, i, len(kept) :] == -1) and np.all(p[b, i, len(kept) :] == 0)

    gout = data.draw(hnp.arrays(q.dtype, out.shape, elements=st.floats(-2, 2, width=32)))
    grads = cuda_topk_attention_backward(q, k, v, idx, p, gout)
    ref_grads = topk_attention_backward_reference(q, k, v, ref_w, keep, gout)
    for name, g, ref in zip(("gq", "gk", "gv"), grads, ref_grads):
        assert g.shape == ref.shape, name
        np.testing.assert_allclose(g, ref, err_msg=name, **tol)


@settings(max_examples=6, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([np.float32, np.float64]))
def test_top_k_at_least_the_key_count_is_dense_masked_attention(seed, dtype):
    rng = np.random.default_rng(seed)
    b, lq, lk, d = 2, 3, 5, 4
    q, k, v = (rng.normal(size=(b, n, d)).astype(dtype) for n in (lq, lk, lk))
    mask = rng.random((b, 1, lk)) < 0.6  # a padding mask; some batch may mask every key
    # dense attention written out: softmax(q k^T / sqrt(d), masked to -inf) v
    scores = np.where(mask, q @ k.transpose(0, 2, 1) / np.sqrt(d), -np.inf)
    dense = softmax_reference(scores) @ v
    for top_k in (lk, lk + 3):
        out, idx, p = cuda_topk_attention_forward(q, k, v, top_k, mask)
        np.testing.assert_allclose(out, dense, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(dense_weights(idx, p, lk), softmax_reference(scores), atol=1e-6)


def test_top_k_above_max_top_k_is_allowed_with_fewer_keys():
    q, k, v = _normal((1, 2, 3), (1, 4, 3), (1, 4, 2))
    out, idx, p = cuda_topk_attention_forward(q, k, v, 500)  # kk = min(500, 4) = 4
    assert idx.shape == (1, 2, 4)
    np.testing.assert_allclose(out, topk_attention_reference(q, k, v, 500)[0], rtol=1e-12)


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_keys_spanning_several_tiles(threads):
    # 11 keys with a block of T threads: the scores arrive in ceil(11 / T) tiles, and the
    # selection buffer must carry over from one tile to the next.
    q, k, v = _normal((1, 2, 3), (1, 11, 3), (1, 11, 2), seed=threads)
    out, idx, p = cuda_topk_attention_forward(q, k, v, 4, threads_per_block=threads)
    ref_out, ref_w, keep = topk_attention_reference(q, k, v, 4)
    np.testing.assert_allclose(out, ref_out, rtol=1e-12)
    np.testing.assert_allclose(dense_weights(idx, p, 11), ref_w, rtol=1e-12)
    (gout,) = _normal(out.shape)
    grads = cuda_topk_attention_backward(q, k, v, idx, p, gout, threads_per_block=threads)
    for g, ref in zip(grads, topk_attention_backward_reference(q, k, v, ref_w, keep, gout)):
        np.testing.assert_allclose(g, ref, rtol=1e-12, atol=1e-14)


def test_equal_scores_keep_the_lowest_key_indices():
    # every key is the same vector, so every score ties: keys 0 .. top_k-1 win, equally
    q = np.ones((1, 2, 2))
    k = np.ones((1, 6, 2))
    v = np.arange(12.0).reshape(1, 6, 2)
    out, idx, p = cuda_topk_attention_forward(q, k, v, 3)
    assert idx.tolist() == [[[0, 1, 2], [0, 1, 2]]]
    np.testing.assert_allclose(p, 1 / 3)
    np.testing.assert_allclose(out[0, 0], v[0, :3].mean(axis=0))


def test_a_query_with_no_allowed_key_gets_zeros():
    q, k, v = _normal((1, 2, 3), (1, 4, 3), (1, 4, 2))
    mask = np.array([[[False] * 4, [True, False, True, False]]])
    out, idx, p = cuda_topk_attention_forward(q, k, v, 3, mask)
    assert np.all(out[0, 0] == 0) and np.all(idx[0, 0] == -1) and np.all(p[0, 0] == 0)
    assert sorted(idx[0, 1, :2].tolist()) == [0, 2] and idx[0, 1, 2] == -1
    gq, gk, gv = cuda_topk_attention_backward(q, k, v, idx, p, np.ones_like(out))
    assert np.all(gq[0, 0] == 0)
    assert np.all(gk[0, [1, 3]] == 0) and np.all(gv[0, [1, 3]] == 0)  # keys nobody kept


def test_many_queries_adding_into_the_same_keys():
    # every query keeps every key, so each dK / dV row receives Lq atomic additions
    q, k, v, gout = _normal((2, 8, 3), (2, 3, 3), (2, 3, 2), (2, 8, 2), seed=2)
    out, idx, p = cuda_topk_attention_forward(q, k, v, 3)
    _, ref_w, keep = topk_attention_reference(q, k, v, 3)
    grads = cuda_topk_attention_backward(q, k, v, idx, p, gout)
    for g, ref in zip(grads, topk_attention_backward_reference(q, k, v, ref_w, keep, gout)):
        np.testing.assert_allclose(g, ref, rtol=1e-12, atol=1e-14)


def test_an_explicit_scale():
    q, k, v, gout = _normal((1, 3, 2), (1, 5, 2), (1, 5, 2), (1, 3, 2), seed=3)
    out, idx, p = cuda_topk_attention_forward(q, k, v, 2, scale=0.25)
    ref_out, ref_w, keep = topk_attention_reference(q, k, v, 2, scale=0.25)
    np.testing.assert_allclose(out, ref_out, rtol=1e-12)
    grads = cuda_topk_attention_backward(q, k, v, idx, p, gout, scale=0.25)
    ref_grads = topk_attention_backward_reference(q, k, v, ref_w, keep, gout, scale=0.25)
    for g, ref in zip(grads, ref_grads):
        np.testing.assert_allclose(g, ref, rtol=1e-12, atol=1e-14)
