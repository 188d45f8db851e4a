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
# # Lecture 8: batching and masks
#
# Lecture 7 turned sentences into lists of ids of different lengths. A model step
# takes a rectangular array `(B, L)`, so a batch must be **padded** to its longest
# row, and every padded position is work thrown away: a batch of $B$ rows costs
# $B \cdot L$ positions but holds only $\sum_b n_b$ real tokens. The
#
# $$\text{padding fraction} = 1 - \frac{\text{real tokens}}{\text{positions}}$$
#
# over an epoch says how much of the compute is wasted. This lecture measures it on
# real sentences, predicts it with a formula, and then cuts it by an order of
# magnitude with **length bucketing**. Then it opens a batch: the fields a
# sequence-to-sequence step needs (teacher forcing) and the masks the model builds
# from them.
#
# With `minitransformer/data/batching.py` and `minitransformer/nn/masks.py` open:
#
# 1. the lengths of real sentences;
# 2. random batches, and how much of them is padding (measured, then predicted);
# 3. bucketing by length, and batches by token budget;
# 4. the fields of a `Batch`: `tgt_in` and `tgt_out`, shifted by one;
# 5. the masks the `Transformer` builds from a batch, and where they act;
# 6. padding in the loss.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

import minitransformer as mt
from minitransformer import functional as F
from minitransformer import nn, plots
from minitransformer.data import (
    batch_indices,
    collate_seq2seq,
    data_dir,
    make_batches,
    padding_fraction,
    read_pairs_tsv,
    toy_translation_pairs,
)
from minitransformer.tokenizers import WordTokenizer

# MT_FAST=1 (set by the test suite) batches a random third of the corpus; the lesson is the same.
FAST = os.environ.get("MT_FAST") == "1"
mt.manual_seed(0)
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. The lengths of real sentences
#
# The Tatoeba English-French pairs (the toy translation task if the data folder is
# missing), each side cut into words by its own `WordTokenizer` (lecture 7). A
# source is its $s$ word ids; a target of $t$ ids becomes $t + 1$ positions in a
# batch, because the decoder reads `<s>` before it and predicts `</s>` after it
# (section 4).

