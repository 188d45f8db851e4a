"""What the Numba CPU kernels share: compile options, a vectorisable exp, a vectorisable max.

Compile options
    ``CACHE``     whether kernels may write their machine code to disk (``cache=True``), so a
                  new process loads them instead of compiling again. Numba writes next to the
                  source, in ``kernels/__pycache__``; when that is not writable (an installed,
                  read-only package) we point ``NUMBA_CACHE_DIR`` at a temporary directory,
                  and when even that fails we compile without a cache. Either case warns once.
    ``FASTMATH``  the fast-math flags the kernels use: reassociation (so a sum can be split
                  into vector lanes), contraction into FMA, and friends. Not ``fastmath=True``:
                  that also sets ``nnan``/``ninf``, which let LLVM assume there is no -inf,
                  and -inf is exactly how a masked entry is written.

Numba reads ``NUMBA_NUM_THREADS`` once, when it is imported; ``num_threads()`` is the count
the parallel kernels actually use (``numba.set_num_threads`` can lower it at run time).
Unless the environment says otherwise, this module sets ``OMP_WAIT_POLICY=PASSIVE``
before Numba starts its OpenMP thread pool: the pool's threads then sleep as soon as a
kernel ends instead of spinning. On 2 cores shared with BLAS threads or other processes,
spinning threads steal the time the one thread still working needs; with the default
policy a 4 MB softmax measured 24 ms median against 3 ms with PASSIVE. The cost is a
wake-up of some microseconds per parallel launch. (Any OpenMP runtime loaded after this
import, PyTorch's included, reads the same variable.)
A ``parallel=True`` call costs about 1.5 us to launch, so each kernel also has a serial
twin for inputs smaller than ``PARALLEL_MIN_ELEMENTS``.

Which thread pool runs ``prange``. Unless ``NUMBA_THREADING_LAYER`` says otherwise, this
module picks Numba's built-in ``workqueue`` layer, not OpenMP. OpenMP reads its wait
policy once, when the runtime is loaded: if PyTorch (which brings its own OpenMP) was
imported first, the policy is already fixed to spinning, and the spinning threads took
the cores from our BLAS calls: one training step of a small Transformer measured 0.23 s
with OpenMP against 0.15 s with the work queue, and never slower elsewhere. The work
queue's one limit: parallel kernels must not be launched from several Python threads at
once (``run_blocks`` only runs serial kernels in its threads).

``run_blocks`` is the other way to use the cores, for work that alternates a BLAS call
(NumPy's matmul) with a kernel: a few Python threads, each running whole blocks (its
BLAS call, then a serial ``nogil=True`` kernel), with OpenBLAS set to one thread while
they run and set back afterwards (``openblas_set_num_threads_local``, found with ctypes
in the OpenBLAS that NumPy's wheels bundle; skipped when NumPy uses another BLAS).
Alternating a multi-threaded BLAS call with a ``prange`` region instead makes the two
thread pools spin-wait against each other: on 2 busy cores that measured several times
slower, and a multi-threaded OpenBLAS call on a loaded machine slower still.

Two scalar functions for inside kernels, both written so that a loop calling them
vectorises (since Numba 0.62 ``math.exp`` is no longer vectorised through SVML, and a
float ``max`` reduction is not vectorised without ``nnan``):

``exp(x)``
    float64: ``math.exp``. float32: exp(x) = 2^n * exp(r) with n = round(x / ln 2) and
    r = x - n ln 2 in [-ln2/2, ln2/2]. The reduction subtracts n ln 2 in two parts
    (Cody-Waite: ``LN2_HI`` has few enough bits that n * LN2_HI is exact), exp(r) is a
    degree-6 polynomial 1 + r + r^2 (c2 + c3 r + ... + c6 r^4) whose coefficients were
    fitted to (exp(r) - 1 - r) / r^2 by least squares iterated toward minimax (Lawson)
    on that interval (fit error 3e-9, far below float32's 6e-8 half-ulp), and 2^n is
    built by writing n + bias into the float's exponent bits. Max error below 2 ulp
    (the tests measure it). exp(x) = 0 below -87.34, where the true value is no longer a
    normal float (< 1.2e-38), and +inf above 88.72; -inf gives 0 and NaN gives NaN.
``max_of(x)``
    the largest element of a 1-d array. IEEE floats order like sign-magnitude integers,
    so flipping the magnitude bits of the negative ones turns float order into
    two's-complement integer order: the max of those integer keys is an integer
    reduction, which LLVM vectorises, and it maps back to the float max. The key of a
    NaN with its sign bit clear (what arithmetic produces on x86) is above +inf's, so
    such a NaN propagates. An empty array gives -inf.

Note: Numba's cache keys on the source of the file that defines a kernel, not on the
files it calls into. After editing this file, delete ``kernels/__pycache__/*.nbi`` (or
the ``NUMBA_CACHE_DIR``) so the kernels in softmax.py / topk.py recompile.
Set ``NUMBA_DISABLE_JIT=1`` to run every kernel as plain Python and step through it.
"""

