"""The tape: how gradients flow through a recorded graph, and gradcheck itself.

What a student should be able to read off these tests:
- a tensor used several times gets the sum of the gradients of every use;
- broadcasting in the forward becomes a sum over the broadcast axes in the backward;
- leaves accumulate ``.grad`` across backward calls (as PyTorch), until zeroed;
- ``mt.no_grad()`` records nothing; ``detach()`` cuts the graph;
- a backward frees what the forward saved: a second one needs ``retain_graph=True``;
- gradcheck compares the tape with central differences and says where they disagree.
"""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import broadcastable_shapes, float_arrays, shapes

import minitransformer as mt
from minitransformer.autograd.function import Function
from minitransformer.autograd.tape import graph_nodes, sum_to


def leaf(a: np.ndarray) -> mt.Tensor:
    return mt.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


# ---------------------------------------------------------------- several paths into one tensor


@given(float_arrays(shapes()))
def test_tensor_used_many_times_sums_its_gradients(x):
    # L = sum(x*x + x): x reaches L three times, dL/dx = x + x + 1
    t = leaf(x)
    (t * t + t).sum().backward()
    np.testing.assert_allclose(t.grad, 2 * x + 1, rtol=1e-12, atol=1e-12)


@given(float_arrays(shapes()))
def test_diamond_graph(x):
    # a = 3x feeds both branches of out = tanh(a) * a + a:
    # dL/dx = 3 * (tanh(a) + a * (1 - tanh(a)^2) + 1)
    t = leaf(x)
    a = t * 3.0
    (a.tanh() * a + a).sum().backward()
    a_ = 3 * x
    expected = 3 * (np.tanh(a_) + a_ * (1 - np.tanh(a_) ** 2) + 1)
    np.testing.assert_allclose(t.grad, expected, rtol=1e-12, atol=1e-12)
    assert mt.gradcheck(lambda u: (u * 3.0).tanh() * (u * 3.0) + u * 3.0, leaf(x))


def _brute_force_broadcast_grad(shape, other, out_shape):
    """dL/da for L = sum(a * other) with a of ``shape``: add up, for every output
    position, the ``other`` value it was multiplied by, into the element of ``a`` that
    broadcasting read there (index 0 along a's size-1 axes)."""
    grad = np.zeros(shape)
    other_b = np.broadcast_to(other, out_shape)
    lead = len(out_shape) - len(shape)
    for pos in itertools.product(*(range(n) for n in out_shape)):
        src = tuple(0 if n == 1 else pos[lead + i] for i, n in enumerate(shape))
        grad[src] += other_b[pos]
    return grad


@given(broadcastable_shapes(min_side=0, max_side=3), st.data())
def test_broadcasting_gradient_is_summed_back_to_each_input_shape(pair, data):
    (sa, sb), out_shape = pair
    a = data.draw(float_arrays(sa))
    b = data.draw(float_arrays(sb))
    ta, tb = leaf(a), leaf(b)
    (ta * tb).sum().backward()
    assert ta.grad.shape == sa and tb.grad.shape == sb
    np.testing.assert_allclose(ta.grad, _brute_force_broadcast_grad(sa, b, out_shape), atol=1e-12)
    np.testing.assert_allclose(tb.grad, _brute_force_broadcast_grad(sb, a, out_shape), atol=1e-12)


@given(broadcastable_shapes(max_side=3), st.data())
def test_sum_to_matches_brute_force(pair, data):
    (small, _), out_shape = pair
    g = data.draw(float_arrays(out_shape))
    # sum_to(g, small) is dL/da for L = sum(a * g) with a broadcast from ``small``
    expected = _brute_force_broadcast_grad(small, g, out_shape)
    np.testing.assert_allclose(sum_to(g, small), expected, atol=1e-12)


# ---------------------------------------------------------------- leaves accumulate


