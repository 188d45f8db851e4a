# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lecture 1: the autograd tape
#
# Training a transformer means nudging millions of numbers in the direction that
# lowers a loss. That direction is the gradient, and nobody derives it by hand for a
# whole model: the framework *records* every operation as it runs and then replays
# the recording backwards, applying the chain rule one small step at a time.
# The recording is called the **tape**.
#
# This lecture builds up the tape of `minitransformer` from a single scalar to a
# small tensor function:
#
# 1. the chain rule, one entry at a time;
# 2. what an entry on the tape records;
# 3. `backward()` walking the tape in reverse (and a ten-line copy of it);
# 4. a tensor used twice: gradients add up;
# 5. broadcasting, undone by `sum_to`;
# 6. leaf gradients accumulate, and why optimizers zero them;
# 7. `mt.no_grad()`;
# 8. your own op as a `Function`, checked with `mt.gradcheck`;
# 9. the gradients of a small layer, derived by hand and by the tape;
# 10. a picture of the tape.
#
# Every claim is checked with an `assert` against a number worked out by hand here
# in the text. The code it exercises lives in `minitransformer/autograd/`: read
# `tape.py` (about 150 lines) beside this notebook.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

import minitransformer as mt
from minitransformer import functional as F
from minitransformer import plots
from minitransformer.autograd.function import Function
from minitransformer.autograd.tape import graph_nodes, sum_to

# MT_FAST=1 (set by the test suite) shrinks the few loops below; the lesson is the same.
FAST = os.environ.get("MT_FAST") == "1"
mt.manual_seed(0)

# %% [markdown]
# ## 1. The chain rule, one entry at a time
#
# Take $y = x^2 + 3x$ at $x = 2$. By hand, $y = 4 + 6 = 10$ and
# $\frac{dy}{dx} = 2x + 3 = 7$.
#
# The framework never sees the formula $2x + 3$. It sees three operations, in order:
#
# | seq | op | computes |
# | --- | --- | --- |
# | 0 | `Mul` | $a = x \cdot x$ |
# | 1 | `Mul` | $b = 3 \cdot x$ |
# | 2 | `Add` | $y = a + b$ |
#
# and each op knows only its own *local* derivative: for $z = u \cdot v$,
# $\partial z / \partial u = v$ and $\partial z / \partial v = u$; for $z = u + v$ both
# are 1. The **chain rule** glues them together: if $y$ depends on $x$ through
# intermediate values, then
#
# $$\frac{dy}{dx} = \sum_{\text{paths } x \to y} \prod_{\text{edges on the path}} \text{local derivative}.$$
#
# Here: through $a$, $1 \cdot (x + x) = 4$ (both inputs of `Mul` are $x$); through
# $b$, $1 \cdot 3 = 3$; total $7$.
#
# A tensor that should receive a gradient is made with `requires_grad=True`.

# %%
x = mt.tensor(2.0, requires_grad=True)
y = x * x + 3 * x
print("y =", y)

assert y.item() == 10.0

# %% [markdown]
# ## 2. What the tape records
#
# `y` points at the tape entry of the op that produced it: `y._node`. An entry (a
# `Node`) holds
#
# - `op`: the op's class, whose `backward` will be called;
# - `inputs`: the input tensors, which point at *their* nodes in turn;
# - `seq`: its position on the tape, a counter that only grows;
# - whatever the op saved for its backward (`Mul` saves both factors).
#
# Tensors the user made, like `x`, are **leaves**: `x._node is None`.

# %%
node = y._node
print("y._node        :", node)
print("y._node.op     :", node.op.__name__)
print("y._node.inputs :", node.inputs)
print("y._node.seq    :", node.seq)
print("x._node        :", x._node)

a, b = node.inputs
assert node.op.__name__ == "Add"
assert a.item() == 4.0 and b.item() == 6.0  # a = x * x, b = 3 * x
assert a._node.op.__name__ == "Mul" and b._node.op.__name__ == "Mul"
assert x.is_leaf
# x * x ran before 3 * x, which ran before the +: seq numbers follow the order of execution
assert a._node.seq < b._node.seq < node.seq

# %% [markdown]
# `graph_nodes(y._node)` collects every entry `y` depends on, **newest first**. That
# is a valid order for the backward pass: an op can only consume tensors that already
# existed when it ran, so every consumer of a value has a larger `seq` than its
# producer, and visiting by descending `seq` finishes all the consumers of a value
# before that value's gradient is passed on.

# %%
for n in graph_nodes(y._node):
    print(f"seq {n.seq}: {n.op.__name__:4s} inputs {[t.shape for t in n.inputs]}")

