"""The fused Numba softmax kernels against the plain formula, and the helpers they rely on.

softmax(x)_i = exp(x_i - max x) / sum_j exp(x_j - max x), along any axis; masked entries
are -inf (probability 0) and a slice that is all -inf gives zeros. The backward is
gx = y * (gy - sum(gy * y)). The kernels hand-write exp (float32) and max, so those are
tested on their own too: exp to within 2 ulp of float64's exp, max bit for bit.
"""

from __future__ import annotations

import math
import os
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import config, njit
from strategies import axis as axis_strategy
from strategies import bool_masks, float_arrays, run_python, shapes

from minitransformer.kernels import _numba
from minitransformer.kernels import softmax as softmax_module
from minitransformer.kernels._numba import (
    PARALLEL_MIN_ELEMENTS,
    choose_cache,
    exp_f32,
    max_of,
    num_threads,
)
from minitransformer.kernels.softmax import (
    _STRIP,
    softmax_backward,
    softmax_backward_reference,
    softmax_forward,
    softmax_reference,
)

DTYPES = (np.float32, np.float64)
# float32: a few ulp on values <= 1; float64: the two formulas differ only by rounding.
TOL = {np.float32: dict(rtol=2e-6, atol=2e-7), np.float64: dict(rtol=1e-13, atol=1e-15)}


def plain_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    """The formula, in float64, with the all -inf slice written out as zeros."""
    x = x.astype(np.float64)
    m = np.max(x, axis=axis, keepdims=True)
    e = np.exp(x - np.where(np.isneginf(m), 0.0, m))
    s = np.sum(e, axis=axis, keepdims=True)
    return e / np.where(s > 0, s, 1.0)


@st.composite
def masked_inputs(draw, min_dims=1, max_dims=4, max_side=6):
    """(x, axis, dtype): x with some entries -inf, sometimes a whole slice along axis."""
    shape = draw(shapes(min_dims=min_dims, max_dims=max_dims, max_side=max_side))
    ax = draw(axis_strategy(len(shape)))
    dtype = draw(st.sampled_from(DTYPES))
    x = draw(float_arrays(shape, lo=-20, hi=20))
    masked = draw(bool_masks(shape))
    x[masked] = -np.inf
    if draw(st.booleans()):  # one slice along the axis fully masked
        index = [draw(st.integers(0, n - 1)) for n in shape]
        index[ax] = slice(None)
        x[tuple(index)] = -np.inf
    return x.astype(dtype), ax, dtype


# ---------------------------------------------------------------- forward


@given(masked_inputs())
def test_forward_matches_reference(case):
    x, ax, dtype = case
    y = softmax_forward(x, axis=ax)
    assert y.dtype == dtype and y.shape == x.shape
    assert not np.isnan(y).any()
    np.testing.assert_allclose(y, softmax_reference(x, axis=ax), **TOL[dtype])
    np.testing.assert_allclose(y, plain_softmax(x, ax), **TOL[dtype])


@given(masked_inputs())
def test_forward_rows_sum_to_one_or_zero(case):
    x, ax, dtype = case
    y = softmax_forward(x, axis=ax)
    total = y.sum(axis=ax)
    all_masked = np.isneginf(x).all(axis=ax)
    np.testing.assert_allclose(total[~all_masked], 1.0, rtol=1e-5)
    assert (total[all_masked] == 0).all()
    assert (y[np.isneginf(x)] == 0).all()  # a masked entry gets exactly 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape, ax",
    [
        ((1,), -1),  # a row of length 1: probability 1
        ((5, 1), -1),
        ((1, 7), 0),  # softmax over a length-1 axis that is not the last
        ((3, 1000), -1),  # long rows: the vectorised loops and their remainders
        ((40, 1024), -1),  # >= PARALLEL_MIN_ELEMENTS: the prange kernel
        ((4, 300, 3), 1),  # the strip kernel
        ((2, 50, 2 * _STRIP + 5), 1),  # strips of _STRIP columns plus a remainder, in parallel
        ((9, 2, 3, 4), 0),
    ],
)
def test_forward_sizes_and_axes(shape, ax, dtype):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    y = softmax_forward(x, axis=ax)
    np.testing.assert_allclose(y, plain_softmax(x, ax), **TOL[dtype])


