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
# # Lecture 4: multi-head attention
#
# > "Instead of performing a single attention function with $d_{model}$-dimensional
# > keys, values and queries, we found it beneficial to linearly project the queries,
# > keys and values $h$ times with different, learned linear projections to $d_k$,
# > $d_k$ and $d_v$ dimensions, respectively." (Vaswani et al. 2017, section 3.2.2)
#
# $$\mathrm{head}_h = \mathrm{Attention}(Q W^Q_h,\; K W^K_h,\; V W^V_h), \qquad
# \mathrm{MultiHead}(Q, K, V) = \mathrm{Concat}(\mathrm{head}_1, \ldots, \mathrm{head}_H)\, W^O$$
#
# with $W^Q_h, W^K_h, W^V_h$ of shape $(d_{model}, d_k)$, $d_k = d_{model} / H$, and
# $W^O$ of shape $(d_{model}, d_{model})$.
#
# Lecture 2's attention gives each query *one* distribution over the keys. A row of
# weights sums to 1, so at most one key can receive more than half of it: one head
# cannot look sharply at two places at once. $H$ heads give each query $H$ separate
# looks, each in its own $d_k$-dimensional subspace, and $W^O$ mixes what they found.
#
# This lecture, with `minitransformer/nn/attention.py` (`MultiHeadAttention`) open:
#
# 1. the $H$ projections as *one* matrix, split into heads by a reshape (and the
#    reshape that gets it wrong);
# 2. the layer's output recomputed head by head from its weights;
# 3. two heads set by hand, one looking at the current token and one at the previous
#    token, drawn with `mha.last_weights`; then the heads of an untrained layer;
# 4. the parameter count $4 d^2 + 4 d$.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np

import minitransformer as mt
from minitransformer import nn, plots

mt.manual_seed(0)
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. Splitting into heads is a reshape
#
# Stack the $H$ matrices $W^Q_h$ side by side and they form one
# $(d_{model}, d_{model})$ matrix $W^Q = [W^Q_1 \,|\, \cdots \,|\, W^Q_H]$. So the layer
# computes all the heads' queries with one matrix product, `q_proj(x)`, of shape
# $(B, L, d_{model})$, in which head $h$ owns columns $h d_k$ to $(h+1) d_k - 1$.
#
# To give each head its own attention, those column blocks become a separate axis:
#
# $$(B, L, d_{model}) \xrightarrow{\text{reshape}} (B, L, H, d_k)
# \xrightarrow{\text{transpose}(0, 2, 1, 3)} (B, H, L, d_k)$$
#
# The reshape cuts each row of $d_{model}$ numbers into $H$ chunks of $d_k$ (in memory
# a row is contiguous, so this is free), and the transpose moves the head axis in front
# of the positions, so that attention treats $(B, H)$ as batch axes.
#
# We label the entries so that we can see where they go: entry $(\ell, c)$ of a
# $(1, 3, 8)$ input holds $10 \ell + c$ (position $\ell$, column $c$). With $H = 2$,
# $d_k = 4$, head 1 at position 2 must hold columns 4 to 7 of position 2:
# $24, 25, 26, 27$.

# %%
L, d_model, H = 3, 8, 2
d_k = d_model // H
labelled = 10 * np.arange(L)[:, None] + np.arange(d_model)[None, :]  # (3, 8)
x = mt.tensor(labelled[None], dtype="float64")  # (1, 3, 8)

mha = nn.MultiHeadAttention(d_model, num_heads=H)
heads = mha._split_heads(x)
print("split:", x.shape, "->", heads.shape)
print("head 1:\n", heads.numpy()[0, 1])

assert heads.shape == (1, H, L, d_k)
assert heads.numpy()[0, 1, 2].tolist() == [24, 25, 26, 27]
for h in range(H):
    assert np.array_equal(heads.numpy()[0, h], labelled[:, h * d_k : (h + 1) * d_k])

