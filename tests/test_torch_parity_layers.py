"""Our layers against PyTorch's, with the same weights, in float64 and without dropout.

Weights are drawn for our layer, converted with ``minitransformer.nn.convert`` and
loaded into the PyTorch layer (strict, so every key must exist on both sides). Both
compute a weighted sum of their output, L = sum(w * out), and backpropagate; the
forward, the gradients of the inputs and the gradient of every parameter must agree
to 1e-8 relative. Our parameter gradients go through the same converter as the
weights, so they are compared key by key in PyTorch's layout.

Masks: ours say True = "may attend", PyTorch's boolean ``attn_mask`` and
``key_padding_mask`` say True = "not allowed". The conversion is a ``~``.
"""

from __future__ import annotations

import numpy as np
import pytest

import minitransformer as mt
from minitransformer import nn
from minitransformer.nn import convert

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.torch

RTOL, ATOL = 1e-8, 1e-12
D, HEADS, D_FF = 8, 2, 12


# ---------------------------------------------------------------- helpers


def randomise(module: nn.Module, seed: int) -> nn.Module:
    """float64 with every parameter random (biases and LayerNorm scales included)."""
    module.double()
    rng = np.random.default_rng(seed)
    for p in module.parameters():
        p.data = 0.5 * rng.standard_normal(p.shape)
    for m in module.modules():
        if isinstance(m, nn.LayerNorm):
            m.weight.data = 1.0 + 0.2 * rng.standard_normal(m.weight.shape)
    return module


def load_into_torch(torch_module, state: dict[str, np.ndarray]) -> None:
    torch_module.load_state_dict(
        {k: torch.from_numpy(np.array(v, dtype=np.float64)) for k, v in state.items()},
        strict=True,
    )


def grads_of(module: nn.Module) -> dict[str, np.ndarray]:
    return {name: p.grad for name, p in module.named_parameters()}


def close(ours, theirs, what: str) -> None:
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else theirs
    np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=ATOL, err_msg=what)


def compare_param_grads(ours: dict, torch_module, to_torch) -> None:
    converted = to_torch(ours)
    theirs = dict(torch_module.named_parameters())
    assert set(converted) == set(theirs)
    for name, g in converted.items():
        close(g, theirs[name].grad, f"gradient of {name}")


def pair(a: np.ndarray):
    """The same values as a float64 leaf for us and for PyTorch."""
    return mt.tensor(a.copy(), requires_grad=True), torch.tensor(a, requires_grad=True)


def real_tokens(lengths: list[int], n: int) -> np.ndarray:
    """(B, n) True where the token is real (position < length)."""
    return np.arange(n)[None, :] < np.array(lengths)[:, None]


def causal(n: int) -> np.ndarray:
    return np.tril(np.ones((n, n), dtype=bool))


def backward_both(out, tout, seed: int) -> None:
    w = np.random.default_rng(seed).standard_normal(out.shape)
    (out * mt.tensor(w)).sum().backward()
    (tout * torch.tensor(w)).sum().backward()


# ---------------------------------------------------------------- multi-head attention


@pytest.mark.parametrize("bias", [True, False])
def test_mha_cross_attention_with_key_padding(bias):
    ours = randomise(nn.MultiHeadAttention(D, HEADS, bias=bias), 0)
    theirs = torch.nn.MultiheadAttention(
        D, HEADS, dropout=0.0, bias=bias, batch_first=True, dtype=torch.float64
    )
    load_into_torch(theirs, convert.mha_to_torch(ours.state_dict()))
    rng = np.random.default_rng(1)
    (q, tq), (k, tk), (v, tv) = (
        pair(rng.standard_normal(s)) for s in ((3, 4, D), (3, 5, D), (3, 5, D))
    )
    real = real_tokens([5, 3, 1], 5)  # every query keeps at least one key

    out = ours(q, k, v, mask=real[:, None, None, :])
    tout, tweights = theirs(
        tq, tk, tv, key_padding_mask=torch.tensor(~real), average_attn_weights=False
    )
    close(out.numpy(), tout, "output")
    close(ours.last_weights.numpy(), tweights, "attention weights")
    backward_both(out, tout, 2)
    for name, ours_t, theirs_t in (("query", q, tq), ("key", k, tk), ("value", v, tv)):
        close(ours_t.grad, theirs_t.grad, f"gradient of the {name}")
    compare_param_grads(grads_of(ours), theirs, convert.mha_to_torch)


