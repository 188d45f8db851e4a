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
# # Lecture 7: tokenization
#
# Lectures 2 to 6 built a model that reads and writes sequences of integers. Real
# input is text, so something must cut text into pieces (**tokens**) and number
# them. That something is the **tokenizer**, and its choice of pieces sets two numbers
# the model has to live with:
#
# - the **vocabulary size** $V$: the embedding table and the output layer each have
#   $V \cdot d$ parameters, and the final softmax runs over $V$ classes;
# - the **sequence length** $n$ of a sentence: self-attention costs $O(n^2)$.
#
# Cutting into characters gives a tiny $V$ and long sequences; cutting into words
# gives short sequences, a huge $V$, and words never seen in training (which become
# the *unknown* token). **Byte-pair encoding** (BPE) learns pieces in between from
# the data, and lets us choose $V$.
#
# This lecture, with `minitransformer/tokenizers/` open (`char.py`, `word.py`,
# `bpe.py`, and `base.py` for what they share):
#
# 1. the data: real English sentences from Tatoeba;
# 2. characters;
# 3. words, and the unknown words of held-out sentences;
# 4. BPE: the first merge by hand, and a sentence after the first $k$ merges;
# 5. vocabulary size against sequence length, for all three;
# 6. special tokens;
# 7. the batch call `tok(texts, padding=..., truncation=..., max_length=...)`.

# %%
import os
from collections import Counter

import matplotlib.pyplot as plt
import numpy as np

from minitransformer.data import (
    data_dir,
    read_pairs_tsv,
    toy_translation_pairs,
    train_val_split,
)
from minitransformer.tokenizers import BPETokenizer, CharTokenizer, WordTokenizer
from minitransformer.tokenizers.bpe import normalize, pre_tokenize
from minitransformer.tokenizers.word import split_words

# MT_FAST=1 (set by the test suite) uses fewer sentences and BPE sizes; the lesson is the same.
FAST = os.environ.get("MT_FAST") == "1"
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. The data
#
# The Tatoeba English-French file holds about 17,000 short everyday sentences with
# their translations, one `english<TAB>french` pair per line. `data_dir()` finds the
# shared data folder (or `$MT_DATA_DIR`); the project never copies it. If it is not
# there, this lecture falls back on the toy English -> pseudo-French task of
# `minitransformer.data.toy_translation` (the default data of `minitransformer
# train`) and says so: every step below still runs, only the numbers change.
#
# We keep the English side and split it, with a fixed seed, into sentences to learn
# the vocabularies from (*train*) and sentences to test them on (*val*). Tatoeba
# repeats English sentences that have several French translations, so the split
# keys on the sentence (`key=`): a sentence is on one side only.

# %%
folder = data_dir()
tatoeba = None if folder is None else folder / "tatoeba-eng-fra" / "eng-fra.tsv"
REAL = tatoeba is not None and tatoeba.is_file()
if REAL:
    pairs = read_pairs_tsv(tatoeba)
    print(f"Tatoeba: {len(pairs)} pairs from {tatoeba}")
else:
    pairs = toy_translation_pairs(17_000, seed=0)
    print("The Tatoeba file is not here: using the toy translation task instead.")
if FAST:
    pairs = [pairs[i] for i in rng.permutation(len(pairs))[:5000]]

english = [e for e, _ in pairs]
train_text, val_text = train_val_split(english, val_fraction=0.1, seed=0, key=lambda s: s)
print(f"{len(train_text)} train / {len(val_text)} val sentences; e.g.:")
for s in train_text[:5]:
    print("   ", s)

assert not set(train_text) & set(val_text)

# %% [markdown]
# ## 2. Characters
#
# `CharTokenizer.train` collects every character of the training text. Its vocabulary
# is the five special tokens `<pad> <s> </s> <unk> [CLS]` (ids 0 to 4, section 6)
# followed by the characters in code-point order, so
#
# $$V_{\text{char}} = 5 + \#\{\text{distinct characters of the training text}\}.$$
#
# A sentence of $m$ characters becomes exactly $m$ ids, spaces included, and
# `decode` gives it back unchanged.