# %% [markdown]
# After attention, the inverse move concatenates the heads again:
# `transpose(0, 2, 1, 3)` back to $(B, L, H, d_k)$, then `reshape(B, L, d_model)`.
#
# A bug seen in more than one tutorial: skip the transpose and reshape
# $(B, L, d_{model})$ straight to $(B, H, L, d_k)$. The shapes are right, so nothing
# complains, but a reshape never moves data: it re-reads the same numbers in memory
# order. "Head 0" then gets the first $L d_k$ numbers of the sequence, which are
# *whole positions* ($0$ and half of $1$ here), not column block 0 of every position.

# %%
wrong = labelled[None].reshape(1, H, L, d_k)
print("'head 0' of the wrong split:\n", wrong[0, 0])

assert wrong[0, 0, 1].tolist() == [4, 5, 6, 7]  # still position 0's numbers, in row 1
assert wrong[0, 0, 2].tolist() == [10, 11, 12, 13]  # position 1 leaks into head 0
assert not np.array_equal(wrong, heads.numpy())

# %% [markdown]
# ## 2. The layer, head by head
#
# `mha(x, x, x)` must equal the formula at the top evaluated one head at a time, with
# each head's slice of the weights:
#
# $$\mathrm{head}_h = \mathrm{softmax}\!\left(\frac{(x W^Q_h + b^Q_h)(x W^K_h + b^K_h)^\top}{\sqrt{d_k}}\right)(x W^V_h + b^V_h),
# \qquad \mathrm{out} = [\mathrm{head}_1 | \cdots | \mathrm{head}_H]\, W^O + b^O.$$
#
# (`Linear.weight` is stored as $(d_{in}, d_{out})$, the way the formula is written,
# so $W^Q_h$ is `q_proj.weight[:, h*d_k:(h+1)*d_k]`.) Random biases make sure those
# are not skipped by accident.

# %%
B, L, d_model, H = 2, 5, 12, 3
d_k = d_model // H
mha = nn.MultiHeadAttention(d_model, num_heads=H).double()
for lin in (mha.q_proj, mha.k_proj, mha.v_proj, mha.out_proj):
    lin.bias.data = rng.standard_normal(d_model)
x = rng.standard_normal((B, L, d_model))

out = mha(mt.tensor(x), mt.tensor(x), mt.tensor(x)).numpy()


def project(lin, h):
    cols = slice(h * d_k, (h + 1) * d_k)
    return x @ lin.weight.numpy()[:, cols] + lin.bias.numpy()[cols]  # (B, L, d_k)


per_head = []
for h in range(H):
    qh, kh, vh = project(mha.q_proj, h), project(mha.k_proj, h), project(mha.v_proj, h)
    s = qh @ kh.transpose(0, 2, 1) / math.sqrt(d_k)
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    per_head.append(p @ vh)
by_hand = (
    np.concatenate(per_head, axis=-1) @ mha.out_proj.weight.numpy() + mha.out_proj.bias.numpy()
)

print("max |layer - head by head| =", np.abs(out - by_hand).max())
assert np.allclose(out, by_hand, atol=1e-12)
assert mha.last_weights.shape == (B, H, L, L)

