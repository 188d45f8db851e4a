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
# # Lecture 12: decoding
#
# A trained translator gives, for a source sentence $x$ and the words $y_{<t}$
# written so far, a distribution $p(y_t \mid y_{<t}, x)$ over the next word. The
# probability of a whole sentence is the product
#
# $$p(y \mid x) = \prod_{t=1}^{|y|} p(y_t \mid y_{<t}, x),
# \qquad \log p(y \mid x) = \sum_t \log p(y_t \mid y_{<t}, x),$$
#
# where the last word $y_{|y|}$ is `</s>`. Which sentence should we output? The most
# probable one cannot be found by trying them all: with $V$ words and lengths up to
# $T$ there are about $V^T$ candidates. **Decoding** is the strategy that picks one
# anyway. `minitransformer/decoding.py` has three:
#
# - **greedy**: take the most probable next word, every step;
# - **beam search**: keep the $k$ best partial sentences, every step;
# - **sampling**: draw the next word at random, from a distribution sharpened or
#   flattened by a *temperature* and optionally cut to the *top k* words.
#
# This lecture, with `decoding.py` open:
#
# 1. a model to decode, trained with `minitransformer.train.train`;
# 2. greedy decoding, one step at a time;
# 3. the score of a sentence, and why greedy does not maximise it;
# 4. beam search, and BLEU and time against the beam size;
# 5. the length penalty;
# 6. sampling: temperature and top-k;
# 7. the key/value cache, and how much time it saves.

# %%
import math
import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import minitransformer as mt
from minitransformer import functional as F
from minitransformer.data import (
    data_dir,
    pad_sequences,
    read_pairs_tsv,
    synthetic_pairs,
    train_val_split,
)
from minitransformer.decoding import beam_search, greedy_decode, length_penalty, sample_decode
from minitransformer.metrics import bleu
from minitransformer.train import TrainConfig, load_translator, train

# MT_FAST=1 (set by the test suite) trains a tiny model for a few steps and decodes a
# handful of sentences; the algorithms and the checks are the same.
FAST = os.environ.get("MT_FAST") == "1"
mt.manual_seed(0)

# Files go to lectures/outputs/ only (the notebook's working folder is lectures/); fast
# runs (the tests) get their own folder, so they never overwrite a full-mode model.
HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
OUT = HERE / "outputs" / ("12_decoding-fast" if FAST else "12_decoding")

# %% [markdown]
# ## 1. A model to decode
#
# Lecture 11 wrote its training loop out; here the packaged loop of
# `minitransformer/train.py` does the same work from a `TrainConfig`: read the pairs,
# split them (seeded), train BPE tokenizers on the training side, train, validate,
# and write a checkpoint that `load_translator` reads back. The data is Tatoeba's
# English-French pairs; without the file, the built-in toy translation task
# (`data=None`). The model is lecture 11's, pre-norm, trained for fewer steps: a
# decent but imperfect translator is the interesting case for decoding, since a
# perfect one leaves every strategy the same sentence.
#
# `train()`'s split is a plain one, so some held-out English sentences also occur in
# training with another translation (lecture 11). To score decoders honestly we keep
# only the held-out pairs whose English sentence the model never saw.

# %%
folder = data_dir()
tatoeba = None if folder is None else folder / "tatoeba-eng-fra" / "eng-fra.tsv"
REAL = tatoeba is not None and tatoeba.is_file()
print("data:", "Tatoeba eng-fra" if REAL else "the toy translation task (no Tatoeba file found)")

config = TrainConfig(
    task="translate",
    data=str(tatoeba) if REAL else None,
    num_examples=4000 if FAST else 20000,  # toy task only
    max_rows=2500 if FAST else None,
    val_fraction=0.1,
    out_dir=str(OUT / "model"),
    tokenizer="bpe" if REAL else "word",
    vocab_size=300 if FAST else 1000,
    max_len=24 if FAST else 64,
    d_model=32 if FAST else 128,
    num_heads=2 if FAST else 4,
    num_layers=1 if FAST else 2,
    d_ff=64 if FAST else 512,
    dropout=0.1,
    norm_first=True,
    batch_size=64,
    steps=20 if FAST else 1200,
    lr=3e-3,
    warmup_steps=5 if FAST else 200,
    eval_every=20 if FAST else 400,
    eval_examples=50 if FAST else 300,
    seed=0,
)
result = train(config, progress=False)
print(
    f"trained in {result.seconds:.0f} s; held-out BLEU (greedy, train()'s split) "
    f"{result.final['val_bleu']:.1f}"
)

