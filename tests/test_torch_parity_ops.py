"""Parity with PyTorch autograd: same float64 inputs, same forward, same gradients.

The main test draws a random *composition* of ops from a table in which every entry
holds our version and PyTorch's, applies it to the same inputs in both frameworks,
reduces with the same random weights and compares the forward and every input's
gradient to 1e-10 relative. Then single functions whose conventions are easy to get
subtly wrong: cross-entropy (ignore_index, label smoothing, reductions), log_softmax,
layer_norm, gelu (both modes) and scaled dot-product attention (a boolean mask means
"may attend" in both libraries).

"1e-10 relative" is measured against the scale of the compared array: an entry that
cancels to ~1e-17 in one library and ~1e-16 in the other is equal in every sense
that matters, but has no meaningful elementwise relative error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import (
    arrays_with_ties,
    axes,
    axis,
    bool_masks,
    class_targets,
    float_arrays,
    matmul_shapes,
    shapes,
    shapes_broadcasting_to,
)

import minitransformer as mt
from minitransformer import functional as F

torch = pytest.importorskip("torch")
TF = torch.nn.functional

pytestmark = pytest.mark.torch

RTOL = 1e-10


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """These tensors are tiny: a thread pool only adds overhead (a lot of it on a busy machine)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def assert_same(ours, theirs, rtol: float = RTOL) -> None:
    """Equal to ``rtol`` relative, entries measured against the largest magnitude."""
    ours = np.asarray(ours)
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else np.asarray(theirs)
    assert ours.shape == theirs.shape
    scale = np.abs(theirs[np.isfinite(theirs)]).max(initial=1.0)
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=rtol * scale)


def both(arrays: dict[str, np.ndarray]) -> tuple[SimpleNamespace, SimpleNamespace]:
    """The same float64 arrays as our leaves and as torch leaves."""
    ours = {k: mt.tensor(v.copy(), requires_grad=True) for k, v in arrays.items()}
    theirs = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in arrays.items()}
    return SimpleNamespace(**ours), SimpleNamespace(**theirs)


# ---------------------------------------------------------------- random compositions


@dataclass(frozen=True)
class Op:
    """One step of a composition: x (m, n) -> (m, n), also reading y (m, n), W (n, n),
    gamma and beta (n,) from ``e``."""

    name: str
    ours: Callable
    theirs: Callable


def _rows(m: int) -> np.ndarray:
    # 1, 2, ..., m-1, m-1: a gather with a repeated row
    return np.minimum(np.arange(m) + 1, m - 1)