# %% [markdown]
# ## 3. Heads that do different things
#
# To see heads specialise, we set the weights by hand. The input is four tokens
# whose vectors are one-hot *positions*, $x_i = e_i$ in the first 4 of $d_{model} = 8$
# dimensions. Two heads of $d_k = 4$, all biases zero, and a constant $c$:
#
# - **head 0, "this token"**: $W^Q_0 = W^K_0 = c\, I$ on the first four dimensions,
#   so query $i$ is $c\, e_i$, key $j$ is $c\, e_j$, and the score is
#   $c^2 \delta_{ij} / \sqrt{d_k} = c^2 \delta_{ij} / 2$;
# - **head 1, "previous token"**: the same queries, but key $j$ is $c\, e_{j+1}$
#   (shifted by one; the last key has no successor and becomes 0), so the score is
#   $c^2 / 2$ exactly when $j = i - 1$.
#
# With $c^2 / 2 = 5$ a row has one score of 5 and three of 0, so the favoured key gets
# weight $e^5 / (e^5 + 3) \approx 0.980$ and each other key $1 / (e^5 + 3) \approx 0.0066$.
# Query 0 has no previous token: in head 1 all its scores are 0 and its weights are
# uniform, $1/4$ each.
#
# The values copy the token ($W^V_h$ maps $e_j$ to $e_j$ in each head) and $W^O = I$, so
# the output at position $i$ is about $[e_i \,|\, e_{i-1}]$: the layer has written
# "which token came before me" into every position, a feature no single position's
# input has. (A previous-token head like head 1, followed in a later layer by a head
# that looks for "the position whose previous token is my token", is an *induction
# head*: the circuit behind much of in-context copying.)

# %%
L, d_model, H, d_k = 4, 8, 2, 4
c = math.sqrt(10.0)  # c^2 / sqrt(d_k) = 10 / 2 = 5
mha = nn.MultiHeadAttention(d_model, num_heads=H).double()
Wq, Wk, Wv = (np.zeros((d_model, d_model)) for _ in range(3))
for i in range(L):
    Wq[i, i] = Wq[i, d_k + i] = c  # both heads query with c e_i
    Wk[i, i] = c  # head 0: key j is c e_j
    if i + 1 < L:
        Wk[i, d_k + i + 1] = c  # head 1: key j is c e_{j+1}
    Wv[i, i] = Wv[i, d_k + i] = 1.0  # both heads' values copy the token
for lin, W in (
    (mha.q_proj, Wq),
    (mha.k_proj, Wk),
    (mha.v_proj, Wv),
    (mha.out_proj, np.eye(d_model)),
):
    lin.weight.data, lin.bias.data = W, np.zeros(d_model)

x = mt.tensor(np.eye(L, d_model)[None])  # (1, 4, 8): x_i = e_i
y = mha(x, x, x).numpy()[0]
w = mha.last_weights.numpy()[0]  # (H, L, L)

sharp, other = math.exp(5) / (math.exp(5) + 3), 1 / (math.exp(5) + 3)
print(f"expected weights: {sharp:.4f} on the chosen key, {other:.4f} elsewhere")
print("head 0:\n", w[0].round(4), "\nhead 1:\n", w[1].round(4))

assert np.allclose(np.diag(w[0]), sharp)
assert np.allclose(w[1][np.arange(1, L), np.arange(L - 1)], sharp)
assert np.allclose(w[1][0], 0.25)
assert all(y[i, :d_k].argmax() == i for i in range(L))  # "this token"
assert all(y[i, d_k:].argmax() == i - 1 for i in range(1, L))  # "previous token"


# %%
def draw_heads(weights, tokens, title):
    """One heatmap per head, side by side: weights (H, L_q, L_k)."""
    n = weights.shape[0]
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.2), squeeze=False)
    for h in range(n):
        plots.plot_heatmap(
            weights[h], ax=axes[0, h], xlabels=tokens, ylabels=tokens, title=f"head {h}"
        )
    fig.suptitle(title)
    fig.tight_layout()
    return fig


draw_heads(w, [f"x{i}" for i in range(L)], "hand-set heads: this token | previous token")
plt.show()

# %% [markdown]
# An untrained layer's heads on a real-looking input: five random word vectors, with
# a causal mask (lecture 3). Each head's map is different (different random
# projections), each is lower-triangular, and row 0 is always $(1, 0, 0, \ldots)$:
# the first query may see only the first key. Training is what turns such noise
# into patterns like the ones above.

# %%
words = ["the", "cat", "sat", "on", "mats"]
L, d_model, H = len(words), 32, 4
mha = nn.MultiHeadAttention(d_model, num_heads=H)
x = mt.randn(1, L, d_model)
mha(x, x, x, mask=nn.causal_mask(L))
w = mha.last_weights.numpy()[0]

