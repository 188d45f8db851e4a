"""The fused Numba GELU kernels against the formula, and the float64 helpers they use.

    y = x Phi(x),  Phi(x) = (1 + erf(x / sqrt 2)) / 2 = erfc(-x / sqrt 2) / 2
    gx = g (Phi(x) + x phi(x)),  phi(x) = exp(-x^2 / 2) / sqrt(2 pi)

How close is close. Every result is compared with the exact value: Phi from math.erfc
element by element (relatively accurate in both tails), phi from NumPy's float64 exp, on
float64 copies of the same inputs (independent of ``erf_cpu`` and of the kernels). The
kernels compute in float64 and round each output once, so with u = eps(float64) an output
may be off by

    half an ulp of its own dtype                 the one rounding when it is stored
  + K * u * scale                                float64 arithmetic (kernel and exact)
  + for float32, the float64 helpers' error, relative to the tail min(Phi, 1 - Phi):
        erfcx off by ERFCX_ERROR, exp_nonpositive by EXP_ERROR, the exact value's own
        argument x / sqrt 2 by u relatively, which moves erfc by u x^2 relatively
  + for float32, phi is 0 where exp_nonpositive cuts off (|x| > 20): |g x| PDF_CUT
and the backward, given the forward's rounded cdf, by |g| times that cdf's error.

``scale`` is the size of the rounding errors of each formula: |x| for y (cdf <= 1), 1 for
the cdf, and |g| (1 + |x| phi (1 + x^2)) for gx (the exp's argument -x^2/2 is off by
u x^2 / 2, so phi is off by that much relatively). float64 runs the formula itself
(math.erf), whose 1 + erf is off by u absolutely: no relative accuracy in the lower tail.
"""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numba import config, njit, vectorize
from strategies import check_gradients, record_kernel_calls, run_python, shapes

import minitransformer as mt
import minitransformer.functional as F
from minitransformer.kernels import elementwise as ew
from minitransformer.kernels._numba import PARALLEL_MIN_ELEMENTS, num_threads
from minitransformer.kernels.elementwise import (
    erfcx,
    exp_nonpositive,
    gelu_backward,
    gelu_backward_reference,
    gelu_forward,
    gelu_reference,
)

DTYPES = (np.float32, np.float64)
U = np.finfo(np.float64).eps
E32 = float(np.finfo(np.float32).eps)
K = 4  # the bounds drop constant factors of order one; K covers them
INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)

# erfcx (Cephes' P / Q, used beyond its fitted [1, 8)): relative error, largest at z = 0
# (9.8e-9); test_erfcx_relative_error measures it.
ERFCX_ERROR = 1e-8
# exp_nonpositive: the Taylor remainder of degree 10 on |r| <= ln2 / 2, times e^r <= sqrt 2
EXP_ERROR = (math.log(2) / 2) ** 11 / math.factorial(11) * math.sqrt(2) + K * U
HELPERS = ERFCX_ERROR + EXP_ERROR  # relative error of h = erfc(|x| / sqrt 2) / 2
PDF_CUT = math.exp(ew._EXP_CUT) * INV_SQRT_2PI  # phi where exp_nonpositive returns 0


# ---------------------------------------------------------------- the exact values


def exact_cdf(x: np.ndarray) -> np.ndarray:
    """Phi(x) = erfc(-x / sqrt 2) / 2 in float64, element by element with math.erfc."""
    flat = [0.5 * math.erfc(-v / math.sqrt(2)) for v in np.asarray(x, np.float64).ravel()]
    return np.array(flat, dtype=np.float64).reshape(np.shape(x))