OPS = [
    Op("add", lambda x, e: x + e.y, lambda x, e: x + e.y),
    Op("sub_row", lambda x, e: x - e.beta, lambda x, e: x - e.beta),
    Op("rsub_scalar", lambda x, e: 1.5 - x, lambda x, e: 1.5 - x),
    Op("mul", lambda x, e: x * e.y, lambda x, e: x * e.y),
    Op("div", lambda x, e: x / (e.y * e.y + 1.0), lambda x, e: x / (e.y * e.y + 1.0)),
    Op("rdiv", lambda x, e: 2.0 / (x * x + 1.0), lambda x, e: 2.0 / (x * x + 1.0)),
    Op("neg", lambda x, e: -x, lambda x, e: -x),
    Op("pow_scalar", lambda x, e: (x * x + 1.0) ** -0.5, lambda x, e: (x * x + 1.0) ** -0.5),
    Op(
        "pow_tensor",
        lambda x, e: (e.y * e.y + 0.5) ** x.tanh(),
        lambda x, e: (e.y * e.y + 0.5) ** x.tanh(),
    ),
    Op("matmul", lambda x, e: x @ e.W, lambda x, e: x @ e.W),
    Op("exp", lambda x, e: x.tanh().exp(), lambda x, e: x.tanh().exp()),
    Op("log", lambda x, e: (x * x + 1.0).log(), lambda x, e: (x * x + 1.0).log()),
    Op("sqrt", lambda x, e: (x * x + 1.0).sqrt(), lambda x, e: (x * x + 1.0).sqrt()),
    Op("tanh", lambda x, e: x.tanh(), lambda x, e: x.tanh()),
    Op("relu", lambda x, e: x.relu(), lambda x, e: x.relu()),
    Op("sigmoid", lambda x, e: F.sigmoid(x), lambda x, e: torch.sigmoid(x)),
    Op("gelu", lambda x, e: F.gelu(x), lambda x, e: TF.gelu(x)),
    Op(
        "gelu_tanh",
        lambda x, e: F.gelu(x, approximate="tanh"),
        lambda x, e: TF.gelu(x, approximate="tanh"),
    ),
    Op("softmax_rows", lambda x, e: F.softmax(x, axis=-1), lambda x, e: TF.softmax(x, dim=-1)),
    Op("softmax_cols", lambda x, e: F.softmax(x, axis=0), lambda x, e: TF.softmax(x, dim=0)),
    Op(
        "log_softmax",
        lambda x, e: F.log_softmax(x, axis=1),
        lambda x, e: TF.log_softmax(x, dim=1),
    ),
    Op(
        "layer_norm",
        lambda x, e: F.layer_norm(x, e.gamma, e.beta),
        lambda x, e: TF.layer_norm(x, (x.shape[-1],), e.gamma, e.beta),
    ),
    Op(
        "center_rows",
        lambda x, e: x - x.sum(axis=1, keepdims=True) * (1.0 / x.shape[1]),
        lambda x, e: x - x.sum(dim=1, keepdim=True) * (1.0 / x.shape[1]),
    ),
    Op(
        "scale_by_col_mean",
        lambda x, e: x * x.mean(axis=0, keepdims=True),
        lambda x, e: x * x.mean(dim=0, keepdim=True),
    ),
    Op(
        "minus_row_max",
        lambda x, e: x - x.max(axis=1, keepdims=True),
        lambda x, e: x - x.amax(dim=1, keepdim=True),
    ),
    Op(
        "total_max",
        lambda x, e: x * x.max(),
        lambda x, e: x * x.amax(),
    ),
    Op(
        "transpose_reshape",
        lambda x, e: x.T.reshape(*x.shape),
        lambda x, e: x.T.reshape(*x.shape),
    ),
    Op(
        "swapaxes_matmul",
        lambda x, e: (e.W.swapaxes(0, 1) @ x.T).T,
        lambda x, e: (e.W.swapaxes(0, 1) @ x.T).T,
    ),
    Op(
        "gather_rows",
        lambda x, e: x[_rows(x.shape[0])],
        lambda x, e: x[torch.from_numpy(_rows(x.shape[0]))],
    ),
    Op(
        "roll_columns",
        lambda x, e: F.concat([x[:, 1:], x[:, :1]], axis=1),
        lambda x, e: torch.cat([x[:, 1:], x[:, :1]], dim=1),
    ),
    Op(
        "stack_mean",
        lambda x, e: F.stack([x, e.y], axis=0).mean(axis=0),
        lambda x, e: torch.stack([x, e.y], dim=0).mean(dim=0),
    ),
    Op(
        "masked_fill",
        lambda x, e: F.masked_fill(x, x > e.y, -0.5),
        lambda x, e: x.masked_fill(x > e.y, -0.5),
    ),
    Op(
        "where",
        lambda x, e: F.where(x > 0, x, e.y * 2.0),
        lambda x, e: torch.where(x > 0, x, e.y * 2.0),
    ),
    Op(
        "attention",
        lambda x, e: F.scaled_dot_product_attention(x, e.y, x)[0],
        lambda x, e: TF.scaled_dot_product_attention(x, e.y, x),
    ),
]


def check_composition(steps: list[Op], arrays: dict[str, np.ndarray], weights: np.ndarray) -> None:
    """Run ``steps`` on x in both frameworks; compare each step, then every input's
    gradient of sum(result * weights)."""
    ours, theirs = both(arrays)
    a, b = ours.x, theirs.x
    for op in steps:
        a, b = op.ours(a, ours), op.theirs(b, theirs)
        assert a.shape == tuple(b.shape), op.name
        assert_same(a.data, b)
    (a * mt.tensor(weights)).sum().backward()
    (b * torch.from_numpy(weights)).sum().backward()
    for name in arrays:
        g_ours, g_theirs = getattr(ours, name).grad, getattr(theirs, name).grad
        if g_theirs is None:  # this input was not used by the drawn ops
            assert g_ours is None or not np.any(g_ours), name
        else:
            assert g_ours is not None, name
            assert_same(g_ours, g_theirs)