def test_mha_causal_self_attention_with_padding():
    ours = randomise(nn.MultiHeadAttention(D, 4), 3)
    theirs = torch.nn.MultiheadAttention(D, 4, batch_first=True, dtype=torch.float64)
    load_into_torch(theirs, convert.mha_to_torch(ours.state_dict()))
    x, tx = pair(np.random.default_rng(4).standard_normal((2, 5, D)))
    real = real_tokens([5, 2], 5)
    ours_mask = causal(5)[None, None] & real[:, None, None, :]  # (B, 1, L, L), True = attend

    out = ours(x, x, x, mask=ours_mask)
    tout, tweights = theirs(
        tx,
        tx,
        tx,
        attn_mask=torch.tensor(~causal(5)),  # True = not allowed
        key_padding_mask=torch.tensor(~real),
        average_attn_weights=False,
    )
    close(out.numpy(), tout, "output")
    close(ours.last_weights.numpy(), tweights, "attention weights")
    backward_both(out, tout, 5)
    close(x.grad, tx.grad, "gradient of the input (used as query, key and value)")
    compare_param_grads(grads_of(ours), theirs, convert.mha_to_torch)


# ---------------------------------------------------------------- encoder and decoder layers

CONFIGS = [(nf, act) for nf in (False, True) for act in ("relu", "gelu")]


@pytest.mark.parametrize("norm_first, activation", CONFIGS)
def test_encoder_layer(norm_first, activation):
    ours = nn.EncoderLayer(
        D, HEADS, D_FF, dropout=0.0, activation=activation, norm_first=norm_first
    )
    randomise(ours, 6)
    theirs = torch.nn.TransformerEncoderLayer(
        D,
        HEADS,
        D_FF,
        dropout=0.0,
        activation=activation,
        batch_first=True,
        norm_first=norm_first,
        dtype=torch.float64,
    )
    load_into_torch(theirs, convert.encoder_layer_to_torch(ours.state_dict()))
    x, tx = pair(np.random.default_rng(7).standard_normal((3, 4, D)))
    real = real_tokens([4, 2, 3], 4)

    out = ours(x, real[:, None, None, :])
    tout = theirs(tx, src_key_padding_mask=torch.tensor(~real))
    close(out.numpy(), tout, "output")
    backward_both(out, tout, 8)
    close(x.grad, tx.grad, "gradient of the input")
    compare_param_grads(grads_of(ours), theirs, convert.encoder_layer_to_torch)


@pytest.mark.parametrize("norm_first, activation", CONFIGS)
def test_decoder_layer(norm_first, activation):
    ours = nn.DecoderLayer(
        D, HEADS, D_FF, dropout=0.0, activation=activation, norm_first=norm_first
    )
    randomise(ours, 9)
    theirs = torch.nn.TransformerDecoderLayer(
        D,
        HEADS,
        D_FF,
        dropout=0.0,
        activation=activation,
        batch_first=True,
        norm_first=norm_first,
        dtype=torch.float64,
    )
    load_into_torch(theirs, convert.decoder_layer_to_torch(ours.state_dict()))
    rng = np.random.default_rng(10)
    y, ty = pair(rng.standard_normal((2, 4, D)))
    memory, tmemory = pair(rng.standard_normal((2, 3, D)))
    tgt_real, src_real = real_tokens([4, 3], 4), real_tokens([2, 3], 3)

    out = ours(
        y,
        memory,
        tgt_mask=causal(4)[None, None] & tgt_real[:, None, None, :],
        memory_mask=src_real[:, None, None, :],
    )
    tout = theirs(
        ty,
        tmemory,
        tgt_mask=torch.tensor(~causal(4)),
        tgt_key_padding_mask=torch.tensor(~tgt_real),
        memory_key_padding_mask=torch.tensor(~src_real),
    )
    close(out.numpy(), tout, "output")
    backward_both(out, tout, 11)
    close(y.grad, ty.grad, "gradient of the target input")
    close(memory.grad, tmemory.grad, "gradient of the memory")
    compare_param_grads(grads_of(ours), theirs, convert.decoder_layer_to_torch)


# ---------------------------------------------------------------- two-layer stacks


def torch_encoder(norm_first: bool, activation: str):
    layer = torch.nn.TransformerEncoderLayer(
        D,
        HEADS,
        D_FF,
        dropout=0.0,
        activation=activation,
        batch_first=True,
        norm_first=norm_first,
        dtype=torch.float64,
    )
    norm = torch.nn.LayerNorm(D, dtype=torch.float64) if norm_first else None
    return torch.nn.TransformerEncoder(layer, 2, norm=norm, enable_nested_tensor=False)


def torch_decoder(norm_first: bool, activation: str):
    layer = torch.nn.TransformerDecoderLayer(
        D,
        HEADS,
        D_FF,
        dropout=0.0,
        activation=activation,
        batch_first=True,
        norm_first=norm_first,
        dtype=torch.float64,
    )
    norm = torch.nn.LayerNorm(D, dtype=torch.float64) if norm_first else None
    return torch.nn.TransformerDecoder(layer, 2, norm=norm)


