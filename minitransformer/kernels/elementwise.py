"""Elementwise CPU kernels: the error function, and the exact GELU fused into one pass each way.

    gelu(x) = x Phi(x),   Phi(x) = (1 + erf(x / sqrt 2)) / 2
    backward:  dL/dx = g (Phi(x) + x phi(x)),   phi(x) = exp(-x^2 / 2) / sqrt(2 pi)

``erf`` is not in NumPy (SciPy has it, but SciPy is not a dependency); ``erf_cpu`` is
``math.erf`` compiled by Numba into a ufunc (``backend.erf`` on NumPy arrays). It is
exact to the last bit or so, but a scalar call per element, on one thread.

``gelu_reference`` / ``gelu_backward_reference`` are the formula written with ``xp`` and
``backend.erf``; the kernels are tested against them, and they are what runs on CuPy
arrays. ``gelu_forward`` / ``gelu_backward`` are what the autograd calls: on NumPy
float32/float64 arrays (and, backward, an incoming gradient and saved cdf of the same
dtype and shape) they run the fused Numba kernels, on anything else (CuPy, float16,
mixed dtypes that NumPy would promote) the reference. Any array is flattened to a
C-contiguous one (a copy when it is not C-contiguous) and cut into chunks of ``_CHUNK``
elements, one ``prange`` iteration each; the loop inside a chunk vectorises.

    forward, per element:  c = Phi(x);  cdf = c;  y = x c          (reads x, writes y, cdf)
    backward, per element: gx = g (cdf + x phi(x))                  (reads x, cdf, g, writes gx)

The formula makes six passes forward (x / sqrt 2, erf, 1 + ., 1/2 ., astype, x cdf) and
five backward (x x, exp, x pdf, cdf + ., g .), each reading and writing memory.

Phi and phi inside the kernels (``normal_cdf``, ``normal_pdf``), by dtype:

float64: the formula's own functions, ``math.erf`` and ``math.exp``, in the formula's order,
    so the kernels give the reference's numbers (BERT parity tests compare float64 to
    ~1e-15). A call per element, which does not vectorise.

float32: everything in float64 (a float32 converts exactly), rounded once when stored, with
    functions that vectorise. With z = |x| / sqrt 2 (so z^2 = x^2 / 2, exact in float64):
        h = exp(-x^2 / 2) erfcx(z) / 2 = erfc(z) / 2,   Phi(x) = h if x < 0 else 1 - h
    where erfcx(z) = exp(z^2) erfc(z) is the rational P(z) / Q(z) (degree 8 over degree 8)
    of Cephes' ndtr.c (S. Moshier), fitted there for erfc on [1, 8). Here it is used on
    all of [0, 16] (z clamped at 16, |x| = 22.6; below x = -14.2, Phi and y already
    round to 0 in float32, and above x = 5.4, Phi rounds to 1): measured
    against exp(z^2) math.erfc(z), its relative error is 9.8e-9 at z = 0, 3.6e-10 on
    [0.25, 0.5), below 1e-11 on [0.5, 10]. exp is ``exp_nonpositive`` below, a float64 exp
    for t <= 0 good to 3e-13 relatively.
    Why not 1 + erf: for x < 0, Phi(x) is the difference of two numbers near 1, and any
    erf with float32 accuracy (an absolute error of ~6e-8) leaves Phi(-4) = 3.2e-5 with a
    relative error of ~1e-3. The first version of these kernels used Eigen's float erf
    (``generic_fast_erf_float``, a rational of degree 13 over 8, max |error| 6.5e-8) and
    was off by 1.3e-7 at gelu(-4); the float32 formula with math.erf rounded to float32
    has the same weakness (its cdf is off by up to about eps32 / 2 absolutely). erfc(z) for
    z > 0 has no cancellation, and for x >= 0, Phi >= 1/2 so 1 - h loses nothing.
    Accuracy, measured for every float32 x in [-15, 15] (beyond, cdf is exactly 0 or 1):
        cdf within 0.664 ulp of Phi(x),  y within 0.664 ulp of x Phi(x)
    (half an ulp is the rounding; the rest, 0.164 ulp, is erfcx's 9.8e-9 near z = 0).
    The float32 formula with an exactly rounded erf: 1.6 ulp on y for x > 0, and for
    x < 0 a relative error that grows without bound (its y(-6) is 0; the true value is
    -5.9e-9). tests/test_kernel_gelu.py checks these bounds.
    phi(x) = exp_nonpositive(-x^2 / 2) / sqrt(2 pi): given the cdf the forward saved, gx is
    g (cdf + x phi) within half an ulp plus |g x phi| 3e-13 (measured: 0.5 ulp for x >= 0;
    the second term shows only near x = -0.75, where cdf + x phi crosses 0).
    NaN gives NaN; x = +inf gives cdf 1, y inf; x = -inf gives cdf 0 and y = -inf * 0 =
    NaN, as the formula does (in float64 too).

``exp_nonpositive(t)`` for t <= 0: t = n ln 2 + r with n = floor(t / ln 2 + 1/2), |r| <= ln2/2;
    n ln 2 is subtracted in two parts (fdlibm's ln2_hi has 32 significant bits, so n ln2_hi
    is exact), exp(r) is its Taylor polynomial of degree 10 (remainder < 3.1e-13 relatively),
    and 2^n is written into the exponent bits: n + 1023 + 2^52 is a float whose low mantissa
    bits are the integer n + 1023, shifted up 52 places (integer ops that vectorise on AVX2,
    where a float64 to int64 conversion does not). Below t = -200 the result is 0 (the
    largest |g x phi(x)| there is below float32's smallest subnormal), which also keeps n
    in the normal exponent range and r small (no overflow on the way); NaN stays NaN.

error_model="numpy" on the scalar functions: Numba's default guards every ``/`` with a
ZeroDivisionError check, a branch that kept the loop from vectorising (4-5x slower). Q
never is 0: its coefficients are positive and z >= 0.

Speed, on a (32, 64, 1536) array, 2 cores with AVX-512. float32: a forward element costs
about 45 float64 flops (two degree-8 polynomials, a division, the exp): 2.3 ms (serial
4.4 ms), about twice what memory needs (x + g, reading two arrays and writing one, takes
1.3 ms), against 46 ms for the formula; the backward 1.6 ms, against 7.5 ms. float64: bound
by the scalar ``math.erf`` (forward, 28 ms against 61 ms) and ``math.exp`` (backward, 8 ms
against 25 ms) calls, spread over the threads. Outputs in fresh memory cost more: the
first write to each page faults, and in MiniLM's forward a GELU took 9 ms, not 2.3.

Small inputs (< PARALLEL_MIN_ELEMENTS) go to a serial twin of each kernel, where waking
the thread pool would cost more than the work.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit, prange, types, vectorize
from numba.extending import overload

from ..backend import array_module, erf
from ._numba import (
    CACHE,
    FASTMATH,
    PARALLEL_MIN_ELEMENTS,
    as_float_bits,
    as_int_bits,
    num_threads,
)

__all__ = [
    "erf_cpu",
    "erfcx",
    "exp_nonpositive",
    "normal_cdf",
    "normal_pdf",
    "gelu_reference",
    "gelu_backward_reference",
    "gelu_forward",
    "gelu_backward",
]

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


# ---------------------------------------------------------------- erf as a ufunc


@vectorize(["float32(float32)", "float64(float64)"], cache=CACHE)
def _erf(x):
    return math.erf(x)


def erf_cpu(x: np.ndarray) -> np.ndarray:
    """Elementwise error function of a float32 or float64 NumPy array (``math.erf``).

    Kept exact for float32 too: it is what the GELU reference is built on.
    """
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    return _erf(x)


# ---------------------------------------------------------------- the reference


def gelu_reference(x: Any) -> tuple[Any, Any]:
    """(y, cdf): y = x Phi(x) and cdf = Phi(x), written as the formula. Any backend."""
    cdf = 0.5 * (1.0 + erf(x * _INV_SQRT2)).astype(x.dtype)
    return x * cdf, cdf


def gelu_backward_reference(x: Any, cdf: Any, g: Any) -> Any:
    """dL/dx = g (cdf + x phi(x)) from the forward's input ``x``, its ``cdf`` and ``g``."""
    xp = array_module(x)
    pdf = _INV_SQRT_2PI * xp.exp(-0.5 * x * x)
    return g * (cdf + x * pdf)