@given(float_arrays(shapes(min_dims=1)))
def test_leaf_grad_accumulates_across_backward_calls(x):
    t = leaf(x)
    (t * 2.0).sum().backward()
    (t * t).sum().backward()  # a second, separate graph
    np.testing.assert_allclose(t.grad, 2.0 + 2 * x, rtol=1e-12, atol=1e-12)
    t.zero_grad()
    assert t.grad is None
    (t * 5.0).sum().backward()
    np.testing.assert_allclose(t.grad, np.full(x.shape, 5.0))


def test_only_leaves_keep_grad():
    x = leaf([1.0, 2.0])
    y = x * 3.0
    y.sum().backward()
    assert x.is_leaf and not y.is_leaf
    assert y.grad is None  # as PyTorch: intermediate tensors don't keep .grad


def test_constant_inputs_receive_no_grad():
    x = leaf([1.0, 2.0])
    c = mt.tensor([3.0, 4.0], dtype="float64")
    (x * c).sum().backward()
    assert c.grad is None and not c.requires_grad


# ---------------------------------------------------------------- no_grad and detach


def test_no_grad_records_nothing():
    x = leaf([1.0, 2.0, 3.0])
    with mt.no_grad():
        assert not mt.is_grad_enabled()
        y = (x * x).sum()
    assert mt.is_grad_enabled()
    assert y.requires_grad is False and y._node is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()


def test_no_grad_restores_state_after_an_exception():
    with pytest.raises(KeyError), mt.no_grad():
        raise KeyError("an error inside the block")
    assert mt.is_grad_enabled()


def test_enable_grad_inside_no_grad_records_again():
    x = leaf([1.0, 2.0])
    with mt.no_grad(), mt.enable_grad():
        y = (x * x).sum()
    y.backward()
    np.testing.assert_allclose(x.grad, [2.0, 4.0])


@given(float_arrays(shapes(min_dims=1)))
def test_detach_cuts_the_graph(x):
    t = leaf(x)
    d = t.detach()
    assert not d.requires_grad and d._node is None
    assert np.shares_memory(d.data, t.data)  # same data, no copy
    # L = sum(detach(x) * x): only the second factor is on the tape, so dL/dx = x
    (d * t).sum().backward()
    np.testing.assert_allclose(t.grad, x)


# ---------------------------------------------------------------- freeing and retain_graph