# %%
char_tok = CharTokenizer.train(train_text)
alphabet = set("".join(train_text))
print(f"V_char = {len(char_tok)}: 5 specials + {len(alphabet)} characters")
print("first tokens:", char_tok.vocab[:12])

sentence = "Run!" if REAL else train_text[0]
ids = char_tok.encode(sentence)
print(f"{sentence!r} -> {char_tok.tokenize(sentence)} -> {ids}")

assert len(char_tok) == 5 + len(alphabet)
assert len(ids) == len(sentence)
assert char_tok.decode(ids) == sentence

# %% [markdown]
# ## 3. Words
#
# `WordTokenizer` cuts text with one regular expression, `\w+|[^\w\s]`: a token is a
# run of letters and digits, or one punctuation mark. So `"Don't run!"` is five
# tokens: `Don`, `'`, `t`, `run`, `!`. Its vocabulary is the specials and then every
# training word, most frequent first:
#
# $$V_{\text{word}} = 5 + \#\{\text{distinct words of the training text}\}.$$
#
# A word of a held-out sentence that never occurred in training has no id: it
# becomes `<unk>` (id 3), and whatever it meant is lost. The share of such tokens is
# the **unknown rate**; we count it once through the tokenizer and once with plain
# Python sets, and the two must agree.

# %%
word_tok = WordTokenizer.train(train_text)
train_words = {w for s in train_text for w in split_words(s)}
print(f"V_word = {len(word_tok)}: 5 specials + {len(train_words)} words")
print("most frequent:", word_tok.vocab[5:20])
example = "Don't run!"
print(f"{example!r} -> {word_tok.tokenize(example)}")
assert word_tok.tokenize(example) == ["Don", "'", "t", "run", "!"]
assert len(word_tok) == 5 + len(train_words)

val_ids = [word_tok.encode(s) for s in val_text]
unk_rate_word = sum(i.count(word_tok.unk_id) for i in val_ids) / sum(map(len, val_ids))
val_words = [w for s in val_text for w in split_words(s)]
unseen = [w for w in val_words if w not in train_words]
print(f"unknown rate on val: {unk_rate_word:.2%}; unseen words, e.g. {sorted(set(unseen))[:8]}")

assert np.isclose(unk_rate_word, len(unseen) / len(val_words))
if REAL:
    assert unk_rate_word > 0.01  # real text keeps bringing new words

# %% [markdown]
# ## 4. Byte-pair encoding
#
# BPE (Sennrich et al. 2016) starts from characters and *learns* longer pieces. First
# the text is cut into words, each carrying its leading space (GPT-2's convention;
# SentencePiece draws the space as `▁`): `"Don't run!"` becomes
# `[" Don", "'", "t", " run", "!"]`. Then, repeatedly:
#
# 1. count every adjacent pair of symbols $(x, y)$ over all words, each word weighted
#    by how often it occurs;
# 2. take the most frequent pair (ties: the pair whose strings sort first);
# 3. replace every $x\,y$ by the new symbol $xy$ and record $(x, y)$ as the next
#    **merge**.
#
# Each merge adds one token, so after $k$ merges
#
# $$V_{\text{BPE}} = 5 + \#\{\text{characters}\} + k,$$
#
# and we stop when $V$ reaches the size we asked for. Encoding a new word replays the
# merges in the order they were learned.
#
# Step 1 of the first round is a few lines of Python; its winner must be the first
# entry of the tokenizer's merge table.

# %%
bpe_size = 1000 if FAST else 2000
bpe = BPETokenizer.train(train_text, vocab_size=bpe_size)

word_counts = Counter(w for s in train_text for w in pre_tokenize(normalize(s)))
pair_counts = Counter()
for word, count in word_counts.items():
    for pair in zip(word, word[1:]):
        pair_counts[pair] += count