assert [n.op.__name__ for n in graph_nodes(y._node)] == ["Add", "Mul", "Mul"]

# %% [markdown]
# ## 3. `backward()` walks the tape in reverse
#
# `y.backward()` starts with $\partial y / \partial y = 1$ and visits the entries
# newest first. Each entry's `op.backward(ctx, g)` turns the gradient $g$ of its
# output into one gradient per input. Gradients that reach a leaf are stored in
# `leaf.grad`.

# %%
y.backward()
print("dy/dx =", x.grad)

assert x.grad == 7.0  # 2x + 3 at x = 2

# %% [markdown]
# There is no magic in that call. Here is the same walk, written out: a dictionary
# of pending gradients keyed by node (or by leaf), filled as each entry hands its
# gradient to its inputs. Compare it with `backward` in `minitransformer/autograd/tape.py`,
# which adds only error checks and the freeing of saved arrays.

# %%
x = mt.tensor(2.0, requires_grad=True)
y = x * x + 3 * x


def key(t):
    """Gradients for an op's output wait under its node; a leaf's under the leaf."""
    return id(t._node) if t._node is not None else id(t)


pending = {id(y._node): np.ones((), dtype=np.float32)}  # dy/dy = 1
for n in graph_nodes(y._node):  # newest first
    g = pending.pop(id(n))
    input_grads = n.op.backward(n, g)  # the chain rule, one local step
    for t, gi in zip(n.inputs, input_grads):
        if t.requires_grad:  # the constant 3 gets no gradient
            pending[key(t)] = pending.get(key(t), 0) + sum_to(gi, t.shape)

print("dy/dx by hand-run tape =", pending[id(x)])
assert pending[id(x)] == 7.0

# %% [markdown]
# The same machinery works through any chain of ops. For $z = \tanh(w x)$ the chain
# rule gives $\frac{\partial z}{\partial x} = (1 - \tanh^2(w x))\, w$ and
# $\frac{\partial z}{\partial w} = (1 - \tanh^2(w x))\, x$. At $w = 0.5$, $x = 2$:
# $\tanh(1) = 0.761594$, $1 - 0.761594^2 = 0.419974$, so
# $\partial z / \partial x = 0.209987$ and $\partial z / \partial w = 0.839949$.

# %%
w = mt.tensor(0.5, requires_grad=True)
x = mt.tensor(2.0, requires_grad=True)
z = (w * x).tanh()
z.backward()
print("dz/dx =", x.grad, " dz/dw =", w.grad)

assert np.isclose(x.grad, 0.209987, atol=1e-6)
assert np.isclose(w.grad, 0.839949, atol=1e-6)

# %% [markdown]
# ## 4. A tensor used twice: gradients add up
#
# In $y = x \cdot x$ both inputs of the one `Mul` are the same tensor. Its backward
# returns $(g \cdot x,\; g \cdot x)$, one gradient per *input slot*, and the tape adds
# everything that arrives at `x`: $x + x = 2x$, which is the derivative of $x^2$.
# At $x = 3$ that is $6$. Forgetting to add (overwriting instead) would give $3$.
#
# The same rule handles a value that feeds two different ops, as $x$ did in
# section 1 (the $2x$ and the $3$ were added).

# %%
x = mt.tensor(3.0, requires_grad=True)
y = x * x
y.backward()
print("d(x*x)/dx at 3 =", x.grad)

assert x.grad == 6.0

# %% [markdown]
# ## 5. Broadcasting and `sum_to`
#
# NumPy broadcasting lets `X + b` add a bias of shape `(3,)` to every row of a
# `(2, 3)` matrix. In the forward pass `b` is silently copied to each row; in the
# backward pass each copy receives a gradient, and the copies' gradients must be
# **summed** back into the one `b`. With $L = \sum_{ij} (X_{ij} + b_j)$,
# $\partial L / \partial b_j = \sum_i 1 = 2$ (two rows).
#
# For a product $L = \sum_{ij} X_{ij} w_j$, $\partial L / \partial w_j = \sum_i X_{ij}$,
# the column sums of $X$. With $X = \begin{pmatrix} 0 & 1 & 2 \\ 3 & 4 & 5 \end{pmatrix}$
# those are $(3, 5, 7)$.
#
# Each op's backward returns the gradient in the broadcast shape `(2, 3)`; the tape
# then calls `sum_to(grad, input.shape)`, the one place where broadcasting is undone:
# it sums the leading axes broadcasting added and the size-1 axes it stretched.

# %%
X = mt.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
b = mt.tensor(np.zeros(3), requires_grad=True)
(X + b).sum().backward()
print("dL/db for L = sum(X + b) :", b.grad)
assert np.array_equal(b.grad, [2.0, 2.0, 2.0])

