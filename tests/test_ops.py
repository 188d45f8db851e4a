"""The primitive ops on ``Tensor``: each forward against its formula, each backward
against central differences (float64, ``mt.gradcheck``) and, where it is short, against
its derivative written out.

Ops: + - * / ** (scalar and tensor exponent), unary -, @ (batched, broadcast batch axes,
1-D operands), sum / mean / max (axis, tuple of axes, keepdims; tied maxima share the
gradient), exp log sqrt tanh relu, reshape transpose swapaxes .T, indexing (ints,
slices, integer arrays whose repeats accumulate), comparisons.
"""

from __future__ import annotations

import math
import operator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import (
    arrays_away_from,
    arrays_with_ties,
    axes,
    axis,
    broadcastable_shapes,
    check_gradients,
    distinct_arrays,
    float_arrays,
    index_arrays,
    matmul_shapes,
    positive_arrays,
    shapes,
)

import minitransformer as mt


def leaf(a) -> mt.Tensor:
    return mt.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


def const(a) -> mt.Tensor:
    return mt.tensor(np.asarray(a, dtype=np.float64))


# ---------------------------------------------------------------- + - * / with broadcasting

# name -> (operator, how to draw its right operand): a divisor stays away from 0
BINARY = {
    "add": (operator.add, float_arrays),
    "sub": (operator.sub, float_arrays),
    "mul": (operator.mul, float_arrays),
    "div": (operator.truediv, lambda s: arrays_away_from(s, margin=0.5)),
}


@pytest.mark.parametrize("name", sorted(BINARY))
@given(pair=broadcastable_shapes(min_side=0, max_side=3), data=st.data())
def test_binary_forward_and_gradient(name, pair, data):
    op, right = BINARY[name]
    (sa, sb), out_shape = pair
    a = data.draw(float_arrays(sa))
    b = data.draw(right(sb))
    out = op(leaf(a), leaf(b))
    assert out.shape == out_shape and out.dtype == np.float64
    np.testing.assert_allclose(out.data, op(a, b), rtol=1e-15)
    assert check_gradients(op, a, b)


@given(float_arrays(shapes()), arrays_away_from(shapes(max_dims=0), margin=0.5))
def test_binary_derivatives_written_out(a, b):
    # b is one number, broadcast over a: dL/db is the sum over a's elements
    ta, tb = leaf(a), leaf(b)
    (ta * tb).sum().backward()
    np.testing.assert_allclose(ta.grad, np.broadcast_to(b, a.shape))
    np.testing.assert_allclose(tb.grad, a.sum(), rtol=1e-12, atol=1e-12)
    ta, tb = leaf(a), leaf(b)
    (ta / tb).sum().backward()
    np.testing.assert_allclose(ta.grad, np.broadcast_to(1 / b, a.shape))
    np.testing.assert_allclose(tb.grad, (-a / b**2).sum(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: x + 2.0,
        lambda x: 2.0 + x,
        lambda x: x - 2.0,
        lambda x: 2.0 - x,
        lambda x: x * 2.0,
        lambda x: 2 * x,
        lambda x: x / 2.0,
        lambda x: 2.0 / x,
        lambda x: -x,
    ],
    ids=["x+2", "2+x", "x-2", "2-x", "x*2", "2*x", "x/2", "2/x", "-x"],
)
@given(x=arrays_away_from(shapes(), margin=0.5))
def test_python_scalars_on_either_side(fn, x):
    out = fn(leaf(x))
    np.testing.assert_allclose(out.data, fn(x), rtol=1e-15)
    assert out.dtype == np.float64
    assert check_gradients(fn, x)


def test_python_scalars_keep_float32():
    x = mt.tensor([1.0, 2.0], requires_grad=True)
    assert x.dtype == np.float32
    y = (2.0 - x) * 3 / 4.0 + 1
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad, [-0.75, -0.75])


def test_unary_minus_derivative():
    x = leaf([1.0, -2.0])
    (-x).sum().backward()
    np.testing.assert_array_equal(x.grad, [-1.0, -1.0])


