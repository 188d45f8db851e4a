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
# # Lecture 3: masks
#
# Lecture 2 ended with the rule for *applying* a mask: masked scores become $-\infty$
# before the softmax. This lecture is about *building* masks, and about the two
# places where they go wrong in practice.
#
# A batch holds sentences of different lengths, padded to a common length with a
# padding token (`pad_id`, here 0). Two things must be hidden from attention:
#
# - **padding**: no query should read a padding key; it is not part of the text;
# - **the future**, in a decoder: while predicting token $i+1$ from tokens
#   $0 \ldots i$, query $i$ must not read keys $j > i$ (*causal* masking).
#
# In minitransformer a mask is a boolean array and **True means "may attend"**, as in
# a tokenizer's `attention_mask` (1 marks a real token). It broadcasts to the
# scores' shape `(batch, heads, q_len, k_len)`. Watch out when reading other code:
# PyTorch's `torch.nn.functional.scaled_dot_product_attention` uses the same
# convention, but `torch.nn.MultiheadAttention` and `torch.nn.Transformer` use the
# opposite one (True = *not* allowed): a boolean mask taken from such code must be
# inverted (`~mask`) before it is passed to minitransformer.
#
# This lecture:
#
# 1. builds the three masks of `minitransformer/nn/masks.py` for a small batch and
#    draws them;
# 2. shows that a query with nothing to attend to gets zeros, not NaN, and why NaN
#    would be a disaster;
# 3. checks that padding does not change the outputs at the real tokens.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np

import minitransformer as mt
from minitransformer import functional as F
from minitransformer import nn, plots

mt.manual_seed(0)
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. Three masks for a batch
#
# Three sentences of lengths 4, 2 and 3, padded to $T = 4$ with `pad_id = 0`:
#
# | sentence | ids | real tokens |
# | --- | --- | --- |
# | 0 | 5 7 9 2 | 4 |
# | 1 | 4 8 0 0 | 2 |
# | 2 | 3 6 1 0 | 3 |
#
# - `padding_mask(ids)` has shape $(B, 1, 1, T)$: one row per sentence saying which
#   *keys* are real. The two size-1 axes broadcast over heads and queries: every
#   query of a sentence sees the same keys.
# - `causal_mask(T)` has shape $(1, 1, T, T)$: the lower triangle $j \le i$, the same
#   for every sentence and head.
# - `decoder_mask(ids)` has shape $(B, 1, T, T)$: both at once (a logical AND).
#
# How many True entries? A sentence with $n$ real tokens padded to $T$: the padding
# mask, broadcast to $T \times T$, has $nT$ (every query, $n$ keys); the causal mask
# has $T(T+1)/2$; the decoder mask lets query $i$ see $\min(i + 1, n)$ keys, in all
# $n(n+1)/2 + (T - n)\,n$. For $T = 4$: $n = 4$ gives 10, $n = 2$ gives
# $3 + 4 = 7$, $n = 3$ gives $6 + 3 = 9$.

# %%
ids = np.array([[5, 7, 9, 2], [4, 8, 0, 0], [3, 6, 1, 0]])
B, T = ids.shape
lengths = (ids != 0).sum(axis=1)

pad = nn.padding_mask(ids, pad_id=0)
causal = nn.causal_mask(T)
dec = nn.decoder_mask(ids, pad_id=0)
print("padding_mask", pad.shape, " causal_mask", causal.shape, " decoder_mask", dec.shape)

assert pad.shape == (B, 1, 1, T) and causal.shape == (1, 1, T, T) and dec.shape == (B, 1, T, T)
assert pad.dtype == bool and causal.dtype == bool and dec.dtype == bool
assert np.array_equal(dec, causal & pad)
full = np.broadcast_to(pad, (B, 1, T, T))  # what the scores see
for b, n in enumerate(lengths):
    assert full[b].sum() == n * T
    assert dec[b].sum() == n * (n + 1) // 2 + (T - n) * n
assert [int(dec[b].sum()) for b in range(B)] == [10, 7, 9]
# the same padding mask from lengths alone
assert np.array_equal(nn.lengths_mask(lengths, max_len=T), pad)

# %% [markdown]
# Drawn with one row per sentence (rows are queries, columns keys, yellow = may
# attend). The causal column is the same picture in every row: it broadcasts over
# the batch. The decoder mask is the causal triangle with the padding columns cut out.

