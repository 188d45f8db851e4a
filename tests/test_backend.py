"""The backend (NumPy on the CPU, CuPy on a GPU), dtypes, seeding, and the architecture
rule that keeps NumPy out of the ops.

The rule: code that computes on tensor data asks the backend for the array module of
its inputs (``xp``) instead of importing NumPy, so the same op runs on CuPy arrays.
``test_numpy_is_imported_only_where_allowed`` parses every module of the package and
fails if one outside the allow-list below imports numpy.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import float_arrays, index_arrays, shapes

import minitransformer as mt
from minitransformer import backend
from minitransformer import functional as F

PACKAGE = Path(mt.__file__).resolve().parent


@pytest.fixture
def restore_default_dtype():
    previous = mt.get_default_dtype()
    yield
    mt.set_default_dtype(previous)


# ---------------------------------------------------------------- array module and device


def test_array_module_and_device_of_numpy():
    a = np.zeros(3)
    assert backend.array_module(a) is np
    assert backend.array_module(np.float32(1.0)) is np
    assert backend.array_module(2.5) is np  # Python numbers compute on the CPU
    assert backend.device_of(a) == "cpu"
    t = mt.tensor([1.0, 2.0])
    assert t.device == "cpu" and t.xp is np and isinstance(t.data, np.ndarray)


def test_to_cpu_is_a_no_op():
    t = mt.tensor([1.0, 2.0])
    assert t.to("cpu") is t


def test_unknown_device():
    with pytest.raises(ValueError, match="'tpu'"):
        mt.tensor([1.0]).to("tpu")


def test_to_cuda_without_a_gpu_says_why():
    if mt.gpu_available():
        pytest.skip("a GPU is present: moving to it is tested in the GPU tests")
    with pytest.raises(RuntimeError, match="(?i)cupy|cuda|gpu"):
        mt.tensor([1.0]).to("cuda")
    with pytest.raises(RuntimeError, match="(?i)cupy|cuda|gpu"):
        mt.zeros(2, device="cuda")


# ---------------------------------------------------------------- dtypes


def test_python_floats_get_the_default_float32():
    assert mt.get_default_dtype() == np.float32
    assert mt.tensor(1.5).dtype == np.float32
    assert mt.tensor([1.0, 2.0]).dtype == np.float32
    assert mt.tensor([[1, 2.5]]).dtype == np.float32
    assert mt.zeros(2).dtype == np.float32
    assert mt.ones(2, 3).dtype == np.float32
    assert mt.randn(2).dtype == np.float32
    assert mt.rand(2).dtype == np.float32


def test_arange_of_floats_gets_the_default_dtype():
    assert mt.arange(0.0, 1.0, 0.25).dtype == mt.get_default_dtype()


def test_ints_stay_int64_and_arrays_keep_their_dtype():
    assert mt.tensor(3).dtype == np.int64
    assert mt.tensor([1, 2, 3]).dtype == np.int64
    assert mt.arange(4).dtype == np.int64
    assert mt.tensor([True, False]).dtype == np.bool_
    assert mt.tensor(np.zeros(2, dtype=np.float64)).dtype == np.float64
    assert mt.tensor(np.zeros(2, dtype=np.int32)).dtype == np.int32
    assert mt.tensor([1, 2], dtype="float64").dtype == np.float64


def test_tensor_copies_a_numpy_array():
    # as torch.tensor: the tensor owns its data, so an in-place update of a parameter
    # (optimizers do p.data -= lr * g) cannot change the array it was made from
    source = np.zeros(3)
    t = mt.tensor(source, requires_grad=True)
    t.data -= 1.0
    np.testing.assert_array_equal(source, np.zeros(3))


def test_tensor_copies_another_tensor():
    a = mt.tensor([1.0, 2.0])
    b = mt.tensor(a)
    b.data += 1.0
    np.testing.assert_array_equal(a.data, [1.0, 2.0])


def test_set_default_dtype(restore_default_dtype):
    mt.set_default_dtype("float64")
    assert mt.get_default_dtype() == np.float64
    assert mt.tensor(1.5).dtype == np.float64
    assert mt.randn(3).dtype == np.float64
    assert mt.tensor([1, 2]).dtype == np.int64  # integers are not affected
    mt.set_default_dtype(np.float32)
    assert mt.tensor(1.5).dtype == np.float32


@pytest.mark.parametrize("bad", ["int64", np.int32, bool, "complex128"])
def test_set_default_dtype_rejects_non_floating(bad, restore_default_dtype):
    with pytest.raises(ValueError, match="floating"):
        mt.set_default_dtype(bad)
    assert mt.get_default_dtype() == np.float32


def test_set_default_dtype_rejects_a_non_dtype(restore_default_dtype):
    with pytest.raises(ValueError, match="not a dtype"):
        mt.set_default_dtype("not-a-dtype")


# ---------------------------------------------------------------- seeding


@given(seed=st.integers(0, 2**32 - 1), shape=shapes(max_dims=2))
def test_manual_seed_makes_randn_and_rand_repeatable(seed, shape):
    mt.manual_seed(seed)
    a, u = mt.randn(*shape), mt.rand(*shape)
    mt.manual_seed(seed)
    b, v = mt.randn(*shape), mt.rand(*shape)
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_array_equal(u.data, v.data)
    assert ((0 <= u.data) & (u.data < 1)).all()


def test_manual_seed_makes_dropout_repeatable():
    x = mt.ones(100)
    mt.manual_seed(7)
    first = F.dropout(x, 0.5).data
    mt.manual_seed(7)
    np.testing.assert_array_equal(F.dropout(x, 0.5).data, first)


def test_different_seeds_give_different_draws():
    mt.manual_seed(1)
    a = mt.randn(20).data
    mt.manual_seed(2)
    assert not np.array_equal(a, mt.randn(20).data)


@pytest.mark.parametrize("bad", [-1, 1.5, "3"])
def test_manual_seed_rejects_bad_seeds(bad):
    with pytest.raises(ValueError, match="non-negative integer"):
        mt.manual_seed(bad)


def test_randn_is_standard_normal():
    mt.manual_seed(0)
    x = mt.randn(20_000, dtype="float64").data
    # mean within 6 standard errors (1/sqrt(n)), variance within 6 of its (sqrt(2/n))
    assert abs(x.mean()) < 6 / math.sqrt(x.size)
    assert abs(x.var() - 1) < 6 * math.sqrt(2 / x.size)


# ---------------------------------------------------------------- named hooks


@given(n=st.integers(1, 5), data=st.data())
def test_scatter_add_sums_repeated_indices(n, data):
    ids = data.draw(index_arrays(n, shapes(min_dims=1, max_dims=1, max_side=8)))
    values = data.draw(float_arrays((ids.size, 2)))
    target = np.zeros((n, 2))
    backend.scatter_add(target, ids, values)
    expected = np.zeros((n, 2))
    for i, row in enumerate(ids):
        expected[row] += values[i]
    np.testing.assert_allclose(target, expected, atol=1e-12)


@given(x=float_arrays(shapes(), -6.0, 6.0))
def test_erf_matches_math_erf(x):
    expected = np.array([math.erf(v) for v in x.ravel()]).reshape(x.shape)
    np.testing.assert_allclose(backend.erf(x), expected, rtol=1e-15, atol=1e-16)


def test_broadcast_shapes_error_names_the_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(4,\)"):
        backend.broadcast_shapes((2, 3), (4,))


# ---------------------------------------------------------------- architecture: who imports numpy

# path under minitransformer/ (a file, or a folder ending in "/") -> why it may import numpy
NUMPY_ALLOWED = {
    "backend.py": "the backend itself: owns the array module, dtypes and generators",
    "kernels/softmax.py": "CPU kernel: Numba compiles loops over NumPy arrays",
    "kernels/topk.py": "CPU kernel: Numba compiles loops over NumPy arrays",
    "kernels/attention.py": "CPU kernel: blocked BLAS calls and Numba loops over NumPy arrays",
    "kernels/layernorm.py": "CPU kernel: Numba compiles loops over NumPy arrays",
    "kernels/elementwise.py": "CPU kernel: Numba ufuncs (erf) over NumPy arrays",
    "kernels/_numba.py": "CPU kernel helpers for Numba",
    "tokenizers/": "host-side text processing: token ids are NumPy arrays before any tensor",
    "data/": "host-side data loading and batching, never tensor math",
    "metrics.py": "host-side evaluation (BLEU, accuracy) on NumPy copies of results",
    "serialization.py": "host-side file IO: safetensors reads and writes NumPy arrays",
    "plots.py": "host-side plotting with matplotlib",
    "cli.py": "host-side command line",
    "train.py": "host-side training loop bookkeeping",
    "training/": "host-side training loop bookkeeping",
    "pipeline.py": "host-side post-processing of model outputs copied to NumPy (normalising, "
    "collecting results)",
}

# where layers and ops live: these must reach NumPy or CuPy only through ``xp``
NEVER_ALLOWED = ("autograd/", "functional/", "nn/", "optim/")


def _allowed(relative: str) -> bool:
    return any(
        relative == key or (key.endswith("/") and relative.startswith(key)) for key in NUMPY_ALLOWED
    )


def _numpy_imports(path: Path) -> list[str]:
    """'line N: import numpy ...' for every import of numpy (or a submodule) in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        if any(name == "numpy" or name.startswith("numpy.") for name in names):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_layer_and_op_code_is_never_on_the_allow_list():
    for key in NUMPY_ALLOWED:
        assert not key.startswith(NEVER_ALLOWED), f"{key} is op or layer code"