# ---------------------------------------------------------------- powers


@given(
    x=positive_arrays(shapes(), lo=0.2),
    p=st.sampled_from([-2.0, -1.0, -0.5, 0.5, 1.0, 1.5, 2.0, 3.0]),
)
def test_pow_scalar_exponent(x, p):
    t = leaf(x)
    out = t**p
    np.testing.assert_allclose(out.data, x**p, rtol=1e-14)
    out.sum().backward()
    np.testing.assert_allclose(t.grad, p * x ** (p - 1), rtol=1e-12)  # d x^p / dx = p x^(p-1)
    assert check_gradients(lambda u: u**p, x)


@given(x=arrays_away_from(shapes(), margin=0.2), p=st.sampled_from([2, 3, -1]))
def test_pow_integer_exponent_of_negative_base(x, p):
    np.testing.assert_allclose((leaf(x) ** p).data, x**p, rtol=1e-14)
    assert check_gradients(lambda u: u**p, x)


@given(shape=shapes(), data=st.data())
def test_pow_tensor_exponent(shape, data):
    a = data.draw(positive_arrays(shape, lo=0.2, hi=2.0))
    b = data.draw(float_arrays(shape, -2.0, 2.0))
    ta, tb = leaf(a), leaf(b)
    out = ta**tb
    np.testing.assert_allclose(out.data, a**b, rtol=1e-14)
    out.sum().backward()
    # d a^b / da = b a^(b-1),   d a^b / db = a^b log a
    np.testing.assert_allclose(ta.grad, b * a ** (b - 1), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(tb.grad, a**b * np.log(a), rtol=1e-12, atol=1e-15)


@given(pair=broadcastable_shapes(max_side=3), data=st.data())
def test_pow_tensor_exponent_broadcasts(pair, data):
    (sa, sb), _ = pair
    a = data.draw(positive_arrays(sa, lo=0.2, hi=2.0))
    b = data.draw(float_arrays(sb, -2.0, 2.0))
    np.testing.assert_allclose((leaf(a) ** leaf(b)).data, a**b, rtol=1e-14)
    assert check_gradients(operator.pow, a, b)


@given(x=float_arrays(shapes(), -2.0, 2.0))
def test_scalar_base_tensor_exponent(x):
    # 2^x: d/dx = 2^x log 2
    t = leaf(x)
    out = 2.0**t
    np.testing.assert_allclose(out.data, 2.0**x, rtol=1e-14)
    out.sum().backward()
    np.testing.assert_allclose(t.grad, 2.0**x * math.log(2.0), rtol=1e-12)


# ---------------------------------------------------------------- matmul


def plain_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """out[..., i, j] = sum_k a[..., i, k] b[..., k, j], batch axes broadcast."""
    return (a[..., :, :, None] * b[..., None, :, :]).sum(axis=-2)


@given(shapes=matmul_shapes(), data=st.data())
def test_matmul_batched_with_broadcast_batch_axes(shapes, data):
    sa, sb = shapes
    a, b = data.draw(float_arrays(sa)), data.draw(float_arrays(sb))
    out = leaf(a) @ leaf(b)
    expected = plain_matmul(a, b)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out.data, expected, rtol=1e-12, atol=1e-12)
    assert check_gradients(operator.matmul, a, b)


@given(
    n=st.integers(1, 4), m=st.integers(1, 3), batch=shapes(max_dims=2, max_side=2), data=st.data()
)
def test_matmul_one_dimensional_operands(n, m, batch, data):
    v = data.draw(float_arrays((n,)))
    w = data.draw(float_arrays((n,)))
    mat = data.draw(float_arrays((*batch, n, m)))
    mat_t = data.draw(float_arrays((*batch, m, n)))
    # vector @ vector is the dot product sum_k v_k w_k, a 0-d tensor
    dot = leaf(v) @ leaf(w)
    assert dot.shape == ()
    np.testing.assert_allclose(dot.data, (v * w).sum(), rtol=1e-12, atol=1e-12)
    # vector @ matrix: the vector is a row, and that axis is dropped from the result
    np.testing.assert_allclose(
        (leaf(v) @ leaf(mat)).data, plain_matmul(v[None, :], mat)[..., 0, :], rtol=1e-12, atol=1e-12
    )
    # matrix @ vector: the vector is a column, and that axis is dropped
    np.testing.assert_allclose(
        (leaf(mat_t) @ leaf(v)).data,
        plain_matmul(mat_t, v[:, None])[..., 0],
        rtol=1e-12,
        atol=1e-12,
    )
    assert check_gradients(operator.matmul, v, w)
    assert check_gradients(operator.matmul, v, mat)
    assert check_gradients(operator.matmul, mat_t, v)