from __future__ import annotations

import ctypes
import math
import os
import tempfile
import threading
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import config, njit, types
from numba.extending import intrinsic, overload

__all__ = [
    "CACHE",
    "FASTMATH",
    "PARALLEL_MIN_ELEMENTS",
    "num_threads",
    "exp",
    "exp_f32",
    "max_of",
    "choose_cache",
    "run_blocks",
]

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
if "NUMBA_THREADING_LAYER" not in os.environ:
    # Numba's own work queue rather than OpenMP for prange (see the module docstring)
    config.THREADING_LAYER = "workqueue"

FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}  # Numba wants a set, not a frozenset

# Below this many elements the work takes less time than waking the thread pool.
PARALLEL_MIN_ELEMENTS = 1 << 15


def choose_cache(pycache: Path, fallback: Path) -> tuple[bool, str | None]:
    """Decide where compiled kernels go. Returns (cache?, warning message or None).

    ``pycache`` is Numba's default place (next to the source); ``fallback`` a temporary
    directory used, through ``NUMBA_CACHE_DIR``, when ``pycache`` cannot be written.
    """
    if config.DISABLE_JIT:
        return False, None
    if config.CACHE_DIR:  # the user chose a place; Numba handles it
        return True, None
    if _writable(pycache):
        return True, None
    if _writable(fallback):
        config.CACHE_DIR = str(fallback)
        os.environ["NUMBA_CACHE_DIR"] = str(fallback)
        return True, (
            f"minitransformer: {pycache} is not writable; caching compiled Numba kernels "
            f"in {fallback} instead (set NUMBA_CACHE_DIR to choose another place)"
        )
    return False, (
        f"minitransformer: neither {pycache} nor {fallback} is writable; Numba kernels are "
        "compiled without a cache, once per process (set NUMBA_CACHE_DIR to a writable "
        "directory to keep them)"
    )


def _writable(directory: Path) -> bool:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=directory).close()
    except OSError:
        return False
    return True


CACHE, _cache_warning = choose_cache(
    Path(__file__).resolve().parent / "__pycache__",
    Path(tempfile.gettempdir()) / "minitransformer-numba-cache",
)
if _cache_warning is not None:
    warnings.warn(_cache_warning, RuntimeWarning, stacklevel=2)