def exact_pdf(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    with np.errstate(over="ignore"):
        return INV_SQRT_2PI * np.exp(-0.5 * x * x)


def half_ulp(a: np.ndarray) -> np.ndarray:
    """Half the spacing of a's own dtype at each element (what storing a rounding costs)."""
    return np.abs(np.spacing(a)).astype(np.float64) / 2


def assert_within(name, got, exact, bound, dtype):
    """|got - exact| <= bound element by element; equal infinities and NaN for NaN pass."""
    assert got.dtype == dtype and got.shape == np.shape(exact), (
        f"{name}: {got.dtype} {got.shape}, expected {np.dtype(dtype)} {np.shape(exact)}"
    )
    got64 = got.astype(np.float64)
    with np.errstate(invalid="ignore"):
        error = np.abs(got64 - exact)
        ok = (got64 == exact) | (error <= bound) | (np.isnan(got64) & np.isnan(exact))
    assert ok.all(), (
        f"{name}: {(~ok).sum()} of {ok.size} elements off; worst at x-index "
        f"{np.unravel_index(np.argmax(np.where(ok, 0, error / bound)), ok.shape)}: "
        f"error {error[~ok].max():.3g}, bound {bound[~ok][np.argmax(error[~ok])]:.3g}"
    )


def cdf_error_bound(x64: np.ndarray, phi_cdf: np.ndarray, dtype) -> np.ndarray:
    """How far the kernel's float64 Phi (before it is rounded to dtype) may be from exact."""
    if dtype == np.float64:  # 0.5 (1 + erf(x / sqrt 2)): roundings of order u, absolute
        return K * U * np.ones_like(x64)
    tail = np.minimum(phi_cdf, 1 - phi_cdf)  # h, the value computed relatively
    rel = HELPERS + K * U * (1 + x64 * x64)  # x^2 u: the exact value's argument rounding
    return tail * rel + K * U * (x64 >= 0)  # x >= 0: 1 - h rounds once more


def check_forward(x, y, cdf):
    """y and cdf (of x's dtype) against the exact values, within the module's error model."""
    dtype = x.dtype.type
    x64 = x.astype(np.float64)
    phi_cdf = exact_cdf(x64)
    c_err = cdf_error_bound(x64, phi_cdf, dtype)
    assert_within("cdf", cdf, phi_cdf, c_err + half_ulp(cdf), dtype)
    ax = np.abs(x64)
    with np.errstate(invalid="ignore"):  # -inf * 0 is NaN, as in the formula
        exact_y = x64 * phi_cdf
    assert_within("y", y, exact_y, ax * c_err + half_ulp(y) + K * U * ax, dtype)


def check_backward(x, cdf, g, gx):
    """gx against g (Phi + x phi), given the forward's (rounded) cdf."""
    dtype = x.dtype.type
    x64, g64 = x.astype(np.float64), g.astype(np.float64)
    f32 = dtype == np.float32
    phi_cdf, pdf = exact_cdf(x64), exact_pdf(x64)
    ag, agx = np.abs(g64), np.abs(g64 * x64)
    cdf_error = np.abs(cdf.astype(np.float64) - phi_cdf)  # checked by check_forward
    bound = (
        ag * cdf_error
        + agx * pdf * (EXP_ERROR if f32 else 0.0)
        + agx * (PDF_CUT if f32 else 0.0)
        + half_ulp(gx)
        + K * U * ag * (1 + np.abs(x64) * pdf * (1 + x64 * x64))
    )
    with np.errstate(invalid="ignore", over="ignore"):
        assert_within("gx", gx, g64 * (phi_cdf + x64 * pdf), bound, dtype)


@pytest.fixture
def kernel_calls(monkeypatch):
    """The names of the Numba launches the public functions make, in order."""
    names = ("_forward_serial", "_forward_parallel", "_backward_serial", "_backward_parallel")
    return record_kernel_calls(monkeypatch, ew, names)


# values: mostly where gelu bends, some in the tails, some edge cases
_values = st.one_of(
    st.floats(-8, 8, allow_nan=False, allow_subnormal=False),
    st.floats(-40, 40, allow_nan=False, allow_subnormal=False),
    # 0, tiny, huge; where gx crosses 0; where y rounds to 0; where erfcx's z is clamped
    st.sampled_from([0.0, -0.0, 1e-40, -1e-40, 3e38, -3e38, -0.7518, -14.2, 22.63, -22.63]),
)


@st.composite
def gelu_inputs(draw, max_side=5):
    """(x, g) of one dtype, any shape (0-d and empty too), x sometimes not C-contiguous."""
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(shapes(min_dims=0, max_dims=3, min_side=0, max_side=max_side))
    layout = draw(st.sampled_from(["C", "transposed", "strided"]))
    if layout == "strided" and shape:
        shape = (*shape[:-1], 2 * shape[-1])
    x = draw(hnp.arrays(np.float64, shape, elements=_values)).astype(dtype)
    if layout == "transposed":
        x = x.T  # shapes (a, b, ...) read back to front: Fortran order
    elif layout == "strided" and shape:
        x = x[..., ::2]
    g = draw(hnp.arrays(np.float64, x.shape, elements=st.floats(-3, 3))).astype(dtype)
    return x, g


# ---------------------------------------------------------------- kernels against the formula


@given(gelu_inputs())
def test_forward_and_backward_match_the_formula(case):
    x, g = case
    y, cdf = gelu_forward(x)
    check_forward(x, y, cdf)
    check_backward(x, cdf, g, gelu_backward(x, cdf, g))


@given(gelu_inputs())
def test_kernels_match_the_reference(case):
    # The reference is the formula in x's dtype: in float64 the two agree to the float64
    # rounding (both use math.erf); in float32 each is off from the exact value in its own
    # way, so they agree to the sum of the two errors.
    x, g = case
    y, cdf = gelu_forward(x)
    with np.errstate(invalid="ignore", over="ignore"):
        y_ref, cdf_ref = gelu_reference(x)
        gx_ref = gelu_backward_reference(x, cdf, g)
    gx = gelu_backward(x, cdf, g)
    x64, g64 = x.astype(np.float64), g.astype(np.float64)
    ax, ag = np.abs(x64), np.abs(g64)
    with np.errstate(over="ignore"):
        pdf = exact_pdf(x64)
    if x.dtype == np.float64:
        bound_y, bound_cdf = K * U * ax, K * U * np.ones(x.shape)
        bound_gx = K * U * ag * (1 + ax * pdf * (1 + x64 * x64))
    else:
        # reference, all float32: z = x * float32(1/sqrt 2) (two roundings, moving erf by
        # at most max |erf'(z) z| 2^-23 = 0.484 E32), erf rounded (E32/4), 1 + erf rounded
        # (E32/2), halved; its -x*x/2 and exp: (x^2/2 + 2) E32 of phi relatively, say, and
        # exp's underflow below float32's smallest normal; then its roundings of cdf +
        # x pdf (|.| <= 1.2: E32) and of g times that (half an ulp)
        ref_cdf = (0.484 + 0.25 + 0.5) * E32 / 2
        c_err = cdf_error_bound(x64, exact_cdf(x64), np.float32)
        bound_cdf = c_err + half_ulp(cdf) + ref_cdf
        bound_y = ax * (c_err + ref_cdf) + half_ulp(y) + half_ulp(y_ref)
        bound_gx = (
            ax * ag * pdf * (EXP_ERROR + (x64 * x64 / 2 + 2) * E32)
            + ax * ag * (PDF_CUT + float(np.finfo(np.float32).tiny))
            + ag * E32
            + half_ulp(gx)
            + half_ulp(gx_ref)
        )
    assert_within("cdf", cdf, cdf_ref.astype(np.float64), bound_cdf, x.dtype.type)
    assert_within("y", y, np.asarray(y_ref, np.float64), bound_y, x.dtype.type)
    assert_within("gx", gx, np.asarray(gx_ref, np.float64), bound_gx, x.dtype.type)


def test_float64_gives_the_math_erf_formula():
    # BERT parity compares float64 to ~1e-15: the kernels must be the formula, not a fit
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(5000) * 3, np.linspace(-40, 40, 8001)])
    g = rng.standard_normal(x.shape)
    y, cdf = gelu_forward(x)
    check_forward(x, y, cdf)
    check_backward(x, cdf, g, gelu_backward(x, cdf, g))
    y_ref, cdf_ref = gelu_reference(x)
    np.testing.assert_allclose(cdf, cdf_ref, rtol=0, atol=K * U)
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=K * U * np.abs(x).max())