w = mt.tensor(np.ones(3), requires_grad=True)
(X * w).sum().backward()
print("dL/dw for L = sum(X * w) :", w.grad)
assert np.array_equal(w.grad, [3.0, 5.0, 7.0])

# sum_to on its own: a leading axis is summed away, a stretched size-1 axis is summed and kept
ones = np.ones((2, 3))
assert np.array_equal(sum_to(ones, (3,)), [2.0, 2.0, 2.0])
assert np.array_equal(sum_to(ones, (2, 1)), [[3.0], [3.0]])

# %% [markdown]
# ## 6. Leaf gradients accumulate
#
# `backward()` **adds** into `leaf.grad`; it never overwrites. Run the forward and
# backward of section 1 twice and `x.grad` is $7 + 7 = 14$. That is deliberate: it
# lets a large batch be processed in several smaller pieces whose gradients add up
# (gradient accumulation), and it is what makes section 4 work.
#
# (A second `backward()` through the *same* `y` is refused: the first one freed the
# arrays the ops saved. Recompute the forward, or pass `retain_graph=True`.)

# %%
x = mt.tensor(2.0, requires_grad=True)
for _ in range(2):
    y = x * x + 3 * x
    y.backward()
print("x.grad after two backward passes:", x.grad)
assert x.grad == 14.0

try:
    y.backward()
except RuntimeError as err:
    print("RuntimeError:", err)
else:
    raise AssertionError("a second backward through a freed graph should fail")

# %% [markdown]
# This is why every training loop zeroes the gradients before each step
# (`optimizer.zero_grad()`). Minimise $f(w) = (w - 3)^2$ by gradient descent from
# $w_0 = 0$ with learning rate $0.1$: $f'(w) = 2(w - 3)$, so
# $w_{t+1} - 3 = (w_t - 3) - 0.2 (w_t - 3) = 0.8\,(w_t - 3)$ and
# $w_t = 3 - 3 \cdot 0.8^t$.
#
# Without zeroing, step $t$ uses the *sum* of all gradients so far. Writing
# $e_t = w_t - 3$: $e_{t+1} = e_t - 0.2 \sum_{s \le t} e_s$. Subtracting the same
# equation one step earlier gives $e_{t+1} = 1.8\, e_t - e_{t-1}$, whose
# characteristic roots $r^2 - 1.8 r + 1 = 0$ have $|r| = 1$: the error oscillates
# forever and never shrinks.
#
# The update itself writes into `w.data` directly: it must not be recorded on the
# tape (it is not part of the function being differentiated).

# %%
steps = 10 if FAST else 30


def descend(zero_grads: bool) -> np.ndarray:
    w = mt.tensor(0.0, requires_grad=True)
    path = [w.item()]
    for _ in range(steps):
        if zero_grads:
            w.zero_grad()
        loss = (w - 3) ** 2
        loss.backward()
        w.data -= 0.1 * w.grad
        path.append(w.item())
    return np.array(path)


good, bad = descend(zero_grads=True), descend(zero_grads=False)
t = np.arange(steps + 1)
print("zeroed    :", np.round(good, 3))
print("not zeroed:", np.round(bad, 3))

assert np.allclose(good, 3 - 3 * 0.8**t, atol=1e-5)
e = bad - 3
assert np.allclose(e[2:], 1.8 * e[1:-1] - e[:-2], atol=1e-4)
assert abs(e[-4:]).max() > 1.0  # still far from the minimum

# %%
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(t, good, "o-", label="zero_grad() every step")
ax.plot(t, bad, "s--", label="gradients accumulate")
ax.axhline(3, color="grey", lw=0.8)
ax.set_xlabel("step t")
ax.set_ylabel("w")
ax.legend()
ax.set_title("gradient descent on (w - 3)^2")
plt.show()

# %% [markdown]
# ## 7. `mt.no_grad()`: compute without recording
#
# Evaluation, sampling and parameter updates do not need gradients. Inside
# `with mt.no_grad():` no op writes an entry: the result has no node and does not
# require grad, so there is nothing to backward through, and no memory is spent
# keeping saved arrays alive.

# %%
x = mt.tensor(2.0, requires_grad=True)
with mt.no_grad():
    y = x * x + 3 * x
print("y =", y, " y._node =", y._node)

assert y.item() == 10.0  # the value is still computed
assert y._node is None and not y.requires_grad
try:
    y.backward()
except RuntimeError as err:
    print("RuntimeError:", err)
else:
    raise AssertionError("backward through an unrecorded computation should fail")

