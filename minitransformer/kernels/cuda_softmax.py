"""Fused softmax on an NVIDIA GPU, written with Numba's CUDA target.

    forward:   y_i  = exp(x_i - m) / sum_j exp(x_j - m),   m = max_j x_j
    backward:  gx_i = y_i * (gy_i - sum_j gy_j * y_j)

along one axis of an array of any shape. As in ``softmax_reference``: -inf entries (masked)
get 0, and a row that is all -inf uses m = 0, so its sum is 0 and it gets zeros, not NaN.

"Fused" means one kernel launch per call: the row max, the sum of exponentials and the
normalised output are computed by the same thread block, with nothing but the output
written to global memory (the three NumPy steps max / exp-sum / divide would each write a
full-size temporary).

Launch configuration (both kernels)
    grid  = one block per row: rows = x.size // n, where n = x.shape[axis]
    block = T threads, T = the smallest power of two >= n, at most ``MAX_THREADS`` (128),
            or ``threads_per_block`` when given
Thread t of a block visits the row's elements t, t + T, t + 2T, ... The max and the sum
are tree reductions in shared memory: T partial values are halved log2(T) times, each
step followed by ``cuda.syncthreads()``, which is why T must be a power of two. The row is
addressed as x[o, j, c] in the view ``x.reshape(outer, n, inner)``, so any axis works
without a transposed copy. For axis=-1 (inner = 1) neighbouring threads read neighbouring
elements, which the GPU coalesces into one memory transaction; for another axis the reads
are ``inner`` elements apart.

How arrays get in: on a GPU the caller passes CuPy arrays; Numba launches kernels on any
object with ``__cuda_array_interface__`` without copying, and the output is allocated with
the input's array module (``backend.array_module``), so CuPy in gives CuPy out. The kernels
are queued on CuPy's current stream so they run after the CuPy work that produced their
inputs. Under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, set before Numba is
imported) the same code runs with NumPy arrays, one Python thread per CUDA thread; that
is how the tests run it on a machine without a GPU.

``numba.cuda`` is imported on the first call, never when this module is imported, so
minitransformer imports on a machine without CUDA or without numba-cuda.
"""

from __future__ import annotations

import functools
import math
from types import ModuleType
from typing import Any

from ..backend import array_module

__all__ = ["cuda_softmax_forward", "cuda_softmax_backward", "MAX_THREADS"]

# Shared-memory reduction buffers are sized at compile time, so the block size has a cap.
MAX_THREADS = 128

_FLOAT_DTYPES = ("float32", "float64")


# ---------------------------------------------------------------- launch helpers
# (cuda_topk.py uses these too)


# numba.cuda once cuda_module() has imported it. Kernels must reach it as a module global:
# the simulator runs a kernel by swapping the globals that name numba.cuda for a fake module.
cuda: ModuleType | None = None


def cuda_module() -> ModuleType:
    """``numba.cuda``, imported on first use, with a clear error when it cannot run."""
    global cuda
    if cuda is None:
        try:
            from numba import cuda as numba_cuda  # noqa: PLC0415 - lazy: no CUDA needed to import
        except ImportError as exc:
            raise RuntimeError(
                "the CUDA kernels need numba-cuda, which is not installed; "
                "install it with: pip install 'minitransformer[gpu]'"
            ) from exc
        cuda = numba_cuda
    if not cuda.is_available():
        raise RuntimeError(
            "the CUDA kernels found no CUDA GPU; to run them on the CPU, start Python with "
            "NUMBA_ENABLE_CUDASIM=1 (Numba's CUDA simulator, slow: a thread per CUDA thread)"
        )
    return cuda


def launch_stream(xp: ModuleType) -> Any:
    """The stream to launch on: CuPy's current one for CuPy arrays, else Numba's default."""
    numba_cuda = cuda_module()
    if xp.__name__ != "cupy":
        return 0
    ptr = xp.cuda.get_current_stream().ptr
    # ptr 0 is the legacy default stream, which is also Numba's default
    return numba_cuda.external_stream(ptr) if ptr else numba_cuda.default_stream()


def block_size(work: int, threads_per_block: int | None) -> int:
    """Threads per block: the power of two covering ``work`` items, capped at MAX_THREADS."""
    if threads_per_block is not None:
        t = threads_per_block
        if not isinstance(t, int) or t < 1 or t > MAX_THREADS or t & (t - 1):
            raise ValueError(
                f"threads_per_block must be a power of two from 1 to {MAX_THREADS}, got {t!r}"
            )
        return t
    return min(MAX_THREADS, 1 << max(work - 1, 0).bit_length())


def check_float(a: Any, name: str) -> None:
    dtype = getattr(a, "dtype", None)
    if dtype is None or str(dtype) not in _FLOAT_DTYPES:
        raise TypeError(f"{name} must be a float32 or float64 array, got dtype {dtype}")