def test_float32_gelu_against_the_float64_formula():
    # a dense grid over where gelu bends and its tails, and every float32 near 0
    grid = np.linspace(-14, 14, 1_000_001, dtype=np.float32)
    small = np.float32(2.0) ** -np.arange(0, 140, 0.25, dtype=np.float32)
    x = np.concatenate([grid, small, -small])
    g = np.random.default_rng(1).standard_normal(x.shape).astype(np.float32)
    y, cdf = gelu_forward(x)
    check_forward(x, y, cdf)
    check_backward(x, cdf, g, gelu_backward(x, cdf, g))
    # In ulps: h = erfc(|x| / sqrt 2) / 2 is off by at most HELPERS relatively, and so are
    # cdf and y for x < 0; for x >= 0, Phi >= 1/2 and 1 - h is off by at most h HELPERS
    # <= Phi HELPERS. An ulp is at least 2^-24 of the value: within 0.5 + 2^24 HELPERS
    # (0.67; measured over every float32 in [-15, 15]: 0.664 for both).
    x64 = x.astype(np.float64)
    phi_cdf = exact_cdf(x64)
    ulps_bound = 0.5 + 2**24 * (HELPERS + K * U * (1 + x64 * x64))
    for name, got, exact in (("cdf", cdf, phi_cdf), ("y", y, x64 * phi_cdf)):
        ulps = np.abs(got - exact) / np.spacing(np.abs(exact).astype(np.float32))
        worst = np.argmax(ulps / ulps_bound)
        assert (ulps <= ulps_bound).all(), f"{name}: {ulps[worst]:.3f} ulp at x = {x[worst]}"


