"""``minitransformer.functional``: every function against its formula written plainly in
NumPy here, and its gradient against central differences (float64).

Formulas used as references:
    softmax(x)_i     = exp(x_i) / sum_j exp(x_j)
    log_softmax(x)_i = x_i - log sum_j exp(x_j)
    gelu(x)          = x/2 (1 + erf(x / sqrt 2))        (math.erf, element by element)
    gelu_tanh(x)     = x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    layer_norm(x)    = (x - mean) / sqrt(var + eps) * w + b,  var = mean((x - mean)^2)
    dropout(x)       = x * m / (1 - p),  m_i ~ Bernoulli(1 - p)
    cross_entropy    = sum_c q_c * -log p_c,   q = (1 - e) onehot(t) + e / C,  p = softmax
    attention        = softmax(q k^T / sqrt(d) with -inf where the mask is False) v

Stability: softmax and cross-entropy are shift invariant (adding a constant to every
logit of a row changes nothing), so the reference for logits around +-1e4 is the plain
formula on the logits before the shift.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import (
    axis,
    bool_masks,
    broadcastable_shapes,
    check_gradients,
    class_targets,
    float_arrays,
    index_arrays,
    probability,
    shapes,
    shapes_broadcasting_to,
)

import minitransformer as mt
from minitransformer import functional as F


def leaf(a) -> mt.Tensor:
    return mt.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


def const(a) -> mt.Tensor:
    return mt.tensor(np.asarray(a, dtype=np.float64))


def plain_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def plain_log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return x - np.log(np.exp(x).sum(axis=axis, keepdims=True))


# ---------------------------------------------------------------- softmax, log_softmax


@given(x=float_arrays(shapes(min_dims=1, max_dims=3)), data=st.data())
def test_softmax_any_axis(x, data):
    ax = data.draw(axis(x.ndim))
    out = F.softmax(leaf(x), axis=ax)
    np.testing.assert_allclose(out.data, plain_softmax(x, ax), rtol=1e-13, atol=1e-15)
    assert check_gradients(lambda u: F.softmax(u, axis=ax), x)


@given(x=float_arrays(shapes(min_dims=1, max_dims=3)), data=st.data())
def test_log_softmax_any_axis(x, data):
    ax = data.draw(axis(x.ndim))
    out = F.log_softmax(leaf(x), axis=ax)
    np.testing.assert_allclose(out.data, plain_log_softmax(x, ax), rtol=1e-13, atol=1e-13)
    assert check_gradients(lambda u: F.log_softmax(u, axis=ax), x)


@given(x=float_arrays(shapes(min_dims=1, max_dims=2)), shift=st.sampled_from([1e4, -1e4]))
def test_softmax_and_log_softmax_of_huge_logits(x, shift):
    # exp(1e4) overflows and exp(-1e4) underflows: only the max-shifted form survives
    z = x + shift
    p = F.softmax(const(z)).data
    logp = F.log_softmax(const(z)).data
    assert np.isfinite(p).all() and np.isfinite(logp).all()
    np.testing.assert_allclose(p, plain_softmax(x), rtol=1e-9, atol=1e-12)
    # z + shift is rounded to the spacing of 1e4 (about 2e-12), so compare absolutely
    np.testing.assert_allclose(logp, plain_log_softmax(x), atol=1e-9)


def test_log_softmax_never_takes_the_log_of_zero():
    # log(exp(0) + exp(-1e4)) = log(1 + 4e-4343) = 0 in floating point, so -1e4 exactly
    out = F.log_softmax(const([0.0, -1e4])).data
    np.testing.assert_array_equal(out, [0.0, -1e4])
    # a row that is entirely -inf must not produce NaN (it gives -inf)
    row = F.log_softmax(const([[-np.inf, -np.inf], [0.0, -np.inf]])).data
    assert not np.isnan(row).any()
    np.testing.assert_array_equal(row[1], [0.0, -np.inf])


def test_softmax_masked_entries_and_all_masked_rows():
    x = leaf([[1.0, -np.inf, 1.0], [-np.inf, -np.inf, -np.inf]])
    p = F.softmax(x)
    np.testing.assert_array_equal(p.data, [[0.5, 0.0, 0.5], [0.0, 0.0, 0.0]])
    (p * const([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])).sum().backward()
    assert np.isfinite(x.grad).all()
    np.testing.assert_array_equal(x.grad[1], [0.0, 0.0, 0.0])


def test_softmax_and_log_softmax_of_empty_rows():
    # zero rows of three classes: nothing to normalise, an empty result and gradient
    for fn in (F.softmax, F.log_softmax):
        t = leaf(np.zeros((0, 3)))
        out = fn(t, axis=-1)
        assert out.shape == (0, 3)
        out.sum().backward()
        assert t.grad.shape == (0, 3)
    assert F.softmax(const(np.zeros((0, 3))), axis=0).shape == (0, 3)


def test_log_softmax_over_an_empty_axis_is_empty_like_softmax():
    assert F.log_softmax(const(np.zeros((0, 3))), axis=0).shape == (0, 3)


def test_softmax_axis_out_of_range():
    with pytest.raises(ValueError, match=r"axis 2.*\(2, 3\)"):
        F.softmax(const(np.ones((2, 3))), axis=2)


# ---------------------------------------------------------------- activations


def plain_gelu(x: np.ndarray) -> np.ndarray:
    return np.array([v / 2 * (1 + math.erf(v / math.sqrt(2))) for v in x.ravel()]).reshape(x.shape)


def plain_gelu_tanh(x: np.ndarray) -> np.ndarray:
    return x / 2 * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@given(x=float_arrays(shapes(min_side=0), -5.0, 5.0))
def test_gelu(approximate, x):
    reference = plain_gelu if approximate == "none" else plain_gelu_tanh
    out = F.gelu(leaf(x), approximate=approximate)
    np.testing.assert_allclose(out.data, reference(x), rtol=1e-13, atol=1e-15)
    assert check_gradients(lambda u: F.gelu(u, approximate=approximate), x)


def test_gelu_float32_matches_float64():
    x = np.linspace(-4, 4, 17)
    out = F.gelu(mt.tensor(x, dtype="float32")).data
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, plain_gelu(x), rtol=1e-6, atol=1e-7)


def test_gelu_unknown_approximation():
    with pytest.raises(ValueError, match="'sigmoid'"):
        F.gelu(const([1.0]), approximate="sigmoid")


@given(x=float_arrays(shapes(), -5.0, 5.0))
def test_sigmoid_tanh_relu(x):
    np.testing.assert_allclose(F.sigmoid(leaf(x)).data, 1 / (1 + np.exp(-x)), rtol=1e-13)
    np.testing.assert_allclose(F.tanh(leaf(x)).data, np.tanh(x), rtol=1e-14)
    np.testing.assert_array_equal(F.relu(leaf(x)).data, np.where(x > 0, x, 0.0))
    assert check_gradients(F.sigmoid, x)
    assert check_gradients(F.tanh, x)


# ---------------------------------------------------------------- layer norm


def plain_layer_norm(x, w=None, b=None, eps=1e-5):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    y = (x - mean) / np.sqrt(var + eps)
    if w is not None:
        y = y * w
    if b is not None:
        y = y + b
    return y


@pytest.mark.parametrize("with_weight", [True, False])
@pytest.mark.parametrize("with_bias", [True, False])
@given(
    x=float_arrays(shapes(min_dims=1, max_dims=3)),
    eps=st.sampled_from([1e-5, 1e-3, 0.1]),
    data=st.data(),
)
def test_layer_norm(with_weight, with_bias, x, eps, data):
    d = x.shape[-1]
    w = data.draw(float_arrays((d,))) if with_weight else None
    b = data.draw(float_arrays((d,))) if with_bias else None
    out = F.layer_norm(
        leaf(x), None if w is None else leaf(w), None if b is None else leaf(b), eps=eps
    )
    np.testing.assert_allclose(out.data, plain_layer_norm(x, w, b, eps), rtol=1e-10, atol=1e-10)
    arrays = [x] + [a for a in (w, b) if a is not None]

    def fn(u, *params):
        rest = list(params)
        weight = rest.pop(0) if with_weight else None
        bias = rest.pop(0) if with_bias else None
        return F.layer_norm(u, weight, bias, eps=eps)

    assert check_gradients(fn, *arrays)


@given(x=float_arrays((3, 5), -10.0, 10.0))
def test_layer_norm_output_has_zero_mean_and_almost_unit_variance(x):
    # each row of y = (x - mean) / sqrt(var + eps) has mean 0 and variance var / (var + eps)
    eps = 1e-5
    y = F.layer_norm(const(x), eps=eps).data
    np.testing.assert_allclose(y.mean(axis=-1), 0.0, atol=1e-12)
    var = x.var(axis=-1)
    np.testing.assert_allclose(y.var(axis=-1), var / (var + eps), rtol=1e-10, atol=1e-12)


def test_layer_norm_parameter_shapes():
    with pytest.raises(ValueError, match=r"weight.*\(3,\).*\(4,\)"):
        F.layer_norm(const(np.ones((2, 4))), const(np.ones(3)))


# ---------------------------------------------------------------- dropout


@settings(max_examples=10)
@given(p=probability(0.05, 0.9), seed=st.integers(0, 2**31 - 1))
def test_dropout_mask_statistics(p, seed):
    n = 20_000
    mt.manual_seed(seed)
    out = F.dropout(mt.ones(n, dtype="float64"), p).data
    kept = out != 0
    # kept elements are scaled by exactly 1/(1-p), so the mean is 1 in expectation
    np.testing.assert_allclose(out[kept], 1 / (1 - p), rtol=1e-15)
    # bounds: 6 standard deviations of the binomial fraction and of the mean
    assert abs(kept.mean() - (1 - p)) < 6 * math.sqrt(p * (1 - p) / n)
    assert abs(out.mean() - 1.0) < 6 * math.sqrt(p / ((1 - p) * n))


@given(x=float_arrays(shapes()))
def test_dropout_p0_and_eval_are_identity(x):
    t = leaf(x)
    np.testing.assert_array_equal(F.dropout(t, 0.0).data, x)
    np.testing.assert_array_equal(F.dropout(t, 0.7, training=False).data, x)
    F.dropout(t, 0.7, training=False).sum().backward()
    np.testing.assert_array_equal(t.grad, np.ones_like(x))


def test_dropout_p1_gives_zeros_and_zero_gradient():
    t = leaf(np.ones((4, 5)))
    out = F.dropout(t, 1.0)
    np.testing.assert_array_equal(out.data, np.zeros((4, 5)))
    out.sum().backward()
    np.testing.assert_array_equal(t.grad, np.zeros((4, 5)))


@given(p=probability(0.1, 0.9), seed=st.integers(0, 2**31 - 1))
def test_dropout_is_repeatable_with_manual_seed(p, seed):
    x = mt.ones(50, dtype="float64")
    mt.manual_seed(seed)
    first = F.dropout(x, p).data
    mt.manual_seed(seed)
    again = F.dropout(x, p).data
    np.testing.assert_array_equal(first, again)
    mt.manual_seed(seed + 1)
    other = np.stack([F.dropout(x, p).data for _ in range(3)])
    assert not all(np.array_equal(first, o) for o in other)  # different draws differ


@given(p=probability(0.1, 0.9), x=float_arrays((6, 7), 0.5, 2.0))
def test_dropout_gradient_is_the_mask_over_one_minus_p(p, x):
    t = leaf(x)
    out = F.dropout(t, p)
    out.sum().backward()
    kept = out.data != 0  # x is never 0, so a zero output is a dropped element
    np.testing.assert_allclose(t.grad, kept / (1 - p), rtol=1e-14)


def test_dropout_probability_out_of_range():
    with pytest.raises(ValueError, match="1.5"):
        F.dropout(const([1.0]), 1.5)


# ---------------------------------------------------------------- masked_fill, where


@given(
    x=float_arrays(shapes(max_dims=3)),
    value=st.sampled_from([0.0, -1e9, -np.inf, 2.5]),
    data=st.data(),
)
def test_masked_fill(x, value, data):
    mask = data.draw(bool_masks(shapes_broadcasting_to(x.shape)))
    t = leaf(x)
    out = F.masked_fill(t, mask, value)
    np.testing.assert_array_equal(out.data, np.where(mask, value, x))
    out.sum().backward()
    # a filled element no longer depends on x
    np.testing.assert_array_equal(t.grad, np.where(np.broadcast_to(mask, x.shape), 0.0, 1.0))
    if np.isfinite(value):
        assert check_gradients(lambda u: F.masked_fill(u, mask, value), x)


def test_masked_fill_mask_that_does_not_broadcast():
    with pytest.raises(ValueError, match=r"\(3,\).*\(2, 4\)"):
        F.masked_fill(const(np.ones((2, 4))), np.ones(3, dtype=bool), 0.0)


@given(shapes3=broadcastable_shapes(num_shapes=3, max_side=3), data=st.data())
def test_where(shapes3, data):
    (sc, sa, sb), out_shape = shapes3
    cond = data.draw(bool_masks(sc))
    a, b = data.draw(float_arrays(sa)), data.draw(float_arrays(sb))
    out = F.where(cond, leaf(a), leaf(b))
    assert out.shape == out_shape
    np.testing.assert_array_equal(out.data, np.where(cond, a, b))
    assert check_gradients(lambda u, v: F.where(cond, u, v), a, b)
    # a condition made by a comparison, and a Python number on one side
    x = leaf(a)
    np.testing.assert_array_equal(F.where(x > 0, x, 0.0).data, np.where(a > 0, a, 0.0))


# ---------------------------------------------------------------- concat, stack


@given(base=shapes(min_dims=1, max_dims=3, max_side=3), data=st.data())
def test_concat(base, data):
    ax = data.draw(axis(len(base)))
    sizes = data.draw(st.lists(st.integers(0, 3), min_size=1, max_size=3))
    pieces = []
    for n in sizes:
        shape = list(base)
        shape[ax] = n
        pieces.append(data.draw(float_arrays(tuple(shape))))
    out = F.concat([leaf(p) for p in pieces], axis=ax)
    np.testing.assert_array_equal(out.data, np.concatenate(pieces, axis=ax))
    assert check_gradients(lambda *ts: F.concat(list(ts), axis=ax), *pieces)


def test_concat_shapes_that_differ_off_the_axis():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)"):
        F.concat([const(np.ones((2, 3))), const(np.ones((2, 4)))], axis=0)


@given(shape=shapes(max_dims=3, max_side=3), count=st.integers(1, 3), data=st.data())
def test_stack(shape, count, data):
    ax = data.draw(axis(len(shape) + 1))
    pieces = [data.draw(float_arrays(shape)) for _ in range(count)]
    out = F.stack([leaf(p) for p in pieces], axis=ax)
    np.testing.assert_array_equal(out.data, np.stack(pieces, axis=ax))
    assert check_gradients(lambda *ts: F.stack(list(ts), axis=ax), *pieces)


def test_stack_needs_equal_shapes():
    with pytest.raises(ValueError, match=r"\(2,\).*\(3,\)"):
        F.stack([const(np.ones(2)), const(np.ones(3))])


# ---------------------------------------------------------------- linear, embedding


@given(
    batch=shapes(max_dims=2, max_side=3),
    n_in=st.integers(1, 4),
    n_out=st.integers(1, 4),
    data=st.data(),
)
def test_linear(batch, n_in, n_out, data):
    x = data.draw(float_arrays((*batch, n_in)))
    w = data.draw(float_arrays((n_in, n_out)))
    b = data.draw(float_arrays((n_out,)))
    # y[..., j] = sum_i x[..., i] W[i, j] + b[j]
    expected = (x[..., :, None] * w).sum(axis=-2) + b
    np.testing.assert_allclose(F.linear(leaf(x), leaf(w), leaf(b)).data, expected, atol=1e-12)
    assert check_gradients(F.linear, x, w, b)
    assert check_gradients(F.linear, x, w)


def test_linear_feature_mismatch():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
        F.linear(const(np.ones((2, 3))), const(np.ones((4, 5))))


def test_linear_on_a_strided_input_and_mixed_dtypes():
    """The fused op folds rows with a copy when x is a strided view, and a float64 bias
    on a float32 product promotes the result as NumPy would (never a silent downcast)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 4)).transpose(1, 0, 2)  # (5, 3, 4), not contiguous
    w, b = rng.standard_normal((4, 2)), rng.standard_normal(2)
    assert not x.flags.c_contiguous
    np.testing.assert_allclose(F.linear(leaf(x), leaf(w), leaf(b)).data, x @ w + b, atol=1e-12)
    assert check_gradients(F.linear, x, w, b)
    y = F.linear(const(x.astype(np.float32)), const(w.astype(np.float32)), const(b))
    assert y.dtype == np.float64
    np.testing.assert_allclose(
        y.data, x.astype(np.float32) @ w.astype(np.float32) + b, rtol=1e-5, atol=1e-5
    )


