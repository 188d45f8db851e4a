"""Pictures for the lectures: each function draws one thing and returns its ``Figure``.

A flat module of independent functions. Each takes an optional matplotlib ``ax`` to
draw into (so several pictures can share a figure); without one it makes a new
figure with pyplot, which shows inline in a notebook and is harmless under the
headless ``Agg`` backend. pyplot is imported on first use, so importing this module
costs nothing until something is drawn.

    draw_tape(y)            the graph recorded on the tape behind tensor ``y``
    plot_heatmap(matrix)    a 2-D array as coloured cells (attention weights, masks ...)
    plot_training_history   loss and validation curves of a training run
    plot_attention_heads    one attention heatmap per head
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from . import backend
from .autograd.tape import Node, graph_nodes
from .autograd.tensor import Tensor

__all__ = ["draw_tape", "plot_attention_heads", "plot_heatmap", "plot_training_history"]


def _new_axes(ax: Any, figsize: tuple[float, float]) -> Any:
    """``ax`` itself, or the axes of a new pyplot figure of ``figsize`` inches."""
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize)
    return ax


# ---------------------------------------------------------------- the tape

# Box colours: ops, leaves that get a gradient, constants that do not.
_OP_COLOUR = "#cfe2f3"
_LEAF_COLOUR = "#d9ead3"
_CONST_COLOUR = "#eeeeee"


def _tensor_text(t: Tensor, names: dict[int, str]) -> str:
    """A leaf's box text: its name if given, else 'leaf'/'const', then its shape."""
    if id(t) in names:
        head = names[id(t)]
    elif not t.requires_grad and t.size == 1:
        return f"const {t.data.reshape(()).item():.4g}"
    else:
        head = "leaf" if t.requires_grad else "const"
    return f"{head}\n{t.shape}"


def draw_tape(
    output_tensor: Tensor,
    ax: Any = None,
    labels: Mapping[str, Tensor] | None = None,
) -> Any:
    """Draw the tape entries behind ``output_tensor``, oldest on the left; return the Figure.

    One box per op node (``Op #seq`` and the shape of what it produced) and one per
    leaf tensor (green if it requires grad, grey for constants), with arrows from each
    input to the op that consumed it. Ops stand in columns by their position on the
    tape (``seq``), so reading left to right is the forward pass and right to left is
    the order ``backward()`` visits them. ``labels`` names tensors, e.g.
    ``{"x": x, "y": y}``; a named leaf shows its name, a named op output shows
    ``-> name`` under its op.
    """
    if not isinstance(output_tensor, Tensor):
        raise TypeError(f"draw_tape needs a Tensor, got {type(output_tensor).__name__}")
    names: dict[int, str] = {}
    for name, t in (labels or {}).items():
        if not isinstance(t, Tensor):
            raise TypeError(f"draw_tape: label {name!r} names a {type(t).__name__}, not a Tensor")
        names[id(t)] = name

    root = output_tensor._node
    nodes: list[Node] = [] if root is None else graph_nodes(root)[::-1]  # oldest first

    # The tensor each node produced: the root's is output_tensor, every other one is
    # an input of a later node (that is how it is on the graph at all).
    produced: dict[int, Tensor] = {} if root is None else {id(root): output_tensor}
    leaves: list[Tensor] = [] if root is not None else [output_tensor]
    seen_leaves: set[int] = set()
    for node in nodes:
        for t in node.inputs:
            if t is None:
                continue
            if t._node is not None:
                produced[id(t._node)] = t
            elif id(t) not in seen_leaves:
                seen_leaves.add(id(t))
                leaves.append(t)

    # Leaves stack in column 0; each op sits in its own column, at the mean height of
    # its inputs, so a chain stays on one line and branches fan out.
    pos: dict[int, tuple[float, float]] = {}
    for row, t in enumerate(leaves):
        pos[id(t)] = (0.0, -float(row))
    for col, node in enumerate(nodes, start=1):
        ys = [pos[_key(t)][1] for t in node.inputs if t is not None]
        pos[id(node)] = (float(col), sum(ys) / len(ys) if ys else 0.0)

    width = max(4.0, 1.6 * (len(nodes) + 1))
    height = max(2.0, 1.1 * max(len(leaves), 1) + 0.8)
    ax = _new_axes(ax, (width, height))

    box = {"boxstyle": "round,pad=0.35", "edgecolor": "#444444"}
    text_kw = {"ha": "center", "va": "center", "fontsize": 9, "zorder": 3}
    boxes: dict[int, Any] = {}
    for t in leaves:
        colour = _LEAF_COLOUR if t.requires_grad else _CONST_COLOUR
        x, y = pos[id(t)]
        boxes[id(t)] = ax.text(
            x, y, _tensor_text(t, names), bbox={**box, "facecolor": colour}, **text_kw
        )
    for node in nodes:
        out = produced[id(node)]
        text = f"{node.op.__name__} #{node.seq}\n{out.shape}"
        if id(out) in names:
            text += f"\n-> {names[id(out)]}"
        x, y = pos[id(node)]
        boxes[id(node)] = ax.text(x, y, text, bbox={**box, "facecolor": _OP_COLOUR}, **text_kw)

    for node in nodes:
        x = pos[id(node)][0]
        repeats: dict[int, int] = {}
        for t in node.inputs:
            if t is None:
                continue
            source = _key(t)
            # an edge that skips columns bends so it does not run through the boxes
            # between; a tensor used twice by one op gets a second, differently bent arrow
            k = repeats[source] = repeats.get(source, -1) + 1
            bend = (0.0 if x - pos[source][0] <= 1 else 0.3) + 0.3 * k
            ax.annotate(
                "",
                xy=(0.0, 0.5),
                xycoords=boxes[id(node)],
                xytext=(1.0, 0.5),
                textcoords=boxes[source],
                arrowprops={
                    "arrowstyle": "-|>",
                    "color": "#555555",
                    "shrinkA": 4,
                    "shrinkB": 4,
                    "connectionstyle": f"arc3,rad={bend}",
                },
                zorder=2,
            )

    ys = [p[1] for p in pos.values()]
    ax.set_xlim(-0.6, len(nodes) + 0.6)
    ax.set_ylim(min(ys) - 0.7, max(ys) + 0.7)
    ax.set_axis_off()
    ax.set_title(
        f"tape behind a tensor of shape {output_tensor.shape}: "
        f"{len(nodes)} op(s), {len(leaves)} leaf tensor(s)",
        fontsize=10,
    )
    return ax.figure