# %% [markdown]
# ## 8. Your own op: a `Function`
#
# Every op in `minitransformer/autograd/ops.py` is a class with two static methods
# side by side: `forward(ctx, *arrays)` computes the output from raw arrays and saves
# what the backward will need on `ctx` (which *is* the tape entry), and
# `backward(ctx, g)` turns $g = \partial L / \partial \text{output}$ into one gradient
# per input. `Op.apply(tensor, ...)` does the bookkeeping: unwrap, run `forward`,
# wrap, and write the entry on the tape.
#
# The sigmoid $s(a) = 1 / (1 + e^{-a})$ has the derivative
# $s'(a) = \frac{e^{-a}}{(1 + e^{-a})^2} = s(a)\,(1 - s(a))$, so the backward only
# needs the *output*. At $a = 0$: $s = 0.5$ and $s' = 0.25$.
#
# (The library's `F.sigmoid` computes the same function as $(1 + \tanh(a/2))/2$,
# which never overflows for very negative $a$.)


# %%
class Sigmoid(Function):
    """s = 1 / (1 + e^-a);   ds/da = s (1 - s)"""

    @staticmethod
    def forward(ctx, a):
        s = 1 / (1 + np.exp(-a))
        ctx.save_for_backward(s)
        return s

    @staticmethod
    def backward(ctx, g):
        (s,) = ctx.saved_tensors
        return g * s * (1 - s)


a = mt.tensor(0.0, requires_grad=True)
s = Sigmoid.apply(a)
s.backward()
print("s(0) =", s.item(), " s'(0) =", a.grad)
assert s.item() == 0.5 and a.grad == 0.25

x = mt.randn(5, dtype="float64")
assert np.allclose(Sigmoid.apply(x).numpy(), F.sigmoid(x).numpy())

# %% [markdown]
# ### Checking a backward with `mt.gradcheck`
#
# A hand-written backward is easy to get wrong, and a wrong gradient does not crash:
# training just goes badly. `mt.gradcheck(fn, *inputs)` compares the tape's gradient
# of $L = \sum \text{fn}(\text{inputs})$ with **central differences**,
#
# $$\frac{\partial L}{\partial x_i} \approx \frac{L(x + \epsilon e_i) - L(x - \epsilon e_i)}{2 \epsilon},$$
#
# element by element. The error of this estimate is $O(\epsilon^2)$, but the
# rounding error of $L$ divided by $2\epsilon$ is not small in float32, so gradient
# checks run in **float64**.

# %%
x = mt.randn(5, dtype="float64", requires_grad=True)
assert mt.gradcheck(Sigmoid.apply, x)
print("Sigmoid passes gradcheck")

# %% [markdown]
# Now a deliberately wrong backward that forgets the factor $(1 - s)$. At $a = 0$ it
# returns $s = 0.5$ where the true derivative is $0.25$; `gradcheck` raises
# `mt.GradcheckError` naming the input, the element and both values.


# %%
class BadSigmoid(Sigmoid):
    @staticmethod
    def backward(ctx, g):
        (s,) = ctx.saved_tensors
        return g * s  # wrong: the (1 - s) is missing


x = mt.tensor([0.0], dtype="float64", requires_grad=True)
try:
    mt.gradcheck(BadSigmoid.apply, x)
except mt.GradcheckError as err:
    message = str(err)
    print("GradcheckError:", message)
else:
    raise AssertionError("gradcheck should reject the wrong backward")

assert "index (0,)" in message
assert "the tape gives 0.5," in message and "central differences give 0.25" in message

# %% [markdown]
# ## 9. Gradients of a small tensor function
#
# One layer of a network: $H = \tanh(X W + b)$ and the loss
# $L = \frac{1}{n} \sum_{ij} H_{ij}^2$ with $X$ of shape $(n, d_{in})$, $W$ of shape
# $(d_{in}, d_{out})$, $b$ of shape $(d_{out},)$ and $n$ the number of entries of $H$
# ($n = $ batch $\times d_{out}$).
#
# Chain rule, backwards from $L$:
#
# - $\partial L / \partial H = 2 H / n$
# - $\partial L / \partial P = \partial L / \partial H \odot (1 - H^2)$ for the pre-activation $P = X W + b$
# - $\partial L / \partial W = X^\top \, \partial L / \partial P$ (shape $(d_{in}, d_{out})$)
# - $\partial L / \partial b = \sum_{\text{rows}} \partial L / \partial P$ (the broadcast of $b$, undone)
# - $\partial L / \partial X = \partial L / \partial P \; W^\top$
#
# We compute these by hand in NumPy and compare with the tape.

