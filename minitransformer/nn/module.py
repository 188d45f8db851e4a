"""``Module`` and ``Parameter``: how layers hold their weights and sub-layers.

Assigning a ``Parameter`` or a ``Module`` (or a list of modules) to an attribute
registers it, so ``named_parameters()`` can walk the tree and give dotted names such
as ``encoder.layers.0.self_attn.q_proj.weight``. That name is the key in
``state_dict()``, in saved checkpoints and in the PyTorch converters.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from .. import backend
from ..autograd.tensor import Tensor

__all__ = ["Module", "ModuleList", "Parameter"]


class Parameter(Tensor):
    """A tensor that is a learnable weight of a module: ``requires_grad`` is always True."""

    __slots__ = ()

    def __init__(self, data: Any, dtype: Any = None) -> None:
        super().__init__(data, requires_grad=True, dtype=dtype)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base class of every layer: set attributes in ``__init__``, write ``forward``."""

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "training", True)

    # ------------------------------------------------------------ registration

    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"call super().__init__() in {type(self).__name__}.__init__ first")
        for registry in (self._parameters, self._modules, self._buffers):
            registry.pop(name, None)
        is_list_of_modules = (
            isinstance(value, (list, tuple)) and value and all(isinstance(v, Module) for v in value)
        )
        if isinstance(value, (Parameter, Module)) or is_list_of_modules:
            # a registered name must not be shadowed by an old plain attribute
            self.__dict__.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        elif is_list_of_modules:
            self._modules[name] = ModuleList(value)
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        # only called when normal lookup fails: look in the registries
        for registry in ("_parameters", "_modules", "_buffers"):
            d = self.__dict__.get(registry)
            if d is not None and name in d:
                return d[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __delattr__(self, name: str) -> None:
        for registry in (self._parameters, self._modules, self._buffers):
            if name in registry:
                del registry[name]
                return
        object.__delattr__(self, name)

    def register_buffer(self, name: str, array: Any) -> None:
        """A non-learnable array that moves with the module (e.g. positional encodings).

        Buffers are recomputed by the constructor, so they are not in the state dict.
        """
        self._buffers[name] = array

    # ------------------------------------------------------------ traversal

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def children(self) -> Iterator[Module]:
        yield from self._modules.values()

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """(dotted name, parameter) for every parameter, each shared parameter once."""
        seen: set[int] = set()
        for mod_name, module in self.named_modules(prefix):
            for name, p in module._parameters.items():
                if id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self) -> Iterator[Parameter]:
        for _, p in self.named_parameters():
            yield p

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    # ------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        """Dotted parameter name -> raw array (NumPy or CuPy)."""
        return {name: p.data for name, p in self.named_parameters()}

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> tuple[list, list]:
        """Copy arrays into the parameters of the same name (cast to each parameter's dtype).

        With ``strict`` (the default), a missing, unexpected or mis-shaped key raises a
        ValueError that lists every one of them. Returns (missing, unexpected).
        """
        own = dict(self.named_parameters())
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        misshaped = [
            f"{k}: checkpoint {tuple(state[k].shape)} vs model {own[k].shape}"
            for k in own
            if k in state and tuple(state[k].shape) != own[k].shape
        ]
        if misshaped or (strict and (missing or unexpected)):
            problems = []
            if missing:
                problems.append(f"missing keys: {', '.join(missing)}")
            if unexpected:
                problems.append(f"unexpected keys: {', '.join(unexpected)}")
            if misshaped:
                problems.append(f"mis-shaped keys: {'; '.join(misshaped)}")
            raise ValueError(
                f"load_state_dict into {type(self).__name__} failed: " + " | ".join(problems)
            )
        for name, p in own.items():
            if name in state:
                value = backend.to_device(state[name], p.device)
                p.data = value.astype(p.dtype, copy=True)
        return missing, unexpected

    # ------------------------------------------------------------ modes and devices

    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def to(self, device: str) -> Module:
        """Move every parameter and buffer to ``device`` in place ('cpu' or 'cuda')."""
        backend.check_device(device)
        for m in self.modules():
            for p in m._parameters.values():
                p.data = backend.to_device(p.data, device)
                if p.grad is not None:
                    p.grad = backend.to_device(p.grad, device)
            for name, b in m._buffers.items():
                m._buffers[name] = backend.to_device(b, device)
        return self

    def astype(self, dtype: Any) -> Module:
        """Cast every parameter to ``dtype`` in place (e.g. 'float64').

        Buffers keep their dtype: the modules that own them cast what they use (the
        positional table is kept in float64 so that casting never loses digits).
        """
        dtype = backend.resolve_dtype(dtype)
        for p in self.parameters():
            p.data = p.data.astype(dtype)
            p.grad = None
        return self

    def double(self) -> Module:
        return self.astype("float64")

    # ------------------------------------------------------------ calling

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, child in self._modules.items():
            child_repr = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child_repr}")
        if len(lines) == 1:
            return lines[0] + ")"
        return "\n".join(lines) + "\n)"


class ModuleList(Module):
    """A list of modules whose parameters are registered as ``0.``, ``1.``, ..."""

    def __init__(self, modules: Iterable[Module] = ()) -> None:
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, module: Module) -> None:
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList holds modules, got {type(module).__name__}")
        self._modules[str(len(self._modules))] = module

    def __getitem__(self, i: int) -> Module:
        return list(self._modules.values())[i]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())
