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
# # Lecture 5: positional encoding
#
# Attention compares every query with every key, but nothing in lectures 2 to 4 said
# *where* a key sits. Section 1 makes that precise: without extra information,
# self-attention cannot tell "dog bites man" from "man bites dog". The transformer
# fixes it by adding a vector that depends only on the position to each token's
# embedding:
#
# > "we add 'positional encodings' to the input embeddings at the bottoms of the
# > encoder and decoder stacks [...] We chose this function because we hypothesized
# > it would allow the model to easily learn to attend by relative positions, since
# > for any fixed offset $k$, $PE_{pos+k}$ can be represented as a linear function of
# > $PE_{pos}$." (Vaswani et al. 2017, section 3.5)
#
# $$PE[pos, 2i] = \sin\!\left(\frac{pos}{10000^{2i/d}}\right), \qquad
# PE[pos, 2i+1] = \cos\!\left(\frac{pos}{10000^{2i/d}}\right)$$
#
# Dimensions $2i$ and $2i+1$ form a pair sharing the angular frequency
# $\omega_i = 10000^{-2i/d}$: wavelengths from $2\pi$ (pair 0) up to almost
# $10000 \cdot 2\pi$ (the last pair).
#
# This lecture, with `minitransformer/nn/positional.py` open:
#
# 1. self-attention without positions is permutation-equivariant;
# 2. the sinusoids, drawn;
# 3. the similarity $PE\,PE^\top$ depends only on the offset;
# 4. $PE[p + k]$ is a rotation of $PE[p]$, checked numerically;
# 5. the tutorial bug $10000^{j/d}$ (raw index $j$ instead of $2i$), which breaks 3 and 4.

# %%
import math
import os

import matplotlib.pyplot as plt
import numpy as np

import minitransformer as mt
from minitransformer import nn, plots

# MT_FAST=1 (set by the test suite) uses fewer positions; the lesson is the same.
FAST = os.environ.get("MT_FAST") == "1"
mt.manual_seed(0)
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. What goes wrong without positions
#
# Permute the input positions of a self-attention layer with a permutation $\pi$
# (row $i$ of the new input is row $\pi(i)$ of the old one). Every score
# $q_{\pi(i)} \cdot k_{\pi(j)}$ is one of the old scores, only moved; each softmax row
# sees the same numbers in a different order, and the weighted sum over $j$ does not
# care about order. The feed-forward network and LayerNorm act on each position
# alone. So the output of the permuted input is the permuted output:
#
# $$f(P X) = P f(X) \quad \text{for every permutation matrix } P.$$
#
# A layer with this property is **permutation-equivariant**. It follows that any
# order-free summary (a mean over positions, as a classifier might use) is the same
# for "dog bites man" and "man bites dog".
#
# We check it with one encoder layer (lecture 6) in float64, eval mode.

# %%
d_model = 16
vocab = {"dog": 1, "bites": 2, "man": 3}
embed = nn.Embedding(len(vocab) + 1, d_model).double()
layer = nn.EncoderLayer(d_model, num_heads=4, d_ff=32, dropout=0.0).double().eval()

x = embed(np.array([[vocab["dog"], vocab["bites"], vocab["man"]]]))  # (1, 3, d)
perm = [2, 1, 0]  # "man bites dog"
x_perm = embed(np.array([[vocab["man"], vocab["bites"], vocab["dog"]]]))

y, y_perm = layer(x).numpy()[0], layer(x_perm).numpy()[0]
print("max |f(PX) - P f(X)| =", np.abs(y_perm - y[perm]).max())

assert np.allclose(x_perm.numpy()[0], x.numpy()[0][perm])
assert np.allclose(y_perm, y[perm], atol=1e-12)
assert np.allclose(y_perm.mean(axis=0), y.mean(axis=0), atol=1e-12)  # same sentence "meaning"

# %% [markdown]
# Add the positional encodings (to the embeddings scaled by $\sqrt d$, as the
# Transformer does) and the symmetry is gone: position 0 now carries $PE[0]$ whichever
# word is there.

# %%
pos = nn.SinusoidalPositionalEncoding(d_model, max_len=16).double()
scale = math.sqrt(d_model)
z, z_perm = layer(pos(x * scale)).numpy()[0], layer(pos(x_perm * scale)).numpy()[0]
print("with positions, max |f(PX) - P f(X)| =", np.abs(z_perm - z[perm]).max())