def _key(t: Tensor) -> int:
    """Where a tensor's box is: its op's box if an op made it, else its own leaf box."""
    return id(t._node) if t._node is not None else id(t)


# ---------------------------------------------------------------- heatmaps

# Cells are annotated with their values only while they stay legible.
_MAX_ANNOTATED = 12


def plot_heatmap(
    matrix: Any,
    ax: Any = None,
    xlabels: Sequence[Any] | None = None,
    ylabels: Sequence[Any] | None = None,
    title: str | None = None,
) -> Any:
    """Draw a 2-D ``matrix`` (rows down, columns across) as coloured cells; return the Figure.

    ``matrix`` is a Tensor, NumPy or CuPy array of shape (rows, cols); ``ylabels``
    name the rows and ``xlabels`` the columns (e.g. query and key tokens of an
    attention map). Small matrices get their values written in the cells.
    """
    data = matrix.data if isinstance(matrix, Tensor) else matrix
    data = backend.to_numpy(data)
    if data.ndim != 2:
        raise ValueError(f"plot_heatmap needs a 2-D matrix, got shape {tuple(data.shape)}")
    rows, cols = data.shape
    if xlabels is not None and len(xlabels) != cols:
        raise ValueError(f"plot_heatmap: {len(xlabels)} xlabels for a matrix with {cols} columns")
    if ylabels is not None and len(ylabels) != rows:
        raise ValueError(f"plot_heatmap: {len(ylabels)} ylabels for a matrix with {rows} rows")
    if data.dtype.kind == "b":
        data = data.astype("float32")

    ax = _new_axes(ax, (min(1.0 + 0.5 * cols, 12.0), min(0.8 + 0.5 * rows, 10.0)))
    image = ax.imshow(data, cmap="viridis", aspect="auto")
    ax.figure.colorbar(image, ax=ax)
    if xlabels is not None:
        ax.set_xticks(range(cols), [str(s) for s in xlabels], rotation=90)
    if ylabels is not None:
        ax.set_yticks(range(rows), [str(s) for s in ylabels])
    if rows <= _MAX_ANNOTATED and cols <= _MAX_ANNOTATED:
        # masked scores may hold -inf: pick the text colour from the finite values only
        finite = data[backend.array_module(data).isfinite(data)]
        middle = (float(finite.min()) + float(finite.max())) / 2 if finite.size else 0.0
        for i in range(rows):
            for j in range(cols):
                value = float(data[i, j])
                ax.text(
                    j,
                    i,
                    f"{value:.2g}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    # masked (-inf) cells are left blank by imshow: dark text on white
                    color="black" if value > middle or not math.isfinite(value) else "white",
                )
    if title is not None:
        ax.set_title(title)
    return ax.figure


