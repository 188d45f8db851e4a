"""``nn.Module``: how a layer holds its weights, names them, saves them and changes mode.

What a student should be able to read off these tests:
- assigning a Parameter, a Module or a list of modules to an attribute registers it;
  anything else (ints, None, plain tensors) is an ordinary attribute;
- ``named_parameters()`` walks the tree and joins the attribute names with dots,
  ``layers.0.`` for the first element of a list; these names are the state dict keys;
- ``load_state_dict`` refuses, by name, a missing, an unexpected or a mis-shaped key;
- ``train()`` / ``eval()`` reach every sub-module; ``zero_grad()`` clears every grad;
- the parameter count of multi-head attention is 4 d^2 + 4 d;
- initialisation is seeded by ``mt.manual_seed`` and Linear weights stay within the
  Xavier bound sqrt(6 / (fan_in + fan_out)).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minitransformer as mt
from minitransformer import nn


class Tiny(nn.Module):
    """A parameter, a sub-module, a list of sub-modules and some plain attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(np.ones(3))
        self.proj = nn.Linear(3, 2)
        self.blocks = [nn.Linear(2, 2), nn.LayerNorm(2)]
        self.count = 7
        self.nothing = None
        self.constant = mt.tensor(np.zeros(3))  # a plain Tensor is not a parameter

    def forward(self, x):
        h = self.proj(x * self.scale)
        for block in self.blocks:
            h = block(h)
        return h


# ---------------------------------------------------------------- registration and names


def test_registration_of_parameters_submodules_and_lists():
    m = Tiny()
    names = [name for name, _ in m.named_parameters()]
    assert names == [
        "scale",
        "proj.weight",
        "proj.bias",
        "blocks.0.weight",
        "blocks.0.bias",
        "blocks.1.weight",
        "blocks.1.bias",
    ]
    # parameters() yields the very objects the attributes hold, in the same order
    params = list(m.parameters())
    expected = [m.scale, m.proj.weight, m.proj.bias]
    expected += [m.blocks[0].weight, m.blocks[0].bias, m.blocks[1].weight, m.blocks[1].bias]
    assert len(params) == len(expected)
    assert all(p is q for p, q in zip(params, expected))
    assert all(p.requires_grad for p in params)
    # the list became a ModuleList that still indexes, iterates and has a length
    assert isinstance(m.blocks, nn.ModuleList) and len(m.blocks) == 2
    assert [type(b).__name__ for b in m.blocks] == ["Linear", "LayerNorm"]
    # plain attributes are left alone
    assert m.count == 7 and m.nothing is None
    assert not m.constant.requires_grad
    child_names = [name for name, _ in m.named_modules()]
    assert child_names == ["", "proj", "blocks", "blocks.0", "blocks.1"]


def test_dotted_names_of_a_transformer():
    model = nn.Transformer(
        7, 9, d_model=4, num_heads=2, num_encoder_layers=2, num_decoder_layers=1, d_ff=8
    )
    names = {name for name, _ in model.named_parameters()}
    for name in (
        "src_embed.weight",
        "tgt_embed.weight",
        "encoder.layers.0.self_attn.q_proj.weight",
        "encoder.layers.1.feed_forward.linear2.bias",
        "decoder.layers.0.cross_attn.out_proj.weight",
        "decoder.layers.0.norm3.bias",
        "generator.weight",
    ):
        assert name in names
    assert "encoder.layers.2.self_attn.q_proj.weight" not in names  # only 2 layers
    assert not any(name.startswith("encoder.norm") for name in names)  # post-norm: no final norm


def test_encoder_layer_parameter_names_follow_the_table():
    layer = nn.EncoderLayer(4, 2, 8, norm_first=True)
    names = [name for name, _ in layer.named_parameters()]
    mha = [f"self_attn.{p}_proj.{w}" for p in ("q", "k", "v", "out") for w in ("weight", "bias")]
    ffn = [f"feed_forward.linear{i}.{w}" for i in (1, 2) for w in ("weight", "bias")]
    norms = [f"norm{i}.{w}" for i in (1, 2) for w in ("weight", "bias")]
    assert sorted(names) == sorted(mha + ffn + norms)