assert np.abs(z_perm - z[perm]).max() > 0.1
assert np.abs(z_perm.mean(axis=0) - z.mean(axis=0)).max() > 0.01

# %% [markdown]
# ## 2. The sinusoids
#
# Each column of the table is a sinusoid in the position. Column $2i$ is a sine and
# column $2i + 1$ the cosine of the same frequency, with wavelength
# $\lambda_i = 2\pi \cdot 10000^{2i/d}$: for $d = 20$, pair 2 (columns 4 and 5) has
# $\lambda_2 = 2\pi \cdot 10000^{0.2} \approx 39.6$ positions and pair 3 (columns 6 and
# 7) $2\pi \cdot 10000^{0.3} \approx 99.6$.
#
# Two more facts from the formula:
#
# - $PE[0]$ is $(0, 1, 0, 1, \ldots)$: $\sin 0 = 0$, $\cos 0 = 1$;
# - since $\sin^2 + \cos^2 = 1$ for each pair, every row has the same length:
#   $\lVert PE[p] \rVert^2 = d / 2$. Positions differ in direction, not in size.

# %%
n_pos, d = 100, 20
pe = nn.sinusoidal_table(n_pos, d, dtype="float64")  # (n_pos, d)

p = np.arange(n_pos)[:, None]
i = np.arange(d) // 2
by_formula = np.where(
    np.arange(d) % 2 == 0, np.sin(p / 10000 ** (2 * i / d)), np.cos(p / 10000 ** (2 * i / d))
)
wavelengths = 2 * np.pi * 10000 ** (2 * np.arange(d // 2) / d)
print("wavelengths of pairs 0..4:", wavelengths[:5].round(1))

assert np.allclose(pe, by_formula)
assert np.allclose(pe[0], [0, 1] * (d // 2))
assert np.allclose((pe**2).sum(axis=1), d / 2)
assert np.isclose(wavelengths[2], 39.6, atol=0.05) and np.isclose(wavelengths[3], 99.6, atol=0.05)

# %%
fig, ax = plt.subplots(figsize=(8, 3))
for j in (4, 5, 6, 7):
    ax.plot(pe[:, j], label=f"dim {j} ({'sin' if j % 2 == 0 else 'cos'}, pair {j // 2})")
ax.set_xlabel("position")
ax.set_ylabel("PE[pos, dim]")
ax.set_title(f"Sinusoidal positional encoding, d = {d}")
ax.legend(fontsize=8, ncol=2)
plt.show()

# %% [markdown]
# ## 3. Similarity depends on the offset only
#
# The dot product of two rows, pair by pair, is
# $\sin(p\omega)\sin(p'\omega) + \cos(p\omega)\cos(p'\omega) = \cos((p - p')\omega)$, so
#
# $$PE[p] \cdot PE[p'] = \sum_{i} \cos\big((p - p')\,\omega_i\big):$$
#
# a function of $p - p'$ alone. The matrix $PE\,PE^\top$ is constant along each
# diagonal (a Toeplitz matrix). On the main diagonal it is $d/2$; off it, it is
# smaller, because two different rows of equal length have a dot product below their
# squared length (Cauchy-Schwarz). For $d = 20$ it falls over the first four offsets,
# $10, 9.45, 8.22, 7.25, 7.09$, then wobbles downwards as the fast pairs come round
# again: nearby positions look alike, distant ones less so.

# %%
n_sim = 50 if FAST else 100
pe_sim = nn.sinusoidal_table(n_sim, d, dtype="float64")
G = pe_sim @ pe_sim.T
offsets = np.arange(n_sim)[:, None] - np.arange(n_sim)[None, :]
omega = 10000.0 ** (-2 * np.arange(d // 2) / d)
G_formula = np.cos(offsets[..., None] * omega).sum(axis=-1)

assert np.allclose(G, G_formula)
assert np.allclose(np.diag(G), d / 2)
assert np.allclose(G, G.T)  # cos is even: the offsets k and -k look alike
assert all(np.allclose(np.diag(G, k), G[0, k]) for k in range(n_sim))  # constant diagonals
assert (G[0, 1:5] < G[0, :4]).all()  # the nearest neighbours are less and less alike
# all rows have the same length, so by Cauchy-Schwarz p is most like itself, and strictly
assert all(G[r, r] > np.delete(G[r], r).max() for r in range(n_sim))

# %%
fig = plots.plot_heatmap(G, title=r"$PE\,PE^\top$: similarity of positions")
ax = fig.axes[0]
ax.set_xlabel("position p'")
ax.set_ylabel("position p")
plt.show()

# %% [markdown]
# ## 4. $PE[p + k]$ is a rotation of $PE[p]$
#
# The paper's reason for this choice. For one pair, with $\omega = \omega_i$, the
# angle-addition formulas give
#
# $$\begin{pmatrix} \sin((p+k)\omega) \\ \cos((p+k)\omega) \end{pmatrix} =
# \begin{pmatrix} \cos k\omega & \sin k\omega \\ -\sin k\omega & \cos k\omega \end{pmatrix}
# \begin{pmatrix} \sin(p\omega) \\ \cos(p\omega) \end{pmatrix}.$$
#
# The matrix depends on $k$ but **not on $p$**. Putting one such $2 \times 2$ rotation
# per pair on the diagonal gives a $d \times d$ matrix $M_k$ with
# $PE[p + k] = M_k\, PE[p]$ for every position $p$. An attention layer can
# therefore express "look $k$ positions back" with one fixed linear map, wherever the
# query is.
#
# Two checks: build $M_k$ from the formula and apply it; and, without knowing the
# formula, ask least squares for the best linear map taking the rows $PE[p]$ to the
# rows $PE[p + k]$ over many positions $p$. If an exact map exists, the residual is
# at rounding level. (The fitted map need not be $M_k$ entry for entry: over a few
# hundred positions the slowest pair turns by about a tenth of a radian, its
# columns are nearly collinear, and many maps fit them equally well.)


# %%
def rotation(k: int, d: int) -> np.ndarray:
    """M_k with PE[p + k] = M_k PE[p]; on the rows of a table: PE[p] @ M_k.T."""
    M = np.zeros((d, d))
    for i, w in enumerate(10000.0 ** (-2 * np.arange(d // 2) / d)):
        c, s = math.cos(k * w), math.sin(k * w)
        M[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = [[c, s], [-s, c]]
    return M


def best_linear_map(table: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    """Least-squares A with table[p] @ A ~ table[p + k], and its worst residual."""
    src, dst = table[:-k], table[k:]
    A = np.linalg.lstsq(src, dst, rcond=None)[0]
    return A, float(np.abs(src @ A - dst).max())


k, d_rel = 5, 16
n_rel = 100 if FAST else 400
table = nn.sinusoidal_table(n_rel + k, d_rel, dtype="float64")
M = rotation(k, d_rel)
_, residual = best_linear_map(table, k)
print(f"max |PE[p+{k}] - M_k PE[p]| = {np.abs(table[:-k] @ M.T - table[k:]).max():.1e}")
print(f"least squares over {n_rel} positions: worst residual {residual:.1e}")

assert np.allclose(table[:-k] @ M.T, table[k:], atol=1e-12)
assert residual < 1e-10

# %% [markdown]
# ## 5. The tutorial bug: $10000^{j/d}$
#
# A version of the table that circulates in tutorials and blog posts writes the
# exponent with the column index $j$ itself:
#
# $$PE_{bug}[pos, j] = \sin \text{ or } \cos\left(\frac{pos}{10000^{j/d}}\right)
# \quad\text{instead of}\quad \frac{pos}{10000^{2\lfloor j/2 \rfloor/d}}.$$
#
# It looks almost the same, and it even works a little, but the sine in column $2i$
# and the cosine in column $2i+1$ now have *different* frequencies,
# $10000^{-2i/d}$ and $10000^{-(2i+1)/d}$. A pair no longer traces a circle, the
# angle-addition argument of section 4 needs $\cos(p\omega)$ next to $\sin(p\omega)$ and
# finds a different frequency there, and the two properties above break:
#
# - the similarity $PE[p] \cdot PE[p']$ is no longer a function of $p - p'$;
# - no linear map takes $PE[p]$ to $PE[p + k]$ for all $p$: the best least-squares fit
#   leaves errors of order 1.


# %%
def buggy_table(n: int, d: int) -> np.ndarray:
    j = np.arange(d)
    angle = np.arange(n)[:, None] / 10000.0 ** (j / d)  # j, not 2 * (j // 2)
    return np.where(j % 2 == 0, np.sin(angle), np.cos(angle))


bug = buggy_table(n_rel + k, d_rel)
_, residual_bug = best_linear_map(bug, k)
G_bug = bug[:n_sim] @ bug[:n_sim].T
toeplitz_gap = max(np.abs(np.diag(G_bug, o) - G_bug[0, o]).max() for o in range(n_sim))
print(
    f"buggy table: least-squares residual {residual_bug:.2f}, off-Toeplitz by up to {toeplitz_gap:.2f}"
)

assert not np.allclose(bug, table)
assert np.allclose(bug[:, 0], table[:, 0])  # column 0 is the same (j = 2i = 0) ...
assert not np.allclose(bug[:, 1], table[:, 1])  # ... but its cosine partner is not
assert residual_bug > 0.1
assert toeplitz_gap > 0.1

# %% [markdown]
# Drawn: pair 0 as points in the plane, one per position (left: the correct table
# puts every position on the unit circle, one step of angle $\omega_0 = 1$ apart; the
# buggy pair fills a square, a Lissajous figure), and the similarity matrices of the
# correct and the buggy table (right), whose diagonals are no longer constant.

# %%
n_draw = 60
fig, axes = plt.subplots(1, 3, figsize=(13, 4))
ok_pairs, bug_pairs = table[:n_draw, :2], bug[:n_draw, :2]
axes[0].plot(ok_pairs[:, 0], ok_pairs[:, 1], "o", ms=4, label="10000^(2i/d)")
axes[0].plot(bug_pairs[:, 0], bug_pairs[:, 1], "s", ms=4, alpha=0.7, label="10000^(j/d) (bug)")
axes[0].set_aspect("equal")
axes[0].set_xlabel("PE[pos, 0] (sin)")
axes[0].set_ylabel("PE[pos, 1] (cos)")
axes[0].set_title(f"pair 0, positions 0..{n_draw - 1}")
axes[0].legend(fontsize=8)
plots.plot_heatmap(table[:n_sim] @ table[:n_sim].T, ax=axes[1], title="PE PE^T, correct")
plots.plot_heatmap(G_bug, ax=axes[2], title="PE PE^T, 10000^(j/d) bug")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Exercises
#
# 1. For $d = 512$, what are the shortest and the longest wavelengths in the table?
#    *Expected:* pair 0 has $2\pi \approx 6.283$ positions; the last pair,
#    $i = 255$, has $2\pi \cdot 10000^{510/512} \approx 6.06 \times 10^4$.
# 2. What is $PE[3] \cdot PE[7]$ for $d = 4$? Compute it from the formula of section 3,
#    then from the table.
#    *Expected:* $\cos(4) + \cos(4 / 100) \approx -0.6536 + 0.9992 = 0.3456$.
# 3. Show that the property of section 4 also holds for a *negative* offset: find
#    $M_{-3}$ and check that it is the inverse (and the transpose) of $M_3$.
#    *Expected:* $M_{-3} = M_3^{-1} = M_3^\top$ (a rotation by the opposite angles);
#    $PE[p - 3] = M_{-3}\, PE[p]$ for all $p \ge 3$.
#
# Try them before reading on: the cells below are one solution each.

# %%
lam = 2 * np.pi * 10000.0 ** (2 * np.arange(256) / 512)
assert np.isclose(lam[0], 6.283, atol=1e-3)
assert np.isclose(lam[-1], 6.06e4, rtol=1e-3)

# %%
pe4 = nn.sinusoidal_table(8, 4, dtype="float64")
by_hand = math.cos(4) + math.cos(4 / 100)
assert np.isclose(pe4[3] @ pe4[7], by_hand) and np.isclose(by_hand, 0.3456, atol=1e-4)

# %%
M3, Mm3 = rotation(3, d_rel), rotation(-3, d_rel)
assert np.allclose(Mm3, np.linalg.inv(M3)) and np.allclose(Mm3, M3.T)
assert np.allclose(table[3:] @ Mm3.T, table[:-3])
print("all exercises check out")