@pytest.mark.parametrize(
    "shape, ax, kind", [((40, 1024), -1, "rows"), ((30, 40, 30), 1, "columns")]
)
def test_small_inputs_run_serially_large_ones_in_parallel(shape, ax, kind, monkeypatch):
    calls = []
    for mode in ("parallel", "serial"):
        name = f"_forward_{kind}_{mode}"
        kernel = getattr(softmax_module, name)
        monkeypatch.setattr(
            softmax_module,
            name,
            lambda *a, kernel=kernel, mode=mode: (calls.append(mode), kernel(*a)),
        )
    x = np.ones(shape, np.float32)
    assert x.size >= PARALLEL_MIN_ELEMENTS
    softmax_forward(x, axis=ax)
    softmax_forward(x[:1, :3], axis=ax)
    assert calls == ["parallel" if num_threads() > 1 else "serial", "serial"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_is_stable_for_large_scores(dtype):
    # exp(1000) overflows in any float; subtracting the row max first is what saves it
    x = np.array([[1000.0, 999.0, -1000.0], [-1e4, -1e4, -np.inf]], dtype=dtype)
    e = math.exp(-1.0)
    expected = np.array([[1 / (1 + e), e / (1 + e), 0.0], [0.5, 0.5, 0.0]])
    np.testing.assert_allclose(softmax_forward(x), expected, **TOL[dtype])


def test_nan_spreads_through_its_row_only():
    x = np.array([[0.0, np.nan, 1.0], [0.0, 1.0, 2.0]], dtype=np.float32)
    y = softmax_forward(x)
    assert np.isnan(y[0]).all()
    np.testing.assert_allclose(y[1], plain_softmax(x[1:], -1)[0], rtol=1e-6)


def test_non_contiguous_input_and_out_parameter():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 5)).astype(np.float32).T  # a transposed view
    out = np.empty((5, 6), dtype=np.float32)
    y = softmax_forward(x, axis=-1, out=out)
    assert y is out
    np.testing.assert_allclose(out, plain_softmax(x, -1), **TOL[np.float32])


def test_empty_input():
    assert softmax_forward(np.zeros((0, 3), np.float32)).shape == (0, 3)
    assert softmax_forward(np.zeros((3, 0), np.float64), axis=-1).shape == (3, 0)


# ---------------------------------------------------------------- backward


@given(masked_inputs(), st.data())
def test_backward_matches_reference(case, data):
    x, ax, dtype = case
    y = softmax_reference(x.astype(np.float64), axis=ax).astype(dtype)
    gy = data.draw(float_arrays(x.shape)).astype(dtype)
    gx = softmax_backward(y, gy, axis=ax)
    assert gx.dtype == dtype and gx.shape == x.shape
    expected = y.astype(np.float64) * (
        gy - np.sum(gy * y.astype(np.float64), axis=ax, keepdims=True)
    )
    tol = dict(rtol=1e-12, atol=1e-14) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gx, expected, **tol)
    np.testing.assert_allclose(gx, softmax_backward_reference(y, gy, axis=ax), **tol)


@pytest.mark.parametrize("shape, ax", [((40, 1024), -1), ((2, 60, 2 * _STRIP + 5), 1)])
def test_backward_large(shape, ax):
    rng = np.random.default_rng(2)
    y = softmax_reference(rng.standard_normal(shape), axis=ax)
    gy = rng.standard_normal(shape)
    expected = y * (gy - np.sum(gy * y, axis=ax, keepdims=True))
    np.testing.assert_allclose(softmax_backward(y, gy, axis=ax), expected, rtol=1e-10, atol=1e-14)


def test_backward_is_the_gradient():
    # central differences of L = sum(softmax(x) * w) in float64, the derivative we claim
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    gx = softmax_backward(softmax_forward(x), w)
    eps = 1e-6
    numeric = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        d = np.zeros_like(x)
        d[i] = eps
        numeric[i] = (np.sum(softmax_forward(x + d) * w) - np.sum(softmax_forward(x - d) * w)) / (
            2 * eps
        )
    np.testing.assert_allclose(gx, numeric, rtol=1e-6, atol=1e-9)


# ---------------------------------------------------------------- errors


def test_errors_name_the_problem():
    with pytest.raises(TypeError, match="float32 or float64.*int64"):
        softmax_forward(np.arange(3))
    with pytest.raises(IndexError, match="axis 2 .* shape \\(2, 3\\)"):
        softmax_forward(np.zeros((2, 3)), axis=2)
    with pytest.raises(ValueError, match="gy must match y"):
        softmax_backward(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="out must be"):
        softmax_forward(np.zeros((2, 3), np.float32), out=np.zeros((2, 3), np.float64))


# ---------------------------------------------------------------- the hand-written exp and max


@njit
def _exp_all(x):
    y = np.empty_like(x)
    for j in range(x.size):
        y[j] = exp_f32(x[j])
    return y


def test_exp_f32_within_two_ulp():
    # every float32 in the range where exp is normal would be 2^31 values; a dense grid
    # plus random points covers the reduction's every n and the polynomial's interval
    grid = np.linspace(-87.33, 88.72, 1_000_001, dtype=np.float32)
    rand = np.random.default_rng(4).uniform(-87.33, 88.72, 1_000_000).astype(np.float32)
    x = np.concatenate([grid, rand, np.float32([0.0, -0.0, 1e-30, -1e-30])])
    exact = np.exp(x.astype(np.float64))
    ulp = np.spacing(exact.astype(np.float32)).astype(np.float64)
    error = np.abs(_exp_all(x).astype(np.float64) - exact) / ulp
    assert error.max() <= 2.0, f"max error {error.max():.2f} ulp at x = {x[error.argmax()]}"