def test_shared_parameter_is_listed_once():
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(3, 3)
            self.b = nn.Linear(3, 3)
            self.b.weight = self.a.weight  # weight tying

    m = Tied()
    names = [name for name, _ in m.named_parameters()]
    assert names == ["a.weight", "a.bias", "b.bias"]
    assert m.num_parameters() == 9 + 3 + 3


def test_replacing_a_registered_module_with_none_unregisters_it():
    m = Tiny()
    m.proj = None
    assert m.proj is None
    assert not any(name.startswith("proj.") for name, _ in m.named_parameters())


def test_a_parameter_assigned_over_a_plain_attribute_is_what_the_attribute_returns():
    lin = nn.Linear(3, 2, bias=False)  # sets the plain attribute bias = None
    bias = nn.Parameter(np.arange(2.0))
    lin.bias = bias
    assert [name for name, _ in lin.named_parameters()] == ["weight", "bias"]
    assert lin.bias is bias  # the forward reads self.bias: it must see the parameter
    x = mt.tensor(np.ones((1, 3)))
    np.testing.assert_allclose(lin(x).numpy(), np.ones((1, 3)) @ lin.weight.numpy() + [0, 1])


def test_module_without_super_init_is_refused():
    class Forgot(nn.Module):
        def __init__(self) -> None:
            self.w = nn.Parameter(np.ones(2))

    with pytest.raises(RuntimeError, match=r"super\(\).__init__\(\)"):
        Forgot()


def test_forward_must_be_defined_and_modulelist_holds_only_modules():
    with pytest.raises(NotImplementedError, match="forward"):
        nn.Module()(1)
    with pytest.raises(TypeError, match="ModuleList holds modules"):
        nn.ModuleList([nn.Linear(1, 1)]).append(3)
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        _ = nn.Linear(1, 1).missing


# ---------------------------------------------------------------- parameter counts


@given(d_head=st.integers(1, 8), heads=st.integers(1, 6), bias=st.booleans())
@settings(max_examples=15, deadline=None)
def test_multi_head_attention_has_4d2_plus_4d_parameters(d_head, heads, bias):
    d = d_head * heads
    mha = nn.MultiHeadAttention(d, heads, bias=bias)
    # four (d, d) projections: W_q, W_k, W_v, W_o; four biases of d when bias=True
    assert mha.num_parameters() == 4 * d * d + (4 * d if bias else 0)


@given(d_head=st.integers(1, 4), heads=st.integers(1, 3), d_ff=st.integers(1, 12))
@settings(max_examples=10, deadline=None)
def test_layer_and_model_parameter_counts(d_head, heads, d_ff):
    d = d_head * heads
    mha = 4 * d * d + 4 * d
    ffn = d * d_ff + d_ff + d_ff * d + d
    norm = 2 * d
    assert nn.EncoderLayer(d, heads, d_ff).num_parameters() == mha + ffn + 2 * norm
    assert nn.DecoderLayer(d, heads, d_ff).num_parameters() == 2 * mha + ffn + 3 * norm
    src, tgt = 5, 6
    for norm_first in (False, True):
        model = nn.Transformer(src, tgt, d, heads, 2, 3, d_ff, max_len=8, norm_first=norm_first)
        final_norms = 2 * norm if norm_first else 0  # pre-norm stacks end in a LayerNorm
        expected = (
            src * d  # source embedding
            + tgt * d  # target embedding
            + 2 * (mha + ffn + 2 * norm)  # encoder layers
            + 3 * (2 * mha + ffn + 3 * norm)  # decoder layers
            + final_norms
            + d * tgt
            + tgt  # generator
        )
        assert model.num_parameters() == expected
        assert model.num_parameters() == sum(p.size for p in model.parameters())


# ---------------------------------------------------------------- state dicts


def _model(seed: int, **kw) -> nn.Transformer:
    mt.manual_seed(seed)
    cfg = dict(d_model=4, num_heads=2, num_encoder_layers=1, num_decoder_layers=1, d_ff=8)
    cfg.update(kw)
    return nn.Transformer(7, 9, dropout=0.0, max_len=16, **cfg)


SRC = np.array([[1, 2, 3, 0], [4, 5, 6, 6]])
TGT = np.array([[1, 2, 0], [3, 4, 5]])