# ---------------------------------------------------------------- training


def _figure(path: Any, figsize: tuple[float, float]) -> Any:
    """A pyplot figure for notebooks, or a bare ``Figure`` when it only goes to a file
    (no GUI backend needed, nothing left open)."""
    if path is not None:
        from matplotlib.figure import Figure

        return Figure(figsize=figsize)
    import matplotlib.pyplot as plt

    return plt.figure(figsize=figsize)


def plot_training_history(history: Sequence[Mapping[str, Any]], path: Any = None) -> Any:
    """Training loss per step (and validation loss / metrics where recorded); return the Figure.

    ``history`` is the list the training loop keeps: entries with "loss" (one per
    step) and entries with "val_loss" plus accuracies (one per evaluation).
    """
    steps = [h["step"] for h in history if "loss" in h]
    losses = [h["loss"] for h in history if "loss" in h]
    evals = [h for h in history if "val_loss" in h]
    fig = _figure(path, (10, 4))
    ax_loss, ax_metric = fig.subplots(1, 2)
    ax_loss.plot(steps, losses, lw=0.8, alpha=0.6, label="train loss")
    if len(losses) >= 20:
        w = max(len(losses) // 50, 5)
        smooth = [
            sum(losses[max(0, i - w) : i + 1]) / len(losses[max(0, i - w) : i + 1])
            for i in range(len(losses))
        ]
        ax_loss.plot(steps, smooth, lw=1.5, label=f"train loss (mean of {w + 1})")
    if evals:
        ax_loss.plot(
            [h["step"] for h in evals],
            [h["val_loss"] for h in evals],
            "o-",
            label="validation loss",
        )
    ax_loss.set(xlabel="step", ylabel="cross-entropy", title="loss")
    ax_loss.legend()
    metric_names = sorted({k for h in evals for k in h if k.startswith("val_") and k != "val_loss"})
    for name in metric_names:
        points = [(h["step"], h[name]) for h in evals if name in h]
        ax_metric.plot([p[0] for p in points], [p[1] for p in points], "o-", label=name)
    ax_metric.set(xlabel="step", ylabel="fraction", title="validation", ylim=(0, 1.02))
    if metric_names:
        ax_metric.legend()
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def plot_attention_heads(
    weights: Any,
    xlabels: Sequence[Any] | None = None,
    ylabels: Sequence[Any] | None = None,
    title: str | None = None,
    path: Any = None,
) -> Any:
    """One heatmap per head of ``weights`` (heads, queries, keys) in a grid; return the Figure."""
    data = backend.to_numpy(weights.data if isinstance(weights, Tensor) else weights)
    if data.ndim != 3:
        raise ValueError(
            f"plot_attention_heads needs (heads, queries, keys), got shape {tuple(data.shape)}"
        )
    heads = data.shape[0]
    cols = min(heads, 4)
    rows = math.ceil(heads / cols)
    fig = _figure(path, (3.2 * cols + 1, 3.0 * rows + 0.6))
    axes = fig.subplots(rows, cols, squeeze=False)
    for h in range(rows * cols):
        ax = axes[h // cols][h % cols]
        if h >= heads:
            ax.axis("off")
            continue
        ax.imshow(
            data[h], cmap="viridis", aspect="auto", vmin=0.0, vmax=max(float(data[h].max()), 1e-9)
        )
        ax.set_title(f"head {h}", fontsize=9)
        if xlabels is not None:
            ax.set_xticks(range(len(xlabels)), [str(s) for s in xlabels], rotation=90, fontsize=7)
        if ylabels is not None:
            ax.set_yticks(range(len(ylabels)), [str(s) for s in ylabels], fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
