"""The fused Numba layer-norm kernels against the plain formula.

    y  = xhat * w + b,   xhat = (x - mu) * r,   r = 1 / sqrt(var + eps)    (last axis, size D)
    gx = r * (g w - mean(g w) - xhat * mean(g w xhat)),  gw = sum_rows g xhat,  gb = sum_rows g

How close is close. The kernels compute in float64 for float32 inputs too and round each
output once, so every result is compared with the float64 reference (the formula on
float64 copies of the same inputs), within

    eps(dtype) * |reference|      the one rounding to the input's dtype (float32: 2x margin)
  + K * u * scale                 the float64 arithmetic, of kernel and reference alike

with u = eps(float64). ``scale`` is the textbook rounding-error bound of each formula
(a sum of n terms is off by at most n u sum|terms|), carried through per row:
    mu:     off by D u max|x|;  x - mu then by u kappa / r,  kappa = (D+1)((max|x| + |mu|) r + 1)
    r:      relative error u kappa;  so xhat_j is off by u kappa (1 + |xhat_j|)
    y:      u (kappa (1 + |xhat|) |w| + |b|)
    gx:     u kappa r (|g w| + 2 (1 + |xhat|) mean(|g w| (1 + |xhat|)))
    gw, gb: u sum_rows (kappa + rows) |g| (1 + |xhat|),   u rows sum_rows |g|
kappa grows with |mu| / std: that is what makes a row 1e4 + noise hard. The bound is
linear in it; the textbook one-pass variance mean(x^2) - mu^2 has an error that grows
with its square, and fails these tests (for float64 by a factor ~200 at 1e4 + 0.01 noise;
the float32 formula itself is off by ~1e-2 there; the kernels pass because they sum in
float64).
"""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import check_gradients, record_kernel_calls, run_python, shapes

import minitransformer as mt
import minitransformer.functional as F
from minitransformer.kernels import layernorm as ln
from minitransformer.kernels._numba import PARALLEL_MIN_ELEMENTS, num_threads
from minitransformer.kernels.layernorm import (
    layer_norm_backward,
    layer_norm_backward_reference,
    layer_norm_forward,
    layer_norm_reference,
)

DTYPES = (np.float32, np.float64)
U = np.finfo(np.float64).eps
# The bounds above drop constant factors of order one (and count kernel and reference
# once each): K covers them.
K = 4
ALL = (True, True, True)


# ---------------------------------------------------------------- helpers


def f64(a):
    return None if a is None else np.asarray(a, dtype=np.float64)


def error_scales(x, w, b, g, eps):
    """The float64 error bounds of the module docstring for (y, gx, gw, gb), in units of u."""
    x, g = f64(x), f64(g)
    d = x.shape[-1]
    rows = x.size // d
    row_axes = tuple(range(x.ndim - 1))
    w = np.ones(d) if w is None else np.abs(f64(w))
    b = np.zeros(d) if b is None else np.abs(f64(b))
    mu = x.mean(axis=-1, keepdims=True)
    r = 1 / np.sqrt(((x - mu) ** 2).mean(axis=-1, keepdims=True) + eps)
    xhat = np.abs((x - mu) * r)
    top = np.abs(x).max(axis=-1, keepdims=True, initial=0)
    kappa = (d + 1) * ((top + np.abs(mu)) * r + 1)
    gh = np.abs(g) * w
    m = (gh * (1 + xhat)).mean(axis=-1, keepdims=True)
    return (
        kappa * (1 + xhat) * w + b,
        kappa * r * (gh + 2 * (1 + xhat) * m),
        ((kappa + rows) * np.abs(g) * (1 + xhat)).sum(axis=row_axes),
        rows * np.abs(g).sum(axis=row_axes),
    )


def assert_close(name, actual, expected, dtype, scale):
    """|actual - expected| <= eps(dtype) |expected| + K u scale, element by element."""
    assert actual.dtype == dtype and actual.shape == expected.shape, (
        f"{name}: {actual.dtype} {actual.shape}, expected {np.dtype(dtype)} {expected.shape}"
    )
    error = np.abs(actual.astype(np.float64) - expected)
    tol = np.finfo(dtype).eps * np.abs(expected) + K * U * scale
    bad = error > tol
    assert not bad.any(), (
        f"{name}: {bad.sum()} of {bad.size} elements off, worst error {error[bad].max():.3g} "
        f"against tolerance {tol[bad][np.argmax(error[bad])]:.3g}"
    )


def reference64(x, w, b, g, eps, needs=ALL):
    """(y, (gx, gw, gb)) of the float64 reference on float64 copies of the inputs."""
    y, xhat, r = layer_norm_reference(f64(x), f64(w), f64(b), eps)
    return y, layer_norm_backward_reference(f64(g), xhat, r, f64(w), needs)