model, src_tok, tgt_tok = load_translator(config.out_dir)
PAD, BOS, EOS = tgt_tok.pad_id, tgt_tok.bos_id, tgt_tok.eos_id
MAX_OUT = config.max_len + 1  # the longest output the positions allow (max_len + 2, minus <s>)

# the same split train() made: same reader, same fraction, same seed
examples = (
    read_pairs_tsv(tatoeba, max_rows=config.max_rows)
    if REAL
    else synthetic_pairs(config.synthetic, config.num_examples, seed=config.seed)
)
train_pairs, val_pairs = train_val_split(examples, config.val_fraction, seed=config.seed)
seen = {en for en, _ in train_pairs}
unseen = [(en, fr) for en, fr in val_pairs if en not in seen]
N_EVAL = 12 if FAST else 300
eval_pairs = unseen[:: max(1, len(unseen) // N_EVAL)][:N_EVAL]
eval_src = [src_tok.encode(en)[: config.max_len] for en, _ in eval_pairs]
eval_refs = [fr for _, fr in eval_pairs]
print(
    f"{len(val_pairs)} held-out pairs, {len(unseen)} with an unseen English sentence; "
    f"decoding {len(eval_pairs)} of them"
)


def batch_of(seqs):
    return pad_sequences(seqs, pad_id=PAD)[0]


# %% [markdown]
# ## 2. Greedy decoding, one step at a time
#
# Start from `<s>`; ask the model for $\log p(\cdot \mid y_{<t}, x)$; append the most
# probable word; stop at `</s>`. `greedy_decode` does exactly this (for a batch, with
# a cache, section 7). By hand, with `model.encode` once and `model.decode` every
# step, printing the three best candidates of each step. Like `decoding.py`, we rule
# out `<pad>` and `<s>`, which a decoder must never emit.


# %%
def next_log_probs(src: list[int], prefix: list[int]) -> np.ndarray:
    """log p(w | prefix, src) for every word w of the target vocabulary: (V,)."""
    with mt.no_grad():
        memory = model.encode(np.array([src]))
        logits = model.decode(np.array([prefix]), memory, np.array([src]))[0, -1]
        logp = F.log_softmax(logits, axis=-1).numpy()
    logp[[PAD, BOS]] = -np.inf
    return logp


example = max(range(len(eval_pairs)), key=lambda i: -abs(len(eval_src[i]) - 6))
src = eval_src[example]
print("source:", eval_pairs[example][0])
prefix = [BOS]
for _ in range(MAX_OUT):
    logp = next_log_probs(src, prefix)
    top = np.argsort(-logp)[:3]
    print(
        "  "
        + "   ".join(f"{tgt_tok.id_to_token(int(w))!r:>12} {math.exp(logp[w]):.2f}" for w in top)
    )
    prefix.append(int(top[0]))
    if top[0] == EOS:
        break
by_hand = prefix[1:-1] if prefix[-1] == EOS else prefix[1:]
print("greedy by hand :", tgt_tok.decode(by_hand))

assert greedy_decode(model, np.array([src]), BOS, EOS, max_len=MAX_OUT)[0] == by_hand

# %% [markdown]
# ## 3. The score of a sentence
#
# The model's score of a finished output $y$ is $\log p(y\,\texttt{</s>} \mid x)$: run
# the model once with teacher forcing on `<s>` $y$ and add up the log-probabilities of
# the words $y$ `</s>` it should have predicted.
#
# Greedy maximises each *factor* in turn, not the product: a word that is a little
# less likely now may lead to much likelier words later. A toy case makes this
# concrete: if the first step offers *A* (0.5) and *B* (0.4), and after *A* the
# best continuation has 0.3 while after *B* one has 0.9, greedy's sentence scores
# $0.5 \times 0.3 = 0.15$ and the other one $0.4 \times 0.9 = 0.36$.


# %%
def log_prob(src: list[int], hyp: list[int]) -> float:
    """log p(hyp </s> | src) under the model, by teacher forcing."""
    with mt.no_grad():
        logits = model(np.array([src]), np.array([[BOS, *hyp]]))
        logp = F.log_softmax(logits, axis=-1).numpy()[0]
    targets = [*hyp, EOS]
    return float(logp[np.arange(len(targets)), targets].sum())


greedy_out = greedy_decode(model, batch_of(eval_src), BOS, EOS, max_len=MAX_OUT)
beam_out = beam_search(model, batch_of(eval_src), BOS, EOS, beam_size=4, max_len=MAX_OUT, alpha=0.0)
greedy_scores = np.array([log_prob(s, h) for s, h in zip(eval_src, greedy_out)])
beam_scores = np.array([log_prob(s, h) for s, h in zip(eval_src, beam_out)])
better = np.mean(beam_scores > greedy_scores + 1e-4)
same = np.mean(np.abs(beam_scores - greedy_scores) <= 1e-4)
print(
    f"mean log p(y|x): greedy {greedy_scores.mean():.3f}, beam search (k=4) {beam_scores.mean():.3f}"
)
print(
    f"beam search found a likelier sentence for {better:.0%} of the sources, the same score for {same:.0%}"
)
i = int(np.argmax(beam_scores - greedy_scores))
print(
    f"largest gain: {eval_pairs[i][0]!r}\n  greedy {tgt_tok.decode(greedy_out[i])!r} "
    f"({greedy_scores[i]:.2f})\n  beam   {tgt_tok.decode(beam_out[i])!r} ({beam_scores[i]:.2f})"
)

assert math.isclose(0.5 * 0.3, 0.15) and math.isclose(0.4 * 0.9, 0.36)
if not FAST:
    assert beam_scores.mean() > greedy_scores.mean()

# %% [markdown]
# In our full run beam search found a likelier sentence for half of the sources and
# the same one for nearly all the others. The largest gains come from sentences on
# which greedy decoding falls into a loop (*l'air l'air l'air ...* up to the length
# limit): once a repetition is likely, each repeat makes the next one likelier, and
# greedy never reconsiders. Beam search keeps alternatives alive, and one that ends
# with `</s>` soon beats a loop whose log-probability keeps falling.
#
# ## 4. Beam search
#
# Beam search keeps the $k$ best partial sentences (the *beam*) by total
# log-probability. Each step extends every one of them by every word, $k \cdot V$
# candidates, and keeps the best $k$ again; a candidate that ends in `</s>` leaves the
# beam and joins the finished ones. It stops when $k$ sentences have finished, or
# when no partial sentence can still beat the best finished one, and returns the
# finished sentence with the best (length-normalised, section 5) score. The $k$
# partial sentences run through the decoder as one batch of $k$ rows.
#
# With $k = 1$ the beam holds only the best extension of the best prefix: greedy
# decoding, token for token.

# %%
beam_1 = beam_search(model, batch_of(eval_src), BOS, EOS, beam_size=1, max_len=MAX_OUT)
assert beam_1 == greedy_out
print(f"beam_size=1 gives greedy's output for all {len(eval_src)} sources")

# %% [markdown]
# Larger beams search more and cost more: each step runs $k$ rows instead of one. We
# translate the held-out sentences with growing $k$ and measure BLEU and time.

# %%
BEAMS = [1, 2, 3] if FAST else [1, 2, 4, 8]
beam_bleu, beam_time = [], []
for k in BEAMS:
    start = time.perf_counter()
    hyps = beam_search(model, batch_of(eval_src), BOS, EOS, beam_size=k, max_len=MAX_OUT)
    beam_time.append(time.perf_counter() - start)
    beam_bleu.append(bleu([tgt_tok.decode(h) for h in hyps], eval_refs))
    print(f"beam {k}: BLEU {beam_bleu[-1]:5.1f}  in {beam_time[-1]:5.1f} s")
greedy_start = time.perf_counter()
greedy_decode(model, batch_of(eval_src), BOS, EOS, max_len=MAX_OUT)
greedy_time = time.perf_counter() - greedy_start
greedy_bleu = bleu([tgt_tok.decode(h) for h in greedy_out], eval_refs)
print(f"greedy, all sources in one batch: BLEU {greedy_bleu:5.1f}  in {greedy_time:5.1f} s")

fig, (ax_b, ax_t) = plt.subplots(1, 2, figsize=(10, 3.5))
ax_b.plot(BEAMS, beam_bleu, "o-")
ax_b.axhline(greedy_bleu, color="grey", ls="--", lw=0.8, label="greedy")
ax_b.set(xlabel="beam size k", ylabel="BLEU", title="BLEU on held-out sentences", xticks=BEAMS)
ax_b.legend()
ax_t.plot(BEAMS, beam_time, "o-")
ax_t.set(
    xlabel="beam size k",
    ylabel="seconds",
    title=f"time for {len(eval_src)} sentences",
    xticks=BEAMS,
    ylim=(0, None),
)
fig.tight_layout()
plt.show()

assert math.isclose(beam_bleu[0], greedy_bleu)  # k = 1 is greedy

# %% [markdown]
# In our full run BLEU rose from 29.9 (greedy, $k = 1$) to 32.1 at $k = 2$ and 32.9
# at $k = 4$, then fell back to 32.1 at $k = 8$: the likeliest sentence is not always
# the best translation, and wider beams find more sentences that the model prefers
# and the references do not (a known weakness of large beams). The time grows with
# $k$, though much less than $k$-fold, since much of a step's cost at these sizes is
# per call, not per row. Beam search here decodes one source at a time, so even
# $k = 1$ took about three times as long as greedy decoding of the whole batch at
# once; production decoders batch the beams of many sources together.
#
# ## 5. The length penalty
#
# Every word multiplies the probability by a number below 1, so raw log-probabilities
# favour short sentences: a beam search that compares them (`alpha=0`) ends sentences
# early. GNMT (Wu et al. 2016) divides the score by a length penalty,
#
# $$\text{score}(y) = \frac{\log p(y \mid x)}{lp(y)}, \qquad
# lp(y) = \left(\frac{5 + |y|}{6}\right)^{\alpha},$$
#
# with $|y|$ counting `</s>`. By hand: a short sentence $A$ with $\log p = -2.0$ and
# $|y| = 4$, and a long one $B$ with $\log p = -2.6$ and $|y| = 9$. With $\alpha = 0$,
# $A$ wins ($-2.0 > -2.6$). With $\alpha = 1$, $lp(A) = 9/6 = 1.5$ and
# $lp(B) = 14/6 \approx 2.333$, so $A$ scores $-1.333$ and $B$ $-1.114$: $B$ wins.

# %%
assert length_penalty(4, 0.0) == length_penalty(9, 0.0) == 1.0
assert math.isclose(length_penalty(4, 1.0), 1.5)
assert math.isclose(-2.0 / length_penalty(4, 1.0), -1.3333, abs_tol=1e-4)
assert math.isclose(-2.6 / length_penalty(9, 1.0), -1.1143, abs_tol=1e-4)

ALPHAS = [0.0, 1.0, 2.0] if FAST else [0.0, 0.3, 0.6, 1.0, 1.5, 2.0]
K = 4
ref_tokens = np.mean([len(tgt_tok.encode(r)) for r in eval_refs])
alpha_len, alpha_bleu = [], []
for a in ALPHAS:
    hyps = beam_search(model, batch_of(eval_src), BOS, EOS, beam_size=K, max_len=MAX_OUT, alpha=a)
    alpha_len.append(np.mean([len(h) for h in hyps]))
    alpha_bleu.append(bleu([tgt_tok.decode(h) for h in hyps], eval_refs))
    print(
        f"alpha {a:3.1f}: mean length {alpha_len[-1]:5.2f} tokens (references {ref_tokens:.2f}), "
        f"BLEU {alpha_bleu[-1]:5.1f}"
    )

fig, (ax_l, ax_b) = plt.subplots(1, 2, figsize=(10, 3.5))
ax_l.plot(ALPHAS, alpha_len, "o-", label="beam search output")
ax_l.axhline(ref_tokens, color="grey", ls="--", lw=0.8, label="references")
ax_l.set(xlabel="alpha", ylabel="mean tokens", title=f"output length (k = {K})")
ax_l.legend()
ax_b.plot(ALPHAS, alpha_bleu, "o-")
ax_b.set(xlabel="alpha", ylabel="BLEU", title=f"BLEU (k = {K})")
fig.tight_layout()
plt.show()

if not FAST:
    assert alpha_len[-1] >= alpha_len[0]

# %% [markdown]
# A larger $\alpha$ gives longer outputs: in our full run the mean length grew from
# 6.4 tokens at $\alpha = 0$ to 7.1 at $\alpha = 2$ (the references have 7.65). BLEU
# moved by about a point around its best (33.5 at $\alpha = 1$) and fell once
# $\alpha$ pushed further. On short Tatoeba sentences most sources have one obvious
# length, so the effect is modest; it matters more on long sentences. The default
# of `beam_search` is GNMT's $\alpha = 0.6$.
#
# ## 6. Sampling: temperature and top-k
#
# Instead of the best word, **draw** one:
# $y_t \sim \mathrm{softmax}(z / T)$ for the logits $z$ and a temperature $T > 0$.
# $T = 1$ samples the model's own distribution; $T < 1$ sharpens it towards the
# argmax (as $T \to 0$, greedy), $T > 1$ flattens it towards uniform. Its entropy
# $H = -\sum_w p_w \log p_w$ grows with $T$. **Top-k** sampling first keeps only the $k$
# most probable words, so a long tail of unlikely words cannot be drawn.
#
# Sampling is for variety (dialogue, stories, several candidate translations), not
# for the single best translation.

# %%
logp = next_log_probs(src, [BOS])
z = logp[np.isfinite(logp)]
TEMPS = [0.25, 0.5, 1.0, 1.5, 2.0, 4.0]
entropies = []
fig, ax = plt.subplots(figsize=(8, 3.5))
for temp in TEMPS:
    p = F.softmax(mt.tensor(z / temp, dtype="float64"), axis=-1).numpy()
    entropies.append(float(-(p * np.log(np.maximum(p, 1e-300))).sum()))
    ax.plot(np.sort(p)[::-1][:15], "o-", label=f"T = {temp}  (H = {entropies[-1]:.2f})")
ax.set(
    xlabel="rank of the word",
    ylabel="probability",
    title=f"first word of the translation of {eval_pairs[example][0]!r}",
)
ax.legend()
plt.show()

assert all(a < b for a, b in zip(entropies, entropies[1:]))  # flatter as T grows
assert entropies[-1] < math.log(len(z))  # but never beyond uniform

# %% [markdown]
# `sample_decode` draws from its own generator when given a `seed` (the same seed,
# the same samples), and from the one `mt.manual_seed` seeds otherwise. Five samples
# of the same sentence at three temperatures, and with top-k:

# %%
one = np.array([src] * 5)
settings = [(0.5, None), (1.0, None), (1.5, None), (1.0, 5)]
for temp, k in settings:
    outs = sample_decode(model, one, BOS, EOS, max_len=MAX_OUT, temperature=temp, top_k=k, seed=1)
    print(f"T = {temp}, top_k = {k}:")
    for o in outs:
        print("    ", tgt_tok.decode(o))

again = sample_decode(model, one, BOS, EOS, max_len=MAX_OUT, temperature=1.0, seed=1)
assert again == sample_decode(model, one, BOS, EOS, max_len=MAX_OUT, temperature=1.0, seed=1)

# %% [markdown]
# Two checks of what top-k promises:
#
# - with `top_k=1` only the argmax survives, so sampling *is* greedy decoding;
# - with `top_k=k`, every sampled word (and the final `</s>`) was among the $k$ most
#   probable words at its step. Teacher forcing the sample through the model gives
#   the logits of every step at once, and we count how many words scored higher.

# %%
assert (
    sample_decode(model, batch_of(eval_src), BOS, EOS, max_len=MAX_OUT, top_k=1, seed=0)
    == greedy_out
)

TOP_K = 5
samples = sample_decode(
    model, batch_of(eval_src), BOS, EOS, max_len=MAX_OUT, temperature=1.5, top_k=TOP_K, seed=2
)
worst_rank = 0
for s, y in zip(eval_src, samples):
    drawn = [*y, EOS] if len(y) < MAX_OUT else y
    with mt.no_grad():
        logits = model(np.array([s]), np.array([[BOS, *drawn[:-1]]])).numpy()[0]
    logits[:, [PAD, BOS]] = -np.inf
    for t, w in enumerate(drawn):
        worst_rank = max(worst_rank, int((logits[t] > logits[t, w] + 1e-4).sum()))
print(f"top_k={TOP_K}: every sampled word had at most {worst_rank} better-scored words")
assert worst_rank < TOP_K

# %% [markdown]
# How much variety each setting gives, and what it costs in BLEU: 20 samples per
# source for a few sources (distinct outputs; 10 in fast mode), and one sample per held-out source
# (BLEU against greedy's).

# %%
few, DRAWS = (eval_src[:2], 10) if FAST else (eval_src[:10], 20)
print(f"{'setting':>22} {f'distinct of {DRAWS}':>15} {'BLEU':>6}")
for temp, k in [(0.3, None), (0.7, None), (1.0, None), (1.0, 10), (1.5, None)]:
    distinct = np.mean(
        [
            len(
                {
                    tuple(o)
                    for o in sample_decode(
                        model,
                        np.array([s] * DRAWS),
                        BOS,
                        EOS,
                        max_len=MAX_OUT,
                        temperature=temp,
                        top_k=k,
                        seed=3,
                    )
                }
            )
            for s in few
        ]
    )
    outs = sample_decode(
        model, batch_of(eval_src), BOS, EOS, max_len=MAX_OUT, temperature=temp, top_k=k, seed=4
    )
    score = bleu([tgt_tok.decode(o) for o in outs], eval_refs)
    print(f"{f'T = {temp}, top_k = {k}':>22} {distinct:15.1f} {score:6.1f}")
print(f"{'greedy':>22} {1:15.1f} {greedy_bleu:6.1f}")

# %% [markdown]
# The trade is plain in our full run: at $T = 0.3$ the samples are nearly greedy's
# (about 4 distinct sentences in 20, BLEU 28 against greedy's 30), at $T = 1$ they
# are varied and much worse (BLEU 13), at $T = 1.5$ every sample differs and hardly
# any is French. Top-k with $k = 10$ at $T = 1$ cuts the tail of unlikely pieces:
# fewer distinct samples than plain $T = 1$, and a better BLEU (18).

# %% [markdown]
# ## 7. The key/value cache
#
# At step $t$ the decoder needs, in every layer, the keys and values of all $t$
# positions so far. Without a cache it recomputes them by running the whole prefix
# again: step $t$ processes $t$ positions, and $n$ steps process
# $1 + 2 + \dots + n = n(n+1)/2$. With a cache (`model.new_cache()`, one dict per
# decoder layer) each step feeds only the newest token, appends its key and value to
# the cached ones, and reuses the cross-attention keys and values of the source, which
# never change: $n$ positions in all. The attention of step $t$ still reads $t$ keys,
# but the projections and feed-forward layers, most of the work at these sizes, run
# once per token.
#
# To time decoding of exactly $n$ tokens, we pass `eos_id=PAD`: the decoder never
# emits padding, so it never stops early. Same tokens, cached or not; the time ratio
# grows with $n$.

# %%
LENGTHS = [4, 8, 16] if FAST else [8, 16, 32, 64]
timing_src = batch_of(eval_src[:8])


def best_time(fn, repeats=1 if FAST else 3):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


cached_t, uncached_t = [], []
for n in LENGTHS:
    tc, with_cache = best_time(lambda n=n: greedy_decode(model, timing_src, BOS, PAD, max_len=n))
    tu, without = best_time(
        lambda n=n: greedy_decode(model, timing_src, BOS, PAD, max_len=n, use_cache=False)
    )
    assert with_cache == without  # identical tokens
    assert all(len(row) == n for row in with_cache)
    cached_t.append(tc)
    uncached_t.append(tu)
    print(
        f"n = {n:3d}: cached {1000 * tc:7.1f} ms, uncached {1000 * tu:7.1f} ms, "
        f"speed-up {tu / tc:4.1f}x"
    )

fig, (ax_t, ax_r) = plt.subplots(1, 2, figsize=(10, 3.5))
ax_t.plot(LENGTHS, 1000 * np.array(uncached_t), "o-", label="no cache: O(n^2) positions")
ax_t.plot(LENGTHS, 1000 * np.array(cached_t), "o-", label="KV cache: O(n) positions")
ax_t.set(
    xlabel="tokens decoded n", ylabel="ms", title=f"greedy decoding of {len(timing_src)} sentences"
)
ax_t.legend()
ax_r.plot(LENGTHS, np.array(uncached_t) / np.array(cached_t), "o-")
ax_r.set(xlabel="tokens decoded n", ylabel="uncached / cached", title="speed-up of the cache")
fig.tight_layout()
plt.show()

if not FAST:
    assert uncached_t[-1] > cached_t[-1]

# %% [markdown]
# In our full run the cache saved 1.6x at $n = 8$ and about 5x at $n = 64$: each
# doubling of $n$ roughly doubled the cached time (linear) and roughly tripled the
# uncached time, on its way to quadrupling (quadratic) as $n$ grows. The cache costs
# memory instead: per layer, a key and a value vector of size $d_{model}$ for every
# position decoded so far, for every row of the batch (or every beam).

# %% [markdown]
# ## Exercises
#
# 1. In section 5's example, at which $\alpha$ do $A$ ($\log p = -2.0$, $|y| = 4$) and
#    $B$ ($\log p = -2.6$, $|y| = 9$) tie?
#    *Expected:* $2.0 \cdot (14/6)^\alpha = 2.6 \cdot (9/6)^\alpha$, so
#    $(14/9)^\alpha = 1.3$ and $\alpha = \ln 1.3 / \ln(14/9) \approx 0.594$: just below
#    GNMT's default 0.6, which therefore (barely) prefers $B$.
# 2. A model's next-word distribution is $(0.5, 0.3, 0.2)$. What does sampling at
#    $T = 0.5$ draw from? At $T = 2$?
#    *Expected:* $p_i^{1/T}$ renormalised: $(0.25, 0.09, 0.04) / 0.38 = (0.658, 0.237,
#    0.105)$ at $T = 0.5$; $(0.707, 0.548, 0.447) / 1.702 = (0.415, 0.322, 0.263)$ at
#    $T = 2$.
# 3. Count the target positions the decoder processes when greedy decoding runs
#    $n = 16$ steps for one sentence, with and without the cache (wrap `model.decode`
#    to add up `tgt_ids.shape[1]`).
#    *Expected:* 16 with the cache; $16 \cdot 17 / 2 = 136$ without.
#
# The cells below are one solution each.

# %%
alpha_tie = math.log(1.3) / math.log(14 / 9)
assert math.isclose(-2.0 / length_penalty(4, alpha_tie), -2.6 / length_penalty(9, alpha_tie))
assert round(alpha_tie, 3) == 0.594
assert -2.0 / length_penalty(4, 0.6) < -2.6 / length_penalty(9, 0.6)

# %%
p = np.array([0.5, 0.3, 0.2])
at_half = F.softmax(mt.tensor(np.log(p) / 0.5, dtype="float64"), axis=-1).numpy()
at_two = F.softmax(mt.tensor(np.log(p) / 2.0, dtype="float64"), axis=-1).numpy()
assert np.allclose(at_half, [0.658, 0.237, 0.105], atol=1e-3)
assert np.allclose(at_two, [0.415, 0.322, 0.263], atol=1e-3)

# %%
positions = []
decode = model.decode


def counting_decode(tgt_ids, *args, **kwargs):
    positions.append(tgt_ids.shape[1])
    return decode(tgt_ids, *args, **kwargs)


model.decode = counting_decode
try:
    greedy_decode(model, np.array([src]), BOS, PAD, max_len=16)
    with_cache = sum(positions)
    positions.clear()
    greedy_decode(model, np.array([src]), BOS, PAD, max_len=16, use_cache=False)
    without_cache = sum(positions)
finally:
    del model.decode  # back to the class's method
assert (with_cache, without_cache) == (16, 16 * 17 // 2)
print("all exercises check out")
