"""Flatten an optimizer ``state_dict()`` into arrays + JSON metadata, and back.

A training checkpoint stores arrays in a safetensors file, which holds only a flat
``{str: array}`` map, and everything else (step counts, hyperparameters) as JSON:

    state_dict = {"state": {0: {"step": 3, "exp_avg": A, "exp_avg_sq": B}, ...},
                  "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), ..., "params": [0, 1]}]}

    arrays = {"state.0.exp_avg": A, "state.0.exp_avg_sq": B, ...}
    meta   = {"state": {"0": {"step": 3}, ...},
              "param_groups": [{"lr": 1e-3, "betas": [0.9, 0.999], ..., "params": [0, 1]}]}

``meta`` survives ``json.loads(json.dumps(meta))`` unchanged, and
``unflatten_state(arrays, meta)`` gives a dict that ``load_state_dict`` accepts.
Arrays are passed through as they are (NumPy or CuPy); the caller moves them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["flatten_state", "unflatten_state", "is_array"]

_PREFIX = "state"


def is_array(value: Any) -> bool:
    """True for NumPy and CuPy arrays (anything with a shape and a dtype)."""
    return hasattr(value, "shape") and hasattr(value, "dtype")


def flatten_state(state_dict: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``state_dict`` -> ``(arrays, meta)``: arrays keyed ``"state.<index>.<name>"``, the rest
    as JSON-ready metadata (string keys, lists for tuples)."""
    arrays: dict[str, Any] = {}
    meta_state: dict[str, dict[str, Any]] = {}
    for idx, entry in state_dict["state"].items():
        meta_state[str(idx)] = {}
        for name, value in entry.items():
            if "." in name:
                raise ValueError(f"state name {name!r} of parameter {idx} contains a '.'")
            if is_array(value):
                arrays[f"{_PREFIX}.{idx}.{name}"] = value
            else:
                meta_state[str(idx)][name] = _jsonable(value, f"state {name!r} of {idx}")
    groups = [
        {k: _jsonable(v, f"param_groups[{gi}][{k!r}]") for k, v in group.items()}
        for gi, group in enumerate(state_dict["param_groups"])
    ]
    return arrays, {"state": meta_state, "param_groups": groups}


def unflatten_state(arrays: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """Inverse of ``flatten_state`` (also after ``meta`` went through JSON)."""
    state: dict[int, dict[str, Any]] = {
        int(idx): dict(entry) for idx, entry in meta["state"].items()
    }
    for key, value in arrays.items():
        parts = key.split(".")
        if len(parts) != 3 or parts[0] != _PREFIX or not parts[1].isdigit():
            raise ValueError(f"optimizer state array key {key!r} is not 'state.<index>.<name>'")
        idx, name = int(parts[1]), parts[2]
        if idx not in state:
            raise ValueError(f"array {key!r} belongs to parameter {idx}, which meta does not list")
        state[idx][name] = value
    groups = [
        {k: v if k == "params" else _tuples(v) for k, v in group.items()}
        for group in meta["param_groups"]
    ]
    return {"state": dict(sorted(state.items())), "param_groups": groups}


def _jsonable(value: Any, where: str) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v, where) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{where} is a {type(value).__name__}, which JSON metadata cannot hold")


def _tuples(value: Any) -> Any:
    """JSON turns tuples (e.g. ``betas``) into lists; turn them back."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value