def run_kernels(x, w, b, g, eps, needs=ALL):
    y, mu, r = layer_norm_forward(x, w, b, eps)
    return y, layer_norm_backward(g, x, mu, r, w, needs)


def check_against_reference(x, w, b, g, eps, needs=ALL):
    dtype = x.dtype.type
    y, grads = run_kernels(x, w, b, g, eps, needs)
    y_ref, grads_ref = reference64(x, w, b, g, eps, needs)
    scales = error_scales(x, w, b, g, eps)
    assert_close("y", y, y_ref, dtype, scales[0])
    for name, got, want, scale in zip(("gx", "gw", "gb"), grads, grads_ref, scales[1:]):
        if want is None:
            assert got is None, f"{name} was not asked for, got an array"
        else:
            assert_close(name, got, want, dtype, scale)


@pytest.fixture
def kernel_calls(monkeypatch):
    """The names of the Numba launches the public functions make, in order."""
    names = ("_forward_serial", "_forward_parallel", "_backward_serial", "_backward_parallel")
    return record_kernel_calls(monkeypatch, ln, names)


@st.composite
def layer_norm_cases(draw, max_d=300):
    """(x, w, b, g, eps): x has 0-3 leading axes (some empty) and a last axis of 1..max_d;
    rows are offset + spread * N(0, 1), with offsets up to 1e4 and spread 1, 1e-2 or 0."""
    lead = draw(shapes(min_dims=0, max_dims=3, min_side=0, max_side=3))
    d = draw(st.integers(1, max_d))
    dtype = draw(st.sampled_from(DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    offset = draw(st.sampled_from([0.0, 1e4, -1e4, 3.0]))
    spread = draw(st.sampled_from([1.0, 1e-2, 0.0]))
    x = offset + spread * rng.standard_normal((*lead, d))
    w = rng.standard_normal(d) if draw(st.booleans()) else None
    b = rng.standard_normal(d) if draw(st.booleans()) else None
    g = rng.standard_normal(x.shape)
    eps = draw(st.sampled_from([1e-5, 1e-3, 0.1]))
    cast = lambda a: None if a is None else a.astype(dtype)  # noqa: E731
    return cast(x), cast(w), cast(b), cast(g), eps


# ---------------------------------------------------------------- kernels against the reference


@given(layer_norm_cases())
def test_forward_and_backward_match_reference(case):
    check_against_reference(*case)


@given(layer_norm_cases(max_d=40), st.tuples(st.booleans(), st.booleans(), st.booleans()))
def test_only_the_gradients_asked_for(case, needs):
    x, w, b, g, eps = case
    check_against_reference(x, w, b, g, eps, needs)


def test_a_large_float32_offset_costs_no_accuracy():
    # 1e4 + noise of 1e-2 in float32: the float32 mean alone is off by more than the
    # noise's ulp, so the float32 formula gets rows wrong by ~1e-2. The kernels, summing
    # in float64, give the float64 answer rounded once: within an ulp of it.
    rng = np.random.default_rng(0)
    x = (1e4 + 1e-2 * rng.standard_normal((8, 256))).astype(np.float32)
    y, _, _ = layer_norm_forward(x, None, None, 1e-5)
    exact, _, _ = layer_norm_reference(f64(x), None, None, 1e-5)
    ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    assert (np.abs(y - exact) <= ulp).all(), np.max(np.abs(y - exact) / ulp)
    plain, _, _ = layer_norm_reference(x, None, None, 1e-5)
    assert np.abs(plain - exact).max() > 1e3 * ulp.max()  # what the kernel avoids


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape",
    [
        (64, 1024),  # many rows, each its own prange iteration
        (3, 20000),  # fewer rows than chunks of rows might be, and an uneven split
        (1, 40000),  # one row: one chunk
    ],
)
def test_parallel_and_serial_kernels_both_match_reference(shape, dtype):
    # Not bit for bit with each other: with reassociation allowed, LLVM may split a
    # row's sums into vector lanes differently in the two compiled loops.
    rng = np.random.default_rng(1)
    d = shape[1]
    x = (5 + rng.standard_normal(shape)).astype(dtype)
    w, b = rng.standard_normal(d).astype(dtype), rng.standard_normal(d).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    y_ref, grads_ref = reference64(x, w, b, g, 1e-5)
    scales = error_scales(x, w, b, g, 1e-5)
    launches = (
        ("serial", ln._forward_serial, ln._backward_serial, 1),
        ("parallel", ln._forward_parallel, ln._backward_parallel, max(2, num_threads())),
    )
    for mode, forward, backward, chunks in launches:
        y, mu, r = np.empty_like(x), np.empty(shape[0]), np.empty(shape[0])
        forward(x, w, b, y, mu, r, 1e-5)
        assert_close(f"y ({mode})", y, y_ref, dtype, scales[0])
        gx, parts = np.empty_like(x), np.zeros((2, chunks, d))  # gw, gb partials per chunk
        backward(g, x, mu, r, w, gx, parts[0], parts[1], True, True)
        gw, gb = parts.sum(axis=1)
        assert_close(f"gx ({mode})", gx, grads_ref[0], dtype, scales[1])
        assert_close(f"gw ({mode})", gw, grads_ref[1], np.float64, scales[2])
        assert_close(f"gb ({mode})", gb, grads_ref[2], np.float64, scales[3])
    # and through the public functions, which pick the parallel launch at this size
    check_against_reference(x, w, b, g, 1e-5)


def test_small_inputs_run_serially_large_ones_in_parallel(kernel_calls):
    big = np.ones((64, PARALLEL_MIN_ELEMENTS // 64), np.float32)
    small = big[:2, :3]
    for x in (big, small):
        y, mu, r = layer_norm_forward(x, None, None, 1e-5)
        layer_norm_backward(x, x, mu, r, None)
    mode = "parallel" if num_threads() > 1 else "serial"
    assert kernel_calls == [
        f"_forward_{mode}",
        f"_backward_{mode}",
        "_forward_serial",
        "_backward_serial",
    ]


# ---------------------------------------------------------------- edge cases


@pytest.mark.parametrize("dtype", DTYPES)
def test_d_equal_to_one(dtype):
    # a row of one element is its own mean: xhat = 0 exactly, y = b, and no gradient
    # reaches x (gx = r (gw - gw - 0) = 0) or w (gw = sum g * 0)
    x = np.array([[3.0], [-1e4], [0.0]], dtype)
    w, b = np.array([2.0], dtype), np.array([0.5], dtype)
    g = np.array([[1.0], [-2.0], [4.0]], dtype)
    y, mu, r = layer_norm_forward(x, w, b, 1e-5)
    np.testing.assert_array_equal(y, np.broadcast_to(b, x.shape))
    gx, gw, gb = layer_norm_backward(g, x, mu, r, w)
    np.testing.assert_array_equal(gx, np.zeros_like(x))
    np.testing.assert_array_equal(gw, np.zeros(1, dtype))
    np.testing.assert_array_equal(gb, g.sum(axis=0))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("value", [0.0, 0.1, -1e4 - 0.3])
def test_constant_row_gives_its_bias_not_nan(dtype, value):
    # var = 0: r = 1 / sqrt(eps) is finite, xhat = 0 up to the rounding of the mean
    rng = np.random.default_rng(2)
    d = 300
    x = np.full((2, d), value, dtype)
    x[1] = rng.standard_normal(d)  # an ordinary row next to it
    w, b = rng.standard_normal(d).astype(dtype), rng.standard_normal(d).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    (y, grads) = run_kernels(x, w, b, g, 1e-5)
    assert np.isfinite(y).all() and all(np.isfinite(a).all() for a in grads)
    assert_close("y of the constant row", y[0], f64(b), dtype, error_scales(x, w, b, g, 1e-5)[0][0])
    check_against_reference(x, w, b, g, 1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_non_contiguous_inputs(dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((7, 5, 3)).astype(dtype).transpose(2, 0, 1)  # (3, 7, 5) view
    g = rng.standard_normal((5, 3, 7)).astype(dtype).transpose(1, 2, 0)
    w = rng.standard_normal(10).astype(dtype)[::2]  # strided
    b = rng.standard_normal(5).astype(dtype)
    assert not (x.flags.c_contiguous or g.flags.c_contiguous or w.flags.c_contiguous)
    check_against_reference(x, w, b, g, 1e-5)


@pytest.mark.parametrize(
    "x_dtype, w_dtype, b_dtype, eps",
    [
        (np.float32, np.float64, np.float32, 1e-5),  # float64 weight: y is float64
        (np.float64, np.float64, np.float32, 1e-5),  # float32 bias on float64 x: float64
        (np.float32, np.int64, None, 1e-5),  # an integer weight promotes float32 to float64
        (np.float32, None, None, np.float64(1e-5)),  # a NumPy float64 eps promotes too
        (np.float16, np.float16, np.float16, 1e-3),  # no kernel for float16
    ],
)
def test_mixed_dtypes_fall_back_to_numpy_promotion(x_dtype, w_dtype, b_dtype, eps, kernel_calls):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 6)).astype(x_dtype)
    w = None if w_dtype is None else (rng.integers(1, 4, 6)).astype(w_dtype)
    b = None if b_dtype is None else rng.standard_normal(6).astype(b_dtype)
    y_ref, xhat, r_ref = layer_norm_reference(x, w, b, eps)
    y, mu, r = layer_norm_forward(x, w, b, eps)
    assert y.dtype == y_ref.dtype == np.result_type(*(a for a in (x, w, b, eps) if a is not None))
    np.testing.assert_array_equal(y, y_ref)
    assert not any(name.startswith("_forward") for name in kernel_calls)  # never a downcast
    g = rng.standard_normal(y.shape).astype(y.dtype)
    for got, want in zip(
        layer_norm_backward(g, x, mu, r, w), layer_norm_backward_reference(g, xhat, r_ref, w)
    ):
        if want is None:
            assert got is None
            continue
        # the dtype NumPy gives; the values to the rounding of that dtype (a float64
        # backward may run the kernel: its inputs all agree on float64)
        assert got.dtype == want.dtype
        eps = np.finfo(want.dtype).eps
        np.testing.assert_allclose(got, want, rtol=K * eps, atol=K * eps * np.abs(want).max())


def test_empty_inputs():
    for shape in ((0, 4), (2, 0, 3)):
        x = np.zeros(shape, np.float32)
        y, mu, r = layer_norm_forward(x, np.ones(shape[-1], np.float32), None, 1e-5)
        assert y.shape == shape and y.dtype == np.float32
        gx, gw, gb = layer_norm_backward(x, x, mu, r, np.ones(shape[-1], np.float32))
        assert gx.shape == shape
        np.testing.assert_array_equal(gw, np.zeros(shape[-1]))
        np.testing.assert_array_equal(gb, np.zeros(shape[-1]))


# ---------------------------------------------------------------- through the autograd


@pytest.mark.parametrize("with_weight", [True, False])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("shape", [(2, 3, 7), (4, 1), (5,)])
def test_gradcheck_through_the_kernels(shape, with_weight, with_bias, kernel_calls):
    rng = np.random.default_rng(5)
    d = shape[-1]
    arrays = [rng.standard_normal(shape)]
    if with_weight:
        arrays.append(1 + 0.3 * rng.standard_normal(d))
    if with_bias:
        arrays.append(rng.standard_normal(d))

    def fn(x, *params):
        rest = list(params)
        weight = rest.pop(0) if with_weight else None
        bias = rest.pop(0) if with_bias else None
        return F.layer_norm(x, weight, bias, eps=1e-3)

    assert check_gradients(fn, *arrays)
    assert "_forward_serial" in kernel_calls and "_backward_serial" in kernel_calls


@pytest.mark.parametrize("trained", ["x", "weight", "bias", "weight and bias"])
def test_only_inputs_that_require_grad_get_one(trained):
    rng = np.random.default_rng(6)
    x, w, b, g = (rng.standard_normal(s).astype(np.float32) for s in ((3, 5), 5, 5, (3, 5)))
    leaves = {
        name: mt.tensor(a, requires_grad=name in trained.split(" and "))
        for name, a in (("x", x), ("weight", w), ("bias", b))
    }
    F.layer_norm(leaves["x"], leaves["weight"], leaves["bias"]).backward(mt.tensor(g))
    _, grads_ref = reference64(x, w, b, g, 1e-5)
    scales = error_scales(x, w, b, g, 1e-5)[1:]
    for (name, leaf), want, scale in zip(leaves.items(), grads_ref, scales):
        if leaf.requires_grad:
            assert_close(f"{name}.grad", leaf.grad, want, np.float32, scale)
        else:
            assert leaf.grad is None


def test_kernels_run_as_plain_python():
    # NUMBA_DISABLE_JIT=1 runs the kernels as Python (to step through them)
    code = textwrap.dedent(
        """
        import numpy as np
        from minitransformer.kernels import layernorm as ln
        rng = np.random.default_rng(0)
        x, g = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4))
        w, b = rng.standard_normal(4), rng.standard_normal(4)
        y, mu, r = ln.layer_norm_forward(x, w, b, 1e-5)
        y_ref, xhat, r_ref = ln.layer_norm_reference(x, w, b, 1e-5)
        assert np.allclose(y, y_ref, rtol=1e-12, atol=1e-12), y - y_ref
        grads = ln.layer_norm_backward(g, x, mu, r, w)
        grads_ref = ln.layer_norm_backward_reference(g, xhat, r_ref, w)
        assert all(np.allclose(a, c, rtol=1e-12, atol=1e-12) for a, c in zip(grads, grads_ref))
        print("ok")
        """
    )
    assert run_python(code, {"NUMBA_DISABLE_JIT": "1"}).strip() == "ok"
