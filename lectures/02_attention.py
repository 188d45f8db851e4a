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
# # Lecture 2: scaled dot-product attention
#
# > "An attention function can be described as mapping a query and a set of key-value
# > pairs to an output, where the query, keys, values, and output are all vectors. The
# > output is computed as a weighted sum of the values, where the weight assigned to
# > each value is computed by a compatibility function of the query with the
# > corresponding key." (Vaswani et al. 2017, section 3.2)
#
# The compatibility function of the transformer is the dot product, scaled:
#
# $$\mathrm{Attention}(Q, K, V) = \mathrm{softmax}\!\left(\frac{Q K^\top}{\sqrt{d_k}}\right) V$$
#
# with $Q$ of shape $(L_q, d_k)$ (one query per row), $K$ of shape $(L_k, d_k)$, $V$ of
# shape $(L_k, d_v)$, and the softmax taken along each row, over the keys. The output
# has shape $(L_q, d_v)$: one weighted average of the values per query.
#
# This lecture:
#
# 1. computes attention by hand on an example small enough to do on paper;
# 2. asks why the scores are divided by $\sqrt{d_k}$, and answers with a variance
#    computation and a plot of the softmax's entropy;
# 3. draws the attention weights of a short "sentence" as a heatmap;
# 4. shows the most common masking bug, zeroing scores instead of setting them to
#    $-\infty$, and what it leaks.
#
# The code is `minitransformer/functional/attention.py` (`scaled_dot_product_attention`,
# twenty lines): read it beside this notebook.

# %%
import math
import os

import matplotlib.pyplot as plt
import numpy as np

import minitransformer as mt
from minitransformer import functional as F
from minitransformer import plots

# MT_FAST=1 (set by the test suite) uses fewer samples and smaller d_k; the lesson is the same.
FAST = os.environ.get("MT_FAST") == "1"
mt.manual_seed(0)
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. Attention by hand
#
# One query and two keys in $d_k = 4$ dimensions. We pick the vectors so that the
# arithmetic is easy: $q = (1, 0, 0, 0)$, $k_1 = (0, 0, 0, 0)$ and
# $k_2 = (2 \ln 3, 0, 0, 0)$. The scaled scores are
#
# $$s_1 = \frac{q \cdot k_1}{\sqrt 4} = 0, \qquad s_2 = \frac{q \cdot k_2}{\sqrt 4} = \ln 3,$$
#
# so the weights are $\mathrm{softmax}(0, \ln 3) = \left(\frac{1}{1 + 3}, \frac{3}{1 + 3}\right)
# = (0.25, 0.75)$. With values $v_1 = (1, 0)$ and $v_2 = (0, 1)$ the output is
# $0.25\, v_1 + 0.75\, v_2 = (0.25, 0.75)$.
#
# Written with NumPy, the formula is three lines; `F.scaled_dot_product_attention`
# returns the output *and* the weights (a batch of them: the leading axes are free).

# %%
q = np.array([[1.0, 0, 0, 0]])  # (L_q = 1, d_k = 4)
k = np.array([[0.0, 0, 0, 0], [2 * math.log(3), 0, 0, 0]])  # (L_k = 2, d_k = 4)
v = np.array([[1.0, 0], [0, 1.0]])  # (L_k = 2, d_v = 2)


def attention_numpy(q, k, v):
    """softmax(q k^T / sqrt(d_k)) v, row by row, with no masking."""
    scores = q @ k.T / math.sqrt(q.shape[-1])
    e = np.exp(scores - scores.max(axis=-1, keepdims=True))  # stable: the largest score -> e^0
    weights = e / e.sum(axis=-1, keepdims=True)
    return weights @ v, weights


out_np, w_np = attention_numpy(q, k, v)
out, w = F.scaled_dot_product_attention(
    mt.tensor(q, dtype="float64"), mt.tensor(k, dtype="float64"), mt.tensor(v, dtype="float64")
)
print("weights:", w.numpy(), " output:", out.numpy())

assert np.allclose(w_np, [[0.25, 0.75]]) and np.allclose(out_np, [[0.25, 0.75]])
assert np.allclose(w.numpy(), w_np) and np.allclose(out.numpy(), out_np)

# %% [markdown]
# Two facts hold for any input, and are worth checking on a random batch:
#
# - each row of weights is a probability distribution: entries in $[0, 1]$, summing to 1;
# - so each output row is a convex combination of the value rows: it lies inside
#   their bounding box, coordinate by coordinate.