@pytest.mark.parametrize("norm_first, activation", [(False, "relu"), (True, "gelu")])
def test_two_layer_encoder_stack(norm_first, activation):
    ours = nn.Encoder(2, D, HEADS, D_FF, dropout=0.0, activation=activation, norm_first=norm_first)
    randomise(ours, 12)
    theirs = torch_encoder(norm_first, activation)
    load_into_torch(theirs, convert.encoder_to_torch(ours.state_dict()))
    x, tx = pair(np.random.default_rng(13).standard_normal((2, 5, D)))
    real = real_tokens([5, 3], 5)

    out = ours(x, real[:, None, None, :])
    tout = theirs(tx, src_key_padding_mask=torch.tensor(~real))
    close(out.numpy(), tout, "output")
    backward_both(out, tout, 14)
    close(x.grad, tx.grad, "gradient of the input")
    compare_param_grads(grads_of(ours), theirs, convert.encoder_to_torch)


@pytest.mark.parametrize("norm_first, activation", [(False, "gelu"), (True, "relu")])
def test_two_layer_decoder_stack(norm_first, activation):
    ours = nn.Decoder(2, D, HEADS, D_FF, dropout=0.0, activation=activation, norm_first=norm_first)
    randomise(ours, 15)
    theirs = torch_decoder(norm_first, activation)
    load_into_torch(theirs, convert.decoder_to_torch(ours.state_dict()))
    rng = np.random.default_rng(16)
    y, ty = pair(rng.standard_normal((2, 4, D)))
    memory, tmemory = pair(rng.standard_normal((2, 5, D)))
    tgt_real, src_real = real_tokens([4, 2], 4), real_tokens([5, 3], 5)

    out = ours(
        y,
        memory,
        tgt_mask=causal(4)[None, None] & tgt_real[:, None, None, :],
        memory_mask=src_real[:, None, None, :],
    )
    tout = theirs(
        ty,
        tmemory,
        tgt_mask=torch.tensor(~causal(4)),
        tgt_key_padding_mask=torch.tensor(~tgt_real),
        memory_key_padding_mask=torch.tensor(~src_real),
    )
    close(out.numpy(), tout, "output")
    backward_both(out, tout, 17)
    close(y.grad, ty.grad, "gradient of the target input")
    close(memory.grad, tmemory.grad, "gradient of the memory")
    compare_param_grads(grads_of(ours), theirs, convert.decoder_to_torch)


# ---------------------------------------------------------------- the converters round-trip


def _ours_and_torch():
    """(our module, its PyTorch twin, to_torch, from_torch) for every converter."""
    yield (
        nn.MultiHeadAttention(D, HEADS),
        torch.nn.MultiheadAttention(D, HEADS, batch_first=True),
        convert.mha_to_torch,
        convert.mha_from_torch,
    )
    yield (
        nn.MultiHeadAttention(D, HEADS, bias=False),
        torch.nn.MultiheadAttention(D, HEADS, bias=False, batch_first=True),
        convert.mha_to_torch,
        convert.mha_from_torch,
    )
    for nf in (False, True):
        yield (
            nn.EncoderLayer(D, HEADS, D_FF, norm_first=nf),
            torch.nn.TransformerEncoderLayer(D, HEADS, D_FF, batch_first=True, norm_first=nf),
            convert.encoder_layer_to_torch,
            convert.encoder_layer_from_torch,
        )
        yield (
            nn.DecoderLayer(D, HEADS, D_FF, norm_first=nf),
            torch.nn.TransformerDecoderLayer(D, HEADS, D_FF, batch_first=True, norm_first=nf),
            convert.decoder_layer_to_torch,
            convert.decoder_layer_from_torch,
        )
        yield (
            nn.Encoder(2, D, HEADS, D_FF, norm_first=nf),
            torch_encoder(nf, "relu").float(),
            convert.encoder_to_torch,
            convert.encoder_from_torch,
        )
        yield (
            nn.Decoder(2, D, HEADS, D_FF, norm_first=nf),
            torch_decoder(nf, "relu").float(),
            convert.decoder_to_torch,
            convert.decoder_from_torch,
        )


CASES = list(_ours_and_torch())


@pytest.mark.parametrize(
    "case", CASES, ids=[f"{type(c[0]).__name__}-{i}" for i, c in enumerate(CASES)]
)
def test_converters_round_trip_both_ways(case):
    ours, theirs, to_torch, from_torch = case
    randomise(ours, 18)
    state = ours.state_dict()
    # ours -> torch: exactly PyTorch's keys and shapes
    converted = to_torch(state)
    torch_state = theirs.state_dict()
    assert set(converted) == set(torch_state)
    for k, v in converted.items():
        assert tuple(v.shape) == tuple(torch_state[k].shape), k
    # ours -> torch -> ours is the identity, bit for bit
    back = from_torch(converted)
    assert set(back) == set(state)
    for k in state:
        assert np.array_equal(back[k], state[k]), k
    # torch -> ours -> torch is the identity on PyTorch's own (random) weights
    theirs_np = {k: v.detach().numpy() for k, v in torch_state.items()}
    again = to_torch(from_torch(theirs_np))
    for k in theirs_np:
        assert np.array_equal(again[k], theirs_np[k]), k
    # and what comes from PyTorch loads (strictly) into ours
    ours.load_state_dict(from_torch(theirs_np))