def test_linear_bad_weight_or_bias_shape():
    with pytest.raises(ValueError, match=r"weight must be 2-D .*\(3,\)"):
        F.linear(const(np.ones((2, 3))), const(np.ones(3)))
    with pytest.raises(ValueError, match=r"bias has shape \(4,\), expected \(5,\)"):
        F.linear(const(np.ones((2, 3))), const(np.ones((3, 5))), const(np.ones(4)))


@given(
    num=st.integers(1, 5),
    dim=st.integers(1, 3),
    ids_shape=shapes(max_dims=2, max_side=6),
    data=st.data(),
)
def test_embedding_forward_and_scatter_add_backward(num, dim, ids_shape, data):
    ids = data.draw(index_arrays(num, ids_shape))
    w = data.draw(float_arrays((num, dim)))
    g = data.draw(float_arrays((*ids_shape, dim)))
    tw = leaf(w)
    out = F.embedding(ids, tw)
    np.testing.assert_array_equal(out.data, w[ids])
    out.backward(g)
    # every position sends its gradient to the row it read: repeated ids add up
    expected = np.zeros_like(w)
    for pos, row in np.ndenumerate(ids):
        expected[row] += g[pos]
    np.testing.assert_allclose(tw.grad, expected, atol=1e-12)
    assert check_gradients(lambda u: F.embedding(mt.tensor(ids), u), w)