top = sorted(pair_counts.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
print("most frequent pairs:", top)
print("first ten merges:   ", bpe.merges[:10])
bpe_alphabet = {ch for w in word_counts for ch in w}

assert bpe.merges[0] == top[0][0]
assert len(bpe) == 5 + len(bpe_alphabet) + len(bpe.merges)
# it stops short of bpe_size only if no pair is left that occurs twice
assert len(bpe) == bpe_size or not REAL

# %% [markdown]
# `bpe.merges` is the merge table in the order it was learned, and
# `BPETokenizer(bpe.vocab, bpe.merges[:k])` is the tokenizer that knows only the first
# $k$ merges (same vocabulary, shorter table). Watch one sentence grow from
# characters into words as $k$ grows:
#
# - with $k = 0$ there is nothing to merge: the sentence is its characters, plus the
#   leading space, $m + 1$ tokens for $m$ characters;
# - each merge can only join pieces, never split them, so the number of tokens never
#   goes up as $k$ grows (encoding with the first $k$ merges stops part-way through
#   encoding with all of them);
# - frequent words (`▁I`, `▁Tom`, `▁this`, with `▁` drawing the leading space) become
#   one token early; rarer ones stay in pieces longer.

# %%
sentence = "I don't think Tom will like this." if REAL else train_text[0]
ks = [k for k in (0, 10, 50, 200) if k < len(bpe.merges)] + [len(bpe.merges)]
lengths_k = []
for k in ks:
    pieces = BPETokenizer(bpe.vocab, bpe.merges[:k]).tokenize(sentence)
    lengths_k.append(len(pieces))
    shown = "|".join(pieces).replace(" ", "▁")  # draw the space, as SentencePiece does
    print(f"k = {k:4d}: {len(pieces):2d} tokens  {shown}")

assert lengths_k[0] == len(sentence) + 1
assert all(a >= b for a, b in zip(lengths_k, lengths_k[1:]))
assert bpe.decode(bpe.encode(sentence)) == sentence

# %% [markdown]
# The same over the whole validation set: the mean number of tokens per sentence
# after the first $k$ merges. The first merges join the commonest pairs, so each one
# shortens many sentences; later ones join rarer pairs and gain less each. On a
# logarithmic $k$ axis the curve falls at a roughly even pace: every doubling of the
# merge table buys about the same saving.

# %%
merge_steps = np.unique(np.geomspace(1, len(bpe.merges), 12).astype(int))
merge_steps = np.concatenate([[0], merge_steps])
mean_len_k = [
    np.mean([len(BPETokenizer(bpe.vocab, bpe.merges[:k]).encode(s)) for s in val_text])
    for k in merge_steps
]
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(merge_steps, mean_len_k, "o-")
ax.set_xscale("symlog", linthresh=1)
ax.set_xlabel("number of merges k")
ax.set_ylabel("tokens per val sentence")
ax.set_title("BPE: the merge table growing")
plt.show()

assert all(a >= b for a, b in zip(mean_len_k, mean_len_k[1:]))
assert np.isclose(mean_len_k[0], np.mean([len(normalize(s)) + 1 for s in val_text]))

# %% [markdown]
# ## 5. Vocabulary size against sequence length
#
# Now all three side by side, on the held-out sentences: BPE at several sizes, and
# the char and word tokenizers. For each, $V$ and the mean number of tokens per
# sentence, and the unknown rate.
#
# What to expect:
#
# - characters: the smallest $V$ and the longest sequences ($m$ tokens for $m$
#   characters);
# - words: the shortest sequences, a $V$ that grows with the corpus (every new name
#   adds a token), and unknown words;
# - BPE: in between, moving from the character end towards the word end as $V$
#   grows. Its unknown rate is almost 0: any word is spelled out of smaller pieces,
#   down to single characters, so only a *character* never seen in training becomes
#   `<unk>`. We count those characters with a set and compare.

# %%
bpe_sizes = [150, 300, 1000] if FAST else [150, 300, 1000, 2000, 4000]
results = {}
for size in bpe_sizes:
    tok = BPETokenizer.train(train_text, vocab_size=size)
    results[f"BPE {size}"] = tok
results["char"], results["word"] = char_tok, word_tok

rows = {}
for name, tok in results.items():
    encoded = [tok.encode(s) for s in val_text]
    n_tokens = sum(map(len, encoded))
    unk = sum(i.count(tok.unk_id) for i in encoded)
    rows[name] = (len(tok), n_tokens / len(val_text), unk / n_tokens)
    print(
        f"{name:9s} V = {len(tok):5d}   tokens/sentence = {rows[name][1]:5.2f}   "
        f"unknown = {rows[name][2]:.3%}"
    )

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
bpe_rows = [rows[f"BPE {s}"] for s in bpe_sizes]
ax.plot([r[0] for r in bpe_rows], [r[1] for r in bpe_rows], "o-", label="BPE")
for name, marker in (("char", "s"), ("word", "^")):
    ax.plot(rows[name][0], rows[name][1], marker, ms=9, label=name)
ax.set_xscale("log")
ax.set_xlabel("vocabulary size V")
ax.set_ylabel("tokens per val sentence")
ax.legend()
ax.set_title("the trade-off: fewer tokens need a larger vocabulary")
plt.show()

unseen_chars = sum(ch not in bpe_alphabet for s in val_text for ch in normalize(s) if ch != " ")
smallest = results[f"BPE {bpe_sizes[0]}"]
bpe_unks = sum(smallest.encode(s).count(smallest.unk_id) for s in val_text)
print(f"val characters never seen in training: {unseen_chars}; BPE <unk> tokens: {bpe_unks}")

lengths = [r[1] for r in bpe_rows]
assert all(a >= b for a, b in zip(lengths, lengths[1:]))  # larger V, shorter sequences
assert rows["char"][1] > lengths[0] >= lengths[-1] >= rows["word"][1]
assert rows["char"][0] < rows["BPE 150"][0]
if REAL:  # (the toy task has only 50 words: there BPE ends up with every word whole)
    assert lengths[-1] > rows["word"][1]
assert bpe_unks == unseen_chars

# %% [markdown]
# (The word tokenizer's row has the shortest sequences partly because it cheats: an
# unknown word is one `<unk>` whatever its length. On the whole corpus (run without
# `MT_FAST`), BPE with 4000 tokens comes within half a token of it per sentence, and
# loses nothing.)
#
# ## 6. Special tokens
#
# Some ids stand for no text at all. The tokenizers trained here all start their
# vocabulary with the same five:
#
# | id | token | role |
# | --- | --- | --- |
# | 0 | `<pad>` | fills the short rows of a batch; id 0, so an all-zero array is all padding |
# | 1 | `<s>` | begin: the decoder's first input (lecture 8) |
# | 2 | `</s>` | end: the decoder's last target; decoding stops when it is produced |
# | 3 | `<unk>` | a word or character not in the vocabulary |
# | 4 | `[CLS]` | a classifier's summary position (BERT's convention) |
#
# `encode` adds none of them by default. `add_bos=True` / `add_eos=True` wrap the
# text as `<s> ... </s>` (set them when building the tokenizer, or per call);
# `decode` drops special tokens unless `skip_special_tokens=False` (then the first
# word's leading space shows, after `<s>`). No merge can ever
# spell a special token: they mix letters and punctuation (`<s>`), which never share
# a pre-tokenized word.

# %%
text = "Tom is here." if REAL else train_text[1]
plain = bpe.encode(text)
wrapped = bpe.encode(text, add_bos=True, add_eos=True)
print("tokens     :", bpe.tokenize(text))
print("plain ids  :", plain)
print("with <s> </s>:", wrapped)
print("decoded    :", repr(bpe.decode(wrapped)), "/", repr(bpe.decode(wrapped, False)))

assert bpe.vocab[:5] == ["<pad>", "<s>", "</s>", "<unk>", "[CLS]"]
assert (bpe.pad_id, bpe.bos_id, bpe.eos_id, bpe.unk_id, bpe.cls_id) == (0, 1, 2, 3, 4)
assert wrapped == [1] + plain + [2]
assert bpe.decode(wrapped) == text
# kept, the <s> stands before the first word, whose leading space then shows
assert bpe.decode(wrapped, skip_special_tokens=False) == "<s> " + text + "</s>"
assert word_tok.encode("Tom saw a zyxwv.")[3] == word_tok.unk_id

# %% [markdown]
# ## 7. The batch call
#
# A model takes a rectangular array, so a batch of sentences of different lengths
# must be padded. Calling a tokenizer on a list of texts does it, with the argument
# names of Hugging Face's tokenizers:
#
# ```python
# batch = tok(texts, padding=True, truncation=False, max_length=None)
# batch["input_ids"]       # (B, L) int64, padded on the right with pad_id
# batch["attention_mask"]  # (B, L) int64, 1 at real tokens, 0 at padding
# ```
#
# - `padding=True` pads to the longest row: $L = \max_b n_b$;
#   `padding="max_length"` pads to `max_length`;
# - `truncation=True` cuts each row to `max_length` tokens, keeping its *front* and
#   its special tokens: with `</s>` added, the text keeps `max_length - 1` tokens and
#   `</s>` stays last.
#
# The attention mask is exactly what lecture 3's padding mask needs: row $b$ has
# $n_b$ ones, so its sum is the row's length.

# %%
texts = ["Go.", "I'm sure Tom will understand.", "We can't do that."] if REAL else val_text[:3]
lengths_b = [len(bpe.encode(t, add_eos=True)) for t in texts]
batch = bpe(texts, padding=True, add_eos=True)
print("lengths:", lengths_b)
print(batch["input_ids"])
print(batch["attention_mask"])

assert batch["input_ids"].shape == (3, max(lengths_b))
assert batch["attention_mask"].sum(axis=1).tolist() == lengths_b
assert (batch["input_ids"][batch["attention_mask"] == 0] == bpe.pad_id).all()

m = 5
cut = bpe(texts, padding="max_length", truncation=True, max_length=m, add_eos=True)
print(cut["input_ids"])
print(cut["attention_mask"])

assert cut["input_ids"].shape == (3, m)
assert cut["attention_mask"].sum(axis=1).tolist() == [min(n, m) for n in lengths_b]
for row, t in zip(cut["input_ids"], texts):
    n = min(len(bpe.encode(t)), m - 1)
    assert row[:n].tolist() == bpe.encode(t)[:n] and row[n] == bpe.eos_id

# %% [markdown]
# ## Exercises
#
# 1. How many ids does `char_tok.encode("Hello world", add_bos=True, add_eos=True)`
#    return, and what are the first and the last?
#    *Expected:* $11 + 2 = 13$ ids, from `<s>` (1) to `</s>` (2).
# 2. Train `BPETokenizer.train(corpus, vocab_size=100)` on Sennrich's example, the words
#    `low` ×5, `lower` ×2, `newest` ×6, `widest` ×3 (one word per text). Count the
#    pairs by hand: what are the first three merges?
#    *Expected:* `("e", "s")` and `("s", "t")` both occur 9 times, the tie goes to the
#    smaller strings: `("e", "s")`; then `("es", "t")` (9); then `(" ", "l")`,
#    `("l", "o")` and `("o", "w")` tie at 7 and the space sorts first: `(" ", "l")`.
# 3. With `WordTokenizer.train(["a b c d e f"], add_eos=True)` (ids: specials 0-4, then
#    `a`..`f` as 5..10), what is `tok(["a b c d e f", "a b"], truncation=True,
#    max_length=4)["input_ids"]`?
#    *Expected:* `[[5, 6, 7, 2], [5, 6, 2, 0]]`: three words and `</s>`; the short row
#    is padded with 0.
#
# Try them before reading on: the cells below are one solution each.

# %%
hello = char_tok.encode("Hello world", add_bos=True, add_eos=True)
assert len(hello) == 13 and hello[0] == 1 and hello[-1] == 2

# %%
corpus = ["low"] * 5 + ["lower"] * 2 + ["newest"] * 6 + ["widest"] * 3
first_three = BPETokenizer.train(corpus, vocab_size=100).merges[:3]
assert first_three == [("e", "s"), ("es", "t"), (" ", "l")]

# %%
tiny = WordTokenizer.train(["a b c d e f"], add_eos=True)
out = tiny(["a b c d e f", "a b"], truncation=True, max_length=4)
assert out["input_ids"].tolist() == [[5, 6, 7, 2], [5, 6, 2, 0]]
print("all exercises check out")