def test_matmul_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
        const(np.ones((2, 3))) @ const(np.ones((4, 5)))


def test_matmul_of_a_zero_dim_tensor():
    with pytest.raises(ValueError, match="at least 1 dimension"):
        const(2.0) @ const(np.ones(3))


# ---------------------------------------------------------------- reductions


@given(x=float_arrays(shapes(max_dims=3, min_side=0)), data=st.data())
def test_sum(x, data):
    ax = data.draw(axes(x.ndim))
    keepdims = data.draw(st.booleans())
    t = leaf(x)
    out = t.sum(axis=ax, keepdims=keepdims)
    np.testing.assert_allclose(out.data, np.sum(x, axis=ax, keepdims=keepdims), atol=1e-12)
    out.sum().backward()
    np.testing.assert_array_equal(t.grad, np.ones_like(x))  # d sum / dx_i = 1
    assert check_gradients(lambda u: u.sum(axis=ax, keepdims=keepdims), x)


@given(x=float_arrays(shapes(max_dims=3)), data=st.data())
def test_mean(x, data):
    ax = data.draw(axes(x.ndim))
    keepdims = data.draw(st.booleans())
    t = leaf(x)
    out = t.mean(axis=ax, keepdims=keepdims)
    np.testing.assert_allclose(out.data, np.mean(x, axis=ax, keepdims=keepdims), atol=1e-12)
    out.sum().backward()
    reduced = range(x.ndim) if ax is None else [ax] if isinstance(ax, int) else ax
    n = math.prod(x.shape[a] for a in reduced)
    np.testing.assert_allclose(t.grad, np.full(x.shape, 1.0 / n))  # d mean / dx_i = 1/n
    assert check_gradients(lambda u: u.mean(axis=ax, keepdims=keepdims), x)


@given(x=distinct_arrays(shapes(min_dims=1, max_dims=3)), data=st.data())
def test_max_without_ties(x, data):
    ax = data.draw(axes(x.ndim))
    keepdims = data.draw(st.booleans())
    out = leaf(x).max(axis=ax, keepdims=keepdims)
    np.testing.assert_array_equal(out.data, np.max(x, axis=ax, keepdims=keepdims))
    assert check_gradients(lambda u: u.max(axis=ax, keepdims=keepdims), x)


@given(x=arrays_with_ties(shapes(min_dims=1, max_dims=3)), data=st.data())
def test_max_ties_share_the_gradient(x, data):
    ax = data.draw(axes(x.ndim))
    t = leaf(x)
    t.max(axis=ax, keepdims=False).sum().backward()
    # each maximum's gradient of 1 is split evenly among the elements equal to it
    winners = x == np.max(x, axis=ax, keepdims=True)
    expected = winners / winners.sum(axis=ax, keepdims=True)
    np.testing.assert_allclose(t.grad, expected, rtol=1e-15)


def test_max_over_an_empty_axis_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        const(np.zeros((0, 3))).max()
    with pytest.raises(ValueError, match="empty"):
        const(np.zeros((0, 3))).max(axis=0)


def test_max_over_a_full_axis_of_an_empty_tensor():
    # (0, 3) reduced over axis 1 has 0 rows of 3 elements each: the result is empty (0,),
    # as in NumPy and torch.amax; only a reduction over a size-0 axis is undefined
    t = leaf(np.zeros((0, 3)))
    out = t.max(axis=1)
    assert out.shape == (0,)
    out.sum().backward()
    assert t.grad.shape == (0, 3)


