"""The CUDA softmax kernels, run on NumPy arrays by Numba's CUDA simulator.

Checked against ``softmax_reference`` / ``softmax_backward_reference`` and against the
properties every softmax has: rows sum to 1 (0 for an all-masked row), masked entries get
exactly 0, the backward's gradient sums to 0 along the axis.
"""

from __future__ import annotations

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

from minitransformer.kernels.cuda_softmax import (  # noqa: E402
    cuda_softmax_backward,
    cuda_softmax_forward,
)
from minitransformer.kernels.softmax import (  # noqa: E402
    softmax_backward_reference,
    softmax_reference,
)

# A NaN or an overflow inside a kernel (exp(-inf - -inf), say) is a bug even when a later
# guard hides it from the result; the simulator computes in NumPy scalars, which warn.
pytestmark = [pytest.mark.cudasim, pytest.mark.filterwarnings("error::RuntimeWarning")]

TOL = {np.float32: {"rtol": 1e-5, "atol": 1e-6}, np.float64: {"rtol": 1e-12, "atol": 1e-14}}


@st.composite
def masked_rows(draw):
    """(x, axis): a float32/float64 array of 1-3 axes with some -inf entries, sometimes a
    fully masked row along ``axis``. Sides are small: the simulator runs a thread per
    CUDA thread."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    x = draw(hnp.arrays(dtype, shape, elements=st.floats(-30, 30, width=32)))
    masked = draw(hnp.arrays(np.bool_, shape, elements=st.booleans()))
    x = np.where(masked, -np.inf, x).astype(dtype)
    if draw(st.booleans()):
        row = [0] * x.ndim
        row[axis] = slice(None)
        x[tuple(row)] = -np.inf
    return x, axis


@settings(max_examples=30, deadline=None)
@given(masked_rows(), st.data())
def test_forward_and_backward_match_references(case, data):
    x, axis = case
    y = cuda_softmax_forward(x, axis)
    assert y.dtype == x.dtype and y.shape == x.shape
    assert not np.isnan(y).any()
    np.testing.assert_allclose(y, softmax_reference(x, axis), **TOL[x.dtype.type])

    # each row sums to 1, or to 0 when every entry is masked; masked entries are exactly 0
    all_masked = np.all(np.isneginf(x), axis=axis)
    np.testing.assert_allclose(y.sum(axis=axis), np.where(all_masked, 0.0, 1.0), rtol=1e-5)
    assert np.all(y[np.isneginf(x)] == 0)

    gy = data.draw(hnp.arrays(x.dtype, x.shape, elements=st.floats(-3, 3, width=32)))
    gx = cuda_softmax_backward(y, gy, axis)
    assert gx.dtype == x.dtype and not np.isnan(gx).any()
    np.testing.assert_allclose(gx, softmax_backward_reference(y, gy, axis), **TOL[x.dtype.type])
    # sum_i y_i (gy_i - <gy, y>) = <gy, y> - <gy, y> * sum_i y_i = 0 when the row sums to 1
    np.testing.assert_allclose(gx.sum(axis=axis), 0.0, atol=1e-5)


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_rows_longer_than_the_block_are_walked_in_strides(threads):
    rng = np.random.default_rng(threads)
    x = rng.normal(size=(3, 11))  # 11 columns: thread t visits t, t + T, t + 2T, ...
    x[1, ::3] = -np.inf
    y = cuda_softmax_forward(x, threads_per_block=threads)
    np.testing.assert_allclose(y, softmax_reference(x), rtol=1e-12)
    gy = rng.normal(size=x.shape)
    gx = cuda_softmax_backward(y, gy, threads_per_block=threads)
    np.testing.assert_allclose(gx, softmax_backward_reference(y, gy), rtol=1e-12, atol=1e-15)


def test_default_block_is_capped_at_128_threads_for_a_long_row():
    x = np.random.default_rng(0).normal(size=(1, 300)).astype(np.float32)
    np.testing.assert_allclose(cuda_softmax_forward(x), softmax_reference(x), rtol=1e-5, atol=1e-8)


def test_large_logits_do_not_overflow():
    # exp(1000) overflows float64, exp(100) overflows float32; subtracting the row max
    # first leaves exp(-2), exp(-1), exp(0), so the result is softmax([0, 1, 2]).
    for dtype, big in ((np.float64, 1000.0), (np.float32, 100.0)):
        x = np.array([[big, big + 1, big + 2]], dtype=dtype)
        e = np.exp(np.array([-2.0, -1.0, 0.0]))
        np.testing.assert_allclose(cuda_softmax_forward(x)[0], e / e.sum(), rtol=1e-6)


def test_non_contiguous_input_and_middle_axis():
    x = np.random.default_rng(1).normal(size=(4, 3, 5)).transpose(2, 0, 1)  # (5, 4, 3) view
    np.testing.assert_allclose(cuda_softmax_forward(x, axis=1), softmax_reference(x, 1))


def test_empty_rows_give_an_empty_result():
    x = np.zeros((3, 0), dtype=np.float32)
    assert cuda_softmax_forward(x).shape == (3, 0)
