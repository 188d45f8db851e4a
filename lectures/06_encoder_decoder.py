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
# # Lecture 6: encoder, decoder, Transformer
#
# Lectures 2 to 5 built the parts. This one assembles them into the model of the
# paper:
#
# > "The encoder is composed of a stack of $N = 6$ identical layers. Each layer has
# > two sub-layers. The first is a multi-head self-attention mechanism, and the
# > second is a simple, position-wise fully connected feed-forward network. We employ a
# > residual connection around each of the two sub-layers, followed by layer
# > normalization." (Vaswani et al. 2017, section 3.1)
#
# The decoder layer has a third sub-layer between the two, *cross-attention*, whose
# queries come from the decoder and whose keys and values come from the encoder's
# output (the *memory*); its self-attention is causal (lecture 3).
#
# This lecture, with `minitransformer/nn/transformer.py` open:
#
# 1. the layers and their parameter counts;
# 2. post-norm and pre-norm, and what each does to the residual stream of a deep stack;
# 3. one forward pass through a small untrained `Transformer`, shape by shape;
# 4. the causal property of the whole model: a later target token cannot change an
#    earlier prediction.

# %%
import math
import os

import matplotlib.pyplot as plt
import numpy as np

import minitransformer as mt
from minitransformer import nn

# MT_FAST=1 (set by the test suite) uses a shallower stack; the lesson is the same.
FAST = os.environ.get("MT_FAST") == "1"
mt.manual_seed(0)
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. The layers
#
# With `block(x, f)` standing for "sub-layer $f$ with its residual connection and
# LayerNorm" (section 2 gives its two forms):
#
# ```
# EncoderLayer:  x = block(x, self_attn(x, x, x, src_mask))
#                x = block(x, feed_forward(x))
# DecoderLayer:  y = block(y, self_attn(y, y, y, tgt_mask))            causal
#                y = block(y, cross_attn(y, memory, memory, memory_mask))
#                y = block(y, feed_forward(y))
# ```
#
# Parameters, with $d = d_{model}$ and $f = d_{ff}$:
#
# - multi-head attention: $4d^2 + 4d$ (lecture 4);
# - feed-forward, $\mathrm{relu}(x W_1 + b_1) W_2 + b_2$: $d f + f + f d + d = 2df + f + d$;
# - LayerNorm: a weight and a bias, $2d$.
#
# An encoder layer has one attention, one feed-forward and two LayerNorms:
# $4d^2 + 4d + 2df + f + d + 4d$. A decoder layer has two attentions and three
# LayerNorms: $8d^2 + 8d + 2df + f + d + 6d$. For $d = 32$, $f = 64$:
# encoder $4096 + 128 + 4096 + 64 + 32 + 128 = 8544$, decoder
# $8192 + 256 + 4096 + 64 + 32 + 192 = 12832$.

# %%
d, f, H = 32, 64, 4
enc_layer = nn.EncoderLayer(d, H, f, dropout=0.0)
dec_layer = nn.DecoderLayer(d, H, f, dropout=0.0)
print(enc_layer)

attention, ffn, norm = 4 * d * d + 4 * d, 2 * d * f + f + d, 2 * d
assert enc_layer.num_parameters() == attention + ffn + 2 * norm == 8544
assert dec_layer.num_parameters() == 2 * attention + ffn + 3 * norm == 12832