def test_reduction_axis_out_of_range():
    with pytest.raises(ValueError, match="axis 2"):
        const(np.ones((2, 3))).sum(axis=2)


def test_full_reduction_gives_a_zero_dim_array():
    # API: x.data is the raw array. NumPy's a.sum() returns a scalar object instead;
    # a tensor made from it, detached and made a leaf, then fails gradcheck because
    # gradcheck perturbs x.data in place (d(w^2)/dw = 2w is correct here).
    total = leaf([1.0, 2.0]).sum()
    assert isinstance(total.data, np.ndarray) and total.data.shape == ()
    w = total.detach().requires_grad_(True)
    assert mt.gradcheck(lambda u: u * u, w)


# ---------------------------------------------------------------- elementwise functions

# name -> (method, plain formula, its derivative, where to draw inputs)
UNARY = {
    "exp": (mt.Tensor.exp, np.exp, np.exp, float_arrays),
    "log": (mt.Tensor.log, np.log, lambda x: 1 / x, lambda s: positive_arrays(s, lo=0.1)),
    "sqrt": (
        mt.Tensor.sqrt,
        np.sqrt,
        lambda x: 1 / (2 * np.sqrt(x)),
        lambda s: positive_arrays(s, lo=0.1),
    ),
    "tanh": (mt.Tensor.tanh, np.tanh, lambda x: 1 - np.tanh(x) ** 2, float_arrays),
    # relu has a kink at 0: draw away from it for the derivative and gradcheck
    "relu": (
        mt.Tensor.relu,
        lambda x: np.where(x > 0, x, 0.0),
        lambda x: (x > 0).astype(np.float64),
        lambda s: arrays_away_from(s, margin=1e-3),
    ),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@given(shape=shapes(min_side=0), data=st.data())
def test_unary_forward_derivative_and_gradcheck(name, shape, data):
    method, formula, derivative, draw = UNARY[name]
    x = data.draw(draw(shape))
    t = leaf(x)
    out = method(t)
    np.testing.assert_allclose(out.data, formula(x), rtol=1e-14)
    out.sum().backward()
    np.testing.assert_allclose(t.grad, derivative(x), rtol=1e-12)
    assert check_gradients(method, x)


def test_zeroth_power_has_zero_gradient_everywhere():
    # x^0 = 1 is constant, so its derivative is 0 at every x, also at x = 0 (as in torch)
    t = leaf([0.0, 2.0])
    with np.errstate(divide="ignore", invalid="ignore"):
        (t**0).sum().backward()
    np.testing.assert_array_equal(t.grad, [0.0, 0.0])


def test_relu_gradient_at_zero_is_zero():
    # the subgradient PyTorch picks at the kink
    t = leaf([0.0, -0.0, 1.0])
    t.relu().sum().backward()
    np.testing.assert_array_equal(t.grad, [0.0, 0.0, 1.0])


# ---------------------------------------------------------------- shapes


@given(x=float_arrays(shapes(min_dims=1, max_dims=3)), data=st.data())
def test_reshape(x, data):
    # any factorisation of the size, with -1 standing for one of the factors
    size = x.size
    first = data.draw(st.sampled_from([d for d in range(1, size + 1) if size % d == 0]))
    spelled = data.draw(st.sampled_from([(first, size // first), (first, -1), (-1, size // first)]))
    out = leaf(x).reshape(*spelled)
    np.testing.assert_array_equal(out.data, x.reshape(first, size // first))
    assert leaf(x).reshape(spelled).shape == (first, size // first)  # a tuple works too
    assert check_gradients(lambda u: u.reshape(*spelled), x)


def test_reshape_to_the_wrong_size():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 2\)"):
        const(np.ones((2, 3))).reshape(4, 2)


@given(x=float_arrays(shapes(min_dims=1, max_dims=4, max_side=3)), data=st.data())
def test_transpose(x, data):
    perm = tuple(data.draw(st.permutations(range(x.ndim))))
    out = leaf(x).transpose(*perm)
    # out[i_0, ..., i_n] = x[i at the positions perm says]
    for index in np.ndindex(*out.shape):
        src = [0] * x.ndim
        for pos, ax in enumerate(perm):
            src[ax] = index[pos]
        assert out.data[index] == x[tuple(src)]
    assert check_gradients(lambda u: u.transpose(*perm), x)
    # no axes: reverse them, as .T does
    np.testing.assert_array_equal(leaf(x).transpose().data, x.transpose())
    np.testing.assert_array_equal(leaf(x).T.data, x.T)
    assert check_gradients(lambda u: u.T, x)


def test_transpose_needs_a_permutation():
    with pytest.raises(ValueError, match="permutation"):
        const(np.ones((2, 3, 4))).transpose(0, 0, 1)


@given(x=float_arrays(shapes(min_dims=1, max_dims=4, max_side=3)), data=st.data())
def test_swapaxes(x, data):
    a, b = data.draw(axis(x.ndim)), data.draw(axis(x.ndim))
    out = leaf(x).swapaxes(a, b)
    np.testing.assert_array_equal(out.data, np.swapaxes(x, a, b))
    assert check_gradients(lambda u: u.swapaxes(a, b), x)


# ---------------------------------------------------------------- indexing


@given(x=float_arrays(shapes(min_dims=1, max_dims=3)), data=st.data())
def test_index_with_an_int(x, data):
    i = data.draw(st.integers(-x.shape[0], x.shape[0] - 1))
    t = leaf(x)
    out = t[i]
    np.testing.assert_array_equal(out.data, x[i])
    out.sum().backward()
    expected = np.zeros_like(x)
    expected[i] = 1.0
    np.testing.assert_array_equal(t.grad, expected)
    assert check_gradients(lambda u: u[i], x)


@given(x=float_arrays(shapes(min_dims=1, max_dims=3)), data=st.data())
def test_index_with_slices(x, data):
    index = tuple(
        slice(
            data.draw(st.none() | st.integers(-n - 1, n + 1)),
            data.draw(st.none() | st.integers(-n - 1, n + 1)),
            data.draw(st.none() | st.sampled_from([1, 2, -1, -2])),
        )
        for n in x.shape
    )
    t = leaf(x)
    out = t[index]
    np.testing.assert_array_equal(out.data, x[index])
    out.sum().backward()
    expected = np.zeros_like(x)
    expected[index] = 1.0
    np.testing.assert_array_equal(t.grad, expected)
    assert check_gradients(lambda u: u[index], x)


@given(x=float_arrays(shapes(min_dims=1, max_dims=3)), data=st.data())
def test_index_with_an_integer_array_accumulates_repeats(x, data):
    n = x.shape[0]
    ids = data.draw(index_arrays(n, shapes(min_dims=1, max_dims=2, max_side=5)))
    t = leaf(x)
    out = t[ids]
    np.testing.assert_array_equal(out.data, x[ids])
    out.sum().backward()
    # row r of x was read once per occurrence of r in ids
    counts = np.bincount(ids.ravel(), minlength=n).astype(np.float64)
    per_row = counts.reshape((n,) + (1,) * (x.ndim - 1))
    np.testing.assert_array_equal(t.grad, np.broadcast_to(per_row, x.shape))
    assert check_gradients(lambda u: u[ids], x)
    # the same ids as a list or an integer Tensor
    np.testing.assert_array_equal(leaf(x)[ids.tolist()].data, x[ids])
    np.testing.assert_array_equal(leaf(x)[mt.tensor(ids)].data, x[ids])


def test_index_mixing_arrays_slices_and_ints():
    x = np.arange(24.0).reshape(2, 3, 4)
    index = (slice(None), [2, 0, 2], 1)
    t = leaf(x)
    out = t[index]
    np.testing.assert_array_equal(out.data, x[index])
    out.sum().backward()
    expected = np.zeros_like(x)
    expected[:, 2, 1] = 2.0  # row 2 picked twice
    expected[:, 0, 1] = 1.0
    np.testing.assert_array_equal(t.grad, expected)
    assert check_gradients(lambda u: u[index], x)


def test_index_with_a_boolean_mask():
    x = np.array([3.0, -1.0, 2.0, -5.0])
    t = leaf(x)
    keep = t > 0
    out = t[keep]
    np.testing.assert_array_equal(out.data, [3.0, 2.0])
    out.sum().backward()
    np.testing.assert_array_equal(t.grad, [1.0, 0.0, 1.0, 0.0])


# ---------------------------------------------------------------- comparisons


COMPARISONS = [operator.eq, operator.ne, operator.lt, operator.le, operator.gt, operator.ge]


@pytest.mark.parametrize("op", COMPARISONS)
@given(pair=broadcastable_shapes(max_side=3), data=st.data())
def test_comparisons_are_boolean_and_not_differentiable(op, pair, data):
    (sa, sb), _ = pair
    # few distinct values, so equal elements come up
    a = data.draw(arrays_with_ties(sa))
    b = data.draw(arrays_with_ties(sb))
    out = op(leaf(a), leaf(b))
    assert out.dtype == np.bool_
    assert not out.requires_grad and out._node is None
    np.testing.assert_array_equal(out.data, op(a, b))
    np.testing.assert_array_equal(op(leaf(a), 1.0).data, op(a, 1.0))  # a Python number


# ---------------------------------------------------------------- empty tensors


@given(shape=shapes(min_dims=1, max_dims=3, min_side=0, max_side=3).filter(lambda s: 0 in s))
def test_ops_on_empty_tensors_give_empty_gradients(shape):
    t = leaf(np.zeros(shape))
    out = (t * 2.0 + 1.0).exp().sum()
    assert out.item() == 0.0  # an empty sum
    out.backward()
    assert t.grad.shape == shape


def test_numpy_array_on_the_left_defers_to_the_tensor():
    # ndarray * Tensor must build a Tensor (and record it), not loop elementwise in NumPy
    t = leaf([1.0, 2.0, 3.0])
    out = np.array([2.0, 3.0, 4.0]) * t
    assert isinstance(out, mt.Tensor)
    (np.ones((2, 3)) @ out).sum().backward()
    np.testing.assert_array_equal(t.grad, [4.0, 6.0, 8.0])


# ---------------------------------------------------------------- mismatched shapes


@pytest.mark.parametrize("op", [operator.add, operator.sub, operator.mul, operator.truediv])
def test_mismatched_shapes_name_both(op):
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4,\)"):
        op(const(np.ones((2, 3))), const(np.ones(4)))


@settings(max_examples=5)
@given(x=float_arrays((2, 3)))
def test_float32_ops_keep_float32_gradients(x):
    t = mt.tensor(x.astype(np.float32), requires_grad=True)
    ((t @ t.T).tanh().sum(axis=0) * 2.0).mean().backward()
    assert t.grad.dtype == np.float32


def test_matmul_of_a_stack_with_an_empty_axis():
    """Folding a stack (..., n, k) into rows must not use reshape(-1, k), which fails
    for k == 0; the products are then zeros (k == 0) or empty (m == 0), as in NumPy."""
    x = mt.tensor(np.ones((2, 3, 0)), requires_grad=True)
    w = mt.tensor(np.ones((0, 4)), requires_grad=True)
    y = x @ w
    np.testing.assert_array_equal(y.data, np.zeros((2, 3, 4)))
    y.sum().backward()
    assert x.grad.shape == (2, 3, 0) and w.grad.shape == (0, 4)
    a = mt.tensor(np.ones((2, 3, 4)), requires_grad=True)
    b = mt.tensor(np.ones((4, 0)), requires_grad=True)
    z = a @ b
    assert z.shape == (2, 3, 0)
    z.sum().backward()
    np.testing.assert_array_equal(a.grad, np.zeros((2, 3, 4)))
    np.testing.assert_array_equal(b.grad, np.zeros((4, 0)))