def test_state_dict_holds_every_parameter_by_its_dotted_name():
    model = _model(0)
    state = model.state_dict()
    assert list(state) == [name for name, _ in model.named_parameters()]
    for name, p in model.named_parameters():
        assert isinstance(state[name], np.ndarray)
        assert np.array_equal(state[name], p.numpy())


def test_load_state_dict_copies_weights_and_outputs_match():
    a, b = _model(0), _model(1)
    assert not np.array_equal(a(SRC, TGT).numpy(), b(SRC, TGT).numpy())
    missing, unexpected = b.load_state_dict(a.state_dict())
    assert missing == [] and unexpected == []
    assert np.array_equal(a(SRC, TGT).numpy(), b(SRC, TGT).numpy())
    # a copy, not a shared array: changing a afterwards leaves b alone
    a.generator.bias.data += 1.0
    assert not np.array_equal(a.generator.bias.numpy(), b.generator.bias.numpy())


def test_load_state_dict_casts_to_each_parameter_dtype():
    model = _model(0)
    state = {k: v.astype(np.float64) + 0.5 for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    for name, p in model.named_parameters():
        assert p.dtype == np.float32
        np.testing.assert_array_equal(p.numpy(), state[name].astype(np.float32))


def test_load_state_dict_strict_names_missing_keys():
    model = _model(0)
    state = model.state_dict()
    del state["decoder.layers.0.norm2.bias"]
    with pytest.raises(ValueError, match=r"missing keys: decoder\.layers\.0\.norm2\.bias"):
        _model(1).load_state_dict(state)


def test_load_state_dict_strict_names_unexpected_keys():
    state = _model(0).state_dict()
    state["encoder.norm.weight"] = np.ones(4, dtype=np.float32)
    with pytest.raises(ValueError, match=r"unexpected keys: encoder\.norm\.weight"):
        _model(1).load_state_dict(state)


def test_load_state_dict_names_mis_shaped_keys_with_both_shapes():
    state = _model(0, d_ff=8).state_dict()
    target = _model(1, d_ff=6)
    before = {k: v.copy() for k, v in target.state_dict().items()}
    pattern = (
        r"encoder\.layers\.0\.feed_forward\.linear1\.weight: checkpoint \(4, 8\) vs model \(4, 6\)"
    )
    with pytest.raises(ValueError, match=pattern):
        target.load_state_dict(state)
    # a mis-shaped key is an error even when not strict
    with pytest.raises(ValueError, match=r"mis-shaped keys"):
        target.load_state_dict(state, strict=False)
    # a refused load changes nothing
    for k, v in target.state_dict().items():
        assert np.array_equal(v, before[k])


def test_load_state_dict_not_strict_loads_what_matches_and_reports_the_rest():
    source = _model(0)
    state = source.state_dict()
    del state["generator.bias"]
    state["extra.weight"] = np.zeros(2, dtype=np.float32)
    target = _model(1)
    old_bias = target.generator.bias.numpy()
    missing, unexpected = target.load_state_dict(state, strict=False)
    assert missing == ["generator.bias"] and unexpected == ["extra.weight"]
    assert np.array_equal(target.generator.weight.numpy(), source.generator.weight.numpy())
    assert np.array_equal(target.generator.bias.numpy(), old_bias)


# ---------------------------------------------------------------- modes, grads, devices, dtypes


def test_train_and_eval_reach_every_submodule():
    model = _model(0)
    assert all(m.training for m in model.modules())
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    assert not model.encoder.layers[0].self_attn.attn_dropout.training
    assert model.train() is model
    assert all(m.training for m in model.modules())


def test_eval_switches_dropout_off():
    mt.manual_seed(0)
    model = nn.Transformer(
        7,
        9,
        d_model=4,
        num_heads=2,
        num_encoder_layers=1,
        num_decoder_layers=1,
        d_ff=8,
        dropout=0.5,
    )
    a, b = model(SRC, TGT).numpy(), model(SRC, TGT).numpy()
    assert not np.array_equal(a, b)  # two dropout masks
    model.eval()
    a, b = model(SRC, TGT).numpy(), model(SRC, TGT).numpy()
    assert np.array_equal(a, b)


def test_zero_grad_clears_every_gradient():
    model = _model(0)
    model(SRC, TGT).sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads)
    assert any(np.any(g != 0) for g in grads)
    model.zero_grad()
    for p in model.parameters():
        assert p.grad is None or not np.any(p.grad)