def test_the_import_finder_sees_every_spelling(tmp_path):
    source = tmp_path / "example.py"
    source.write_text(
        "import numpy\nimport numpy as np\nimport os, numpy.linalg\n"
        "from numpy import exp\nfrom numpy.random import default_rng\n"
        "from .numpy_like import x\nimport numpyro\nfrom numbers import Number\n"
        "def f():\n    import numpy\n"
    )
    assert len(_numpy_imports(source)) == 6


# Modules that break the rule today. Each is a strict xfail, so the suite stays green
# while it is open and fails the day it is fixed, to be struck off this list.
KNOWN_OFFENDERS: dict[str, str] = {}

MODULES = sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py"))


def test_the_walk_finds_the_package():
    assert "backend.py" in MODULES and "autograd/tape.py" in MODULES


@pytest.mark.parametrize(
    "relative",
    [
        pytest.param(m, marks=pytest.mark.xfail(strict=True, reason=KNOWN_OFFENDERS[m]))
        if m in KNOWN_OFFENDERS
        else m
        for m in MODULES
    ],
)
def test_numpy_is_imported_only_where_allowed(relative):
    if _allowed(relative):
        return
    hits = _numpy_imports(PACKAGE / relative)
    assert not hits, (
        f"minitransformer/{relative} imports numpy ({'; '.join(hits)}) but is not on the "
        "allow-list in tests/test_backend.py: ask the backend for the array module instead "
        "(xp = backend.array_module(x)), or, for host-side code that never computes on "
        "tensor data, add it to NUMPY_ALLOWED with the reason"
    )