# %%
qb, kb, vb = mt.randn(2, 3, 5, 8), mt.randn(2, 3, 7, 8), mt.randn(2, 3, 7, 4)
out_b, w_b = F.scaled_dot_product_attention(qb, kb, vb)
print("out", out_b.shape, " weights", w_b.shape)

assert out_b.shape == (2, 3, 5, 4) and w_b.shape == (2, 3, 5, 7)
assert np.allclose(w_b.numpy().sum(axis=-1), 1.0, atol=1e-6) and (w_b.numpy() >= 0).all()
lo, hi = vb.numpy().min(axis=-2, keepdims=True), vb.numpy().max(axis=-2, keepdims=True)
assert ((out_b.numpy() >= lo - 1e-6) & (out_b.numpy() <= hi + 1e-6)).all()

# %% [markdown]
# ## 2. Why divide by $\sqrt{d_k}$?
#
# > "We suspect that for large values of $d_k$, the dot products grow large in
# > magnitude, pushing the softmax function into regions where it has extremely small
# > gradients. To illustrate why the dot products get large, assume that the
# > components of $q$ and $k$ are independent random variables with mean 0 and
# > variance 1. Then their dot product, $q \cdot k = \sum_{i=1}^{d_k} q_i k_i$, has
# > mean 0 and variance $d_k$." (section 3.2.1, footnote 4)
#
# The variance follows in two lines: each product $q_i k_i$ has mean $E[q_i]E[k_i] = 0$
# and variance $E[q_i^2]E[k_i^2] = 1$, and the $d_k$ products are independent, so
# their variances add: $\mathrm{Var}(q \cdot k) = d_k$. Dividing by $\sqrt{d_k}$
# divides the variance by $d_k$: the scaled score has variance 1 whatever $d_k$ is.
#
# We check it on $N$ random pairs. How close should the sample variance be? For a
# sum of $d$ independent products of standard normals the fourth moment is
# $3d^2 + 6d$ (the product has fourth moment $E[q^4]E[k^4] = 9$, excess kurtosis 6,
# and fourth cumulants add), so the sample variance $\hat\sigma^2$ has standard
# deviation about $\sqrt{(3d^2 + 6d - d^2)/N} = d\sqrt{(2 + 6/d)/N}$. We allow five of
# those.

# %%
N = 2_000 if FAST else 10_000
dims = [4, 16, 64, 256] if FAST else [4, 16, 64, 256, 1024]

print(" d_k   Var(q.k)   Var(q.k / sqrt(d_k))   allowed relative error")
for d in dims:
    qs = rng.standard_normal((N, d))
    ks = rng.standard_normal((N, d))
    dots = (qs * ks).sum(axis=1)
    tolerance = 5 * math.sqrt((2 + 6 / d) / N)
    print(f"{d:4d}   {dots.var():8.1f}   {(dots / math.sqrt(d)).var():20.3f}   {tolerance:.3f}")
    assert abs(dots.var() / d - 1) < tolerance
    assert abs((dots / math.sqrt(d)).var() - 1) < tolerance

# %% [markdown]
# Why does a large variance hurt? Multiply the scores by a factor $c$ and the softmax
# sharpens: as $c \to \infty$ it tends to a one-hot vector on the largest score. A
# one-hot softmax has almost no gradient: its Jacobian is
# $\partial p_i / \partial s_j = p_i (\delta_{ij} - p_j)$, which is zero when every
# $p_i$ is 0 or 1. So a query whose scores have variance $d_k = 512$ commits to one
# key at initialisation and barely learns to look elsewhere.
#
# A measure of how spread out a row of weights is: its **entropy**
# $H(p) = -\sum_j p_j \ln p_j$, which is $\ln L_k$ for the uniform distribution over
# $L_k$ keys and 0 for a one-hot one.
#
# What should the entropy of the *scaled* scores be? They are (nearly) normal with
# variance $\sigma^2 = 1$. For many keys, $Z = \sum_j e^{s_j} \approx L_k\, E[e^s] =
# L_k e^{\sigma^2/2}$ and $\sum_j p_j s_j \approx E[s e^s] / E[e^s] = \sigma^2$, so
#
# $$H = \ln Z - \sum_j p_j s_j \approx \ln L_k + \frac{\sigma^2}{2} - \sigma^2 = \ln L_k - \frac{\sigma^2}{2}.$$
#
# With $\sigma^2 = 1$ this does not depend on $d_k$ at all. Without scaling
# $\sigma^2 = d_k$ and the approximation breaks down (a handful of keys dominate $Z$),
# but the trend is clear: the entropy falls towards 0.
#
# We measure both with our softmax, `F.softmax`, on rows of $L_k = 64$ keys.