def test_embedding_padding_idx_gets_no_gradient():
    w = leaf(np.ones((4, 2)))
    F.embedding([0, 2, 2, 1], w, padding_idx=2).sum().backward()
    np.testing.assert_array_equal(w.grad, [[1, 1], [1, 1], [0, 0], [0, 0]])


@pytest.mark.parametrize("bad", [7, -1])
def test_embedding_id_out_of_range_names_it(bad):
    with pytest.raises(IndexError, match=rf"{bad}.*4 rows"):
        F.embedding(np.array([0, bad, 1]), const(np.zeros((4, 2))))


def test_embedding_ids_must_be_integers():
    with pytest.raises(TypeError, match="float"):
        F.embedding(np.array([0.0, 1.0]), const(np.zeros((4, 2))))


# ---------------------------------------------------------------- cross-entropy


def plain_cross_entropy(logits, targets, ignore_index=-100, label_smoothing=0.0, reduction="mean"):
    """sum_c q_c * -log p_c per target, with q = (1 - e) onehot(t) + e / C."""
    c = logits.shape[-1]
    z = logits.reshape(-1, c)
    t = targets.reshape(-1)
    losses = np.zeros(len(t))
    for row in range(len(t)):
        if t[row] == ignore_index:
            continue
        p = plain_softmax(z[row])
        q = np.full(c, label_smoothing / c)
        q[t[row]] += 1 - label_smoothing
        losses[row] = np.sum(q * -np.log(p))
    if reduction == "none":
        return losses.reshape(targets.shape)
    if reduction == "sum":
        return losses.sum()
    valid = int((t != ignore_index).sum())
    return losses.sum() / valid if valid else 0.0


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@given(
    batch=shapes(min_dims=1, max_dims=2, max_side=3),
    c=st.integers(1, 5),
    smoothing=st.sampled_from([0.0, 0.1, 0.5]),
    ignore_index=st.sampled_from([-100, 0]),
    data=st.data(),
)
def test_cross_entropy(reduction, batch, c, smoothing, ignore_index, data):
    logits = data.draw(float_arrays((*batch, c)))
    targets = data.draw(class_targets(c, batch, ignore_index=ignore_index))
    kwargs = dict(ignore_index=ignore_index, label_smoothing=smoothing, reduction=reduction)
    out = F.cross_entropy(leaf(logits), targets, **kwargs)
    expected = plain_cross_entropy(logits, targets, **kwargs)
    assert out.shape == np.shape(expected)
    np.testing.assert_allclose(out.data, expected, rtol=1e-12, atol=1e-12)
    assert check_gradients(lambda u: F.cross_entropy(u, targets, **kwargs), logits)