@functools.cache
def block_reductions() -> tuple[Any, Any]:
    """Device functions ``block_max`` and ``block_sum`` over a shared buffer.

    Each thread t has put its partial value in buf[t] for t < width (a power of two);
    the call returns the max (or sum) of buf[:width] to every thread. Every thread of the
    block must make the call, since it synchronises the block.
    """
    cuda_module()

    @cuda.jit(device=True)
    def block_max(buf, tid, width):
        cuda.syncthreads()  # every partial value is written
        half = width // 2
        while half > 0:
            if tid < half and buf[tid + half] > buf[tid]:
                buf[tid] = buf[tid + half]
            cuda.syncthreads()
            half //= 2
        result = buf[0]
        cuda.syncthreads()  # everyone has read buf[0] before the caller reuses buf
        return result

    @cuda.jit(device=True)
    def block_sum(buf, tid, width):
        cuda.syncthreads()
        half = width // 2
        while half > 0:
            if tid < half:
                buf[tid] += buf[tid + half]
            cuda.syncthreads()
            half //= 2
        result = buf[0]
        cuda.syncthreads()
        return result

    return block_max, block_sum


# ---------------------------------------------------------------- kernels


@functools.cache
def _softmax_kernels(dtype: Any) -> tuple[Any, Any]:
    """The forward and backward kernels for one float dtype (it types the shared buffers)."""
    import numba  # noqa: PLC0415

    cuda_module()
    block_max, block_sum = block_reductions()
    real = numba.from_dtype(dtype)
    zero = real(0.0)
    minus_inf = real(-math.inf)

    @cuda.jit
    def forward(x, y):
        """x, y: (outer, n, inner); block r handles the row x[r // inner, :, r % inner]."""
        red = cuda.shared.array(MAX_THREADS, real)
        tid = cuda.threadIdx.x
        width = cuda.blockDim.x
        n = x.shape[1]
        o = cuda.blockIdx.x // x.shape[2]
        c = cuda.blockIdx.x % x.shape[2]

        m = minus_inf
        for j in range(tid, n, width):
            m = max(m, x[o, j, c])
        red[tid] = m
        m = block_max(red, tid, width)
        if not math.isfinite(m):
            m = zero  # an all -inf row: exp(-inf - 0) = 0 everywhere, and no inf - inf

        s = zero
        for j in range(tid, n, width):
            s += math.exp(x[o, j, c] - m)
        red[tid] = s
        s = block_sum(red, tid, width)

        for j in range(tid, n, width):
            y[o, j, c] = math.exp(x[o, j, c] - m) / s if s > zero else zero

    @cuda.jit
    def backward(y, gy, gx):
        """gx = y * (gy - <gy, y>) along the rows of the (outer, n, inner) views."""
        red = cuda.shared.array(MAX_THREADS, real)
        tid = cuda.threadIdx.x
        width = cuda.blockDim.x
        n = y.shape[1]
        o = cuda.blockIdx.x // y.shape[2]
        c = cuda.blockIdx.x % y.shape[2]

        dot = zero
        for j in range(tid, n, width):
            dot += gy[o, j, c] * y[o, j, c]
        red[tid] = dot
        dot = block_sum(red, tid, width)

        for j in range(tid, n, width):
            gx[o, j, c] = y[o, j, c] * (gy[o, j, c] - dot)

    return forward, backward


# ---------------------------------------------------------------- wrappers


def _row_view(a: Any, axis: int) -> Any:
    """(outer, n, inner) view of a C-contiguous array, n being the softmax axis."""
    outer = math.prod(a.shape[:axis])
    inner = math.prod(a.shape[axis + 1 :])
    return a.reshape(outer, a.shape[axis], inner)


def _normalise_axis(axis: int, ndim: int, name: str) -> int:
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of range for {name} with {ndim} dimensions")
    return axis % ndim


def cuda_softmax_forward(x: Any, axis: int = -1, *, threads_per_block: int | None = None) -> Any:
    """Softmax of ``x`` along ``axis`` on the GPU; same shape and dtype as ``x``.

    ``x`` is a CuPy array (or, under the simulator, a NumPy array), float32 or float64.
    ``threads_per_block`` overrides the block size (a power of two up to MAX_THREADS).
    """
    check_float(x, "x")
    axis = _normalise_axis(axis, x.ndim, "x")
    xp = array_module(x)
    x = xp.ascontiguousarray(x)
    y = xp.empty_like(x)
    if x.size == 0:
        return y
    n = x.shape[axis]
    threads = block_size(n, threads_per_block)
    forward, _ = _softmax_kernels(x.dtype)
    forward[x.size // n, threads, launch_stream(xp)](_row_view(x, axis), _row_view(y, axis))
    return y


def cuda_softmax_backward(
    y: Any, gy: Any, axis: int = -1, *, threads_per_block: int | None = None
) -> Any:
    """dL/dx = y * (dL/dy - sum(dL/dy * y, axis)) on the GPU, from the forward's output ``y``."""
    check_float(y, "y")
    check_float(gy, "gy")
    if y.shape != gy.shape or y.dtype != gy.dtype:
        raise ValueError(
            f"y and gy must have the same shape and dtype, got {y.shape} {y.dtype} "
            f"and {gy.shape} {gy.dtype}"
        )
    axis = _normalise_axis(axis, y.ndim, "y")
    xp = array_module(y)
    y = xp.ascontiguousarray(y)
    gy = xp.ascontiguousarray(gy)
    gx = xp.empty_like(y)
    if y.size == 0:
        return gx
    n = y.shape[axis]
    threads = block_size(n, threads_per_block)
    _, backward = _softmax_kernels(y.dtype)
    backward[y.size // n, threads, launch_stream(xp)](
        _row_view(y, axis), _row_view(gy, axis), _row_view(gx, axis)
    )
    return gx