# %%
L_k, rows = 64, 100 if FAST else 400
entropy_dims = [4, 16, 64, 256] if FAST else [4, 8, 16, 32, 64, 128, 256, 512, 1024]


def mean_entropy_and_top(scores: np.ndarray) -> tuple[float, float]:
    """Mean entropy of softmax(rows), and the mean of each row's largest weight."""
    p = F.softmax(mt.tensor(scores, dtype="float64"), axis=-1).numpy()
    h = -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=-1)  # 0 ln 0 = 0
    return float(h.mean()), float(p.max(axis=-1).mean())


scaled, unscaled, top_unscaled = [], [], []
for d in entropy_dims:
    qs = rng.standard_normal((rows, 1, d))
    ks = rng.standard_normal((rows, L_k, d))
    s = (qs * ks).sum(axis=-1)  # (rows, L_k): row r holds q_r . k_rj
    scaled.append(mean_entropy_and_top(s / math.sqrt(d))[0])
    h, top = mean_entropy_and_top(s)
    unscaled.append(h)
    top_unscaled.append(top)

predicted = math.log(L_k) - 0.5
for d, hs, hu, t in zip(entropy_dims, scaled, unscaled, top_unscaled):
    print(f"d_k {d:5d}: H scaled {hs:.3f}   H unscaled {hu:.3f}   (top weight {t:.3f})")
print(f"ln L_k = {math.log(L_k):.3f}, predicted for scaled scores: ln L_k - 1/2 = {predicted:.3f}")

# scaled: the same entropy at every d_k, close to ln L_k - 1/2
assert all(abs(h - predicted) < 0.1 for h in scaled)
# unscaled: the entropy falls as d_k grows, and by d_k = 256 it is under a tenth of ln L_k
assert all(a > b for a, b in zip(unscaled, unscaled[1:]))
assert unscaled[entropy_dims.index(256)] < 0.1 * math.log(L_k)
assert top_unscaled[-1] > 0.85  # one key takes nearly all the weight

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(entropy_dims, scaled, "o-", label=r"softmax$(q k^\top / \sqrt{d_k})$")
ax.plot(entropy_dims, unscaled, "s--", label=r"softmax$(q k^\top)$")
ax.axhline(math.log(L_k), color="grey", lw=0.8, ls=":", label=r"uniform: $\ln L_k$")
ax.axhline(predicted, color="grey", lw=0.8, label=r"$\ln L_k - 1/2$")
ax.set_xscale("log", base=2)
ax.set_xlabel("$d_k$")
ax.set_ylabel("mean entropy of a row (nats)")
ax.set_title(f"Softmax of {L_k} random scores")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## 3. A picture of attention
#
# A heatmap shows a matrix of weights with queries down the side and keys across the
# top. Here is self-attention ($Q = K = V = X$) over a six-word "sentence" whose words
# are random unit-variance vectors in $d = 16$ dimensions, the same vector for both
# occurrences of "the".
#
# What to expect, before looking:
#
# - each word's score with itself is $x \cdot x / \sqrt d \approx d / \sqrt d = 4$,
#   with another word about $0 \pm 1$: the diagonal is bright;
# - the two "the" rows are identical (same query, same keys), and within every row the
#   two "the" columns have the same weight (same key).

# %%
words = ["the", "cat", "sat", "on", "the", "mat"]
vocab = sorted(set(words))
d = 16
vectors = {w: rng.standard_normal(d) for w in vocab}
X = mt.tensor(np.stack([vectors[w] for w in words]), dtype="float64")  # (6, 16)
_, W = F.scaled_dot_product_attention(X, X, X)
W = W.numpy()

fig = plots.plot_heatmap(W, xlabels=words, ylabels=words, title="self-attention weights")
plt.show()

assert np.allclose(W[0], W[4])  # both "the" queries see the same thing
assert np.allclose(W[:, 0], W[:, 4])  # both "the" keys get the same weight
others = [j for j in range(6) if words[j] != "the"]
assert all(W[i, i] == W[i, others].max() for i in others)  # every other word looks at itself most