# ---------------------------------------------------------------- scalar functions for kernels
# float32 arguments: float64 arithmetic that vectorises; float64 arguments: math.erf and
# math.exp, the reference's functions; picked by the argument's type. Only "contract" (FMA)
# in these: reassociation could undo the two-part subtraction of n ln 2 or the bit trick;
# per-instruction flags survive inlining into the FASTMATH loops.

# Cephes ndtr.c: erfc(z) = exp(-z^2) P(z) / Q(z); P highest power first, Q monic
_P = (
    2.46196981473530512524e-10,
    5.64189564831068821977e-1,
    7.46321056442269912687e0,
    4.86371970985681366614e1,
    1.96520832956077098242e2,
    5.26445194995477358631e2,
    9.34528527171957607540e2,
    1.02755188689515710272e3,
    5.57535335369399327526e2,
)
_Q = (
    1.32281951154744992508e1,
    8.67072140885989742329e1,
    3.54937778887819891062e2,
    9.75708501743205489753e2,
    1.82390916687909736289e3,
    2.24633760818710981792e3,
    1.65666309194161350182e3,
    5.57535340817727675546e2,
)
_P0, _P1, _P2, _P3, _P4, _P5, _P6, _P7, _P8 = _P
_Q1, _Q2, _Q3, _Q4, _Q5, _Q6, _Q7, _Q8 = _Q
_ERFCX_Z_MAX = 16.0  # beyond (|x| > 22.6), erfc(z) < 1e-112: Phi is 0 or 1 in float32

