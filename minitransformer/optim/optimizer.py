"""``Optimizer``: what SGD, Adam and AdamW share (parameter groups, state, checkpoints).

An optimizer turns gradients into parameter updates. For every parameter ``p`` whose
gradient ``g = p.grad`` is not None, ``step()`` applies the subclass's rule

    p <- p - update(g, state[p], hyperparameters of p's group)

in place on ``p.data`` (a model, a training loop or a test may hold a reference to that
array), reading ``p.grad`` but never writing into it.

Parameter groups (as in PyTorch) let parts of a model use different hyperparameters,
e.g. no weight decay on biases and LayerNorm gains:

    Adam([{"params": weights, "weight_decay": 0.01},
          {"params": biases, "weight_decay": 0.0}], lr=3e-4)

Each group is a dict holding its ``"params"`` list and every hyperparameter (defaults
fill in what a group leaves out); a schedule changes ``group["lr"]``.

Per-parameter state (momentum buffers, moment estimates, step counts) is created on the
parameter's device with the parameter's array module, so it never crosses devices.

``state_dict()`` gives a snapshot that does not alias the live state:

    {"state": {index: {"step": int, "exp_avg": array, ...}},   # only params with state
     "param_groups": [{"lr": ..., ..., "params": [index, ...]}]}

where ``index`` numbers the parameters 0, 1, ... in group order. ``flatten_state`` in
``state.py`` splits it into arrays (for safetensors) and JSON metadata.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from .. import backend
from .state import is_array

__all__ = ["Optimizer"]


class Optimizer:
    """Base class: subclasses set ``state_names`` and implement ``_update`` (and may
    extend ``_check_hyperparameters``)."""

    # The keys of one parameter's state once it exists (checked on load).
    state_names: tuple[str, ...] = ()

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        self.defaults = self._check_hyperparameters(defaults)
        self.param_groups: list[dict[str, Any]] = []
        # Keyed by id(p): Tensor overloads ==, so tensors cannot be dict keys safely.
        self.state: dict[int, dict[str, Any]] = {}
        for group in _as_groups(params):
            self.add_param_group(group)

    def __repr__(self) -> str:
        hyper = ", ".join(f"{k}={v!r}" for k, v in self.defaults.items())
        sizes = "+".join(str(len(g["params"])) for g in self.param_groups)
        return f"{type(self).__name__}({hyper}; params per group: {sizes})"

    # ------------------------------------------------------------ groups

    def add_param_group(self, group: dict[str, Any]) -> None:
        """Add a group ``{"params": [...], hyperparameter: value, ...}``; defaults fill the rest."""
        if not isinstance(group, dict):
            raise TypeError(f"a parameter group must be a dict, got {type(group).__name__}")
        if "params" not in group:
            raise ValueError(f"parameter group {len(self.param_groups)} has no 'params' key")
        unknown = sorted(set(group) - set(self.defaults) - {"params"})
        if unknown:
            raise ValueError(
                f"parameter group {len(self.param_groups)} has unknown keys {unknown}; "
                f"{type(self).__name__} takes {sorted(self.defaults)}"
            )
        params = _as_param_list(group["params"], f"parameter group {len(self.param_groups)}")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for i, p in enumerate(params):
            if not getattr(p, "requires_grad", False):
                raise ValueError(
                    f"parameter {i} of group {len(self.param_groups)} (shape "
                    f"{tuple(p.data.shape)}) does not require grad; leave frozen "
                    "parameters out of the optimizer"
                )
            if id(p) in seen:
                raise ValueError(
                    f"parameter {i} of group {len(self.param_groups)} (shape "
                    f"{tuple(p.data.shape)}) appears more than once across the parameter groups"
                )
            seen.add(id(p))
        hyper = self._check_hyperparameters(
            {**self.defaults, **{k: v for k, v in group.items() if k != "params"}}
        )
        self.param_groups.append({"params": params, **hyper})

    def _check_hyperparameters(self, hyper: dict[str, Any]) -> dict[str, Any]:
        """Validate and normalise one group's hyperparameters (subclasses add theirs)."""
        out = dict(hyper)
        out["lr"] = non_negative("lr", hyper["lr"])
        out["weight_decay"] = non_negative("weight_decay", hyper["weight_decay"])
        return out

    # ------------------------------------------------------------ stepping

    def zero_grad(self) -> None:
        """Set every parameter's grad to None (the next backward starts from nothing)."""
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def step(self) -> None:
        """Update every parameter that has a gradient; parameters with grad None are skipped."""
        for gi, group in enumerate(self.param_groups):
            for pi, p in enumerate(group["params"]):
                if p.grad is None:
                    continue
                if tuple(p.grad.shape) != tuple(p.data.shape):
                    # Broadcasting would otherwise apply a wrong-shaped grad silently.
                    raise ValueError(
                        f"parameter {pi} of group {gi} has shape {tuple(p.data.shape)} "
                        f"but its grad has shape {tuple(p.grad.shape)}"
                    )
                self._update(p, p.grad, self.state.setdefault(id(p), {}), group)

    def _update(self, p: Any, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> None:
        """Apply the update rule to one parameter, in place on ``p.data``."""
        raise NotImplementedError

    # ------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """A snapshot of state (arrays copied) and hyperparameters; see the module docstring."""
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            ids = []
            for p in group["params"]:
                index[id(p)] = len(index)
                ids.append(index[id(p)])
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": ids})
        state = {
            index[pid]: {k: v.copy() if is_array(v) else v for k, v in s.items()}
            for pid, s in self.state.items()
            if s
        }
        return {"state": dict(sorted(state.items())), "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a ``state_dict()`` taken from an optimizer over same-shaped parameters.

        Hyperparameters (including each group's current lr) come from the saved groups.
        Arrays are copied onto each parameter's device in its dtype. Nothing changes
        unless the whole state dict is valid.
        """
        for key in ("state", "param_groups"):
            if key not in state_dict:
                raise ValueError(f"optimizer state dict has no {key!r} entry")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"optimizer state dict has {len(saved_groups)} parameter groups, "
                f"this optimizer has {len(self.param_groups)}"
            )
        by_index: dict[int, Any] = {}
        new_groups = []
        for gi, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"parameter group {gi}: the state dict has {len(saved['params'])} "
                    f"parameters, this optimizer has {len(group['params'])}"
                )
            expected = set(group) - {"params"}
            got = set(saved) - {"params"}
            if got != expected:
                raise ValueError(
                    f"parameter group {gi}: the state dict has hyperparameters {sorted(got)}, "
                    f"{type(self).__name__} expects {sorted(expected)}"
                )
            for i, p in zip(saved["params"], group["params"]):
                by_index[int(i)] = p
            hyper = self._check_hyperparameters({k: saved[k] for k in expected})
            new_groups.append({"params": group["params"], **hyper})

        new_state: dict[int, dict[str, Any]] = {}
        for idx, saved in state_dict["state"].items():
            if int(idx) not in by_index:
                raise ValueError(
                    f"optimizer state dict has state for parameter {idx}, "
                    f"but the groups only list {len(by_index)} parameters"
                )
            p = by_index[int(idx)]
            if set(saved) != set(self.state_names):
                raise ValueError(
                    f"state of parameter {idx} has entries {sorted(saved)}, "
                    f"{type(self).__name__} keeps {sorted(self.state_names)}"
                )
            entry: dict[str, Any] = {}
            for name, value in saved.items():
                if is_array(value):
                    if tuple(value.shape) != tuple(p.data.shape):
                        raise ValueError(
                            f"state {name!r} of parameter {idx} has shape "
                            f"{tuple(value.shape)}, the parameter has shape {tuple(p.data.shape)}"
                        )
                    moved = backend.to_device(value, backend.device_of(p.data))
                    entry[name] = moved.astype(p.data.dtype, copy=True)
                else:
                    entry[name] = int(value)
            new_state[id(p)] = entry

        for group, new in zip(self.param_groups, new_groups):
            group.update(new)
        self.state = new_state


# ---------------------------------------------------------------- validation helpers


def non_negative(name: str, value: Any) -> float:
    """``float(value)``, or ValueError unless it is a finite number >= 0."""
    v = _number(name, value)
    if v < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return v


def positive(name: str, value: Any) -> float:
    """``float(value)``, or ValueError unless it is a finite number > 0."""
    v = _number(name, value)
    if v <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return v


def unit_interval(name: str, value: Any) -> float:
    """``float(value)``, or ValueError unless 0 <= value < 1."""
    v = _number(name, value)
    if not 0.0 <= v < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return v


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return v


def _as_groups(params: Any) -> list[dict[str, Any]]:
    """A list of tensors, or of group dicts, -> a list of group dicts."""
    if hasattr(params, "requires_grad") or not isinstance(params, Iterable):
        raise TypeError(
            "params must be an iterable of tensors or of parameter-group dicts, got "
            f"{type(params).__name__}; wrap a single tensor in a list"
        )
    items = list(params)
    if not items:
        raise ValueError("the optimizer got an empty parameter list")
    dicts = [isinstance(x, dict) for x in items]
    if all(dicts):
        return items
    if any(dicts):
        raise TypeError("params mixes tensors and parameter-group dicts; use one or the other")
    return [{"params": items}]


def _as_param_list(params: Any, where: str) -> list[Any]:
    if hasattr(params, "requires_grad"):
        return [params]
    if not isinstance(params, Iterable):
        raise TypeError(f"{where}: 'params' must be an iterable of tensors, got {params!r}")
    items = list(params)
    if not items:
        raise ValueError(f"{where} has an empty parameter list")
    for i, p in enumerate(items):
        if not (hasattr(p, "data") and hasattr(p, "requires_grad")):
            raise TypeError(f"{where}: item {i} is a {type(p).__name__}, not a tensor")
    return items