# %%
fig, axes = plt.subplots(B, 3, figsize=(10, 8))
for b in range(B):
    tokens = [str(t) for t in ids[b]]
    for col, (name, m) in enumerate(
        [("padding", full[b, 0]), ("causal", causal[0, 0]), ("decoder", dec[b, 0])]
    ):
        ax = axes[b, col]
        plots.plot_heatmap(m, ax=ax, xlabels=tokens, ylabels=tokens, title=f"sentence {b}: {name}")
        # the colours would stretch to each mask's own range: an all-True mask would not
        # look like the True cells of the others. Pin them to False = 0, True = 1.
        ax.images[0].set_clim(0, 1)
        for text in ax.texts:
            text.set_color("black" if text.get_text() == "1" else "white")
fig.tight_layout()
plt.show()

# %% [markdown]
# Note what the padding mask does *not* hide: the rows of padding *queries* (the last
# two rows of sentence 1) still attend to the real keys. Their outputs are computed
# and then ignored: the loss skips padding targets (`ignore_index`), and a classifier
# pools only real positions. Hiding keys is what matters, because keys are what
# flows into the real tokens' outputs.

# %% [markdown]
# ## 2. A query with nothing to attend to
#
# Sometimes a query row is masked entirely. It happens naturally with **left
# padding** (common when generating a batch of prompts, so that they all end at the
# same position) combined with a causal mask: the sentence `0 0 5 7` has padding at
# positions 0 and 1, and query 0 may only look at key 0, which is padding.
#
# The textbook softmax subtracts the row maximum first. For a row that is all
# $-\infty$ the maximum is $-\infty$, and $-\infty - (-\infty)$ is NaN. So is every
# weight in the row, and every output coordinate.
#
# minitransformer's softmax treats this case on purpose: an all-masked row gets zero
# weights and hence a zero output (`kernels/softmax.py`). The decision is part of the
# API: "a query row whose keys are all masked gives a zero output row and zero
# weights, never NaN."

# %%
left_padded = np.array([[0, 0, 5, 7]])
m = nn.decoder_mask(left_padded)[0, 0]  # (4, 4)
print(m.astype(int))
assert not m[0].any() and not m[1].any()  # queries 0 and 1 may see nothing

d_k = 8
q = rng.standard_normal((4, d_k))
k = rng.standard_normal((4, d_k))
v = rng.standard_normal((4, 3))
scores = np.where(m, q @ k.T / math.sqrt(d_k), -np.inf)


def naive_softmax(s):
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


with np.errstate(invalid="ignore"):  # NumPy would warn about the -inf - (-inf)
    w_naive = naive_softmax(scores)
print("naive softmax:\n", w_naive.round(3))

out, w = F.scaled_dot_product_attention(
    mt.tensor(q, dtype="float64"),
    mt.tensor(k, dtype="float64"),
    mt.tensor(v, dtype="float64"),
    mask=m,
)
print("ours:\n", w.numpy().round(3))

assert np.isnan(w_naive[:2]).all() and not np.isnan(w_naive[2:]).any()
assert (w.numpy()[:2] == 0).all() and (out.numpy()[:2] == 0).all()
assert np.allclose(w.numpy()[2:], w_naive[2:])  # the other rows are untouched

# %% [markdown]
# Why is a NaN so much worse than a useless row? Because it does not stay where it
# is. The usual defence, "the loss ignores padding positions", multiplies those rows
# by zero, and $0 \times \mathrm{NaN} = \mathrm{NaN}$. Then the loss is NaN, every
# gradient is NaN, and one optimizer step writes NaN into every weight of the model.
#
# Below, the loss keeps only the real positions (2 and 3) by multiplying with a 0/1
# vector. With the naive softmax it is NaN; with ours it is a number, and so are all
# the gradients.

# %%
real = (left_padded[0] != 0).astype(float)[:, None]  # (4, 1): 0 for padding positions
with np.errstate(invalid="ignore"):
    loss_naive = ((w_naive @ v) * real).sum()
print("loss with the naive softmax:", loss_naive)

qt = mt.tensor(q, dtype="float64", requires_grad=True)
kt = mt.tensor(k, dtype="float64", requires_grad=True)
vt = mt.tensor(v, dtype="float64", requires_grad=True)
out, _ = F.scaled_dot_product_attention(qt, kt, vt, mask=m)
loss = (out * mt.tensor(real)).sum()
loss.backward()
print("loss with ours:", loss.item())

assert np.isnan(loss_naive)
assert np.isfinite(loss.item())
assert all(np.isfinite(t.grad).all() for t in (qt, kt, vt))
assert (qt.grad[:2] == 0).all()  # the masked queries receive no gradient