@pytest.mark.parametrize("rows", [3, 0])
def test_cross_entropy_mean_of_no_targets_is_zero_with_zero_gradient(rows):
    # every target ignored, or no rows at all: 0 rather than 0/0 (torch gives NaN)
    z = leaf(np.ones((rows, 4)))
    loss = F.cross_entropy(z, np.full(rows, -100))
    assert loss.item() == 0.0
    loss.backward()
    np.testing.assert_array_equal(z.grad, np.zeros((rows, 4)))


@given(
    x=float_arrays((3, 4)),
    shift=st.sampled_from([1e4, -1e4]),
    smoothing=st.sampled_from([0.0, 0.2]),
)
def test_cross_entropy_of_huge_logits(x, shift, smoothing):
    targets = np.array([0, 3, 1])
    z = leaf(x + shift)
    loss = F.cross_entropy(z, targets, label_smoothing=smoothing)
    assert np.isfinite(loss.item())
    expected = plain_cross_entropy(x, targets, label_smoothing=smoothing)
    np.testing.assert_allclose(loss.item(), expected, atol=1e-9)
    loss.backward()
    assert np.isfinite(z.grad).all()
    # dL/dz = (softmax(z) - q) / N, and softmax is shift invariant
    q = np.full((3, 4), smoothing / 4)
    q[np.arange(3), targets] += 1 - smoothing
    np.testing.assert_allclose(z.grad, (plain_softmax(x) - q) / 3, atol=1e-9)