_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # fdlibm's ln2_hi: 32 bits, n * _LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10  # ln 2 - _LN2_HI
_EXP_CUT = -200.0  # exp_nonpositive(t) = 0 below
_EXP_MAGIC = 2.0**52 + 1023.0  # n + this: the integer n + 1023 in the low mantissa bits
_T3, _T4, _T5, _T6, _T7, _T8, _T9, _T10 = (1.0 / math.factorial(k) for k in range(3, 11))


@njit(fastmath={"contract"}, error_model="numpy", cache=CACHE)
def exp_nonpositive(t):
    """exp(t) for a float64 t <= 0, to 3e-13 relatively; 0 below -200 (vectorises)."""
    tc = _EXP_CUT if t < _EXP_CUT else t  # NaN stays NaN; nothing below overflows
    n = np.floor(tc * _LOG2E + 0.5)
    r = (tc - n * _LN2_HI) - n * _LN2_LO
    p = _T9 + r * _T10  # Horner, from the top: 1 + r + r^2/2 + ... + r^10/10!
    for c in (_T8, _T7, _T6, _T5, _T4, _T3, 0.5, 1.0, 1.0):
        p = c + r * p
    scale = as_float_bits(as_int_bits(n + _EXP_MAGIC) << 52)  # 2^n, n in [-289, 0]
    e = p * scale
    return 0.0 if t < _EXP_CUT else e


@njit(fastmath={"contract"}, error_model="numpy", cache=CACHE)
def erfcx(z):
    """exp(z^2) erfc(z) for a float64 z >= 0 (Cephes' P / Q), to 1e-8 relatively."""
    z = _ERFCX_Z_MAX if z > _ERFCX_Z_MAX else z  # a comparison: NaN stays NaN
    p = _P8 + z * (
        _P7 + z * (_P6 + z * (_P5 + z * (_P4 + z * (_P3 + z * (_P2 + z * (_P1 + z * _P0))))))
    )
    q = _Q8 + z * (_Q7 + z * (_Q6 + z * (_Q5 + z * (_Q4 + z * (_Q3 + z * (_Q2 + z * (_Q1 + z)))))))
    return p / q


def _cdf_f32(x):
    v = np.float64(x)
    h = 0.5 * exp_nonpositive(-0.5 * v * v) * erfcx(abs(v) * _INV_SQRT2)  # erfc(|v|/sqrt 2) / 2
    return h if v < 0 else 1.0 - h


def _pdf_f32(x):
    v = np.float64(x)
    return _INV_SQRT_2PI * exp_nonpositive(-0.5 * v * v)


def _cdf_f64(x):
    return 0.5 * (1.0 + math.erf(x * _INV_SQRT2))


def _pdf_f64(x):
    return _INV_SQRT_2PI * math.exp(-0.5 * x * x)


def normal_cdf(x):
    """Phi(x) as a float64, inside a kernel; float32 x: through ``erfcx``."""
    return _cdf_f32(x) if isinstance(x, np.float32) else _cdf_f64(x)


def normal_pdf(x):
    """phi(x) = exp(-x^2/2) / sqrt(2 pi) as a float64, inside a kernel (float32: vectorised)."""
    return _pdf_f32(x) if isinstance(x, np.float32) else _pdf_f64(x)


_SCALAR_OPTIONS = {"fastmath": {"contract"}, "error_model": "numpy"}