@pytest.mark.parametrize("dtype", DTYPES)
def test_special_values(dtype):
    x = np.array(
        [0.0, -0.0, 1e-45, -1e-45, 3.4e38, -3.4e38, np.inf, -np.inf, np.nan, -5.7, -6, -20, 20],
        dtype,
    )
    g = np.full(x.shape, 2.0, dtype)
    y, cdf = gelu_forward(x)
    with np.errstate(invalid="ignore", over="ignore"):
        y_ref, cdf_ref = gelu_reference(x)
        gx_ref = gelu_backward_reference(x, cdf_ref, g)
    gx = gelu_backward(x, cdf, g)
    # NaN where the formula gives NaN (NaN in; -inf * 0 forward; inf * 0 backward), else finite
    np.testing.assert_array_equal(np.isnan(y), np.isnan(y_ref))
    np.testing.assert_array_equal(np.isnan(cdf), np.isnan(cdf_ref))
    np.testing.assert_array_equal(np.isnan(gx), np.isnan(gx_ref))
    assert cdf[0] == cdf[1] == 0.5 and y[0] == 0 and y[1] == 0
    assert cdf[4] == 1 and y[4] == x[4] and gx[4] == g[4]  # huge x: gelu(x) = x
    assert cdf[5] == 0 and y[5] == 0 and gx[5] == 0  # huge -x: 0, not -huge * tiny
    assert cdf[6] == 1 and y[6] == np.inf
    assert cdf[7] == 0
    assert ((cdf >= 0) & (cdf <= 1) | np.isnan(cdf)).all()  # a probability, even in the tails
    finite = np.isfinite(x)
    check_forward(x[finite], y[finite], cdf[finite])
    check_backward(x[finite], cdf[finite], g[finite], gx[finite])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "size",
    [
        PARALLEL_MIN_ELEMENTS + 7,  # just above the parallel threshold, a partial last chunk
        5 * ew._CHUNK,  # whole chunks only
    ],
)
def test_parallel_and_serial_kernels_both_match(size, dtype):
    rng = np.random.default_rng(2)
    x = (4 * rng.standard_normal(size)).astype(dtype)
    g = rng.standard_normal(size).astype(dtype)
    for mode in ("serial", "parallel"):
        forward, backward = getattr(ew, f"_forward_{mode}"), getattr(ew, f"_backward_{mode}")
        y, cdf, gx = np.empty_like(x), np.empty_like(x), np.empty_like(x)
        forward(x, y, cdf)
        check_forward(x, y, cdf)
        backward(x, cdf, g, gx)
        check_backward(x, cdf, g, gx)


