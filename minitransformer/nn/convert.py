"""Converters between our state dicts and PyTorch's layouts (no torch import needed).

Two differences:
- our ``Linear.weight`` is (in, out) and computes x @ W; PyTorch's is (out, in) and
  computes x @ W^T, so every linear weight is transposed;
- PyTorch's ``nn.MultiheadAttention`` packs the three input projections into one
  ``in_proj_weight`` (3d, d) = [W_q^T; W_k^T; W_v^T] and ``in_proj_bias`` (3d,).

Names: our ``feed_forward.linear1`` is PyTorch's ``linear1``; our decoder's
``cross_attn`` is PyTorch's ``multihead_attn``. Arrays are NumPy (or anything with
``.T`` and ``concatenate`` in its array module).
"""

from __future__ import annotations

from typing import Any

from .. import backend

__all__ = [
    "mha_to_torch",
    "mha_from_torch",
    "encoder_layer_to_torch",
    "encoder_layer_from_torch",
    "decoder_layer_to_torch",
    "decoder_layer_from_torch",
    "encoder_to_torch",
    "encoder_from_torch",
    "decoder_to_torch",
    "decoder_from_torch",
]

State = dict[str, Any]


def _sub(state: State, prefix: str) -> State:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def mha_to_torch(state: State) -> State:
    """Our MultiHeadAttention keys (q_proj.weight ...) -> nn.MultiheadAttention keys."""
    xp = backend.array_module(state["q_proj.weight"])
    out = {
        "in_proj_weight": xp.concatenate(
            [state["q_proj.weight"].T, state["k_proj.weight"].T, state["v_proj.weight"].T], axis=0
        ),
        "out_proj.weight": state["out_proj.weight"].T,
    }
    if "q_proj.bias" in state:
        out["in_proj_bias"] = xp.concatenate(
            [state["q_proj.bias"], state["k_proj.bias"], state["v_proj.bias"]]
        )
        out["out_proj.bias"] = state["out_proj.bias"]
    return {k: backend.array_module(v).ascontiguousarray(v) for k, v in out.items()}


def mha_from_torch(state: State) -> State:
    """nn.MultiheadAttention keys -> our MultiHeadAttention keys."""
    w = state["in_proj_weight"]
    d = w.shape[1]
    out = {
        "q_proj.weight": w[:d].T,
        "k_proj.weight": w[d : 2 * d].T,
        "v_proj.weight": w[2 * d :].T,
        "out_proj.weight": state["out_proj.weight"].T,
    }
    if "in_proj_bias" in state:
        b = state["in_proj_bias"]
        out.update({"q_proj.bias": b[:d], "k_proj.bias": b[d : 2 * d], "v_proj.bias": b[2 * d :]})
        out["out_proj.bias"] = state["out_proj.bias"]
    return {k: backend.array_module(v).ascontiguousarray(v) for k, v in out.items()}


def _norms_and_ffn_to_torch(state: State, norms: int) -> State:
    out = {
        "linear1.weight": state["feed_forward.linear1.weight"].T,
        "linear1.bias": state["feed_forward.linear1.bias"],
        "linear2.weight": state["feed_forward.linear2.weight"].T,
        "linear2.bias": state["feed_forward.linear2.bias"],
    }
    for i in range(1, norms + 1):
        out[f"norm{i}.weight"] = state[f"norm{i}.weight"]
        out[f"norm{i}.bias"] = state[f"norm{i}.bias"]
    return out


def _norms_and_ffn_from_torch(state: State, norms: int) -> State:
    out = {
        "feed_forward.linear1.weight": state["linear1.weight"].T,
        "feed_forward.linear1.bias": state["linear1.bias"],
        "feed_forward.linear2.weight": state["linear2.weight"].T,
        "feed_forward.linear2.bias": state["linear2.bias"],
    }
    for i in range(1, norms + 1):
        out[f"norm{i}.weight"] = state[f"norm{i}.weight"]
        out[f"norm{i}.bias"] = state[f"norm{i}.bias"]
    return out


def _prefixed(prefix: str, state: State) -> State:
    return {prefix + k: v for k, v in state.items()}


def encoder_layer_to_torch(state: State) -> State:
    """Our EncoderLayer -> nn.TransformerEncoderLayer."""
    return {
        **_prefixed("self_attn.", mha_to_torch(_sub(state, "self_attn."))),
        **_norms_and_ffn_to_torch(state, 2),
    }


def encoder_layer_from_torch(state: State) -> State:
    return {
        **_prefixed("self_attn.", mha_from_torch(_sub(state, "self_attn."))),
        **_norms_and_ffn_from_torch(state, 2),
    }


def decoder_layer_to_torch(state: State) -> State:
    """Our DecoderLayer -> nn.TransformerDecoderLayer (cross_attn -> multihead_attn)."""
    return {
        **_prefixed("self_attn.", mha_to_torch(_sub(state, "self_attn."))),
        **_prefixed("multihead_attn.", mha_to_torch(_sub(state, "cross_attn."))),
        **_norms_and_ffn_to_torch(state, 3),
    }


def decoder_layer_from_torch(state: State) -> State:
    return {
        **_prefixed("self_attn.", mha_from_torch(_sub(state, "self_attn."))),
        **_prefixed("cross_attn.", mha_from_torch(_sub(state, "multihead_attn."))),
        **_norms_and_ffn_from_torch(state, 3),
    }


def _stack(state: State, layer_fn) -> State:
    out: State = {}
    indices = sorted({int(k.split(".")[1]) for k in state if k.startswith("layers.")})
    for i in indices:
        out.update(_prefixed(f"layers.{i}.", layer_fn(_sub(state, f"layers.{i}."))))
    for k in ("norm.weight", "norm.bias"):
        if k in state:
            out[k] = state[k]
    return out


def encoder_to_torch(state: State) -> State:
    """Our Encoder -> nn.TransformerEncoder (``norm`` kept when present)."""
    return _stack(state, encoder_layer_to_torch)


def encoder_from_torch(state: State) -> State:
    return _stack(state, encoder_layer_from_torch)


def decoder_to_torch(state: State) -> State:
    return _stack(state, decoder_layer_to_torch)


def decoder_from_torch(state: State) -> State:
    return _stack(state, decoder_layer_from_torch)
