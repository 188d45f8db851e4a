"""The CUDA kernels (kernels/cuda_softmax.py, kernels/cuda_topk.py), three ways.

1. Under Numba's CUDA simulator, on the CPU: ``NUMBA_ENABLE_CUDASIM`` must be set before
   Numba is imported, which this process did long ago, so each file of tests/cudasim/ runs
   in a subprocess with the variable set (those files skip themselves otherwise).
2. Here, without any CUDA: the argument checks, which run before a kernel is compiled, and
   the promise that importing the modules needs no CUDA.
3. On a real GPU with CuPy (marked ``gpu``; skipped when there is none).
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from minitransformer.backend import gpu_available
from minitransformer.kernels.cuda_softmax import cuda_softmax_backward, cuda_softmax_forward
from minitransformer.kernels.cuda_topk import (
    MAX_TOP_K,
    cuda_topk_attention_backward,
    cuda_topk_attention_forward,
)
from minitransformer.kernels.softmax import softmax_backward_reference, softmax_reference
from minitransformer.kernels.topk import (
    topk_attention_backward_reference,
    topk_attention_reference,
)

REPO = Path(__file__).resolve().parents[1]
SIM_DIR = REPO / "tests" / "cudasim"


# ---------------------------------------------------------------- 1. the simulator


@pytest.mark.cudasim
@pytest.mark.slow
@pytest.mark.parametrize("sim_file", ["test_cuda_softmax_sim.py", "test_cuda_topk_sim.py"])
def test_kernels_under_the_cuda_simulator(sim_file):
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}

    def run() -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                str(SIM_DIR / sim_file),
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    proc = run()
    if proc.returncode != 0:
        # Known issue: once in CI (a loaded machine) one example of the top-k file failed
        # and then passed on hypothesis's own re-run, with the same inputs; 30 local
        # repeats did not reproduce it. The simulator runs a block's threads as Python
        # threads, so this is a thread-scheduling effect, either of the simulator or of a
        # race the kernel review has not found. One more run keeps CI meaningful, and the
        # warning keeps the first failure visible instead of hiding it.
        first = proc.stdout + proc.stderr
        proc = run()
        warnings.warn(f"simulator run of {sim_file} failed once:\n{first[-3000:]}", stacklevel=1)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"simulator run of {sim_file} failed twice:\n{output}"
    # a run that skipped everything (the variable not reaching Numba) also exits 0
    assert " passed" in output and "skipped" not in output, output


# ---------------------------------------------------------------- 2. without CUDA


def test_importing_the_kernel_modules_needs_no_cuda():
    code = (
        "import sys, minitransformer.kernels.cuda_softmax, minitransformer.kernels.cuda_topk\n"
        "assert 'numba.cuda' not in sys.modules, 'numba.cuda was imported eagerly'\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def _qkv(b=1, lq=2, lk=3, d=4, dv=5, dtype=np.float32):
    rng = np.random.default_rng(0)
    return tuple(rng.normal(size=(b, n, f)).astype(dtype) for n, f in ((lq, d), (lk, d), (lk, dv)))


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: cuda_softmax_forward(np.zeros((2, 3), np.int64)), TypeError, "float32"),
        (lambda: cuda_softmax_forward(np.zeros((2, 3), np.float32), axis=2), ValueError, "axis"),
        (
            lambda: cuda_softmax_forward(np.zeros((2, 3)), threads_per_block=24),
            ValueError,
            "power of two",
        ),
        (
            lambda: cuda_softmax_backward(np.zeros((2, 3)), np.zeros((3, 2))),
            ValueError,
            "(2, 3)",
        ),
        (lambda: cuda_topk_attention_forward(*_qkv(), 0), ValueError, "top_k"),
        (lambda: cuda_topk_attention_forward(*_qkv(lk=200), 129), ValueError, "MAX_TOP_K=128"),
        (
            lambda: cuda_topk_attention_forward(*_qkv(), 2, mask=np.ones((1, 2, 4), bool)),
            ValueError,
            "(1, 2, 4)",
        ),
        (lambda: cuda_topk_attention_forward(*_qkv(), 2, mask=np.ones(3)), TypeError, "boolean"),
        (
            lambda: cuda_topk_attention_forward(*_qkv()[:2], np.zeros((1, 4, 5), np.float32), 2),
            ValueError,
            "number of keys",
        ),
        (
            lambda: cuda_topk_attention_forward(*_qkv()[:2], np.zeros((1, 3, 5)), 2),
            TypeError,
            "dtype",
        ),
        (
            lambda: cuda_topk_attention_backward(
                *_qkv(),
                np.zeros((1, 2, 2), np.int64),
                np.zeros((1, 2, 2), np.float32),
                np.zeros((1, 2, 5), np.float32),
            ),
            TypeError,
            "int32",
        ),
        (
            lambda: cuda_topk_attention_backward(
                *_qkv(),
                np.zeros((1, 2, 2), np.int32),
                np.zeros((1, 2, 2), np.float32),
                np.zeros((1, 2, 4), np.float32),
            ),
            ValueError,
            "gout",
        ),
    ],
)
def test_bad_arguments_are_named_before_any_kernel_runs(call, error, words):
    with pytest.raises(error) as info:
        call()
    assert words in str(info.value)


def test_keeping_more_than_max_top_k_keys_is_refused():
    # the cap is on kk = min(top_k, Lk); a larger top_k with fewer keys is dense attention
    # and allowed (tests/cudasim/test_cuda_topk_sim.py runs that case)
    assert MAX_TOP_K == 128
    with pytest.raises(ValueError, match="got top_k=129 with 129 keys"):
        cuda_topk_attention_forward(*_qkv(lk=129), 129)


def test_without_a_gpu_or_the_simulator_a_call_says_how_to_get_one():
    from numba import cuda

    if cuda.is_available():
        pytest.skip("Numba sees a CUDA device (or the simulator) in this process")
    with pytest.raises(RuntimeError, match="NUMBA_ENABLE_CUDASIM=1"):
        cuda_softmax_forward(np.zeros((2, 3), np.float32))


# ---------------------------------------------------------------- 3. a real GPU


def _grid(cp, shape, dtype, rng):
    """Values from {-1, -1/2, 0, 1/2, 1}: scores are exact, so the kept keys must agree."""
    return cp.asarray(rng.integers(-2, 3, size=shape) / 2, dtype=dtype)


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="no CUDA GPU / CuPy not installed")
class TestOnGpu:
    """The kernels on CuPy arrays, against the references run by CuPy itself."""

    @pytest.fixture
    def cp(self):
        from minitransformer.backend import get_cupy

        return get_cupy()

    @pytest.mark.parametrize("dtype", ["float32", "float64"])
    @pytest.mark.parametrize("shape, axis", [((4, 33, 257), -1), ((4, 33, 70), 1)])
    def test_softmax(self, cp, dtype, shape, axis):
        rng = np.random.default_rng(0)
        x = cp.asarray(rng.normal(size=shape) * 5, dtype=dtype)
        x[0, :3] = -cp.inf
        x[1] = -cp.inf  # fully masked rows along any axis
        y = cuda_softmax_forward(x, axis)
        assert isinstance(y, cp.ndarray)
        tol = 1e-5 if dtype == "float32" else 1e-12
        cp.testing.assert_allclose(y, softmax_reference(x, axis), rtol=tol, atol=tol)
        gy = cp.asarray(rng.normal(size=shape), dtype=dtype)
        gx = cuda_softmax_backward(y, gy, axis)
        assert isinstance(gx, cp.ndarray)
        cp.testing.assert_allclose(gx, softmax_backward_reference(y, gy, axis), rtol=tol, atol=tol)

    @pytest.mark.parametrize("dtype", ["float32", "float64"])
    @pytest.mark.parametrize("top_k", [1, 8, 64, 300])
    def test_topk_attention(self, cp, dtype, top_k):
        rng = np.random.default_rng(top_k)
        b, lq, lk, d, dv = 2, 96, 200 if top_k <= MAX_TOP_K else 100, 16, 24
        q, k = _grid(cp, (b, lq, d), dtype, rng), _grid(cp, (b, lk, d), dtype, rng)
        v = cp.asarray(rng.normal(size=(b, lk, dv)), dtype=dtype)
        mask = cp.asarray(rng.random((b, 1, lk)) < 0.8)
        out, idx, p = cuda_topk_attention_forward(q, k, v, top_k, mask)
        assert isinstance(out, cp.ndarray) and idx.dtype == cp.int32
        ref_out, ref_w, keep = topk_attention_reference(q, k, v, top_k, mask)
        tol = 1e-4 if dtype == "float32" else 1e-12
        cp.testing.assert_allclose(out, ref_out, rtol=tol, atol=tol)
        # the kept keys and their weights, scattered back to a dense (B, Lq, Lk) matrix
        w = cp.zeros_like(ref_w)
        bi, qi, ti = cp.nonzero(idx >= 0)
        w[bi, qi, idx[bi, qi, ti]] = p[bi, qi, ti]
        cp.testing.assert_allclose(w, ref_w, rtol=tol, atol=tol)
        assert bool(((w > 0) <= keep).all())

        gout = cp.asarray(rng.normal(size=out.shape), dtype=dtype)
        grads = cuda_topk_attention_backward(q, k, v, idx, p, gout)
        ref_grads = topk_attention_backward_reference(q, k, v, ref_w, keep, gout)
        for g, ref in zip(grads, ref_grads):
            assert isinstance(g, cp.ndarray)
            cp.testing.assert_allclose(g, ref, rtol=tol, atol=tol)