@pytest.mark.parametrize("bad", [4, -2])
def test_cross_entropy_class_out_of_range_names_it(bad):
    with pytest.raises(IndexError, match=rf"class {bad}.*4 classes"):
        F.cross_entropy(const(np.zeros((2, 4))), np.array([1, bad]))


def test_cross_entropy_bad_arguments():
    z = const(np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"\(2, 4\).*\(3,\)"):
        F.cross_entropy(z, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="'avg'"):
        F.cross_entropy(z, np.array([0, 1]), reduction="avg")
    with pytest.raises(TypeError, match="float"):
        F.cross_entropy(z, np.array([0.0, 1.0]))


# ---------------------------------------------------------------- scaled dot-product attention


def plain_attention(q, k, v, mask=None):
    """softmax(q k^T / sqrt(d), -inf where mask is False) v; all-masked rows give zeros."""
    d = q.shape[-1]
    scores = (q[..., :, None, :] * k[..., None, :, :]).sum(axis=-1) / math.sqrt(d)
    allowed = (
        np.ones(scores.shape, dtype=bool) if mask is None else np.broadcast_to(mask, scores.shape)
    )
    e = np.where(allowed, np.exp(scores), 0.0)
    total = e.sum(axis=-1, keepdims=True)
    weights = np.divide(e, total, out=np.zeros_like(e), where=total > 0)
    out = (weights[..., :, :, None] * v[..., None, :, :]).sum(axis=-2)
    return out, weights