# %% [markdown]
# ## 2. Post-norm and pre-norm
#
# Where the LayerNorm goes around a sub-layer $F$:
#
# $$\text{post-norm (the paper):}\quad x_{\ell+1} = \mathrm{LN}\big(x_\ell + F(x_\ell)\big)$$
# $$\text{pre-norm (\texttt{norm\_first=True}):}\quad x_{\ell+1} = x_\ell + F\big(\mathrm{LN}(x_\ell)\big)$$
#
# The vector $x_\ell$ that runs through the stack, with each sub-layer adding to
# it, is the **residual stream**. The two orders treat it very differently.
#
# **Post-norm** renormalises the stream after every sub-layer. With the LayerNorm at
# its initial weight 1 and bias 0, its output has mean 0 and variance
# $\sigma^2 / (\sigma^2 + \epsilon) \approx 1$ over the $d$ coordinates, so its norm is
# $\sqrt{d}$ (8 for $d = 64$) after *every* layer. The price: each renormalisation
# shrinks what was there before by the factor $\sqrt d / \lVert x_\ell + F(x_\ell) \rVert$,
# so the input's share of the stream decays geometrically with depth, and so does the
# direct path the gradient could take back to the lower layers.
#
# **Pre-norm** never touches the stream itself: $x_L = x_0 + \sum_\ell F_\ell(\cdot)$,
# a plain sum. The input $x_0$ is still *literally there* at the top, and the gradient
# reaches every layer through the identity. But nothing bounds the stream: if each
# layer adds an update of similar size, roughly uncorrelated with the stream, the
# squared norm grows by about the same amount per layer, so the norm grows like
# $\sqrt{\ell}$. (This is why a pre-norm stack needs a final LayerNorm,
# `Encoder.norm`, before the output is used.) And since the updates are nearly
# orthogonal to $x_0$, the cosine between $x_\ell$ and $x_0$ is about
# $\lVert x_0 \rVert / \lVert x_\ell \rVert$.
#
# We push random inputs through a deep untrained stack of each kind and measure, after
# every layer, the norm of each position's vector and its cosine with the input.

# %%
depth, d_deep = (12 if FAST else 24), 64
x0 = mt.randn(4, 16, d_deep)  # (batch, seq, d): unit-variance coordinates, norm ~ sqrt(d)


def trace_stack(norm_first: bool) -> dict[str, np.ndarray]:
    """Mean norm and mean cosine with the input, after each layer of a fresh stack."""
    x, start = x0, x0.numpy()
    norms, cosines, ratios = [], [], []
    with mt.no_grad():
        for _ in range(depth):
            layer = nn.EncoderLayer(d_deep, 4, 4 * d_deep, dropout=0.0, norm_first=norm_first)
            x = layer(x)
            now = x.numpy()
            n_now, n_start = np.linalg.norm(now, axis=-1), np.linalg.norm(start, axis=-1)
            norms.append(n_now.mean())
            cosines.append(((now * start).sum(axis=-1) / (n_now * n_start)).mean())
            ratios.append((n_start / n_now).mean())
    return {"norm": np.array(norms), "cos": np.array(cosines), "ratio": np.array(ratios)}