def test_second_backward_raises_and_names_retain_graph():
    x = leaf([1.0, 2.0])
    y = (x * x + x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph") as info:
        y.backward()
    assert "second time" in str(info.value)


def test_backward_frees_saved_arrays():
    x = leaf([1.0, 2.0])
    y = x * x
    assert len(y._node.saved) == 2
    y.sum().backward()
    assert y._node.saved == () and y._node.freed


@given(float_arrays(shapes()))
def test_retain_graph_allows_a_second_backward_and_grads_add_up(x):
    t = leaf(x)
    y = (t * t + t).sum()
    y.backward(retain_graph=True)
    first = t.grad.copy()
    y.backward()
    np.testing.assert_allclose(first, 2 * x + 1, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(t.grad, 2 * first, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- order on deep graphs


def test_deep_chain_backward_order():
    # y_k = y_{k-1} * c_k + y_{k-1} = (1 + c_k) y_{k-1}, so dy_n/dx = prod (1 + c_k);
    # any node visited before all its consumers would drop part of the product.
    cs = np.linspace(-0.5, 0.5, 500)
    x = leaf([0.7, -1.3])
    y = x
    for c in cs:
        y = y * float(c) + y
    y.sum().backward()
    np.testing.assert_allclose(x.grad, np.full(2, np.prod(1 + cs)), rtol=1e-10)


def test_branches_of_different_length_meet():
    # z = f^50(x) + x with f(u) = 1.01 u: dz/dx = 1.01^50 + 1. The short branch's node
    # is recorded early; it must still wait for the long branch's gradient.
    x = leaf([2.0])
    long = x
    for _ in range(50):
        long = long * 1.01
    z = long + x * 1.0
    z.sum().backward()
    np.testing.assert_allclose(x.grad, [1.01**50 + 1], rtol=1e-12)


def test_graph_nodes_come_newest_first():
    x = leaf([1.0])
    y = ((x * 2.0).exp() + x).tanh()
    seqs = [n.seq for n in graph_nodes(y._node)]
    assert seqs == sorted(seqs, reverse=True)
    assert len(seqs) == 4  # mul, exp, add, tanh


# ---------------------------------------------------------------- backward's arguments


def test_backward_on_non_scalar_needs_a_gradient():
    x = leaf(np.ones((2, 3)))
    y = x * 2.0
    with pytest.raises(RuntimeError, match=r"one-element.*\(2, 3\)"):
        y.backward()


@given(float_arrays((2, 3)), float_arrays((2, 3)))
def test_backward_with_explicit_gradient_is_a_vector_jacobian_product(x, g):
    # y = x^2 elementwise; backward(g) gives g * dy/dx = 2 x g
    t = leaf(x)
    (t * t).backward(g)
    np.testing.assert_allclose(t.grad, 2 * x * g, rtol=1e-12, atol=1e-12)


def test_backward_gradient_of_the_wrong_shape():
    x = leaf(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"\(3,\).*\(2, 3\)"):
        (x * 2.0).backward(np.ones(3))


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(TypeError, match="int64"):
        mt.tensor([1, 2, 3], requires_grad=True)
    with pytest.raises(TypeError, match="floating"):
        mt.tensor([1, 2, 3]).requires_grad_(True)
    with pytest.raises(TypeError):
        mt.zeros(3, dtype="int64", requires_grad=True)


# ---------------------------------------------------------------- gradcheck itself


class SquareWithWrongBackward(Function):
    """z = a^2, but the backward forgets the factor 2: dz/da = a (should be 2a)."""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return a * a

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g * a


def test_gradcheck_catches_a_wrong_backward_and_names_input_and_index():
    ok = leaf([1.0, 2.0])
    x = leaf([[0.0, 0.0], [0.0, 3.0]])  # a = 0 hides the bug; the first wrong element is (1, 1)
    with pytest.raises(mt.GradcheckError) as info:
        mt.gradcheck(lambda u, v: u.sum() + SquareWithWrongBackward.apply(v), ok, x)
    message = str(info.value)
    assert "input 1" in message and "index (1, 1)" in message
    # both values: the tape's a = 3 and the numeric 2a = 6 (up to the O(eps^2) error)
    assert re.search(r"tape gives 3\b.*central differences give (6|5\.99999)", message)


def test_gradcheck_accepts_a_correct_function():
    assert mt.gradcheck(lambda u: (u * u).exp(), leaf([0.1, -0.4, 0.3]))


def test_gradcheck_rejects_float32():
    x = mt.tensor([1.0, 2.0], dtype="float32", requires_grad=True)
    with pytest.raises(ValueError, match="float32"):
        mt.gradcheck(lambda u: u * u, x)


def test_gradcheck_needs_an_input_that_requires_grad():
    with pytest.raises(ValueError, match="requires grad"):
        mt.gradcheck(lambda u: u * u, mt.tensor([1.0], dtype="float64"))


def test_gradcheck_leaves_inputs_and_grads_as_it_found_them():
    x = leaf([0.5, 1.5])
    x.grad = np.array([7.0, 7.0])
    before = x.data.copy()
    mt.gradcheck(lambda u: u.tanh(), x)
    np.testing.assert_array_equal(x.data, before)
    np.testing.assert_array_equal(x.grad, [7.0, 7.0])


class TripleOffByOnePercent(Function):
    """z = 3a, but the backward gives 3.03 instead of 3."""

    @staticmethod
    def forward(ctx, a):
        return a * 3.0

    @staticmethod
    def backward(ctx, g):
        return g * 3.0 * 1.01


@settings(max_examples=10)
@given(float_arrays(shapes(min_dims=1, max_dims=2)))
def test_gradcheck_sees_a_gradient_off_by_one_percent(x):
    # |3.03 - 3| = 0.03 is far above atol + rtol * 3 = 1e-5 + 3e-4
    with pytest.raises(mt.GradcheckError):
        mt.gradcheck(TripleOffByOnePercent.apply, leaf(x))