# %% [markdown]
# ## 4. Masking: $-\infty$, not zero
#
# A **mask** says which keys a query may look at (padding, or the future in a
# decoder; the next lecture is about building them). In minitransformer a mask is
# boolean and **True means "may attend"**. The masked scores are set to $-\infty$
# *before* the softmax, so $e^{-\infty} = 0$ and they get exactly zero weight, while
# the allowed weights still sum to 1.
#
# A popular mistake, found in tutorials that describe masking as making attention
# "sparse", is to *zero* the masked scores instead (`scores * mask`). But a score of
# 0 is not "no attention": it gets weight $e^0 / Z = 1 / Z > 0$, just like a key the
# query is indifferent to.
#
# Back to the example of section 1, with a third key $k_3 = (2 \ln 8, 0, 0, 0)$ that
# must be hidden. Its value is $v_3 = (10, 10)$, far from the others, so that any
# leak shows. The scaled scores are $(0, \ln 3, \ln 8)$.
#
# - Masked with $-\infty$: the scores become $(0, \ln 3, -\infty)$, the weights
#   $(1/4, 3/4, 0)$ as before, the output $(0.25, 0.75)$.
# - Zeroed: the scores become $(0, \ln 3, 0)$, the weights
#   $\left(\frac{1}{1 + 3 + 1}, \frac{3}{5}, \frac{1}{5}\right) = (0.2, 0.6, 0.2)$:
#   the hidden key takes a fifth of the attention, and the output is
#   $0.2\, v_1 + 0.6\, v_2 + 0.2\, v_3 = (0.2 + 2, 0.6 + 2) = (2.2, 2.6)$.

# %%
k3 = np.concatenate([k, [[2 * math.log(8), 0, 0, 0]]])  # (3, 4)
v3 = np.concatenate([v, [[10.0, 10.0]]])  # (3, 2)
allowed = np.array([[True, True, False]])  # (L_q, L_k): the third key is hidden

scores = q @ k3.T / math.sqrt(4)
print("scaled scores:", scores)
assert np.allclose(scores, [[0, math.log(3), math.log(8)]])


def softmax_rows(s):
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


w_zeroed = softmax_rows(scores * allowed)  # the bug: masked scores become 0
out_zeroed = w_zeroed @ v3
out_ours, w_ours = F.scaled_dot_product_attention(
    mt.tensor(q, dtype="float64"),
    mt.tensor(k3, dtype="float64"),
    mt.tensor(v3, dtype="float64"),
    mask=allowed,
)
print("zeroed scores: weights", w_zeroed, "output", out_zeroed)
print("-inf scores  : weights", w_ours.numpy(), "output", out_ours.numpy())

assert np.allclose(w_zeroed, [[0.2, 0.6, 0.2]]) and np.allclose(out_zeroed, [[2.2, 2.6]])
assert np.allclose(w_ours.numpy(), [[0.25, 0.75, 0.0]])
assert np.allclose(out_ours.numpy(), [[0.25, 0.75]])

# %% [markdown]
# The leak matters most in a decoder, where the mask hides the *future*: query $i$
# may only see keys $j \le i$ (a lower-triangular mask). With zeroed scores every
# query still puts weight on later positions, so the model can read the very tokens
# it is being trained to predict. It learns to copy them, its training loss looks
# wonderful, and it is useless at generation time, when the future does not exist.
#
# The test: change the *value* of the last position. With a correct causal mask, the
# output of every earlier query must not move.

# %%
L = 5
causal = np.tril(np.ones((L, L), dtype=bool))  # query i may see keys j <= i
qc, kc = rng.standard_normal((L, 8)), rng.standard_normal((L, 8))
vc = rng.standard_normal((L, 3))
vc_changed = vc.copy()
vc_changed[-1] += 100.0  # change the future

sc = qc @ kc.T / math.sqrt(8)
w_bug = softmax_rows(sc * causal)
leak = np.abs(w_bug @ vc_changed - w_bug @ vc)[:-1].max()


def ours(values):
    out, weights = F.scaled_dot_product_attention(
        mt.tensor(qc, dtype="float64"),
        mt.tensor(kc, dtype="float64"),
        mt.tensor(values, dtype="float64"),
        mask=causal,
    )
    return out.numpy(), weights.numpy()