def num_threads() -> int:
    """Threads a ``parallel=True`` kernel runs on (``NUMBA_NUM_THREADS``, read at import)."""
    return numba.get_num_threads()


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def run_blocks(
    work: Callable[[Any, Any], None],
    blocks: Sequence[Any],
    workers: int,
    make_scratch: Callable[[], Any],
) -> None:
    """Call ``work(block, scratch)`` for every block, on up to ``workers`` threads.

    Each thread makes one ``scratch = make_scratch()`` (buffers it reuses, so memory is
    ``workers`` scratches whatever the number of blocks) and takes the next block when
    it is done with one. BLAS calls in ``work`` run single-threaded; ``work`` must
    release the GIL for the threads to overlap (NumPy's BLAS calls and ``nogil=True``
    kernels do). An exception in any block is re-raised.

    OpenBLAS's thread count is one number for the whole process (despite its name,
    ``openblas_set_num_threads_local`` sets the global count and returns the old one), so
    it is lowered to 1 for the duration of the call and then restored. An earlier version
    set it once in each worker thread and never restored it: every BLAS call of the
    process after the first attention then ran on one core, and a whole encoder layer
    took 1.4x longer.
    """
    workers = max(1, min(workers, len(blocks)))
    previous = _set_blas_threads(1)
    try:
        if workers == 1:
            scratch = make_scratch()
            for block in blocks:
                work(block, scratch)
        else:
            _run_on_pool(work, blocks, workers, make_scratch)
    finally:
        _set_blas_threads(previous)


def _run_on_pool(
    work: Callable[[Any, Any], None],
    blocks: Sequence[Any],
    workers: int,
    make_scratch: Callable[[], Any],
) -> None:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(config.NUMBA_NUM_THREADS, "minitransformer-kernels")
    todo = iter(blocks)
    todo_lock = threading.Lock()
    failed = threading.Event()

    def worker() -> None:
        scratch = make_scratch()
        while not failed.is_set():
            with todo_lock:
                block = next(todo, None)
            if block is None:
                return
            try:
                work(block, scratch)
            except BaseException:
                failed.set()  # the other threads stop taking blocks
                raise

    futures = [_pool.submit(worker) for _ in range(workers)]
    for future in futures:
        future.result()


def _find_openblas_set_local() -> Callable[[int], int] | None:
    """``openblas_set_num_threads_local`` in NumPy's bundled OpenBLAS (it sets the count
    of the whole process, like ``openblas_set_num_threads``, and returns the old one)."""
    libs = Path(np.__file__).resolve().parent.parent / "numpy.libs"
    for path in sorted(libs.glob("libscipy_openblas*")):
        try:
            lib = ctypes.CDLL(str(path))  # the library NumPy already loaded: same handle
        except OSError:
            continue
        set_local = getattr(lib, "openblas_set_num_threads_local", None)
        if set_local is not None:
            set_local.argtypes, set_local.restype = [ctypes.c_int], ctypes.c_int
            return set_local
    return None


_openblas_set_local = _find_openblas_set_local()


def _set_blas_threads(n: int) -> int:
    """Set OpenBLAS's thread count (process-wide); returns the previous one (0: no OpenBLAS)."""
    if _openblas_set_local is None or n < 1:
        return 0
    return _openblas_set_local(n)


# ---------------------------------------------------------------- reinterpreting bits

_INT_OF = {32: types.int32, 64: types.int64}
_NP_INT_OF = {32: np.int32, 64: np.int64}
_FLOAT_OF = {32: types.float32, 64: types.float64}

if config.DISABLE_JIT:

    def as_int_bits(x):
        """The bits of a float32/float64 as an int32/int64 (pure-Python twin)."""
        return np.asarray(x).view(np.int32 if x.dtype == np.float32 else np.int64)[()]

    def as_float_bits(i):
        """The bits of an int32/int64 as a float32/float64 (pure-Python twin)."""
        return np.asarray(i).view(np.float32 if i.dtype == np.int32 else np.float64)[()]

else:

    @intrinsic
    def as_int_bits(typingctx, x):
        """The bits of a float32/float64 as an int32/int64 (an LLVM bitcast, no work)."""
        if not isinstance(x, types.Float):
            return None
        out = _INT_OF[x.bitwidth]

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.IntType(x.bitwidth))

        return out(x), codegen

    @intrinsic
    def as_float_bits(typingctx, i):
        """The bits of an int32/int64 as a float32/float64 (an LLVM bitcast, no work)."""
        if not isinstance(i, types.Integer) or i.bitwidth not in _FLOAT_OF:
            return None
        out = _FLOAT_OF[i.bitwidth]
        llvm_float = ir.FloatType() if i.bitwidth == 32 else ir.DoubleType()

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], llvm_float)

        return out(i), codegen