def test_small_inputs_run_serially_large_ones_in_parallel(kernel_calls):
    big = np.ones((4, PARALLEL_MIN_ELEMENTS // 4), np.float32)
    small = big[:2, :3]
    for x in (big, small):
        y, cdf = gelu_forward(x)
        gelu_backward(x, cdf, y)
    mode = "parallel" if num_threads() > 1 else "serial"
    assert kernel_calls == [
        f"_forward_{mode}",
        f"_backward_{mode}",
        "_forward_serial",
        "_backward_serial",
    ]


def test_empty_and_zero_d(kernel_calls):
    for dtype in DTYPES:
        for shape in ((0,), (3, 0, 2)):
            y, cdf = gelu_forward(np.zeros(shape, dtype))
            assert y.shape == cdf.shape == shape and y.dtype == cdf.dtype == dtype
            gx = gelu_backward(y, cdf, y)
            assert gx.shape == shape and gx.dtype == dtype
        y, cdf = gelu_forward(np.array(1.5, dtype))
        assert y.shape == () and y.dtype == dtype
        check_forward(np.array(1.5, dtype), y, cdf)
    assert kernel_calls.count("_forward_serial") == 2  # the 0-d calls; empty ones launch nothing


# ---------------------------------------------------------------- fallbacks


@pytest.mark.parametrize(
    "x_dtype, cdf_dtype, g_dtype, g_shape",
    [
        (np.float32, np.float32, np.float64, (3, 4)),  # a float64 gradient: gx is float64
        (np.float64, np.float64, np.float32, (3, 4)),  # float32 gradient on float64: float64
        (np.float32, np.float64, np.float32, (3, 4)),  # a cdf of another dtype
        (np.float32, np.float32, np.float32, (1, 4)),  # a gradient that broadcasts
        (np.float16, np.float16, np.float16, (3, 4)),  # no kernel for float16
    ],
)
def test_mixed_dtypes_fall_back_to_numpy_promotion(
    x_dtype, cdf_dtype, g_dtype, g_shape, kernel_calls
):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 4)).astype(x_dtype)
    g = rng.standard_normal(g_shape).astype(g_dtype)
    y, cdf = gelu_forward(x)
    cdf = cdf.astype(cdf_dtype)
    gx = gelu_backward(x, cdf, g)
    want = gelu_backward_reference(x, cdf, g)
    assert gx.dtype == want.dtype == np.result_type(x, cdf, g)
    np.testing.assert_array_equal(gx, want)
    assert not any(name.startswith("_backward") for name in kernel_calls)  # never a downcast
    if x_dtype == np.float16:
        y_ref, cdf_ref = gelu_reference(x)
        assert y.dtype == np.float16
        np.testing.assert_array_equal(y, y_ref)
        assert not kernel_calls


# ---------------------------------------------------------------- the float32 helpers


@vectorize(["float64(float64)"])
def _erfcx_all(z):
    return erfcx(z)


@vectorize(["float64(float64)"])
def _exp_all(t):
    return exp_nonpositive(t)


@vectorize(["float64(float32)"])
def _cdf_all(x):
    return ew.normal_cdf(x)


def test_erfcx_relative_error():
    # against exp(z^2) erfc(z), whose z^2 is off by u z^2 relatively
    z = np.concatenate([np.linspace(0, 16, 400_001), np.geomspace(1e-300, 1e-3, 1001)])
    exact = np.array([math.exp(v * v) * math.erfc(v) for v in z])
    error = np.abs(_erfcx_all(z) / exact - 1)
    bound = ERFCX_ERROR + K * U * (1 + z * z)
    assert (error <= bound).all(), f"{error.max():.3g} at z = {z[error.argmax()]}"
    assert error.max() > ERFCX_ERROR / 2  # the bound is the error near 0, not a loose one


def test_exp_nonpositive_relative_error():
    t = np.concatenate([np.linspace(-200, 0, 2_000_001), -np.geomspace(1e-300, 1, 1001)])
    error = np.abs(_exp_all(t) / np.exp(t) - 1)
    assert error.max() <= EXP_ERROR, f"{error.max():.3g} at t = {t[error.argmax()]}"


def test_exp_nonpositive_special_values():
    t = np.array([0.0, -0.0, -200.0, -200.5, -745.0, -1e300, -np.inf, np.nan])
    with np.errstate(invalid="ignore"):  # a comparison with NaN sets the invalid flag
        e = _exp_all(t)
    assert e[0] == e[1] == 1
    assert abs(e[2] / math.exp(-200) - 1) <= EXP_ERROR
    np.testing.assert_array_equal(e[3:7], 0)  # cut to 0 below -200
    assert np.isnan(e[7])