@given(
    m=st.integers(1, 4),
    n=st.integers(1, 4),
    steps=st.lists(st.sampled_from(OPS), min_size=1, max_size=5),
    data=st.data(),
)
def test_random_compositions_match_torch(m, n, steps, data):
    arrays = {
        "x": data.draw(float_arrays((m, n))),
        "y": data.draw(float_arrays((m, n))),
        "W": data.draw(float_arrays((n, n), -1.0, 1.0)),
        "gamma": data.draw(float_arrays((n,))),
        "beta": data.draw(float_arrays((n,))),
    }
    weights = np.random.default_rng(m * 10 + n).normal(size=(m, n))
    check_composition(steps, arrays, weights)


@pytest.mark.parametrize("op", OPS, ids=[op.name for op in OPS])
def test_each_table_entry_alone(op):
    # the compositions above sample the table; this runs every entry, and names it
    rng = np.random.default_rng(3)
    m, n = 3, 4
    arrays = {
        "x": rng.normal(size=(m, n)),
        "y": rng.normal(size=(m, n)),
        "W": rng.normal(size=(n, n)),
        "gamma": rng.normal(size=n),
        "beta": rng.normal(size=n),
    }
    check_composition([op], arrays, rng.normal(size=(m, n)))


# ---------------------------------------------------------------- single ops, more shapes


@given(shapes=matmul_shapes(), data=st.data())
def test_matmul_broadcast_batch_matches_torch(shapes, data):
    sa, sb = shapes
    ours, theirs = both({"a": data.draw(float_arrays(sa)), "b": data.draw(float_arrays(sb))})
    out_o, out_t = ours.a @ ours.b, theirs.a @ theirs.b
    assert_same(out_o.data, out_t)
    out_o.sum().backward()
    out_t.sum().backward()
    assert_same(ours.a.grad, theirs.a.grad)
    assert_same(ours.b.grad, theirs.b.grad)


@given(x=arrays_with_ties(shapes(min_dims=1, max_dims=3)), data=st.data())
def test_max_with_ties_matches_torch_amax(x, data):
    ax = data.draw(axes(x.ndim))
    keepdims = data.draw(st.booleans())
    ours, theirs = both({"x": x})
    dims = tuple(range(x.ndim)) if ax is None else ax
    out_o = ours.x.max(axis=ax, keepdims=keepdims)
    out_t = theirs.x.amax(dim=dims, keepdim=keepdims)
    assert_same(out_o.data, out_t)
    out_o.sum().backward()
    out_t.sum().backward()
    assert_same(ours.x.grad, theirs.x.grad)


@given(x=float_arrays(shapes(min_dims=1, max_dims=3)), data=st.data())
def test_softmax_and_log_softmax_match_torch(x, data):
    ax = data.draw(axis(x.ndim))
    g = np.random.default_rng(0).normal(size=x.shape)
    for ours_fn, torch_fn in ((F.softmax, TF.softmax), (F.log_softmax, TF.log_softmax)):
        ours, theirs = both({"x": x})
        out_o, out_t = ours_fn(ours.x, axis=ax), torch_fn(theirs.x, dim=ax)
        assert_same(out_o.data, out_t)
        out_o.backward(g)
        out_t.backward(torch.from_numpy(g))
        assert_same(ours.x.grad, theirs.x.grad)


@pytest.mark.parametrize("affine", ["none", "weight", "bias", "both"])
@given(x=float_arrays(shapes(min_dims=1, max_dims=3)), eps=st.sampled_from([1e-5, 1e-2]))
def test_layer_norm_matches_torch(affine, x, eps):
    d = x.shape[-1]
    rng = np.random.default_rng(d)
    ours, theirs = both({"x": x, "w": rng.normal(size=d), "b": rng.normal(size=d)})
    use_w, use_b = affine in ("weight", "both"), affine in ("bias", "both")
    out_o = F.layer_norm(ours.x, ours.w if use_w else None, ours.b if use_b else None, eps=eps)
    out_t = TF.layer_norm(
        theirs.x, (d,), theirs.w if use_w else None, theirs.b if use_b else None, eps=eps
    )
    assert_same(out_o.data, out_t)
    g = rng.normal(size=x.shape)
    out_o.backward(g)
    out_t.backward(torch.from_numpy(g))
    assert_same(ours.x.grad, theirs.x.grad)
    if use_w:
        assert_same(ours.w.grad, theirs.w.grad)
    if use_b:
        assert_same(ours.b.grad, theirs.b.grad)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@given(x=float_arrays(shapes(min_side=0), -6.0, 6.0))
def test_gelu_matches_torch(approximate, x):
    ours, theirs = both({"x": x})
    out_o = F.gelu(ours.x, approximate=approximate)
    out_t = TF.gelu(theirs.x, approximate=approximate)
    assert_same(out_o.data, out_t)
    out_o.sum().backward()
    out_t.sum().backward()
    assert_same(ours.x.grad, theirs.x.grad)