# %%
folder = data_dir()
tatoeba = None if folder is None else folder / "tatoeba-eng-fra" / "eng-fra.tsv"
REAL = tatoeba is not None and tatoeba.is_file()
pairs = read_pairs_tsv(tatoeba) if REAL else toy_translation_pairs(17_000, seed=0)
print("Tatoeba" if REAL else "The Tatoeba file is not here: using the toy translation task.")
if FAST:
    pairs = [pairs[i] for i in rng.permutation(len(pairs))[: len(pairs) // 3]]

src_tok = WordTokenizer.train([e for e, _ in pairs])
tgt_tok = WordTokenizer.train([f for _, f in pairs])
PAD, BOS, EOS = tgt_tok.pad_id, tgt_tok.bos_id, tgt_tok.eos_id
src = [src_tok.encode(e) for e, _ in pairs]
tgt = [tgt_tok.encode(f) for _, f in pairs]
src_len = np.array([len(s) for s in src])
tgt_len = np.array([len(t) + 1 for t in tgt])  # + <s> (input) or </s> (output)
N = len(pairs)
print(
    f"{N} pairs; source lengths {src_len.min()}..{src_len.max()} (mean {src_len.mean():.2f}), "
    f"target {tgt_len.min()}..{tgt_len.max()} (mean {tgt_len.mean():.2f})"
)

# one pad id for both sides: the model masks sources and targets with the same id
assert (PAD, BOS, EOS) == (src_tok.pad_id, 1, 2)

# %%
fig, ax = plt.subplots(figsize=(6, 3))
top = max(src_len.max(), tgt_len.max())
bins = np.arange(0.5, top + 1.5)
ax.hist(src_len, bins=bins, alpha=0.6, label="source (words)")
ax.hist(tgt_len, bins=bins, alpha=0.6, label="target (words + 1)")
ax.set_xlabel("length")
ax.set_ylabel("sentences")
ax.legend()
ax.set_title("lengths vary: a random batch is padded to its longest row")
plt.show()

# %% [markdown]
# ## 2. Random batches
#
# First a batch by hand: three sources of lengths 4, 2 and 3 are padded to $L = 4$,
# $3 \cdot 4 = 12$ positions for $9$ real tokens, a padding fraction of
# $1 - 9/12 = 0.25$. `padding_fraction` counts the source and the target positions
# of every batch (the target positions once: `tgt_in` and `tgt_out` share one mask).

# %%
demo = collate_seq2seq(
    [[5, 6, 7, 8], [5, 6], [5, 6, 7]], [[9], [9], [9]], pad_id=PAD, bos_id=BOS, eos_id=EOS
)
print(demo.src_ids)
src_only = 1 - demo.src_mask.sum() / demo.src_mask.size

assert src_only == 0.25
# each target is 1 word + <s> (or </s>): 2 positions per row, none of them padding
assert np.isclose(padding_fraction([demo]), 1 - (9 + 6) / (12 + 6))

# %% [markdown]
# Now whole epochs. `make_batches(..., batch_size=B, bucket=False)` shuffles the
# examples and cuts them into batches of $B$: each batch is a random sample.
#
# Can we predict the padding? A batch of $B$ random rows is padded to the
# *maximum* of $B$ lengths. If $F(l)$ is the share of sentences of length at most
# $l$, the maximum of $B$ independent draws is at most $l$ with probability $F(l)^B$,
# so
#
# $$\mathbb{E}[\max] = \sum_{l \ge 1} P(\max \ge l) = \sum_{l \ge 1} \left(1 - F(l-1)^B\right),$$
#
# and with mean lengths $\bar s$, $\bar t$ of source and target,
#
# $$\text{padding fraction} \approx 1 - \frac{\bar s + \bar t}{\mathbb{E}[\max_B s] + \mathbb{E}[\max_B t]}.$$
#
# The maximum grows with $B$, the mean does not: larger random batches waste more.


# %%
def expected_max(lengths: np.ndarray, batch: int) -> float:
    """E[max of `batch` draws] = sum over l >= 1 of (1 - F(l - 1)^batch)."""
    levels = np.arange(1, lengths.max() + 1)
    below = np.array([(lengths < level).mean() for level in levels])  # F(l - 1)
    return float(np.sum(1 - below**batch))


sizes = [8, 32, 128]
budgets = [256, 1024]


def batches_of(bucket: bool, **limit):
    return make_batches(
        src, tgt, pad_id=PAD, bos_id=BOS, eos_id=EOS, bucket=bucket, seed=0, **limit
    )


measured_random, predicted = {}, {}
for B in sizes:
    measured_random[B] = padding_fraction(batches_of(False, batch_size=B))
    predicted[B] = 1 - (src_len.mean() + tgt_len.mean()) / (
        expected_max(src_len, B) + expected_max(tgt_len, B)
    )
    print(
        f"B = {B:3d}: random batches are {measured_random[B]:.1%} padding; "
        f"the formula says {predicted[B]:.1%}"
    )

for B in sizes:
    assert abs(measured_random[B] - predicted[B]) < 0.01
assert measured_random[8] < measured_random[32] < measured_random[128]

# %% [markdown]
# ## 3. Bucketing
#
# The fix: put sentences of similar length together. `batch_indices` (which
# `make_batches` calls) with `bucket=True`
#
# 1. shuffles the examples (seeded),
# 2. cuts them into pools of `pool_size` (4096) and sorts each pool by length (source,
#    then target),
# 3. cuts each sorted pool into batches,
# 4. shuffles the order of the batches,
#
# so each batch holds near-equal lengths, yet training does not see all the short
# sentences first, and every epoch (another seed) sees different batches.
#
# Instead of a fixed number of sentences a batch can have a **token budget**,
# `max_tokens`: rows are added while $B \cdot L \le$ `max_tokens`, with $L$ the
# batch's widest row (source or target). Short sentences then travel in larger
# batches, and every step costs about the same.

# %%
rows = {}
for B in sizes:
    rows[f"B = {B}"] = (measured_random[B], padding_fraction(batches_of(True, batch_size=B)))
for T in budgets:
    rnd, bkt = batches_of(False, max_tokens=T), batches_of(True, max_tokens=T)
    rows[f"{T} tokens"] = (padding_fraction(rnd), padding_fraction(bkt))
    print(
        f"max_tokens = {T}: random {len(rnd)} batches of {np.mean([b.size for b in rnd]):.1f} "
        f"sentences, bucketed {len(bkt)} batches of {np.mean([b.size for b in bkt]):.1f}"
    )
    for b in rnd + bkt:
        assert b.size * max(b.src_ids.shape[1], b.tgt_in.shape[1]) <= T
for name, (r, b) in rows.items():
    print(f"{name:12s} random {r:6.1%}   bucketed {b:6.1%}")

# %% [markdown]
# Bucketing cuts the padding by a factor of about 3 (the largest batches) to 20 or
# more (the smallest). What is left comes mostly from the targets: a pool is sorted by source
# length first, and sentences of equal source length still differ in their
# translations' lengths; and the larger the batch, the wider the range of lengths
# it has to span. With a token budget the bucketed batches also hold more sentences
# each, so an epoch takes fewer steps.

# %%
fig, ax = plt.subplots(figsize=(7, 3.5))
x = np.arange(len(rows))
ax.bar(x - 0.2, [r for r, _ in rows.values()], width=0.4, label="random batches")
ax.bar(x + 0.2, [b for _, b in rows.values()], width=0.4, label="bucketed by length")
ax.set_xticks(x, list(rows))
ax.set_ylabel("padding fraction")
ax.legend(loc="upper left")
ax.set_title("bucketing removes most of the padding")
plt.show()

for r, b in rows.values():
    assert b < r / 2
assert rows["B = 8"][1] < rows["B = 8"][0] / 10

# %% [markdown]
# Whatever the batching, an epoch must hold every example exactly once, and a
# bucketed batch spans a narrow range of lengths:

# %%
groups = batch_indices(np.stack([src_len, tgt_len], axis=1), batch_size=32, seed=0)
spread = np.array([src_len[g].max() - src_len[g].min() for g in groups])
print("source length spread within a bucketed batch:", np.bincount(spread))

assert np.array_equal(np.sort(np.concatenate(groups)), np.arange(N))
assert np.median(spread) == 0

# %% [markdown]
# ## 4. The fields of a batch: teacher forcing
#
# The decoder is trained to predict each target token from the source and the
# target tokens *before* it. All positions are trained at once, by feeding the
# decoder the target shifted right by one (**teacher forcing**: it reads the true
# previous tokens, not its own guesses). For a target $y_1 \ldots y_m$:
#
# | position | 0 | 1 | ... | $m - 1$ | $m$ |
# | --- | --- | --- | --- | --- | --- |
# | `tgt_in` (decoder reads) | `<s>` | $y_1$ | ... | $y_{m-1}$ | $y_m$ |
# | `tgt_out` (decoder predicts) | $y_1$ | $y_2$ | ... | $y_m$ | `</s>` |
#
# so `tgt_in[t + 1] == tgt_out[t]` at every real position but the last. Both have
# $m + 1$ real positions and share one mask. A `Batch` holds
#
# - `src_ids (B, S)`, `src_mask (B, S)`: the sources and where they are real;
# - `tgt_in (B, T)`, `tgt_out (B, T)`, `tgt_mask (B, T)`;
# - `indices (B,)`: which examples of the data set the rows are.

# %%
picked = [int(i) for i in np.argsort(src_len)[[0, N // 2, -1]]]
batch = collate_seq2seq(
    [src[i] for i in picked],
    [tgt[i] for i in picked],
    pad_id=PAD,
    bos_id=BOS,
    eos_id=EOS,
    indices=picked,
)
for name in ("src_ids", "src_mask", "tgt_in", "tgt_out", "tgt_mask", "indices"):
    print(f"{name}:\n{getattr(batch, name).astype(int)}")
print("row 0:", pairs[picked[0]])
print("  tgt_in :", tgt_tok.convert_ids_to_tokens(batch.tgt_in[0]))
print("  tgt_out:", tgt_tok.convert_ids_to_tokens(batch.tgt_out[0]))

m = np.array([len(tgt[i]) for i in picked])
assert (batch.tgt_in[:, 0] == BOS).all()
assert (batch.tgt_out[np.arange(3), m] == EOS).all()
for b in range(3):
    assert np.array_equal(batch.tgt_in[b, 1 : m[b] + 1], batch.tgt_out[b, : m[b]])
assert np.array_equal(batch.tgt_mask.sum(axis=1), m + 1)
assert np.array_equal(batch.src_mask.sum(axis=1), src_len[picked])
assert (batch.src_ids[~batch.src_mask] == PAD).all()
assert (batch.tgt_in[~batch.tgt_mask] == PAD).all() and (
    batch.tgt_out[~batch.tgt_mask] == PAD
).all()

# %% [markdown]
# ## 5. The masks the model builds
#
# The `Transformer` is called as `model(batch.src_ids, batch.tgt_in)`; it does not
# take the batch's masks. It rebuilds them from the ids and its `pad_id`
# (`minitransformer/nn/masks.py`, True = may attend, lecture 3):
#
# | where | mask | shape |
# | --- | --- | --- |
# | encoder self-attention | `padding_mask(src_ids)`: key $j$ is real | `(B, 1, 1, S)` |
# | decoder self-attention | `decoder_mask(tgt_in)`: $j \le i$ and key $j$ is real | `(B, 1, T, T)` |
# | cross-attention | `padding_mask(src_ids)` again: source key $j$ is real | `(B, 1, 1, S)` |
#
# They agree with the batch's masks because a tokenizer never gives a real token the
# id `<pad>` (the batch's masks come from the lengths, which would still be right if
# one did).

# %%
enc_mask = nn.padding_mask(batch.src_ids, PAD)
dec_mask = nn.decoder_mask(batch.tgt_in, PAD)
S, T = batch.src_ids.shape[1], batch.tgt_in.shape[1]
print("encoder / cross-attention mask:", enc_mask.shape, "  decoder mask:", dec_mask.shape)

causal = np.tril(np.ones((T, T), dtype=bool))
assert enc_mask.shape == (3, 1, 1, S) and dec_mask.shape == (3, 1, T, T)
assert np.array_equal(enc_mask[:, 0, 0], batch.src_mask)
assert np.array_equal(dec_mask[:, 0], causal[None] & batch.tgt_mask[:, None, :])

# %% [markdown]
# Drawn for row 1, the middle one (rows are queries, columns keys; yellow = may
# attend). Broadcasting turns `(1, S)` into one identical row per query.

# %%
b = 1
src_tokens = src_tok.convert_ids_to_tokens(batch.src_ids[b])
in_tokens = tgt_tok.convert_ids_to_tokens(batch.tgt_in[b])
fig, axes = plt.subplots(1, 3, figsize=(15, 4))
plots.plot_heatmap(
    np.broadcast_to(enc_mask[b, 0], (S, S)),
    ax=axes[0],
    xlabels=src_tokens,
    ylabels=src_tokens,
    title="encoder self-attention",
)
plots.plot_heatmap(
    dec_mask[b, 0], ax=axes[1], xlabels=in_tokens, ylabels=in_tokens, title="decoder self-attention"
)
plots.plot_heatmap(
    np.broadcast_to(enc_mask[b, 0], (T, S)),
    ax=axes[2],
    xlabels=src_tokens,
    ylabels=in_tokens,
    title="cross-attention",
)
fig.tight_layout()
plt.show()

# %% [markdown]
# The masks do act: run a small untrained model on the batch and read the attention
# weights each layer kept (`last_weights`, `(B, heads, queries, keys)`). Every weight
# on a forbidden key is exactly 0, and every row over allowed keys still sums to 1.

# %%
model = nn.Transformer(
    len(src_tok),
    len(tgt_tok),
    d_model=16,
    num_heads=2,
    num_encoder_layers=1,
    num_decoder_layers=1,
    d_ff=32,
    dropout=0.0,
    max_len=64,
    pad_id=PAD,
).eval()
logits = model(batch.src_ids, batch.tgt_in)
enc_w = model.encoder.layers[0].self_attn.last_weights.numpy()
self_w = model.decoder.layers[0].self_attn.last_weights.numpy()
cross_w = model.decoder.layers[0].cross_attn.last_weights.numpy()
print("weights:", enc_w.shape, self_w.shape, cross_w.shape)

assert logits.shape == (3, T, len(tgt_tok))
for w, mask in ((enc_w, enc_mask), (self_w, dec_mask), (cross_w, enc_mask)):
    allowed = np.broadcast_to(mask, w.shape)
    assert (w[~allowed] == 0).all()
    assert np.allclose(w.sum(axis=-1), 1, atol=1e-5)

# %% [markdown]
# Padded *query* rows (the padded positions of `tgt_in`) are not masked: they still
# attend to the real keys and produce logits. Those outputs are garbage that nobody
# reads, and section 6 makes sure the loss does not read them either.
#
# ## 6. Padding in the loss
#
# `tgt_out` holds `<pad>` exactly where `tgt_mask` is False, so
# `F.cross_entropy(logits, tgt_out, ignore_index=PAD)` skips those positions and
# averages over the real ones: the loss is
#
# $$L = \frac{1}{\sum_{b,t} \text{mask}_{bt}} \sum_{b,t:\ \text{mask}_{bt}} -\log p_{bt}(\text{tgt\_out}_{bt}),$$
#
# and `batch.num_tgt_tokens` is the denominator. Whatever the model says at padded
# positions cannot change it.

# %%
loss = F.cross_entropy(logits, batch.tgt_out, ignore_index=PAD)
logp = F.log_softmax(logits, axis=-1).numpy()
picked_logp = np.take_along_axis(logp, batch.tgt_out[..., None], axis=-1)[..., 0]
by_hand = -picked_logp[batch.tgt_mask].sum() / batch.num_tgt_tokens
print(f"loss {loss.item():.6f}, by hand {by_hand:.6f}, over {batch.num_tgt_tokens} positions")

assert np.isclose(loss.item(), by_hand, rtol=1e-5)
noisy = logits.numpy().copy()
noisy[~batch.tgt_mask] = rng.normal(size=noisy[~batch.tgt_mask].shape) * 100
assert np.isclose(
    F.cross_entropy(mt.tensor(noisy), batch.tgt_out, ignore_index=PAD).item(),
    loss.item(),
    rtol=1e-6,
)

# %% [markdown]
# ## Exercises
#
# 1. A batch holds sources of lengths 2, 3, 3 and 8. What is its source padding
#    fraction, and what would it be if the 8 were in another batch?
#    *Expected:* $1 - 16/32 = 0.5$; $1 - 8/9 \approx 0.111$.
# 2. Half the sentences have length 4 and half length 8. What padding fraction does
#    the formula of section 2 predict for random batches of $B = 2$ (one side only)?
#    *Expected:* $\mathbb{E}[\max] = 4 + 4 \cdot (1 - 0.5^2) = 7$, mean $6$, so
#    $1 - 6/7 \approx 0.143$. Check it by sampling.
# 3. With `max_tokens = 64` and bucketed sources of lengths 2 (many) and 16 (many),
#    how many sentences go into a batch of each kind?
#    *Expected:* $64 / 2 = 32$ and $64 / 16 = 4$ (the token budget counts the widest
#    row of source and target; give every example a target of length 1, i.e. 2
#    positions with `</s>`).
#
# Try them before reading on: the cells below are one solution each.

# %%
ex = collate_seq2seq([[5] * 2, [5] * 3, [5] * 3, [5] * 8], [[6]] * 4, pad_id=0, bos_id=1, eos_id=2)
assert 1 - ex.src_mask.mean() == 0.5
ex = collate_seq2seq([[5] * 2, [5] * 3, [5] * 3], [[6]] * 3, pad_id=0, bos_id=1, eos_id=2)
assert np.isclose(1 - ex.src_mask.mean(), 1 / 9)

# %%
half = np.array([4, 8] * 500)
assert np.isclose(expected_max(half, 2), 7)
draws = rng.choice(half, size=(100_000, 2))
assert abs((1 - draws.mean() / draws.max(axis=1).mean()) - (1 - 6 / 7)) < 0.005

# %%
sources = [[5] * 2] * 64 + [[5] * 16] * 8
targets = [[6]] * 72
sized = make_batches(sources, targets, pad_id=0, bos_id=1, eos_id=2, max_tokens=64, seed=0)
assert sorted({b.size for b in sized}) == [4, 32]
print("all exercises check out")
