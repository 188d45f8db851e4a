"""The CuPy path: the same layers, optimizers and checkpoints on an NVIDIA GPU.

These tests run only where CuPy sees a CUDA GPU; elsewhere they skip and say why.
Each compares the GPU result with the CPU result of the same computation.
"""

from __future__ import annotations

import numpy as np
import pytest

import minitransformer as mt
from minitransformer import functional as F
from minitransformer import nn, optim

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not mt.gpu_available(), reason="no CUDA GPU / CuPy not installed"),
]


def test_tensor_round_trip_keeps_values_and_device():
    x = mt.tensor(np.arange(6, dtype=np.float32).reshape(2, 3))
    g = x.to("cuda")
    assert g.device == "cuda" and g.to("cpu").device == "cpu"
    np.testing.assert_array_equal(g.numpy(), x.numpy())


def test_ops_and_gradients_match_cpu():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 5))
    b = rng.standard_normal((5, 3))
    results = {}
    for device in ("cpu", "cuda"):
        x = mt.tensor(a, requires_grad=True, dtype="float64", device=device)
        w = mt.tensor(b, requires_grad=True, dtype="float64", device=device)
        y = F.log_softmax(F.gelu(x @ w), axis=-1).sum()
        y.backward()
        results[device] = (y.item(), mt.backend.to_numpy(x.grad), mt.backend.to_numpy(w.grad))
    for cpu, gpu in zip(results["cpu"], results["cuda"]):
        np.testing.assert_allclose(gpu, cpu, rtol=1e-10, atol=1e-12)


def test_embedding_backward_sums_repeated_ids_on_gpu():
    weight = mt.tensor(np.zeros((4, 2)), requires_grad=True, dtype="float64", device="cuda")
    ids = mt.tensor(np.array([1, 1, 3]), device="cuda")
    F.embedding(ids, weight).sum().backward()
    np.testing.assert_array_equal(
        mt.backend.to_numpy(weight.grad), [[0, 0], [2, 2], [0, 0], [1, 1]]
    )


def test_transformer_on_gpu_matches_cpu_and_optimizer_state_lives_there():
    mt.manual_seed(0)
    model = nn.Transformer(
        11,
        13,
        d_model=16,
        num_heads=2,
        num_encoder_layers=1,
        num_decoder_layers=1,
        d_ff=32,
        dropout=0.0,
    ).double()
    src = np.array([[3, 4, 5, 0]])
    tgt = np.array([[1, 6, 7]])
    cpu = model(src, tgt).numpy()
    model.to("cuda")
    gpu_logits = model(mt.backend.to_device(src, "cuda"), mt.backend.to_device(tgt, "cuda"))
    np.testing.assert_allclose(gpu_logits.numpy(), cpu, rtol=1e-9, atol=1e-12)
    opt = optim.AdamW(model.parameters(), lr=1e-3)
    gpu_logits.sum().backward()
    opt.step()
    state = opt.state_dict()["state"]
    some = next(iter(state.values()))
    assert mt.backend.device_of(some["exp_avg"]) == "cuda"


def test_load_onto_gpu(tmp_path):
    model = nn.Linear(3, 2)
    mt.save(model, tmp_path / "m.safetensors")
    state = mt.load(tmp_path / "m.safetensors", device="cuda")
    assert all(mt.backend.device_of(v) == "cuda" for v in state.values())
    np.testing.assert_array_equal(mt.backend.to_numpy(state["weight"]), model.weight.numpy())