# ---------------------------------------------------------------- cross-entropy


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@given(
    batch=shapes(min_dims=1, max_dims=2, max_side=4),
    c=st.integers(1, 5),
    smoothing=st.sampled_from([0.0, 0.1, 0.3]),
    ignore_index=st.sampled_from([-100, 1]),
    data=st.data(),
)
def test_cross_entropy_matches_torch(reduction, batch, c, smoothing, ignore_index, data):
    logits = data.draw(float_arrays((*batch, c)))
    targets = data.draw(class_targets(c, batch, ignore_index=ignore_index))
    if reduction == "mean" and np.all(targets == ignore_index):
        # torch gives 0/0 = NaN here; we give 0 (documented in losses.py)
        targets.flat[0] = 0 if ignore_index != 0 else 1 % c
    ours, theirs = both({"z": logits})
    kwargs = dict(ignore_index=ignore_index, label_smoothing=smoothing, reduction=reduction)
    out_o = F.cross_entropy(ours.z, targets, **kwargs)
    # torch wants the class axis second: (N, C, d1, ...)
    z_t = theirs.z if theirs.z.ndim <= 2 else theirs.z.movedim(-1, 1)
    out_t = TF.cross_entropy(z_t, torch.from_numpy(targets), **kwargs)
    assert_same(out_o.data, out_t)
    g = np.random.default_rng(1).normal(size=out_o.shape)
    out_o.backward(g)
    out_t.backward(torch.from_numpy(g))
    assert_same(ours.z.grad, theirs.z.grad)


@given(x=float_arrays((3, 5)), shift=st.sampled_from([1e4, -1e4]))
def test_cross_entropy_of_huge_logits_matches_torch(x, shift):
    targets = np.array([4, 0, 2])
    ours, theirs = both({"z": x + shift})
    out_o = F.cross_entropy(ours.z, targets, label_smoothing=0.1)
    out_t = TF.cross_entropy(theirs.z, torch.from_numpy(targets), label_smoothing=0.1)
    # the logits carry rounding of order 1e4 * 2^-52 ~ 2e-12 each, so 1e-9 absolute
    np.testing.assert_allclose(out_o.item(), out_t.item(), atol=1e-9)
    out_o.backward()
    out_t.backward()
    np.testing.assert_allclose(ours.z.grad, theirs.z.grad.numpy(), atol=1e-9)


# ---------------------------------------------------------------- attention


@given(
    batch=shapes(max_dims=2, max_side=2),
    lq=st.integers(1, 4),
    lk=st.integers(1, 4),
    d=st.integers(1, 4),
    dv=st.integers(1, 3),
    masked=st.booleans(),
    data=st.data(),
)
def test_sdpa_matches_torch(batch, lq, lk, d, dv, masked, data):
    arrays = {
        "q": data.draw(float_arrays((*batch, lq, d))),
        "k": data.draw(float_arrays((*batch, lk, d))),
        "v": data.draw(float_arrays((*batch, lk, dv))),
    }
    mask = data.draw(bool_masks(shapes_broadcasting_to((*batch, lq, lk)))) if masked else None
    # torch wants a mask of at least 2 axes; ours broadcasts from any, so hand torch the
    # broadcast result
    mask_t = (
        None if mask is None else torch.from_numpy(np.broadcast_to(mask, (*batch, lq, lk)).copy())
    )
    ours, theirs = both(arrays)
    out_o, w_o = F.scaled_dot_product_attention(ours.q, ours.k, ours.v, mask=mask)
    out_t = TF.scaled_dot_product_attention(theirs.q, theirs.k, theirs.v, attn_mask=mask_t)
    assert_same(out_o.data, out_t)
    g = np.random.default_rng(2).normal(size=out_o.shape)
    out_o.backward(g)
    out_t.backward(torch.from_numpy(g))
    for name in "qkv":
        assert_same(getattr(ours, name).grad, getattr(theirs, name).grad)
    # the weights: softmax of the masked, scaled scores, as torch's math path computes them
    scores = theirs.q.detach() @ theirs.k.detach().transpose(-1, -2) / d**0.5
    if mask is not None:
        scores = scores.masked_fill(~mask_t, float("-inf"))
    w_t = torch.nan_to_num(torch.softmax(scores, dim=-1), nan=0.0)
    assert_same(w_o.data, w_t)
