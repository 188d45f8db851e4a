"""Shared test settings: hypothesis profiles, a headless matplotlib, the shared data folder."""

from __future__ import annotations

import os

# pytest -n 2 runs two worker processes on two cores. A multi-threaded BLAS in each of
# them oversubscribes the cores, and OpenBLAS's spinning threads then make small matrix
# products up to 100x slower. One BLAS thread per worker uses the cores fully. This
# must happen before NumPy (and so OpenBLAS) is first imported.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
from pathlib import Path

import matplotlib
import pytest
from hypothesis import HealthCheck, settings

matplotlib.use("Agg")

# "dev" explores more; "ci" (the default) keeps the suite fast and deterministic.
settings.register_profile(
    "ci",
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("dev", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """``$MT_DATA_DIR`` or ``<repo>/../shared/data``, if it exists."""
    env = os.environ.get("MT_DATA_DIR")
    path = Path(env) if env else REPO.parent / "shared" / "data"
    return path if path.is_dir() else None


@pytest.fixture
def data_dir() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("the shared data folder (../shared/data or $MT_DATA_DIR) is not present")
    return path
