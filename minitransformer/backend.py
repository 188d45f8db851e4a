"""The array backend: NumPy on the CPU, CuPy on an NVIDIA GPU.

Every op asks this module for the array module of its inputs (``xp``) and calls
``xp.exp``, ``xp.matmul`` ... on it, so one code path serves both devices (the
idiom of Chainer's ``get_array_module``). This is the one place outside the CPU
kernels that imports NumPy to compute on tensor data, and the only place that
imports CuPy, lazily, the first time a GPU is asked for.

It also owns the default floating dtype and the random generators that
``mt.manual_seed`` seeds (parameter initialisation, dropout, sampling).

Backend differences live behind named hooks here (``scatter_add``, ``erf``),
never as ``if xp is numpy`` scattered through the ops.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy

__all__ = [
    "array_module",
    "device_of",
    "to_device",
    "get_cupy",
    "gpu_available",
    "get_default_dtype",
    "set_default_dtype",
    "resolve_dtype",
    "manual_seed",
    "generator",
    "scatter_add",
    "erf",
    "to_numpy",
]

DEVICES = ("cpu", "cuda")

_cupy: ModuleType | None = None
_cupy_error: str | None = None


def get_cupy() -> ModuleType:
    """Import CuPy on first use; raise a clear error when there is no GPU to use."""
    global _cupy, _cupy_error
    if _cupy is not None:
        return _cupy
    if _cupy_error is None:
        try:
            import cupy  # noqa: PLC0415 - imported lazily on purpose
        except ImportError:
            _cupy_error = (
                "device 'cuda' needs CuPy, which is not installed; "
                "install it with: pip install 'minitransformer[gpu]'"
            )
        else:
            try:
                count = cupy.cuda.runtime.getDeviceCount()
            except Exception as exc:  # CUDA driver missing or broken
                _cupy_error = f"CuPy is installed but no CUDA GPU is usable ({exc})"
            else:
                if count < 1:
                    _cupy_error = "CuPy is installed but no CUDA GPU is visible"
                else:
                    _cupy = cupy
                    return cupy
    raise RuntimeError(_cupy_error)


def gpu_available() -> bool:
    """True when CuPy imports and sees at least one GPU."""
    try:
        get_cupy()
    except RuntimeError:
        return False
    return True


def array_module(a: Any) -> ModuleType:
    """NumPy for NumPy arrays (and Python scalars), CuPy for CuPy arrays."""
    if isinstance(a, (numpy.ndarray, numpy.generic)):
        return numpy
    if type(a).__module__.startswith("cupy"):
        return get_cupy()
    return numpy


def device_of(a: Any) -> str:
    return "cpu" if array_module(a) is numpy else "cuda"


def check_device(device: str | None) -> str:
    if device is None:
        return "cpu"
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; expected 'cpu' or 'cuda'")
    return device


def module_for(device: str | None) -> ModuleType:
    """NumPy for 'cpu' (or None), CuPy for 'cuda'."""
    return numpy if check_device(device) == "cpu" else get_cupy()


def broadcast_shapes(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    """The shape NumPy broadcasting gives, or ValueError naming the shapes."""
    try:
        return tuple(numpy.broadcast_shapes(*shapes))
    except ValueError:
        raise ValueError(
            f"shapes {' and '.join(str(tuple(s)) for s in shapes)} do not broadcast"
        ) from None


def to_device(a: Any, device: str) -> Any:
    """Move an array to ``device`` ('cpu' or 'cuda'); a no-op when it is already there."""
    device = check_device(device)
    if device == "cpu":
        return to_numpy(a)
    cp = get_cupy()
    return cp.asarray(a)


def to_numpy(a: Any) -> numpy.ndarray:
    """A NumPy array from a NumPy or CuPy array (copies from the GPU)."""
    if isinstance(a, numpy.ndarray):
        return a
    if hasattr(a, "get") and type(a).__module__.startswith("cupy"):
        return a.get()
    return numpy.asarray(a)


# ---------------------------------------------------------------- dtypes

_default_dtype = numpy.dtype(numpy.float32)
_FLOAT_DTYPES = (numpy.dtype(numpy.float16), numpy.dtype(numpy.float32), numpy.dtype(numpy.float64))


def get_default_dtype() -> numpy.dtype:
    return _default_dtype


def set_default_dtype(dtype: Any) -> None:
    """Set the dtype that floating data gets when none is given (float32 or float64)."""
    global _default_dtype
    d = resolve_dtype(dtype)
    if d not in _FLOAT_DTYPES:
        raise ValueError(f"default dtype must be a floating dtype, got {d}")
    _default_dtype = d


def resolve_dtype(dtype: Any) -> numpy.dtype:
    """'float32', numpy.float64, a NumPy dtype ... -> a NumPy dtype object."""
    try:
        return numpy.dtype(dtype)
    except TypeError as exc:
        raise ValueError(f"not a dtype: {dtype!r}") from exc


def is_floating(dtype: Any) -> bool:
    return numpy.dtype(dtype).kind == "f"


def as_array(data: Any, dtype: Any = None, device: str | None = None) -> Any:
    """Turn lists, scalars, NumPy or CuPy arrays into an array on ``device``.

    Floating data without an explicit dtype gets the default dtype; integers and
    booleans keep theirs (int64 / bool).
    """
    xp = array_module(data)
    if device is not None:
        device = check_device(device)
        xp = numpy if device == "cpu" else get_cupy()
        if xp is numpy:
            data = to_numpy(data)
    arr = xp.asarray(data)
    if dtype is not None:
        arr = arr.astype(resolve_dtype(dtype), copy=False)
    elif arr.dtype.kind == "f" and arr.dtype != _default_dtype and not hasattr(data, "dtype"):
        # Python floats and lists of them take the default dtype; arrays keep theirs.
        arr = arr.astype(_default_dtype)
    elif arr.dtype.kind in "iu" and not hasattr(data, "dtype"):
        arr = arr.astype(numpy.int64)
    return arr


# ---------------------------------------------------------------- randomness


class _Generators:
    """One seeded generator per backend; seeding resets both."""

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self.cpu = numpy.random.default_rng(seed)
        self._gpu = None

    def gpu(self) -> Any:
        if self._gpu is None:
            cp = get_cupy()
            self._gpu = cp.random.default_rng(self.seed)
        return self._gpu


_generators = _Generators()


def manual_seed(seed: int) -> None:
    """Seed parameter initialisation, dropout and sampling, on every device."""
    global _generators
    if not isinstance(seed, (int, numpy.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    _generators = _Generators(int(seed))


def generator(xp: ModuleType = numpy) -> Any:
    """The seeded random generator of backend ``xp`` (a ``numpy.random.Generator`` on CPU)."""
    return _generators.cpu if xp is numpy else _generators.gpu()


def new_generator(seed: int) -> Any:
    """A fresh CPU generator with its own seed (independent of ``manual_seed``)."""
    return numpy.random.default_rng(seed)


def get_rng_state() -> dict:
    """The CPU generator's state, so a checkpoint can resume bit-identically."""
    return {"seed": _generators.seed, "cpu": _generators.cpu.bit_generator.state}


def set_rng_state(state: dict) -> None:
    global _generators
    g = _Generators(state.get("seed"))
    g.cpu.bit_generator.state = state["cpu"]
    _generators = g


# ---------------------------------------------------------------- named hooks


def scatter_add(target: Any, indices: Any, values: Any) -> None:
    """``target[indices] += values``, summing repeated indices (unbuffered add).

    The embedding backward and the gather backward use it: a token id that appears
    twice must receive both gradients.
    """
    xp = array_module(target)
    if xp is numpy:
        numpy.add.at(target, indices, values)
    else:
        import cupyx  # noqa: PLC0415

        cupyx.scatter_add(target, indices, values)


def erf(x: Any) -> Any:
    """The error function, elementwise, on either backend (exact GELU needs it)."""
    xp = array_module(x)
    if xp is numpy:
        from .kernels.elementwise import erf_cpu  # noqa: PLC0415

        return erf_cpu(x)
    from cupyx.scipy.special import erf as cupy_erf  # noqa: PLC0415

    return cupy_erf(x)
