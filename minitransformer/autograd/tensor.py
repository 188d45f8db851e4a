"""``Tensor``: an array (NumPy or CuPy) plus what autograd needs to know about it.

    x.data           the raw array
    x.requires_grad  whether gradients should flow to x
    x.grad           dL/dx as a raw array after ``backward`` (leaves only), else None
    x._node          the tape entry of the op that made x (None for leaves)

Operators and methods build new tensors through the ops in ``ops.py``, which record
themselves on the tape.
"""

from __future__ import annotations

from typing import Any

from .. import backend
from . import function, ops
from .tape import backward as _tape_backward

__all__ = ["Tensor", "tensor", "zeros", "ones", "randn", "rand", "arange"]


class Tensor:
    __slots__ = ("data", "grad", "requires_grad", "_node", "__weakref__")
    # Let ``ndarray * Tensor`` defer to Tensor.__rmul__ instead of looping elementwise.
    __array_ufunc__ = None

    def __init__(
        self,
        data: Any,
        requires_grad: bool = False,
        dtype: Any = None,
        device: str | None = None,
    ) -> None:
        if isinstance(data, Tensor):
            data = data.data
        self.data = backend.as_array(data, dtype=dtype, device=device)
        self.grad = None
        self._node = None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _wrap(cls, data: Any, requires_grad: bool, node: Any) -> Tensor:
        """Wrap an op's output array without copying or converting it."""
        t = object.__new__(cls)
        t.data = data
        t.grad = None
        t.requires_grad = requires_grad
        t._node = node
        return t

    def requires_grad_(self, flag: bool = True) -> Tensor:
        if flag and self.data.dtype.kind != "f":
            raise TypeError(
                f"only floating-point tensors can require gradients; this one is {self.data.dtype}"
            )
        self.requires_grad = flag
        return self

    # ------------------------------------------------------------ properties

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> Any:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return int(self.data.size)

    @property
    def device(self) -> str:
        return backend.device_of(self.data)

    @property
    def xp(self) -> Any:
        """The array module (NumPy or CuPy) that holds this tensor's data."""
        return backend.array_module(self.data)

    @property
    def is_leaf(self) -> bool:
        return self._node is None

    @property
    def T(self) -> Tensor:
        return self.transpose()

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        dev = "" if self.device == "cpu" else ", device='cuda'"
        body = repr(backend.to_numpy(self.data)).replace("array(", "tensor(", 1)
        body = body[:-1] if body.endswith(")") else body
        return f"{body}{grad}{dev})"

    # ------------------------------------------------------------ conversion

    def numpy(self) -> Any:
        """A NumPy copy of the data, from any device."""
        return backend.to_numpy(self.data).copy()

    def item(self) -> float | int | bool:
        if self.size != 1:
            raise ValueError(f"item() needs a one-element tensor, this one has shape {self.shape}")
        return self.data.reshape(()).item()

    def tolist(self) -> Any:
        return backend.to_numpy(self.data).tolist()

    def detach(self) -> Tensor:
        """The same data, cut from the tape."""
        return Tensor._wrap(self.data, False, None)

    def to(self, device: str) -> Tensor:
        """A copy on ``device`` ('cpu' or 'cuda'); the same tensor if already there."""
        if backend.check_device(device) == self.device:
            return self
        out = Tensor._wrap(backend.to_device(self.data, device), self.requires_grad, None)
        return out

    def astype(self, dtype: Any) -> Tensor:
        dtype = backend.resolve_dtype(dtype)
        if dtype == self.dtype:
            return self
        if self.requires_grad and dtype.kind == "f":
            return ops.Cast.apply(self, dtype=dtype)
        return Tensor._wrap(self.data.astype(dtype), False, None)

    # ------------------------------------------------------------ autograd

    def backward(self, grad: Any = None, retain_graph: bool = False) -> None:
        """Compute d(self)/d(leaf) for every leaf that requires grad, into ``leaf.grad``.

        ``grad`` is dL/d(self); it may be omitted only for a one-element tensor
        (then it is 1, i.e. L = self).
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward() on a tensor that does not require grad: no input of the "
                "computation had requires_grad=True (or it ran under mt.no_grad())"
            )
        xp = self.xp
        if grad is None:
            if self.size != 1:
                raise RuntimeError(
                    f"backward() without a gradient needs a one-element tensor; this one has "
                    f"shape {self.shape}. Pass grad= of that shape, or reduce first (e.g. .sum())"
                )
            grad = xp.ones(self.data.shape, dtype=self.dtype)
        else:
            grad = grad.data if isinstance(grad, Tensor) else xp.asarray(grad, dtype=self.dtype)
            if tuple(grad.shape) != self.shape:
                raise ValueError(
                    f"backward(grad): grad has shape {tuple(grad.shape)}, "
                    f"the tensor has shape {self.shape}"
                )
        _tape_backward(self, grad, retain_graph=retain_graph)

    def _accumulate(self, g: Any) -> None:
        """Leaves add up gradients across backward calls (zero them between steps)."""
        if g.dtype != self.dtype:
            g = g.astype(self.dtype)
        if self.grad is None:
            self.grad = g.copy()  # never alias an array another leaf or op may hold
        else:
            self.grad = self.grad + g

    def zero_grad(self) -> None:
        self.grad = None

    # ------------------------------------------------------------ operators

    def _lift(self, other: Any) -> Tensor:
        """Python numbers and arrays become constant tensors with a matching dtype."""
        if isinstance(other, Tensor):
            return other
        if isinstance(other, (int, float, bool)) and self.data.dtype.kind == "f":
            return Tensor._wrap(self.xp.asarray(other, dtype=self.dtype), False, None)
        return Tensor._wrap(backend.as_array(other, device=self.device), False, None)

    def __add__(self, other: Any) -> Tensor:
        return ops.Add.apply(self, self._lift(other))

    def __radd__(self, other: Any) -> Tensor:
        return ops.Add.apply(self._lift(other), self)

    def __sub__(self, other: Any) -> Tensor:
        return ops.Sub.apply(self, self._lift(other))

    def __rsub__(self, other: Any) -> Tensor:
        return ops.Sub.apply(self._lift(other), self)

    def __mul__(self, other: Any) -> Tensor:
        return ops.Mul.apply(self, self._lift(other))

    def __rmul__(self, other: Any) -> Tensor:
        return ops.Mul.apply(self._lift(other), self)

    def __truediv__(self, other: Any) -> Tensor:
        return ops.Div.apply(self, self._lift(other))

    def __rtruediv__(self, other: Any) -> Tensor:
        return ops.Div.apply(self._lift(other), self)

    def __neg__(self) -> Tensor:
        return ops.Neg.apply(self)

    def __pow__(self, other: Any) -> Tensor:
        if isinstance(other, (int, float)):
            return ops.PowScalar.apply(self, p=other)
        return ops.Pow.apply(self, self._lift(other))

    def __rpow__(self, other: Any) -> Tensor:
        return ops.Pow.apply(self._lift(other), self)

    def __matmul__(self, other: Any) -> Tensor:
        return matmul(self, self._lift(other))

    def __rmatmul__(self, other: Any) -> Tensor:
        return matmul(self._lift(other), self)

    # comparisons: not differentiable, boolean result
    def _compare(self, other: Any, fn: str) -> Tensor:
        o = other.data if isinstance(other, Tensor) else other
        return Tensor._wrap(getattr(self.data, fn)(o), False, None)

    def __eq__(self, other: Any) -> Tensor:  # type: ignore[override]
        return self._compare(other, "__eq__")

    def __ne__(self, other: Any) -> Tensor:  # type: ignore[override]
        return self._compare(other, "__ne__")

    def __lt__(self, other: Any) -> Tensor:
        return self._compare(other, "__lt__")

    def __le__(self, other: Any) -> Tensor:
        return self._compare(other, "__le__")

    def __gt__(self, other: Any) -> Tensor:
        return self._compare(other, "__gt__")

    def __ge__(self, other: Any) -> Tensor:
        return self._compare(other, "__ge__")

    def __invert__(self) -> Tensor:
        if self.dtype.kind != "b":
            raise TypeError(f"~ needs a boolean tensor, got {self.dtype}")
        return Tensor._wrap(~self.data, False, None)

    def __and__(self, other: Any) -> Tensor:
        return self._compare(other, "__and__")

    def __or__(self, other: Any) -> Tensor:
        return self._compare(other, "__or__")

    __hash__ = object.__hash__

    def __bool__(self) -> bool:
        if self.size != 1:
            raise ValueError(
                f"the truth value of a tensor of shape {self.shape} is ambiguous; "
                "use .any() / .all() on .data, or compare one element"
            )
        return bool(self.data.reshape(()))

    # ------------------------------------------------------------ methods

    def sum(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return ops.Sum.apply(self, axis=axis, keepdims=keepdims)

    def mean(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return ops.Mean.apply(self, axis=axis, keepdims=keepdims)

    def max(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return ops.Max.apply(self, axis=axis, keepdims=keepdims)

    def argmax(self, axis: int | None = None) -> Tensor:
        """Indices of the maxima (not differentiable)."""
        return Tensor._wrap(self.data.argmax(axis=axis), False, None)

    def exp(self) -> Tensor:
        return ops.Exp.apply(self)

    def log(self) -> Tensor:
        return ops.Log.apply(self)

    def sqrt(self) -> Tensor:
        return ops.Sqrt.apply(self)

    def tanh(self) -> Tensor:
        return ops.Tanh.apply(self)

    def relu(self) -> Tensor:
        return ops.Relu.apply(self)

    def reshape(self, *shape: Any) -> Tensor:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return ops.Reshape.apply(self, shape=tuple(int(s) for s in shape))

    def transpose(self, *axes: Any) -> Tensor:
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        if not axes:
            axes = tuple(reversed(range(self.ndim)))
        return ops.Transpose.apply(self, axes=tuple(a % self.ndim for a in axes))

    def swapaxes(self, a: int, b: int) -> Tensor:
        axes = list(range(self.ndim))
        a, b = a % self.ndim, b % self.ndim
        axes[a], axes[b] = axes[b], axes[a]
        return ops.Transpose.apply(self, axes=tuple(axes))

    def __getitem__(self, index: Any) -> Tensor:
        return ops.GetItem.apply(self, index=_unwrap_index(index))


function.Tensor = Tensor  # see function.py: op outputs are Tensors


def _unwrap_index(index: Any) -> Any:
    """Tensors and lists inside an index become raw integer arrays."""
    if isinstance(index, tuple):
        return tuple(_unwrap_index(i) for i in index)
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, list):
        return backend.as_array(index)
    return index


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """a @ b with NumPy's rules: a 1-D operand is treated as a row (left) or column (right)."""
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(
            f"matmul needs arrays of at least 1 dimension, got shapes {a.shape} and {b.shape}"
        )
    if a.ndim == 1 and b.ndim == 1:
        return (a.reshape(1, -1) @ b.reshape(-1, 1)).reshape(())
    if a.ndim == 1:
        out = ops.MatMul.apply(a.reshape(1, -1), b)
        return out.reshape(out.shape[:-2] + out.shape[-1:])
    if b.ndim == 1:
        return ops.MatMul.apply(a, b.reshape(-1, 1)).reshape(a.shape[:-1])
    return ops.MatMul.apply(a, b)