# %%
batch, d_in, d_out = 4, 3, 2
X = mt.randn(batch, d_in, dtype="float64", requires_grad=True)
W = mt.randn(d_in, d_out, dtype="float64", requires_grad=True)
b = mt.randn(d_out, dtype="float64", requires_grad=True)


def layer_loss(X, W, b):
    H = (X @ W + b).tanh()
    return (H * H).mean()


L = layer_loss(X, W, b)
L.backward()

Xn, Wn, bn = X.numpy(), W.numpy(), b.numpy()
H = np.tanh(Xn @ Wn + bn)
dH = 2 * H / H.size
dP = dH * (1 - H**2)
assert np.allclose(W.grad, Xn.T @ dP)
assert np.allclose(b.grad, dP.sum(axis=0))
assert np.allclose(X.grad, dP @ Wn.T)
print("tape gradients match the hand-derived formulas")

assert mt.gradcheck(layer_loss, X, W, b)
print("and gradcheck agrees")

# %% [markdown]
# ## 10. A picture of the tape
#
# `plots.draw_tape(L)` draws the entries behind `L`: green boxes are leaves that get
# a gradient, grey boxes constants, blue boxes ops labelled `Op #seq` with the shape
# they produced. Reading left to right is the forward pass; `backward()` visits the
# blue boxes right to left. Note `H` feeding the `Mul` twice (section 4), and `b` of
# shape `(2,)` feeding an `Add` whose output is `(4, 2)` (section 5).

# %%
P = X @ W + b
H = P.tanh()
L = (H * H).mean()
fig = plots.draw_tape(L, labels={"X": X, "W": W, "b": b, "H": H, "L": L})
plt.show()

ops_on_tape = [n.op.__name__ for n in graph_nodes(L._node)][::-1]
print("oldest first:", ops_on_tape)
assert ops_on_tape == ["MatMul", "Add", "Tanh", "Mul", "Mean"]

# %% [markdown]
# ## Exercises
#
# 1. Build $f(x) = x^3 - 2x$ at $x = 2$ from tensor operations and call `backward()`.
#    What is `x.grad`, and how many entries are on the tape behind $f$?
#    *Expected:* $f'(2) = 3 \cdot 2^2 - 2 = 10$; three entries (`PowScalar`, `Mul`, `Sub`).
# 2. With $A = \begin{pmatrix} 0 & 1 & 2 \\ 3 & 4 & 5 \end{pmatrix}$ (no gradient) and
#    $L = \sum (A \odot c)$, what is `c.grad` when `c` has shape `(3,)`, and when it
#    has shape `(2, 1)`?
#    *Expected:* the column sums $(3, 5, 7)$; the row sums $\begin{pmatrix} 3 \\ 12 \end{pmatrix}$.
# 3. Write `Softplus` as a `Function`: $\text{softplus}(a) = \log(1 + e^a)$. Derive its
#    backward and check it with `mt.gradcheck`.
#    *Expected:* the derivative is the sigmoid, $e^a / (1 + e^a)$; at $a = 0$ the value
#    is $\log 2 \approx 0.693147$ and the derivative $0.5$; gradcheck returns `True`.
#
# Try them before reading on: the cells below are one solution each.

# %%
x = mt.tensor(2.0, requires_grad=True)
f = x**3 - 2 * x
f.backward()
assert x.grad == 10.0
assert [n.op.__name__ for n in graph_nodes(f._node)][::-1] == ["PowScalar", "Mul", "Sub"]

# %%
A = mt.tensor(np.arange(6.0).reshape(2, 3))
c = mt.tensor(np.ones(3), requires_grad=True)
(A * c).sum().backward()
assert np.array_equal(c.grad, [3.0, 5.0, 7.0])

c = mt.tensor(np.ones((2, 1)), requires_grad=True)
(A * c).sum().backward()
assert np.array_equal(c.grad, [[3.0], [12.0]])


# %%
class Softplus(Function):
    """z = log(1 + e^a);   dz/da = e^a / (1 + e^a) = sigmoid(a)"""

    @staticmethod
    def forward(ctx, a):
        # logaddexp(0, a) = log(e^0 + e^a), computed without overflowing for large a
        ctx.save_for_backward(a)
        return np.logaddexp(0, a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g / (1 + np.exp(-a))


a = mt.tensor(0.0, dtype="float64", requires_grad=True)
z = Softplus.apply(a)
z.backward()
assert np.isclose(z.item(), np.log(2)) and a.grad == 0.5
assert mt.gradcheck(Softplus.apply, mt.randn(6, dtype="float64", requires_grad=True))
print("all exercises check out")
