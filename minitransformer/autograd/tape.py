"""The autograd tape: record operations as they run, replay them backwards.

While operations run, each one that touches a tensor needing a gradient writes an
entry on the tape: a ``Node`` holding the op (its ``backward``), its input tensors,
whatever the op saved for its backward, and its position on the tape (``seq``).
The output tensor points at its node.

``backward(y)`` then walks the entries that ``y`` depends on exactly once, newest
first (descending ``seq``), which is a valid reverse topological order because an
op can only consume tensors that already existed when it ran. Each node turns the
gradient of its output into gradients of its inputs (the chain rule); gradients
that reach the same tensor along several paths are added. Leaves (tensors made by
the user, such as parameters) accumulate into ``.grad`` across calls, as in PyTorch.

Broadcasting is undone in exactly one place, ``sum_to``: an op's backward returns
the gradient in the broadcast shape and the tape sums it back to each input's shape.

Once a node's backward has run, its saved arrays are freed (unless
``retain_graph=True``); a second backward through it raises a clear error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

__all__ = [
    "Node",
    "Tape",
    "backward",
    "graph_nodes",
    "enable_grad",
    "is_grad_enabled",
    "no_grad",
    "sum_to",
]


class Tape:
    """Whether recording is on, and the next free position on the tape."""

    __slots__ = ("enabled", "next_seq")

    def __init__(self) -> None:
        self.enabled = True
        self.next_seq = 0


TAPE = Tape()

FREED_MESSAGE = (
    "trying to backward through the graph a second time: the arrays saved for "
    "{op}'s backward were freed by the first backward. Call backward(retain_graph=True) "
    "the first time if you need to backward twice, or recompute the forward."
)


class Node:
    """One entry on the tape; also the ``ctx`` an op's forward and backward share."""

    __slots__ = ("op", "inputs", "saved", "seq", "freed", "__dict__")

    def __init__(self, op: type, inputs: tuple | None) -> None:
        self.op = op
        self.inputs = inputs
        self.saved: tuple = ()
        self.seq = -1
        self.freed = False

    def save_for_backward(self, *arrays: Any) -> None:
        self.saved = arrays

    @property
    def saved_tensors(self) -> tuple:
        if self.freed:
            raise RuntimeError(FREED_MESSAGE.format(op=self.op.__name__))
        return self.saved

    @property
    def needs_input_grad(self) -> tuple[bool, ...]:
        return tuple(t is not None and t.requires_grad for t in self.inputs)

    def __repr__(self) -> str:
        return f"<{self.op.__name__} #{self.seq}>"


def is_grad_enabled() -> bool:
    return TAPE.enabled


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Run a block without recording anything on the tape (inference, updates)."""
    previous = TAPE.enabled
    TAPE.enabled = False
    try:
        yield
    finally:
        TAPE.enabled = previous


@contextlib.contextmanager
def enable_grad() -> Iterator[None]:
    previous = TAPE.enabled
    TAPE.enabled = True
    try:
        yield
    finally:
        TAPE.enabled = previous


def sum_to(grad: Any, shape: tuple[int, ...]) -> Any:
    """Sum a broadcast gradient back to ``shape`` (the one place broadcasting is undone).

    Broadcasting added leading axes and stretched size-1 axes; their gradient is the
    sum over those axes.
    """
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    stretched = tuple(lead + i for i, n in enumerate(shape) if n == 1 and grad.shape[lead + i] != 1)
    axes = tuple(range(lead)) + stretched
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


def graph_nodes(root_node: Node) -> list[Node]:
    """Every node ``root_node`` depends on, newest first: the order backward visits them."""
    seen = {id(root_node)}
    nodes = [root_node]
    stack = [root_node]
    while stack:
        node = stack.pop()
        for t in node.inputs:
            parent = None if t is None else t._node
            if parent is not None and id(parent) not in seen:
                seen.add(id(parent))
                nodes.append(parent)
                stack.append(parent)
    nodes.sort(key=lambda n: n.seq, reverse=True)
    return nodes


def backward(root: Any, grad: Any, retain_graph: bool = False) -> None:
    """Send ``grad`` (dL/droot) back through the tape to every leaf that needs it."""
    if root._node is None:
        root._accumulate(grad)
        return
    grads: dict[int, Any] = {id(root._node): grad}
    for node in graph_nodes(root._node):
        g = grads.pop(id(node), None)
        if g is None:
            continue
        if node.freed:
            raise RuntimeError(FREED_MESSAGE.format(op=node.op.__name__))
        input_grads = node.op.backward(node, g)
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        for t, gi in zip(node.inputs, input_grads):
            if gi is None or t is None or not t.requires_grad:
                continue
            if gi.shape != t.data.shape:
                gi = sum_to(gi, t.data.shape)
            if t._node is None:
                t._accumulate(gi)
            else:
                key = id(t._node)
                grads[key] = gi if key not in grads else grads[key] + gi
        if not retain_graph:
            node.saved = ()
            node.freed = True