draw_heads(w, words, "an untrained layer, causal mask")
plt.show()

assert w.shape == (H, L, L)
assert (w[:, 0, 0] == 1).all() and (np.triu(w, k=1) == 0).all()
assert np.allclose(w.sum(axis=-1), 1, atol=1e-6)
assert not np.allclose(w[0], w[1])  # heads differ

# %% [markdown]
# ## 4. Counting parameters
#
# Four $(d, d)$ weight matrices ($W^Q, W^K, W^V, W^O$) and four bias vectors of
# length $d$:
#
# $$4 d^2 + 4 d.$$
#
# The number of heads does not appear: $H$ heads of width $d / H$ use the same
# $d \times d$ matrices as one head of width $d$, only cut differently. For the base
# model of the paper, $d = 512$: $4 \cdot 262144 + 2048 = 1{,}050{,}624$ parameters per
# attention layer. Without biases it is $4 d^2 = 1{,}048{,}576$.
#
# The same is true of the cost: scoring takes $H$ products of $(L, d/H)$ by
# $(d/H, L)$, that is $H \cdot L^2 \cdot d / H = L^2 d$ multiply-adds, as for one head.

# %%
for d in (8, 64, 512):
    counts = {h: nn.MultiHeadAttention(d, num_heads=h).num_parameters() for h in (1, 2, 8)}
    print(f"d = {d:3d}: {counts}  4d^2 + 4d = {4 * d * d + 4 * d}")
    assert all(n == 4 * d * d + 4 * d for n in counts.values())

assert nn.MultiHeadAttention(512, 8).num_parameters() == 1_050_624
assert nn.MultiHeadAttention(512, 8, bias=False).num_parameters() == 1_048_576
names = [name for name, _ in nn.MultiHeadAttention(8, 2).named_parameters()]
print(names)
assert len(names) == 8

# %% [markdown]
# ## Exercises
#
# 1. `nn.MultiHeadAttention(12, 5)` raises an error. Why, and what does the message
#    say? Which head counts are allowed for $d_{model} = 12$?
#    *Expected:* 12 is not divisible by 5, every head needs $d_{model} / H$ dimensions;
#    the message names `d_model=12` and `num_heads=5`; allowed: 1, 2, 3, 4, 6, 12.
# 2. In section 3, change $c$ so that the chosen key gets weight 0.9 instead of
#    0.980. What is $c$?
#    *Expected:* $e^{s} / (e^{s} + 3) = 0.9$ gives $e^s = 27$, $s = \ln 27 \approx 3.296$;
#    $c^2 / 2 = s$, so $c = \sqrt{2 \ln 27} \approx 2.568$.
# 3. How many parameters does the attention of BERT-base have ($d = 768$, 12 heads),
#    and of its 12 layers together?
#    *Expected:* $4 \cdot 768^2 + 4 \cdot 768 = 2{,}362{,}368$ per layer,
#    $28{,}348{,}416$ for 12 layers.
#
# Try them before reading on: the cells below are one solution each.

# %%
try:
    nn.MultiHeadAttention(12, 5)
except ValueError as err:
    print("ValueError:", err)
    assert "d_model=12" in str(err) and "num_heads=5" in str(err)
else:
    raise AssertionError("12 dimensions cannot be split into 5 heads")
assert [h for h in range(1, 13) if 12 % h == 0] == [1, 2, 3, 4, 6, 12]

# %%
s = math.log(27)
c2 = math.sqrt(2 * s)
scores = np.array([s, 0, 0, 0])
assert np.isclose(np.exp(scores)[0] / np.exp(scores).sum(), 0.9)
assert abs(c2 - 2.568) < 1e-3

# %%
per_layer = nn.MultiHeadAttention(768, 12).num_parameters()
assert per_layer == 2_362_368 and 12 * per_layer == 28_348_416
print("all exercises check out")