(out_a, w_good), (out_b, _) = ours(vc), ours(vc_changed)
print(
    f"earlier outputs moved by up to {leak:.2f} (zeroed scores) vs {np.abs(out_b - out_a)[:-1].max()}"
)

assert leak > 1.0
assert np.array_equal(out_a[:-1], out_b[:-1])  # not even a rounding difference
assert (w_bug[~causal] > 0).all()  # the bug: every future key gets weight
assert (w_good[~causal] == 0).all()

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
labels = [f"pos {j}" for j in range(L)]
plots.plot_heatmap(w_bug, ax=axes[0], xlabels=labels, ylabels=labels, title="zeroed scores (bug)")
plots.plot_heatmap(w_good, ax=axes[1], xlabels=labels, ylabels=labels, title="-inf scores")
for ax in axes:
    ax.images[0].set_clim(0, 1)  # the same colour for the same weight in both pictures
fig.tight_layout()
plt.show()

# %% [markdown]
# The same reasoning rules out two other shortcuts:
#
# - *multiplying the weights by the mask after the softmax* hides the keys but leaves
#   rows that no longer sum to 1 (renormalising fixes it, and then it equals the
#   $-\infty$ version);
# - *a large negative number* such as $-10^9$ instead of $-\infty$ works for the
#   weights, but gives a row that is entirely masked a uniform distribution over
#   keys it may not see. minitransformer uses $-\infty$ and gives such a row zero
#   weights (lecture 3 shows why that needs care).

# %% [markdown]
# ## Exercises
#
# 1. One query $q = (1, 1)$ and keys $k_1 = (1, 0)$, $k_2 = (0, 1)$, $k_3 = (1, 1)$, so
#    $d_k = 2$. Compute the weights by hand (leave $\sqrt 2$ and $e$ in the answer),
#    then numerically.
#    *Expected:* scaled scores $(1/\sqrt 2, 1/\sqrt 2, \sqrt 2)$; weights
#    $\frac{1}{2 + e^{1/\sqrt 2}}\left(1, 1, e^{1/\sqrt 2}\right)
#    \approx (0.2483, 0.2483, 0.5035)$.
# 2. Take scores with variance $\sigma^2$ over $L_k = 64$ keys. Using
#    $H \approx \ln L_k - \sigma^2 / 2$, for which $\sigma^2$ does the entropy equal
#    $\ln 32$ (as spread out as a uniform choice among half of the keys)? Check it by
#    sampling scaled scores multiplied by $\sigma$.
#    *Expected:* $\sigma^2 = 2 \ln 2 \approx 1.386$; the sampled entropy is within 0.1
#    of $\ln 32 \approx 3.466$.
# 3. Apply the "zeroed scores" bug to a row of scores that are all negative, say
#    $(-2, -1, -3)$ with the third key masked. Which key gets the most weight?
#    *Expected:* the masked one: its score becomes $0 > -1$; the weights are
#    $(e^{-2}, e^{-1}, 1) / (e^{-2} + e^{-1} + 1) \approx (0.0900, 0.2447, 0.6652)$.
#
# Try them before reading on: the cells below are one solution each.

# %%
q1 = mt.tensor([[1.0, 1.0]], dtype="float64")
k1 = mt.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype="float64")
_, w1 = F.scaled_dot_product_attention(q1, k1, k1)
e = math.exp(1 / math.sqrt(2))
assert np.allclose(w1.numpy(), [[1 / (2 + e), 1 / (2 + e), e / (2 + e)]])
assert np.allclose(w1.numpy(), [[0.2483, 0.2483, 0.5035]], atol=1e-4)

# %%
sigma2 = 2 * math.log(2)
qs, ks = rng.standard_normal((rows, 1, 64)), rng.standard_normal((rows, L_k, 64))
s = (qs * ks).sum(axis=-1) / math.sqrt(64) * math.sqrt(sigma2)
h, _ = mean_entropy_and_top(s)
print(f"sigma^2 = {sigma2:.3f}: entropy {h:.3f}, ln 32 = {math.log(32):.3f}")
assert abs(h - math.log(32)) < 0.1

# %%
w3 = softmax_rows(np.array([-2.0, -1.0, -3.0]) * np.array([1, 1, 0]))
assert w3.argmax() == 2
assert np.allclose(w3, [0.0900, 0.2447, 0.6652], atol=1e-4)
print("all exercises check out")