def test_exp_f32_special_values():
    x = np.float32([-np.inf, -1000.0, -88.0, 89.0, np.inf, np.nan, 0.0])
    y = _exp_all(x)
    assert y[0] == 0 and y[1] == 0 and y[2] == 0  # below about -87 the result is 0
    assert np.isposinf(y[3]) and np.isposinf(y[4])  # above 88.72 exp overflows float32
    assert np.isnan(y[5])
    assert y[6] == 1


@njit
def _max_of(x):
    return max_of(x)


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
@settings(max_examples=25)
def test_max_of_equals_numpy_max(dtype, data):
    x = data.draw(float_arrays(st.integers(1, 40).map(lambda n: (n,)), lo=-1e6, hi=1e6))
    x = x.astype(dtype)
    if data.draw(st.booleans()):
        x[data.draw(st.integers(0, x.size - 1))] = -np.inf
    assert _max_of(x) == x.max()


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_of_edge_cases(dtype):
    assert _max_of(np.array([-np.inf, -np.inf], dtype)) == -np.inf
    assert _max_of(np.zeros(0, dtype)) == -np.inf
    assert _max_of(np.array([-3.0, -0.0, -1.0], dtype)) == 0.0
    assert _max_of(np.array([-2.0, -5.0], dtype)) == -2.0  # negatives order by magnitude
    assert np.isnan(_max_of(np.array([1.0, np.nan, 2.0], dtype)))
    assert _max_of(np.array([1.0, np.inf], dtype)) == np.inf


# ---------------------------------------------------------------- compile options


def test_cache_falls_back_to_a_temporary_directory(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "CACHE_DIR", "")
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    blocker = tmp_path / "a_file"
    blocker.write_text("")  # a directory cannot be created inside a regular file
    fallback = tmp_path / "cache"
    cache, message = choose_cache(blocker / "__pycache__", fallback)
    assert cache and str(fallback) in message
    assert config.CACHE_DIR == str(fallback) == os.environ["NUMBA_CACHE_DIR"]
    assert fallback.is_dir()


def test_cache_off_when_nothing_is_writable(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "CACHE_DIR", "")
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    cache, message = choose_cache(blocker / "__pycache__", blocker / "tmp")
    assert not cache and "without a cache" in message
    assert config.CACHE_DIR == ""


def test_cache_on_when_pycache_is_writable(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "CACHE_DIR", "")
    assert choose_cache(tmp_path / "__pycache__", tmp_path / "other") == (True, None)


def test_fastmath_flags_keep_infinities():
    # nnan/ninf would let LLVM assume no -inf, and -inf is how masks are written
    assert not {"nnan", "ninf", "fast"} & _numba.FASTMATH


def test_kernels_run_as_plain_python():
    # NUMBA_DISABLE_JIT=1 runs every kernel as Python (to step through it): the pure-Python
    # twins of the bit-level helpers must then give the same answers.
    code = textwrap.dedent(
        """
        import numpy as np
        from minitransformer.kernels.softmax import softmax_forward, softmax_backward
        x = np.array([[0.5, -np.inf, 2.0], [-np.inf, -np.inf, -np.inf]], np.float32)
        y = softmax_forward(x)
        e = np.exp(np.float64(0.5) - 2.0)
        assert np.allclose(y[0], [e / (1 + e), 0, 1 / (1 + e)], rtol=1e-6), y
        assert (y[1] == 0).all()
        gx = softmax_backward(y.astype(np.float64), np.ones((2, 3)))
        assert np.allclose(gx, 0, atol=1e-6), gx
        print("ok")
        """
    )
    assert run_python(code, {"NUMBA_DISABLE_JIT": "1"}).strip() == "ok"


def test_parallel_kernels_use_the_work_queue_even_when_openmp_came_first():
    """prange runs on Numba's work queue unless NUMBA_THREADING_LAYER says otherwise: an
    OpenMP runtime loaded earlier (PyTorch brings one) fixes its spin-waiting policy at
    load time, and spinning threads then steal the cores from our BLAS calls."""
    code = textwrap.dedent(
        """
        try:
            import torch  # noqa: F401  (if present, its OpenMP runtime loads first)
        except ImportError:
            pass
        import numba
        import numpy as np
        from minitransformer.kernels._numba import PARALLEL_MIN_ELEMENTS
        from minitransformer.kernels.softmax import softmax_forward

        softmax_forward(np.zeros((4, PARALLEL_MIN_ELEMENTS), np.float32))
        print(numba.threading_layer())
        """
    )
    printed = run_python(code, {"NUMBA_THREADING_LAYER": None, "NUMBA_NUM_THREADS": "2"})
    assert printed.strip().splitlines()[-1] == "workqueue"