# %% [markdown]
# (Replacing $-\infty$ by a large negative number such as $-10^9$ also avoids the NaN,
# but the all-masked row then becomes a *uniform* distribution over the padding keys:
# a finite but meaningless output, where ours is an explicit zero.)

# %% [markdown]
# ## 3. Padding does not change the real outputs
#
# The point of the padding mask: a sentence must get the same representation
# whether it sits alone in a batch or is padded to fit a longer neighbour. We check
# it with an embedding and one encoder layer (`nn.EncoderLayer`, lecture 6), in
# float64 and in eval mode (no dropout):
#
# - sentence `4 8` alone (length 2, no padding, no mask needed);
# - the same sentence padded to `4 8 0 0`, with its padding mask;
# - the padded sentence *without* a mask: now the real tokens also attend to the
#   padding vectors, and their outputs change.
#
# The first two must agree at positions 0 and 1, to rounding error. Because the masked
# keys get a weight of exactly $e^{-\infty} = 0$, it does not even matter what the
# padding vectors contain: we also overwrite them with random numbers.

# %%
d_model = 16
embed = nn.Embedding(10, d_model, padding_idx=0).double()
layer = nn.EncoderLayer(d_model, num_heads=4, d_ff=32, dropout=0.0).double().eval()

alone = np.array([[4, 8]])
padded = np.array([[4, 8, 0, 0]])

y_alone = layer(embed(alone)).numpy()[0]
x_padded = embed(padded)
y_masked = layer(x_padded, nn.padding_mask(padded)).numpy()[0]
y_unmasked = layer(x_padded).numpy()[0]
noise = x_padded.numpy().copy()
noise[0, 2:] = rng.standard_normal((2, d_model)) * 100  # garbage in the padding slots
y_noise = layer(mt.tensor(noise), nn.padding_mask(padded)).numpy()[0]

print("max |alone - padded with mask|    :", np.abs(y_alone - y_masked[:2]).max())
print("max |alone - padded without mask| :", np.abs(y_alone - y_unmasked[:2]).max())
print("max |alone - garbage padding|     :", np.abs(y_alone - y_noise[:2]).max())

assert np.allclose(y_alone, y_masked[:2], atol=1e-12)
assert np.allclose(y_alone, y_noise[:2], atol=1e-12)
assert np.abs(y_alone - y_unmasked[:2]).max() > 1e-3

# %% [markdown]
# ## Exercises
#
# 1. For `ids = [[1, 2, 3, 0, 0]]` (pad 0), how many True entries does
#    `decoder_mask(ids)` have, and what is `decoder_mask(ids)[0, 0, 4]` (the row of
#    query 4)?
#    *Expected:* $n = 3$, $T = 5$: $3 \cdot 4 / 2 + 2 \cdot 3 = 12$; the row is
#    `[True, True, True, False, False]`.
# 2. Write `causal_mask` yourself with `np.arange` and a comparison, no `np.tril`,
#    and check it against `nn.causal_mask(6)`.
#    *Expected:* `(np.arange(6)[None, :] <= np.arange(6)[:, None])[None, None]`, equal to
#    `nn.causal_mask(6)`.
# 3. Left-pad the batch of section 1 instead (e.g. `0 0 4 8`). Which rows of
#    `decoder_mask` are all False now, and does our attention still give finite
#    outputs everywhere?
#    *Expected:* query rows 0 and 1 of sentence 1 and query row 0 of sentence 2 (one
#    row for each leading padding token); yes: those rows are exactly zero, the rest
#    finite.
#
# Try them before reading on: the cells below are one solution each.

# %%
ex1 = nn.decoder_mask(np.array([[1, 2, 3, 0, 0]]))
assert ex1.sum() == 12
assert ex1[0, 0, 4].tolist() == [True, True, True, False, False]

# %%
mine = (np.arange(6)[None, :] <= np.arange(6)[:, None])[None, None]
assert np.array_equal(mine, nn.causal_mask(6))

# %%
left = np.array([[5, 7, 9, 2], [0, 0, 4, 8], [0, 3, 6, 1]])
dm = nn.decoder_mask(left)
empty_rows = [(b, i) for b in range(3) for i in range(4) if not dm[b, 0, i].any()]
assert empty_rows == [(1, 0), (1, 1), (2, 0)]
x = mt.randn(3, 2, 4, 8)  # (batch, heads, T, d_k)
out3, w3 = F.scaled_dot_product_attention(x, x, x, mask=dm)
assert np.isfinite(out3.numpy()).all()
assert all((out3.numpy()[b, :, i] == 0).all() for b, i in empty_rows)
print("all exercises check out")