# ---------------------------------------------------------------- creation


def tensor(
    data: Any, requires_grad: bool = False, dtype: Any = None, device: str | None = None
) -> Tensor:
    """Make a tensor from a list, scalar, NumPy/CuPy array or another tensor (copied)."""
    source = data.data if isinstance(data, Tensor) else data
    t = Tensor(source, dtype=dtype, device=device)
    if t.data is source or t.data.base is not None:
        t.data = t.data.copy()  # never share memory with the caller's array
    return t.requires_grad_(True) if requires_grad else t


def _creation(arr: Any, requires_grad: bool, device: str | None) -> Tensor:
    t = Tensor(arr, dtype=arr.dtype, device=device)
    return t.requires_grad_(True) if requires_grad else t


def zeros(
    *shape: Any, dtype: Any = None, requires_grad: bool = False, device: str | None = None
) -> Tensor:
    shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    xp = backend.module_for(device)
    return _creation(
        xp.zeros(shape, dtype=dtype or backend.get_default_dtype()), requires_grad, device
    )


def ones(
    *shape: Any, dtype: Any = None, requires_grad: bool = False, device: str | None = None
) -> Tensor:
    shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    xp = backend.module_for(device)
    return _creation(
        xp.ones(shape, dtype=dtype or backend.get_default_dtype()), requires_grad, device
    )


def randn(
    *shape: Any, dtype: Any = None, requires_grad: bool = False, device: str | None = None
) -> Tensor:
    """Standard normal samples from the seeded generator (``mt.manual_seed``)."""
    shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    dtype = backend.resolve_dtype(dtype or backend.get_default_dtype())
    arr = backend.generator().standard_normal(shape).astype(dtype)
    return _creation(arr, requires_grad, device)


def rand(
    *shape: Any, dtype: Any = None, requires_grad: bool = False, device: str | None = None
) -> Tensor:
    """Uniform samples in [0, 1) from the seeded generator."""
    shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    dtype = backend.resolve_dtype(dtype or backend.get_default_dtype())
    arr = backend.generator().random(shape).astype(dtype)
    return _creation(arr, requires_grad, device)


def arange(*args: Any, dtype: Any = None, device: str | None = None) -> Tensor:
    xp = backend.module_for(device)
    if dtype is None and any(isinstance(a, float) for a in args):
        dtype = backend.get_default_dtype()  # Python floats take the default dtype
    return Tensor(xp.arange(*args, dtype=dtype))
