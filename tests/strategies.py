"""Hypothesis strategies for tensors: shapes, broadcasting pairs, values, axes, masks, ids.

Every test file that draws tensors imports from here, so "a shape" or "an array away
from the kink of relu" means the same thing everywhere.

Values are float64 and bounded (|x| <= 3 by default): gradient checks use central
differences, which need float64 and values where the function is smooth on a scale
much larger than the step (eps = 1e-6). Three kinds of values:

    float_arrays        any bounded values (zeros and repeats included: hypothesis likes them)
    arrays_away_from    values at least ``margin`` away from given points (relu at 0, ...)
    distinct_arrays     values at least ``gap`` apart (max without ties)

Shapes keep every side small (<= 4 by default): a gradient check perturbs each element
twice, so its cost grows with the number of elements. ``broadcastable_shapes`` draws
operands that broadcast together, ``shapes_broadcasting_to`` a mask or bias shape that
broadcasts to a given one, ``matmul_shapes`` operands of a batched matmul.

``check_gradients(fn, *arrays)`` runs ``mt.gradcheck`` with the output multiplied by
fixed random weights, so a backward that sends gradients to the wrong elements fails.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minitransformer as mt

__all__ = [
    "shapes",
    "broadcastable_shapes",
    "shapes_broadcasting_to",
    "matmul_shapes",
    "float_arrays",
    "arrays_away_from",
    "positive_arrays",
    "distinct_arrays",
    "arrays_with_ties",
    "axes",
    "axis",
    "bool_masks",
    "index_arrays",
    "class_targets",
    "probability",
    "check_gradients",
    "record_kernel_calls",
    "run_python",
]

DEFAULT_BOUND = 3.0


def shapes(
    min_dims: int = 0, max_dims: int = 3, min_side: int = 1, max_side: int = 4
) -> st.SearchStrategy[tuple[int, ...]]:
    """Shapes with ``min_dims..max_dims`` axes of ``min_side..max_side`` each.

    ``min_side=0`` lets empty axes in; size-1 axes come up often on their own.
    """
    return hnp.array_shapes(
        min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side
    )


@st.composite
def broadcastable_shapes(
    draw: st.DrawFn,
    num_shapes: int = 2,
    max_dims: int = 3,
    min_side: int = 1,
    max_side: int = 4,
) -> tuple[tuple[tuple[int, ...], ...], tuple[int, ...]]:
    """``num_shapes`` shapes that broadcast together, and the shape they broadcast to.

    Some axes are size 1 in one operand and not in another, and operands may have
    fewer axes than the result (leading axes added by broadcasting).
    """
    drawn = draw(
        hnp.mutually_broadcastable_shapes(
            num_shapes=num_shapes,
            min_dims=0,
            max_dims=max_dims,
            min_side=min_side,
            max_side=max_side,
        )
    )
    return tuple(tuple(s) for s in drawn.input_shapes), tuple(drawn.result_shape)


@st.composite
def shapes_broadcasting_to(draw: st.DrawFn, target: tuple[int, ...]) -> tuple[int, ...]:
    """A shape that broadcasts to exactly ``target``: some leading axes dropped, some
    of the rest replaced by 1 (a mask (k_len,) for scores (batch, heads, q_len, k_len))."""
    dropped = draw(st.integers(0, len(target)))
    return tuple(n if draw(st.booleans()) else 1 for n in target[dropped:])


@st.composite
def matmul_shapes(
    draw: st.DrawFn, max_batch_dims: int = 2, max_side: int = 3
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Shapes (..., n, k) and (..., k, m) whose batch axes broadcast (possibly none)."""
    n, k, m = (draw(st.integers(1, max_side)) for _ in range(3))
    batch = draw(
        hnp.mutually_broadcastable_shapes(
            num_shapes=2, min_dims=0, max_dims=max_batch_dims, min_side=1, max_side=3
        )
    )
    a_batch, b_batch = (tuple(s) for s in batch.input_shapes)
    return (*a_batch, n, k), (*b_batch, k, m)


def _finite(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, allow_subnormal=False)


def float_arrays(
    shape: tuple[int, ...] | st.SearchStrategy[tuple[int, ...]],
    lo: float = -DEFAULT_BOUND,
    hi: float = DEFAULT_BOUND,
) -> st.SearchStrategy[np.ndarray]:
    """float64 arrays of ``shape`` with values in [lo, hi]."""
    return hnp.arrays(np.float64, shape, elements=_finite(lo, hi))


def arrays_away_from(
    shape: tuple[int, ...] | st.SearchStrategy[tuple[int, ...]],
    points: Sequence[float] = (0.0,),
    margin: float = 1e-2,
    lo: float = -DEFAULT_BOUND,
    hi: float = DEFAULT_BOUND,
) -> st.SearchStrategy[np.ndarray]:
    """float64 arrays whose values stay ``margin`` away from each of ``points``.

    A value that falls too close is pushed out to ``point +- margin`` (on its own side),
    rather than filtered: hypothesis draws 0.0 very often, and a filter would reject it
    every time.
    """

    def push(v: float) -> float:
        for p in points:
            if abs(v - p) < margin:
                v = p + math.copysign(margin, v - p if v != p else 1.0)
        return v

    return hnp.arrays(np.float64, shape, elements=_finite(lo, hi).map(push))