def _cdf_ulps(x32: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ulps, bound): normal_cdf(x) rounded to float32 against Phi(x), in float32 ulps."""
    x64 = x32.astype(np.float64)
    exact = exact_cdf(x64)
    got = _cdf_all(x32).astype(np.float32).astype(np.float64)
    spacing = np.spacing(np.abs(exact.astype(np.float32))).astype(np.float64)
    return np.abs(got - exact) / spacing, 0.5 + 2**24 * (HELPERS + K * U * (1 + x64 * x64))


def test_float32_cdf_ulps():
    # a dense grid over where Phi is neither 0 nor 1 in float32, and all scales near 0
    grid = np.linspace(-15, 9, 1_000_001, dtype=np.float32)
    small = np.float32(2.0) ** -np.arange(0, 149, 0.125, dtype=np.float32)
    x = np.concatenate([grid, small, -small])
    ulps, bound = _cdf_ulps(x)
    worst = np.argmax(ulps / bound)
    assert (ulps <= bound).all(), f"{ulps[worst]:.3f} ulp at x = {x[worst]}"


@given(hnp.arrays(np.float32, st.integers(1, 50), elements=st.floats(width=32)))
def test_float32_cdf_ulps_anywhere(x):
    # any float32: subnormal, huge, +-inf (Phi = 1, 0), NaN (NaN), -0.0
    nan = np.isnan(x)
    with np.errstate(invalid="ignore"):  # a comparison with NaN sets the invalid flag
        assert np.isnan(_cdf_all(x[nan])).all()
    ulps, bound = _cdf_ulps(x[~nan])
    assert (ulps <= bound).all(), x[~nan][ulps > bound]


def test_float32_cdf_special_values():
    x = np.float32([np.inf, -np.inf, 3e38, -3e38, 0.0, -0.0, 16.0, -16.0, -14.5])
    c = _cdf_all(x)
    np.testing.assert_array_equal(c[:4], [1, 0, 1, 0])
    assert c[4] == c[5] and c[4].astype(np.float32) == 0.5
    assert c[6] == 1 and 0 < c[7] < 1e-56 and c[8].astype(np.float32) == 0


@pytest.mark.skipif(config.DISABLE_JIT, reason="no machine code to inspect")
def test_the_float32_loop_vectorises():
    # A loop over the float32 cdf must compile to vector instructions: a branch in it
    # (such as Python's ZeroDivisionError check on p / q) keeps it scalar, and 5x slower.
    @njit(fastmath=ew.FASTMATH)  # not cached, so it can be inspected
    def loop(x, out):
        for j in range(x.size):
            out[j] = ew.normal_cdf(x[j])

    x = np.zeros(64, np.float32)
    loop(x, x.copy())
    ir = next(iter(loop.inspect_llvm().values()))
    assert any("fdiv" in line and "x double>" in line for line in ir.splitlines())


# ---------------------------------------------------------------- through the autograd


@given(hnp.arrays(np.float64, shapes(max_dims=3), elements=st.floats(-6, 6)))
def test_gradcheck_through_the_kernels(x):
    assert check_gradients(F.gelu, x)


def test_gelu_runs_the_kernels_and_saves_their_cdf(kernel_calls):
    rng = np.random.default_rng(4)
    x = mt.tensor(rng.standard_normal((3, 5)).astype(np.float32), requires_grad=True)
    g = rng.standard_normal((3, 5)).astype(np.float32)
    y = F.gelu(x)
    y.backward(mt.tensor(g))
    assert kernel_calls == ["_forward_serial", "_backward_serial"]
    y_k, cdf = gelu_forward(x.data)
    np.testing.assert_array_equal(y.data, y_k)
    np.testing.assert_array_equal(x.grad, gelu_backward(x.data, cdf, g))


def test_kernels_run_as_plain_python():
    # NUMBA_DISABLE_JIT=1 runs the kernels as Python (to step through them)
    code = textwrap.dedent(
        """
        import numpy as np
        from minitransformer.kernels import elementwise as ew
        rng = np.random.default_rng(0)
        for dtype, tol in ((np.float64, 1e-15), (np.float32, 1e-6)):
            x = (3 * rng.standard_normal((2, 3, 4))).astype(dtype)
            g = rng.standard_normal((2, 3, 4)).astype(dtype)
            y, cdf = ew.gelu_forward(x)
            y_ref, cdf_ref = ew.gelu_reference(x)
            assert y.dtype == cdf.dtype == dtype
            assert np.allclose(y, y_ref, rtol=0, atol=tol * 4), y - y_ref
            assert np.allclose(cdf, cdf_ref, rtol=0, atol=tol), cdf - cdf_ref
            gx = ew.gelu_backward(x, cdf, g)
            gx_ref = ew.gelu_backward_reference(x, cdf, g)
            assert np.allclose(gx, gx_ref, rtol=0, atol=tol * 4), gx - gx_ref
        print("ok")
        """
    )
    assert run_python(code, {"NUMBA_DISABLE_JIT": "1"}).strip() == "ok"