@overload(normal_cdf, jit_options=_SCALAR_OPTIONS)
def _normal_cdf_overload(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        return _cdf_f32
    if isinstance(x, types.Float):
        return _cdf_f64
    return None


@overload(normal_pdf, jit_options=_SCALAR_OPTIONS)
def _normal_pdf_overload(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        return _pdf_f32
    if isinstance(x, types.Float):
        return _pdf_f64
    return None


# ---------------------------------------------------------------- Numba kernels
# x, y, cdf, g, gx: 1-d, C-contiguous, one dtype. Each element is widened to float64 by
# normal_cdf / normal_pdf (a no-op for float64) and the result rounded once when stored.

_CHUNK = 1 << 14  # elements per prange iteration: 64 KB of float32 x


@njit(fastmath=FASTMATH, cache=CACHE)
def _forward_chunk(x, y, cdf):
    for j in range(x.size):
        c = normal_cdf(x[j])
        cdf[j] = c
        y[j] = x[j] * c


@njit(fastmath=FASTMATH, cache=CACHE)
def _backward_chunk(x, cdf, g, gx):
    for j in range(x.size):
        v = x[j]
        gx[j] = g[j] * (cdf[j] + v * normal_pdf(v))


# ---------------------------------------------------------------- the launches
# Each pair is the same loop, once with prange (parallel=True) and once serial. A chunk is
# a slice indexed from 0: an index like x[i0 + j] would make Numba check for negative
# indices, which blocks vectorisation.


@njit(parallel=True, fastmath=FASTMATH, cache=CACHE)
def _forward_parallel(x, y, cdf):
    for c in prange((x.size + _CHUNK - 1) // _CHUNK):
        i0 = c * _CHUNK
        i1 = min(i0 + _CHUNK, x.size)
        _forward_chunk(x[i0:i1], y[i0:i1], cdf[i0:i1])


@njit(fastmath=FASTMATH, cache=CACHE)
def _forward_serial(x, y, cdf):
    for c in range((x.size + _CHUNK - 1) // _CHUNK):
        i0 = c * _CHUNK
        i1 = min(i0 + _CHUNK, x.size)
        _forward_chunk(x[i0:i1], y[i0:i1], cdf[i0:i1])


@njit(parallel=True, fastmath=FASTMATH, cache=CACHE)
def _backward_parallel(x, cdf, g, gx):
    for c in prange((x.size + _CHUNK - 1) // _CHUNK):
        i0 = c * _CHUNK
        i1 = min(i0 + _CHUNK, x.size)
        _backward_chunk(x[i0:i1], cdf[i0:i1], g[i0:i1], gx[i0:i1])


@njit(fastmath=FASTMATH, cache=CACHE)
def _backward_serial(x, cdf, g, gx):
    for c in range((x.size + _CHUNK - 1) // _CHUNK):
        i0 = c * _CHUNK
        i1 = min(i0 + _CHUNK, x.size)
        _backward_chunk(x[i0:i1], cdf[i0:i1], g[i0:i1], gx[i0:i1])


# ---------------------------------------------------------------- public functions


def _kernel_dtype(x: Any, *others: Any) -> bool:
    """True when the kernels give NumPy's answer: x is a NumPy float32/float64 array and
    every other array is a NumPy array of x's dtype and shape (nothing to promote or
    broadcast)."""
    if not isinstance(x, np.ndarray) or x.dtype not in (np.float32, np.float64):
        return False
    return all(
        isinstance(a, np.ndarray) and a.dtype == x.dtype and a.shape == x.shape for a in others
    )


def _parallel(size: int) -> bool:
    return size >= PARALLEL_MIN_ELEMENTS and num_threads() > 1


def gelu_forward(x: Any) -> tuple[Any, Any]:
    """(y, cdf): y = gelu(x) = x Phi(x) and cdf = Phi(x) (what the backward needs besides x).

    Both have x's shape and dtype (the reference's, for inputs the kernels do not take).
    """
    if not _kernel_dtype(x):
        return gelu_reference(x)
    y = np.empty(x.shape, x.dtype)
    cdf = np.empty(x.shape, x.dtype)
    if x.size:
        kernel = _forward_parallel if _parallel(x.size) else _forward_serial
        kernel(x.ravel(), y.reshape(-1), cdf.reshape(-1))  # ravel: a view if C-contiguous
    return y, cdf


def gelu_backward(x: Any, cdf: Any, g: Any) -> Any:
    """dL/dx = g (cdf + x phi(x)) from the forward's input ``x``, its ``cdf`` and ``g = dL/dy``."""
    if not _kernel_dtype(x, cdf, g):
        return gelu_backward_reference(x, cdf, g)
    gx = np.empty(x.shape, x.dtype)
    if x.size:
        kernel = _backward_parallel if _parallel(x.size) else _backward_serial
        kernel(x.ravel(), cdf.ravel(), g.ravel(), gx.reshape(-1))
    return gx