def positive_arrays(
    shape: tuple[int, ...] | st.SearchStrategy[tuple[int, ...]],
    lo: float = 0.5,
    hi: float = DEFAULT_BOUND,
) -> st.SearchStrategy[np.ndarray]:
    """float64 arrays in [lo, hi] with lo > 0: inputs for log, sqrt, a base of a^b, a divisor."""
    if lo <= 0:
        raise ValueError(f"positive_arrays needs lo > 0, got {lo}")
    return float_arrays(shape, lo, hi)


@st.composite
def distinct_arrays(
    draw: st.DrawFn,
    shape: tuple[int, ...] | st.SearchStrategy[tuple[int, ...]],
    gap: float = 0.1,
) -> np.ndarray:
    """float64 arrays whose values are pairwise at least ``gap`` apart (no ties for max).

    Built as distinct integers times ``gap``, so the values lie in about
    [-50 gap, 50 gap] and the array may have at most 101 elements.
    """
    if not isinstance(shape, tuple):
        shape = draw(shape)
    size = math.prod(shape)
    if size > 101:
        raise ValueError(f"distinct_arrays supports at most 101 elements, shape {shape} has {size}")
    ints = draw(hnp.arrays(np.int64, shape, elements=st.integers(-50, 50), unique=True))
    return ints.astype(np.float64) * gap


def arrays_with_ties(
    shape: tuple[int, ...] | st.SearchStrategy[tuple[int, ...]], levels: int = 3
) -> st.SearchStrategy[np.ndarray]:
    """float64 arrays drawn from only ``levels`` values, so maxima are often tied."""
    return hnp.arrays(np.float64, shape, elements=st.integers(0, levels - 1).map(float))


def axis(ndim: int) -> st.SearchStrategy[int]:
    """One axis of an array with ``ndim >= 1`` axes, negative spellings included."""
    if ndim < 1:
        raise ValueError("axis() needs at least one axis")
    return st.integers(-ndim, ndim - 1)


def axes(ndim: int) -> st.SearchStrategy[None | int | tuple[int, ...]]:
    """What a reduction's ``axis=`` may be: None, one axis, or a tuple of distinct axes."""
    options: list[st.SearchStrategy] = [st.none()]
    if ndim >= 1:
        options.append(axis(ndim))
        options.append(
            st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True).flatmap(
                # spell each chosen axis either way, e.g. 2 or -1 for the last of 3
                lambda chosen: st.tuples(*(st.sampled_from((a, a - ndim)) for a in chosen))
            )
        )
    return st.one_of(options)


def bool_masks(
    shape: tuple[int, ...] | st.SearchStrategy[tuple[int, ...]],
) -> st.SearchStrategy[np.ndarray]:
    """Boolean arrays of ``shape`` (True = "selected" / "may attend")."""
    return hnp.arrays(np.bool_, shape, elements=st.booleans())


def index_arrays(
    n: int, shape: tuple[int, ...] | st.SearchStrategy[tuple[int, ...]]
) -> st.SearchStrategy[np.ndarray]:
    """int64 arrays of ``shape`` with values in [0, n): repeats are allowed and common."""
    return hnp.arrays(np.int64, shape, elements=st.integers(0, n - 1))


def class_targets(
    num_classes: int,
    shape: tuple[int, ...] | st.SearchStrategy[tuple[int, ...]],
    ignore_index: int | None = None,
) -> st.SearchStrategy[np.ndarray]:
    """int64 class indices in [0, num_classes), sometimes ``ignore_index`` when one is given."""
    values = st.integers(0, num_classes - 1)
    if ignore_index is not None:
        values = st.one_of(values, st.just(ignore_index))
    return hnp.arrays(np.int64, shape, elements=values)


def probability(lo: float = 0.0, hi: float = 1.0) -> st.SearchStrategy[float]:
    """A probability in [lo, hi] (dropout rates, label smoothing)."""
    return _finite(lo, hi)


# ---------------------------------------------------------------- a helper that goes with them


def check_gradients(fn: Callable[..., mt.Tensor], *arrays: np.ndarray, seed: int = 0) -> bool:
    """``mt.gradcheck`` of ``fn`` on float64 leaves made from ``arrays``, output weighted.

    gradcheck differentiates ``fn(...).sum()``; a plain sum gives every output element
    the same weight, so an op whose backward routes gradients to the wrong places
    (a wrong inverse permutation, a flipped slice) could still pass. Multiplying the
    output by fixed random weights first makes each output element count differently.
    """
    leaves = [mt.tensor(np.asarray(a, dtype=np.float64), requires_grad=True) for a in arrays]
    with mt.no_grad():
        out_shape = fn(*leaves).shape
    w = mt.tensor(np.random.default_rng(seed).normal(size=out_shape), dtype="float64")
    return mt.gradcheck(lambda *ts: fn(*ts) * w, *leaves)


def record_kernel_calls(monkeypatch: Any, module: Any, names: Sequence[str]) -> list[str]:
    """Wrap the kernels ``names`` of ``module`` so that each call appends its name to the
    returned list (in call order) and then runs the kernel: which launch did a public
    function choose, the serial or the parallel one?"""
    calls: list[str] = []
    for name in names:
        kernel = getattr(module, name)
        monkeypatch.setattr(
            module, name, lambda *a, kernel=kernel, name=name: (calls.append(name), kernel(*a))[1]
        )
    return calls


def run_python(code: str, env: dict[str, str | None]) -> str:
    """Run ``code`` in a fresh interpreter with ``env`` changed from this one's (a value of
    None removes the variable); assert it succeeded, and return what it printed."""
    full = dict(os.environ)
    for name, value in env.items():
        if value is None:
            full.pop(name, None)
        else:
            full[name] = value
    done = subprocess.run(
        [sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout
