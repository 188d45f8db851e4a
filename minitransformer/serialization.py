"""Saving and loading state dicts as ``.safetensors`` files.

``save`` writes to a temporary file in the target folder and renames it over the
target only when the write is complete, so a crash never leaves a half-written
checkpoint. ``load`` refuses missing, truncated and foreign files with a clear
error instead of returning garbage.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from . import backend
from .autograd.tensor import Tensor

__all__ = ["save", "load", "load_metadata"]

FORMAT = "minitransformer"


def _to_numpy_state(state: Any) -> dict[str, np.ndarray]:
    if hasattr(state, "state_dict") and callable(state.state_dict):
        state = state.state_dict()
    if not isinstance(state, dict):
        raise TypeError(f"save() takes a Module or a dict of arrays, got {type(state).__name__}")
    arrays = {}
    for name, value in state.items():
        if not isinstance(name, str):
            raise TypeError(f"state dict keys must be strings, got {name!r}")
        data = value.data if isinstance(value, Tensor) else value
        if not hasattr(data, "shape") or not hasattr(data, "dtype"):
            raise TypeError(f"state dict value {name!r} is a {type(value).__name__}, not an array")
        arrays[name] = np.require(backend.to_numpy(data), requirements="C")  # keeps 0-d shapes
    return arrays


def save(
    state_or_module: Any, path: str | os.PathLike, metadata: dict[str, Any] | None = None
) -> None:
    """Write a module's state dict (or a dict of arrays) to ``path`` atomically.

    ``metadata`` (JSON-serialisable) is stored in the file's header, e.g. a model config.
    """
    from safetensors.numpy import save as st_save

    arrays = _to_numpy_state(state_or_module)
    header = {"format": FORMAT}
    if metadata is not None:
        header["minitransformer"] = json.dumps(metadata)
    payload = st_save(arrays, metadata=header)
    path = Path(path)
    if not path.parent.exists():
        raise FileNotFoundError(f"cannot save to {path}: folder {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _read(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    from safetensors.numpy import load as st_load

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a .safetensors file")
    raw = path.read_bytes()
    if len(raw) < 8:
        raise ValueError(f"{path} is not a safetensors file: only {len(raw)} bytes (truncated?)")
    header_len = int.from_bytes(raw[:8], "little")
    if header_len <= 0 or 8 + header_len > len(raw):
        raise ValueError(
            f"{path} is not a valid safetensors file: its header claims {header_len} bytes "
            f"but the file has {len(raw)} (truncated or a different format)"
        )
    try:
        header = json.loads(raw[8 : 8 + header_len])
        arrays = st_load(raw)
    except Exception as exc:  # safetensors raises its own error type for a bad body
        raise ValueError(
            f"{path} is not a valid safetensors file (truncated or corrupt): {exc}"
        ) from None
    return arrays, header.get("__metadata__", {}) or {}


def load(path: str | os.PathLike, device: str | None = None) -> dict[str, Any]:
    """Read a ``.safetensors`` file into {name: array}, on ``device`` ('cpu' default or 'cuda')."""
    arrays, _ = _read(path)
    if device is not None and backend.check_device(device) != "cpu":
        return {k: backend.to_device(v, device) for k, v in arrays.items()}
    return arrays


def load_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON metadata stored by ``save(..., metadata=...)`` ({} if none)."""
    _, header = _read(path)
    text = header.get("minitransformer")
    return json.loads(text) if text else {}