@st.composite
def attention_inputs(draw, with_mask=True):
    batch = draw(shapes(max_dims=2, max_side=2))
    lq, lk, d, dv = (draw(st.integers(1, 3)) for _ in range(4))
    q = draw(float_arrays((*batch, lq, d)))
    k = draw(float_arrays((*batch, lk, d)))
    v = draw(float_arrays((*batch, lk, dv)))
    mask = None
    if with_mask and draw(st.booleans()):
        mask = draw(bool_masks(shapes_broadcasting_to((*batch, lq, lk))))
    return q, k, v, mask


@given(attention_inputs())
def test_sdpa_matches_the_formula(inputs):
    q, k, v, mask = inputs
    out, weights = F.scaled_dot_product_attention(leaf(q), leaf(k), leaf(v), mask=mask)
    ref_out, ref_weights = plain_attention(q, k, v, mask)
    assert not np.isnan(out.data).any() and not np.isnan(weights.data).any()
    np.testing.assert_allclose(weights.data, ref_weights, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(out.data, ref_out, rtol=1e-12, atol=1e-13)
    assert check_gradients(
        lambda a, b, c: F.scaled_dot_product_attention(a, b, c, mask=mask)[0], q, k, v
    )


def test_sdpa_fully_masked_row_gives_zeros_and_no_nan():
    rng = np.random.default_rng(0)
    q, k, v = (leaf(rng.normal(size=(2, 3, 4))) for _ in range(3))
    mask = np.ones((2, 3, 3), dtype=bool)
    mask[0, 1, :] = False  # query 1 of batch 0 may attend to nothing
    out, weights = F.scaled_dot_product_attention(q, k, v, mask=mask)
    np.testing.assert_array_equal(out.data[0, 1], np.zeros(4))
    np.testing.assert_array_equal(weights.data[0, 1], np.zeros(3))
    (out * const(rng.normal(size=(2, 3, 4)))).sum().backward()
    for t in (q, k, v):
        assert np.isfinite(t.grad).all()
    np.testing.assert_array_equal(q.grad[0, 1], np.zeros(4))


def test_sdpa_masked_key_gets_exactly_zero_weight():
    # masking sets the score to -inf; zeroing the score instead would leave exp(0) > 0
    q = const(np.zeros((1, 2)))
    k = const(np.zeros((3, 2)))
    v = const(np.arange(6.0).reshape(3, 2))
    _, weights = F.scaled_dot_product_attention(q, k, v, mask=np.array([True, False, True]))
    np.testing.assert_array_equal(weights.data, [[0.5, 0.0, 0.5]])


def test_sdpa_mask_that_does_not_broadcast():
    q = const(np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match=r"\(5,\).*\(2, 3, 3\)"):
        F.scaled_dot_product_attention(q, q, q, mask=np.ones(5, dtype=bool))


def test_sdpa_query_key_size_mismatch():
    with pytest.raises(ValueError, match=r"\(2, 4\).*\(3, 5\)"):
        F.scaled_dot_product_attention(
            const(np.ones((2, 4))), const(np.ones((3, 5))), const(np.ones((3, 5)))
        )