# ---------------------------------------------------------------- exp

_LOG2E = np.float32(1.4426950408889634)
_LN2_HI = np.float32(0.693359375)  # 0x1.63p-1: 9 significant bits, so n * _LN2_HI is exact
_LN2_LO = np.float32(math.log(2.0) - 0.693359375)
_C2 = np.float32(0.49999994)
_C3 = np.float32(0.16666521)
_C4 = np.float32(0.04166839)
_C5 = np.float32(0.00836871)
_C6 = np.float32(0.00138146)
_EXP_LO = np.float32(-87.33654)  # log of the smallest normal float32
_EXP_HI = np.float32(88.72284)  # log of the largest float32


# Only "contract" (FMA): reassociation would be allowed to fold the two-part
# subtraction r = (x - n*HI) - n*LO back into one, losing the bits it exists to keep.
@njit(fastmath={"contract"}, cache=CACHE)
def exp_f32(x):
    t = x * _LOG2E
    # Clamped so n stays in the int32 exponent range; NaN lands on -126 here and
    # comes back as NaN through r below.
    t = t if t > np.float32(-126.0) else np.float32(-126.0)
    t = t if t < np.float32(128.0) else np.float32(128.0)
    n = np.floor(t + np.float32(0.5))
    r = (x - n * _LN2_HI) - n * _LN2_LO
    p = np.float32(1.0) + r + r * r * (_C2 + r * (_C3 + r * (_C4 + r * (_C5 + r * _C6))))
    # 2^n from exponent bits (biased exponent n + 127), built as 2^a * 2^b with
    # a = n >> 1, b = n - a: for n in [-126, 128] both factors are normal floats, where
    # one factor would not be (2^128 overflows the exponent field). Numba widens int32
    # arithmetic to int64; the outer np.int32 narrows it back.
    n32 = np.int32(n)
    a = n32 >> 1
    scale_a = as_float_bits(np.int32((a + 127) << 23))
    scale_b = as_float_bits(np.int32((n32 - a + 127) << 23))
    e = p * scale_a * scale_b
    e = np.float32(np.inf) if x > _EXP_HI else e
    return np.float32(0.0) if x < _EXP_LO else e


def exp(x):
    """exp of a float32 or float64 scalar inside a kernel (float32: ``exp_f32``)."""
    return exp_f32(x) if isinstance(x, np.float32) else math.exp(x)


@overload(exp)
def _exp_overload(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        return lambda x: exp_f32(x)
    if isinstance(x, types.Float):
        return lambda x: math.exp(x)
    return None


# ---------------------------------------------------------------- max


def max_of(x):
    """The largest element of a 1-d float array, -inf when it is empty (NaN propagates)."""
    return x.max() if x.size else x.dtype.type(-np.inf)


def _max_of_impl(int_type, width):
    low_bits = int_type((1 << (width - 1)) - 1)  # every bit but the sign
    lowest = int_type(-(1 << (width - 1)))
    shift = int_type(width - 1)  # typed, so int32 bits are not promoted to int64

    def impl(x):
        best = lowest
        for j in range(x.size):
            bits = as_int_bits(x[j])
            # bits >> shift is all ones for a negative float, else 0: xor with the
            # magnitude bits flips them for negatives only.
            key = int_type(bits ^ ((bits >> shift) & low_bits))
            best = key if key > best else best
        if x.size == 0:
            return x.dtype.type(-np.inf)
        return as_float_bits(int_type(best ^ ((best >> shift) & low_bits)))

    return impl


@overload(max_of)
def _max_of_overload(x):
    if isinstance(x, types.Array) and isinstance(x.dtype, types.Float) and x.ndim == 1:
        return _max_of_impl(_NP_INT_OF[x.dtype.bitwidth], x.dtype.bitwidth)
    return None