def test_to_cpu_keeps_everything_and_unknown_devices_are_refused():
    model = _model(0)
    before = model(SRC, TGT).numpy()
    assert model.to("cpu") is model
    assert all(p.device == "cpu" for p in model.parameters())
    assert np.array_equal(model(SRC, TGT).numpy(), before)
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        model.to("tpu")


@pytest.mark.skipif(mt.gpu_available(), reason="checks the error given when there is no GPU")
def test_to_cuda_without_a_gpu_says_why():
    with pytest.raises(RuntimeError, match="CuPy|GPU"):
        nn.Linear(2, 2).to("cuda")


def test_double_casts_parameters_and_buffers():
    model = _model(0).double()
    assert all(p.dtype == np.float64 for p in model.parameters())
    assert model.pos.pe.dtype == np.float64
    assert model(SRC, TGT).dtype == np.float64


def test_repr_shows_the_tree():
    text = repr(nn.MultiHeadAttention(8, 2))
    assert text.startswith("MultiHeadAttention(d_model=8, num_heads=2")
    assert "(q_proj): Linear(in_features=8, out_features=8, bias=True)" in text
    assert "(out_proj): Linear(in_features=8, out_features=8, bias=True)" in text
    text = repr(nn.Encoder(2, 4, 2, 8))
    assert "(layers): ModuleList(" in text and "(1): EncoderLayer(norm_first=False" in text
    assert "(feed_forward): FeedForward(activation='relu'" in text
    assert repr(nn.LayerNorm(5)) == "LayerNorm(5, eps=1e-05)"
    assert repr(nn.Embedding(10, 3, padding_idx=0)) == "Embedding(10, 3, padding_idx=0)"


# ---------------------------------------------------------------- initialisation


def _params(seed: int) -> dict[str, np.ndarray]:
    mt.manual_seed(seed)
    model = nn.Transformer(
        7, 9, d_model=8, num_heads=2, num_encoder_layers=1, num_decoder_layers=1, d_ff=16
    )
    return {k: v.copy() for k, v in model.state_dict().items()}


def test_same_seed_gives_identical_parameters_different_seed_different():
    a, b, c = _params(3), _params(3), _params(4)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    random_keys = [k for k in a if np.any(a[k] != a[k].flat[0])]  # not the constant inits
    assert random_keys
    assert all(not np.array_equal(a[k], c[k]) for k in random_keys)


@given(fan_in=st.integers(1, 64), fan_out=st.integers(1, 64), seed=st.integers(0, 1000))
@settings(max_examples=20, deadline=None)
def test_linear_weight_within_the_xavier_bound_and_bias_zero(fan_in, fan_out, seed):
    mt.manual_seed(seed)
    lin = nn.Linear(fan_in, fan_out)
    a = math.sqrt(6.0 / (fan_in + fan_out))
    w = lin.weight.numpy()
    assert w.shape == (fan_in, fan_out)
    assert np.all(np.abs(w) <= a)
    assert np.array_equal(lin.bias.numpy(), np.zeros(fan_out))


def test_xavier_uniform_fills_its_interval():
    # U(-a, a) has variance a^2 / 3 and reaches close to both ends
    mt.manual_seed(0)
    w = nn.Linear(100, 200).weight.numpy()
    a = math.sqrt(6.0 / 300)
    assert w.max() > 0.99 * a and w.min() < -0.99 * a
    assert abs(w.var() - a * a / 3) < 0.05 * a * a / 3
    assert abs(w.mean()) < 0.01 * a


def test_layer_norm_starts_as_identity_and_embedding_at_scale_one_over_sqrt_d():
    ln = nn.LayerNorm(6)
    assert np.array_equal(ln.weight.numpy(), np.ones(6))
    assert np.array_equal(ln.bias.numpy(), np.zeros(6))
    mt.manual_seed(0)
    d = 64
    emb = nn.Embedding(500, d, padding_idx=3)
    w = emb.weight.numpy()
    assert np.array_equal(w[3], np.zeros(d))  # the padding row starts at zero
    rows = np.delete(w, 3, axis=0)
    assert abs(rows.std() - 1 / math.sqrt(d)) < 0.02 / math.sqrt(d)
