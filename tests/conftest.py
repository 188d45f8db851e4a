"""Shared test settings: hypothesis profiles, a headless matplotlib, the shared data folder."""

from __future__ import annotations

import os
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