post, pre = trace_stack(norm_first=False), trace_stack(norm_first=True)
layers, shown = np.arange(1, depth + 1), [0, depth // 2, depth - 1]
for name, t in (("post-norm", post), ("pre-norm", pre)):
    print(f"{name:9s} after layers {layers[shown]}: norm {t['norm'][shown].round(2)}")
    print(f"{'':9s} {'':>{len(str(layers[shown])) + 14}s} cos  {t['cos'][shown].round(2)}")

# post-norm: norm sqrt(d) after every layer; the input is forgotten
assert np.allclose(post["norm"], math.sqrt(d_deep), rtol=1e-3)
assert abs(post["cos"][-1]) < 0.1
# pre-norm: the norm grows with depth, and the input survives as a summand
# the squared norm grows by about the same amount per layer: a straight line in l fits it
slope, intercept = np.polyfit(layers, pre["norm"] ** 2, 1)
r2 = np.corrcoef(layers, pre["norm"] ** 2)[0, 1] ** 2  # the fraction of variance the line explains
print(f"pre-norm: |x_l|^2 ~ {slope:.0f} l {intercept:+.0f}, R^2 = {r2:.3f}")
assert slope > 0 and r2 > 0.95
assert pre["norm"][-1] > 3 * math.sqrt(d_deep)
assert np.allclose(pre["cos"], pre["ratio"], atol=0.05)
assert pre["cos"][-1] > 0.15

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
axes[0].plot(layers, post["norm"], "o-", label="post-norm")
axes[0].plot(layers, pre["norm"], "s-", label="pre-norm")
axes[0].axhline(math.sqrt(d_deep), color="grey", lw=0.8, ls=":", label=r"$\sqrt{d}$")
axes[0].set_xlabel("layer")
axes[0].set_ylabel(r"mean $\|x_\ell\|$")
axes[0].set_title("norm of the residual stream")
axes[0].legend(fontsize=8)
axes[1].plot(layers, post["cos"], "o-", label="post-norm")
axes[1].plot(layers, pre["cos"], "s-", label="pre-norm")
axes[1].plot(layers, pre["ratio"], "k:", label=r"$\|x_0\| / \|x_\ell\|$ (pre-norm)")
axes[1].set_xlabel("layer")
axes[1].set_ylabel(r"mean $\cos(x_\ell, x_0)$")
axes[1].set_title("how much of the input is left")
axes[1].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# Post-norm is the paper's choice and often reaches slightly better results when it
# trains, but deep post-norm stacks need a learning-rate warmup to train at all;
# pre-norm (GPT-2 and most models since) trains stably without one. Both are in
# minitransformer behind `norm_first`.

# %% [markdown]
# ## 3. One forward pass, shape by shape
#
# A small untrained `Transformer` (2 encoder and 2 decoder layers, $d = 32$, 4 heads,
# $d_{ff} = 64$, no dropout, float64), on a batch of two source sentences (the second
# padded) and two target prefixes. We run each stage by hand, printing shapes,
# then check that the result is exactly `model(src, tgt)`.
#
# ```
# src_ids (B, S) --embed * sqrt(d) + PE--> (B, S, d) --encoder (padding mask)--> memory (B, S, d)
# tgt_ids (B, T) --embed * sqrt(d) + PE--> (B, T, d) --decoder (causal mask; memory,
#                                                      padding mask)--> (B, T, d)
#                --generator (Linear d -> V)--> logits (B, T, V)
# ```
#
# Parameter count: two embedding tables ($20 \cdot 32 + 24 \cdot 32 = 1408$), two
# encoder layers ($2 \cdot 8544$), two decoder layers ($2 \cdot 12832$) and the
# generator ($32 \cdot 24 + 24 = 792$): $1408 + 17088 + 25664 + 792 = 44952$.

# %%
src_vocab, tgt_vocab = 20, 24
config = dict(
    d_model=d, num_heads=H, num_encoder_layers=2, num_decoder_layers=2, d_ff=f, dropout=0.0
)
model = nn.Transformer(src_vocab, tgt_vocab, max_len=64, **config).double().eval()
src = np.array([[3, 4, 5, 6, 7, 8, 9], [10, 11, 12, 0, 0, 0, 0]])  # (B, S), pad_id 0
tgt = np.array([[1, 13, 14, 15, 16], [1, 17, 18, 19, 20]])  # (B, T), 1 = start token
B, S = src.shape
T = tgt.shape[1]

assert model.num_parameters() == 44952


def show(name, value):
    shape = value.shape
    print(f"{name:<34s} {str(tuple(shape)):>14s}")
    return value


src_x = show("src embedded * sqrt(d) + PE", model.embed(model.src_embed, src))
src_mask = show("src padding mask", nn.padding_mask(src))
memory = show("memory = encoder(...)", model.encoder(src_x, src_mask))
tgt_x = show("tgt embedded * sqrt(d) + PE", model.embed(model.tgt_embed, tgt))
tgt_mask = show("tgt mask (causal & padding)", nn.decoder_mask(tgt))
hidden = show("decoder(tgt, memory)", model.decoder(tgt_x, memory, tgt_mask, src_mask))
logits = show("logits = generator(...)", model.generator(hidden))

assert src_x.shape == (B, S, d) and memory.shape == (B, S, d)
assert src_mask.shape == (B, 1, 1, S) and tgt_mask.shape == (B, 1, T, T)
assert logits.shape == (B, T, tgt_vocab)
assert np.array_equal(logits.numpy(), model(src, tgt).numpy())
assert np.array_equal(memory.numpy(), model.encode(src).numpy())
# the embedding step by hand: table row * sqrt(d) + PE row
table = model.src_embed.weight.numpy()
assert np.allclose(src_x.numpy()[0, 2], table[5] * math.sqrt(d) + model.pos.pe[2])

# %% [markdown]
# The logits are unnormalised scores over the target vocabulary for the *next* token
# at each position: position $t$ predicts token $t + 1$. Their softmax is a
# distribution, and an untrained model is far from sure of anything: its perplexity
# $e^{H}$ (the number of equally likely tokens it is as undecided as) is a sizeable
# fraction of $V = 24$, where a confident prediction would be near 1.

# %%
probs = np.exp(logits.numpy() - logits.numpy().max(axis=-1, keepdims=True))
probs /= probs.sum(axis=-1, keepdims=True)
entropy = -(probs * np.log(probs)).sum(axis=-1)
print("perplexity per position:\n", np.exp(entropy).round(1))
assert np.allclose(probs.sum(axis=-1), 1)
assert (np.exp(entropy) > tgt_vocab / 4).all()

# %% [markdown]
# ## 4. The causal property
#
# Training feeds the whole target sentence at once and asks every position $t$ to
# predict token $t + 1$. That is only honest if the prediction at position $t$
# depends on target tokens $0 \ldots t$ alone. The decoder's causal mask ensures it
# in self-attention; cross-attention reads only the source; LayerNorm and the
# feed-forward network act on each position separately. So:
#
# - changing target token 3 must leave the logits at positions 0, 1, 2 unchanged
#   (to rounding error; in fact bit for bit here) and change those at 3 and 4;
# - changing a source token changes every position (all of them attend to the memory).
#
# And the counter-check: decode with only the padding part of the mask and the
# earlier positions move too.

# %%
changed = tgt.copy()
changed[:, 3] = 2  # a different token at position 3

before, after = model(src, tgt).numpy(), model(src, changed).numpy()
delta = np.abs(after - before).max(axis=(0, 2))  # per position
print("max |change| of the logits per target position:", delta.round(6))

assert np.allclose(before[:, :3], after[:, :3], atol=1e-12)
assert (delta[3:] > 1e-6).all()

src_changed = src.copy()
src_changed[:, 0] = 19
delta_src = np.abs(model(src_changed, tgt).numpy() - before).max(axis=(0, 2))
assert (delta_src > 1e-6).all()


def logits_without_causal(tgt_ids):
    memory = model.encode(src)
    y = model.embed(model.tgt_embed, tgt_ids)
    y = model.decoder(y, memory, nn.padding_mask(tgt_ids), nn.padding_mask(src))
    return model.generator(y).numpy()


leak = np.abs(logits_without_causal(changed) - logits_without_causal(tgt)).max(axis=(0, 2))
print("the same change without the causal mask:      ", leak.round(6))
assert (leak[:3] > 1e-6).all()

# %% [markdown]
# ## Exercises
#
# 1. Count the parameters of one encoder layer and one decoder layer of the paper's
#    base model ($d = 512$, $d_{ff} = 2048$, 8 heads) with the formulas of section 1,
#    and check them with `num_parameters()`.
#    *Expected:* encoder $1{,}050{,}624 + 2{,}099{,}712 + 2048 = 3{,}152{,}384$;
#    decoder $2 \cdot 1{,}050{,}624 + 2{,}099{,}712 + 3072 = 4{,}204{,}032$.
# 2. In a post-norm encoder layer, set the weight of its last LayerNorm (`norm2`) to 2
#    everywhere. What is the norm of every output vector now?
#    *Expected:* $2\sqrt{d}$ (times $\sqrt{\sigma^2/(\sigma^2 + \epsilon)}$, which is 1 to
#    about $10^{-5}$): 16 for $d = 64$.
# 3. Build the model of section 3 with `norm_first=True`. How many more parameters
#    does it have, and why?
#    *Expected:* $4d = 128$ more: the final LayerNorms of the encoder and of the
#    decoder (`Encoder.norm`, `Decoder.norm`), $2d$ each.
#
# Try them before reading on: the cells below are one solution each.

# %%
base_attention, base_ffn = 4 * 512**2 + 4 * 512, 2 * 512 * 2048 + 2048 + 512
assert nn.EncoderLayer(512, 8, 2048).num_parameters() == base_attention + base_ffn + 4 * 512
assert base_attention + base_ffn + 4 * 512 == 3_152_384
assert nn.DecoderLayer(512, 8, 2048).num_parameters() == 4_204_032

# %%
layer = nn.EncoderLayer(d_deep, 4, 4 * d_deep, dropout=0.0)
layer.norm2.weight.data[:] = 2.0
out = layer(mt.randn(2, 5, d_deep)).numpy()
assert np.allclose(np.linalg.norm(out, axis=-1), 2 * math.sqrt(d_deep), rtol=1e-4)

# %%
pre_model = nn.Transformer(src_vocab, tgt_vocab, max_len=64, norm_first=True, **config)
assert pre_model.num_parameters() - model.num_parameters() == 4 * d == 128
print("all exercises check out")
