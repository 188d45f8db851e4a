"""Char, word and BPE tokenizers: round trips, special tokens, batching, files, merges.

The BPE merges are checked against a plain reference written below: recount every
pair of the corpus after each merge and take the most frequent (ties: the smaller
(left, right) strings). The tokenizer's incremental counts must give the same table.
"""

from __future__ import annotations

import json
import os
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minitransformer.tokenizers import (
    BPETokenizer,
    CharTokenizer,
    Tokenizer,
    WordTokenizer,
)
from minitransformer.tokenizers import base as tokenizer_base

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>", "[CLS]"]

CORPUS = [
    "The cat sat on the mat.",
    "The dog sat on the log!",
    "Don't run, walk... said the cat.",
    "cats and dogs, dogs and cats",
    "Où est le chat ? Il est là.",
]
ALPHABET = sorted(set("".join(CORPUS)))


def train(kind: str, **options) -> Tokenizer:
    if kind == "char":
        return CharTokenizer.train(CORPUS, **options)
    if kind == "word":
        return WordTokenizer.train(CORPUS, **options)
    return BPETokenizer.train(CORPUS, vocab_size=80, min_frequency=1, **options)


KINDS = ["char", "word", "bpe"]

# Texts over the corpus's characters: every character is known to every tokenizer
# except the word tokenizer (which may meet unknown words).
known_text = st.text(alphabet=ALPHABET, max_size=40)


# ---- special tokens --------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_special_tokens_come_first_with_pad_id_zero(kind):
    tok = train(kind)
    assert tok.vocab[:5] == SPECIALS
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id, tok.cls_id) == (0, 1, 2, 3, 4)
    assert tok.special_ids == frozenset(range(5))
    with pytest.raises(AttributeError, match="no sep token"):
        _ = tok.sep_id


@pytest.mark.parametrize("kind", KINDS)
def test_bos_eos_cls_wrapping_per_call_and_per_tokenizer(kind):
    bare = train(kind).encode("the cat")
    tok = train(kind)
    assert tok.encode("the cat", add_bos=True, add_eos=True) == [1, *bare, 2]
    assert tok.encode("the cat", add_cls=True) == [4, *bare]
    assert tok.encode("the cat", add_cls=True, add_bos=True) == [4, 1, *bare]
    wrapped = train(kind, add_bos=True, add_eos=True)
    assert wrapped.encode("the cat") == [1, *bare, 2]
    assert wrapped.encode("the cat", add_eos=False) == [1, *bare]
    assert wrapped.encode("the cat", add_special_tokens=False) == bare


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_symbols_become_unk(kind):
    tok = train(kind)
    ids = tok.encode("cat \u2603 zebra")  # a snowman, and a word never seen
    assert tok.unk_id in ids
    assert "\u2603" not in tok.vocab


@pytest.mark.parametrize("kind", KINDS)
def test_decode_skips_special_tokens_only_when_asked(kind):
    tok = train(kind)
    ids = tok.encode("the cat", add_bos=True, add_eos=True)
    assert tok.decode(ids) == tok.decode(ids[1:-1])
    assert tok.decode(ids, skip_special_tokens=False).startswith("<s>")
    assert tok.decode(np.array(ids)) == tok.decode(ids)


@pytest.mark.parametrize("kind", KINDS)
def test_decode_rejects_bad_ids(kind):
    tok = train(kind)
    with pytest.raises(IndexError, match=f"out of range for a vocabulary of {len(tok)}"):
        tok.decode([5, len(tok)])
    with pytest.raises(IndexError):
        tok.decode([-1])
    with pytest.raises(TypeError, match="position 1"):
        tok.decode([5, 6.0])


# ---- character tokenizer -----------------------------------------------------------


def test_char_vocab_is_the_sorted_characters():
    tok = CharTokenizer.train(CORPUS)
    assert tok.vocab == SPECIALS + ALPHABET


def test_char_min_freq_and_lowercase():
    counts = Counter("".join(CORPUS))
    tok = CharTokenizer.train(CORPUS, min_freq=3)
    assert tok.vocab[5:] == sorted(ch for ch, n in counts.items() if n >= 3)
    lower = CharTokenizer.train(CORPUS, lowercase=True)
    assert "T" not in lower.vocab
    assert lower.encode("The") == lower.encode("the")


@given(known_text)
def test_char_round_trip_is_exact(text):
    tok = CharTokenizer.train(CORPUS)
    ids = tok.encode(text)
    assert ids == [tok.vocab.index(ch) for ch in text]
    assert tok.decode(ids) == text


# ---- word tokenizer ----------------------------------------------------------------

# Texts whose words are already separated by single spaces, so that the expected
# counts are a plain text.split().
SPACED = ["the cat sat on the mat .", "the dog sat , the cat ran !", "a cat and a dog"]


def test_word_pre_tokenisation_splits_words_and_punctuation():
    tok = WordTokenizer.train(["x"])
    assert tok.tokenize("Don't  run,walk!!") == ["Don", "'", "t", "run", ",", "walk", "!", "!"]


def test_word_vocab_is_ordered_by_frequency_then_string():
    counts = Counter(word for text in SPACED for word in text.split())
    ranked = sorted(counts, key=lambda word: (-counts[word], word))
    assert WordTokenizer.train(SPACED).vocab == SPECIALS + ranked
    assert WordTokenizer.train(SPACED, vocab_size=8).vocab == SPECIALS + ranked[:3]
    frequent = [word for word in ranked if counts[word] >= 2]
    assert WordTokenizer.train(SPACED, min_freq=2).vocab == SPECIALS + frequent


def test_word_lowercase_and_small_vocab_error():
    tok = WordTokenizer.train(CORPUS, lowercase=True)
    assert tok.encode("THE Cat") == tok.encode("the cat")
    with pytest.raises(ValueError, match="vocab_size=5 leaves no room"):
        WordTokenizer.train(CORPUS, vocab_size=5)


@given(st.lists(st.sampled_from(sorted({w for t in SPACED for w in t.split()})), max_size=12))
def test_word_round_trip_of_space_separated_known_words(words):
    tok = WordTokenizer.train(SPACED)
    text = " ".join(words)
    ids = tok.encode(text)
    assert tok.unk_id not in ids
    assert tok.decode(ids) == text
    assert tok.encode(tok.decode(ids)) == ids


# ---- BPE: the merge rule -----------------------------------------------------------


def reference_bpe(texts, vocab_size, min_frequency):
    """Plain BPE: recount every pair after each merge. Returns (merges, segmented words)."""
    counts = Counter(" " + word for text in texts for word in text.split())
    words = {word: list(word) for word in counts}
    vocab = SPECIALS + sorted({ch for word in counts for ch in word})
    merges = []
    while len(vocab) < vocab_size:
        pairs = Counter()
        for word, symbols in words.items():
            for left, right in zip(symbols, symbols[1:]):
                pairs[(left, right)] += counts[word]
        candidates = [p for p in pairs if p[0] + p[1] not in vocab]
        if not candidates:
            break
        best = min(candidates, key=lambda p: (-pairs[p], p))
        if pairs[best] < min_frequency:
            break
        merges.append(best)
        vocab.append(best[0] + best[1])
        for word, symbols in words.items():
            out, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    out.append(best[0] + best[1])
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            words[word] = out
    return merges, words


def test_bpe_first_merges_worked_by_hand():
    # Sennrich et al.'s example. With the leading space, the weighted pair counts are
    # e-s: 6 (newest) + 3 (widest) = 9 and s-t: 9, the largest; w-e: 2 + 6 = 8;
    # " "-l, l-o, o-w: 5 + 2 = 7. The tie e-s / s-t goes to ("e", "s") < ("s", "t");
    # then "es"-"t" keeps the count 9. Merging e-s turned "newest" into n e w es t,
    # so w-e fell to 2 (lower only), and the third merge is the tie at 7, won by " "-l.
    texts = ["low " * 5, "lower " * 2, "newest " * 6, "widest " * 3]
    tok = BPETokenizer.train(texts, vocab_size=1000, min_frequency=1)
    assert tok.merges[:3] == [("e", "s"), ("es", "t"), (" ", "l")]
    assert tok.merges == reference_bpe(texts, 1000, 1)[0]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.text(alphabet="abc d", min_size=1, max_size=12), min_size=1, max_size=8),
    st.integers(0, 25),
    st.integers(1, 3),
)
def test_bpe_merges_match_the_plain_reference(texts, extra, min_frequency):
    n_chars = len({ch for text in texts for word in text.split() for ch in " " + word})
    vocab_size = len(SPECIALS) + n_chars + extra
    tok = BPETokenizer.train(texts, vocab_size=vocab_size, min_frequency=min_frequency)
    merges, words = reference_bpe(texts, vocab_size, min_frequency)
    assert tok.merges == merges
    # Each merge adds one token, in order, after the specials and the characters.
    assert tok.vocab[len(tok) - len(merges) :] == [left + right for left, right in merges]
    # Encoding by merge rank gives each training word its training segmentation.
    for word, symbols in words.items():
        assert tok.tokenize(word) == symbols


def test_bpe_prefix_of_the_merge_table_replays_the_growth():
    texts = ["low " * 5, "lower " * 2, "newest " * 6, "widest " * 3]
    tok = BPETokenizer.train(texts, vocab_size=1000, min_frequency=1)
    seen = []
    for k in range(len(tok.merges) + 1):
        seen.append(BPETokenizer(tok.vocab, tok.merges[:k]).tokenize("newest"))
    assert seen[0] == list(" newest")
    assert seen[1] == [" ", "n", "e", "w", "es", "t"]
    assert seen[-1] == [" newest"]
    assert all(len(a) >= len(b) for a, b in zip(seen, seen[1:]))


def test_bpe_pre_tokenisation_and_unknown_characters():
    tok = BPETokenizer.train(["Don't run!"], vocab_size=20, min_frequency=1)
    assert "".join(tok.tokenize("Don't   run!")) == " Don't run!"
    ids = tok.encode("run\u2603run")
    assert tok.unk_id in ids
    assert tok.decode(ids) == "runrun"  # <unk> is special, so decode drops it


@given(st.text(alphabet=ALPHABET + ["\t", "\n", "\u00a0"], max_size=50))
def test_bpe_round_trip_of_whitespace_normalised_text(text):
    tok = train("bpe")
    assert tok.decode(tok.encode(text)) == " ".join(text.split())


def test_bpe_vocab_too_small_and_early_stop():
    with pytest.raises(ValueError, match="smaller than the 5 special tokens plus the"):
        BPETokenizer.train(CORPUS, vocab_size=10)
    tok = BPETokenizer.train(["ab ab", "cd"], vocab_size=100, min_frequency=2)
    # Only " a", then " ab" ... are seen twice; "c"-"d" once, so it is never merged.
    assert ("c", "d") not in tok.merges
    assert len(tok) < 100


def test_bpe_constructor_checks_the_merge_table():
    tok = train("bpe")
    with pytest.raises(ValueError, match="not in the vocabulary"):
        BPETokenizer(tok.vocab, [("q", "z")])
    left, right = tok.merges[0]
    with pytest.raises(ValueError, match="both make"):
        BPETokenizer(tok.vocab, [(left, right), (left, right)])


def test_bpe_on_tatoeba_round_trips_every_sentence(data_dir, tmp_path):
    with open(data_dir / "tatoeba-eng-fra" / "eng-fra.tsv", encoding="utf-8") as f:
        texts = [part for line in f for part in line.rstrip("\n").split("\t")[:2]]
    tok = BPETokenizer.train(texts, vocab_size=4000)
    assert len(tok) == 4000
    ids = tok(texts)["input_ids"]
    assert tok.batch_decode(ids) == [" ".join(text.split()) for text in texts]
    tok.save(tmp_path / "bpe.json")
    loaded = BPETokenizer.load(tmp_path / "bpe.json")
    assert loaded.merges == tok.merges
    assert np.array_equal(loaded(texts[:2000])["input_ids"], tok(texts[:2000])["input_ids"])


# ---- the batch call ----------------------------------------------------------------

batches = st.lists(known_text, min_size=1, max_size=6)


@pytest.mark.parametrize("kind", KINDS)
@given(texts=batches, wrap=st.booleans())
def test_padding_and_attention_mask(kind, texts, wrap):
    tok = train(kind)
    out = tok(texts, add_bos=wrap, add_eos=wrap)
    rows = [tok.encode(text, add_bos=wrap, add_eos=wrap) for text in texts]
    width = max(len(row) for row in rows)
    assert set(out) == {"input_ids", "attention_mask"}
    assert out["input_ids"].dtype == np.int64 and out["attention_mask"].dtype == np.int64
    assert out["input_ids"].shape == out["attention_mask"].shape == (len(texts), width)
    for i, row in enumerate(rows):
        assert out["input_ids"][i, : len(row)].tolist() == row
        assert (out["input_ids"][i, len(row) :] == tok.pad_id).all()
        assert out["attention_mask"][i].tolist() == [1] * len(row) + [0] * (width - len(row))


@pytest.mark.parametrize("kind", KINDS)
@given(texts=batches, max_length=st.integers(2, 12), wrap=st.booleans())
def test_truncation_keeps_the_front_and_the_special_tokens(kind, texts, max_length, wrap):
    tok = train(kind)
    out = tok(
        texts,
        padding="max_length",
        truncation=True,
        max_length=max_length,
        add_bos=wrap,
        add_eos=wrap,
    )
    assert out["input_ids"].shape == (len(texts), max_length)
    n_special = 2 if wrap else 0
    for i, text in enumerate(texts):
        body = tok.encode(text, add_special_tokens=False)[: max_length - n_special]
        expected = [tok.bos_id, *body, tok.eos_id] if wrap else body
        assert out["input_ids"][i, : len(expected)].tolist() == expected
        assert out["attention_mask"][i].sum() == len(expected)


def test_single_text_is_a_batch_of_one_and_empty_batch():
    tok = train("char")
    one = tok("the cat")
    assert one["input_ids"].tolist() == [tok.encode("the cat")]
    empty = tok([])
    assert empty["input_ids"].shape == (0, 0)


def test_padding_false_needs_equal_lengths():
    tok = train("char")
    same = tok(["abc", "cat"], padding=False)
    assert same["attention_mask"].all()
    with pytest.raises(ValueError, match="padding=False needs rows of one length"):
        tok(["a", "cat"], padding=False)


def test_max_length_padding_without_truncation_refuses_long_rows():
    tok = train("char")
    with pytest.raises(ValueError, match="pass truncation=True"):
        tok(["the cat sat"], padding="max_length", max_length=4)


def test_padding_true_ignores_max_length_without_truncation():
    tok = train("char")
    assert tok(["the cat sat"], max_length=4)["input_ids"].shape == (1, 11)


def test_model_max_length_is_the_default_max_length():
    tok = CharTokenizer.train(CORPUS, model_max_length=5)
    assert tok(["the cat sat"], truncation=True)["input_ids"].shape == (1, 5)
    assert tok(["the"], padding="max_length")["input_ids"].shape == (1, 5)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"max_length": 0, "truncation": True}, ValueError, "max_length must be > 0"),
        ({"max_length": -3}, ValueError, "max_length must be > 0"),
        ({"max_length": 2.5}, TypeError, "max_length must be an int"),
        ({"truncation": True}, ValueError, "no model_max_length"),
        ({"padding": "max_length"}, ValueError, "no model_max_length"),
        ({"padding": "longest_first"}, ValueError, "padding must be one of"),
        ({"truncation": "yes"}, ValueError, "truncation must be one of"),
        (
            {"truncation": True, "max_length": 1, "add_bos": True, "add_eos": True},
            ValueError,
            "adds 2 special tokens",
        ),
        ({"text_pair": ["a"]}, ValueError, "pairs are a WordPieceTokenizer feature"),
    ],
)
def test_batch_call_errors(kwargs, error, message):
    tok = train("char")
    with pytest.raises(error, match=message):
        tok(["the cat"], **kwargs)


def test_batch_call_rejects_non_text():
    tok = train("char")
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str"):
        tok(["a", 3])
    with pytest.raises(TypeError, match="texts must be a str or a list"):
        tok(42)


# ---- files ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_identity(kind, tmp_path):
    tok = train(kind, add_bos=True, lowercase=True)
    path = tmp_path / "tok.json"
    tok.save(path)
    assert os.listdir(tmp_path) == ["tok.json"]  # no temporary file left behind
    assert json.loads(path.read_text(encoding="utf-8"))["class"] == type(tok).__name__
    for loaded in (type(tok).load(path), Tokenizer.load(str(path))):
        assert type(loaded) is type(tok)
        assert loaded.vocab == tok.vocab
        assert (loaded.add_bos, loaded.add_eos, loaded.lowercase) == (True, False, True)
        assert [loaded.encode(t) for t in CORPUS] == [tok.encode(t) for t in CORPUS]
    if kind == "bpe":
        assert BPETokenizer.load(path).merges == tok.merges


def test_load_errors(tmp_path):
    tok = train("bpe")
    path = tmp_path / "bpe.json"
    tok.save(path)
    with pytest.raises(ValueError, match="holds a BPETokenizer, not a CharTokenizer"):
        CharTokenizer.load(path)
    with pytest.raises(FileNotFoundError, match="no tokenizer file"):
        BPETokenizer.load(tmp_path / "missing.json")

    truncated = tmp_path / "truncated.json"
    truncated.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(ValueError, match="not valid JSON"):
        BPETokenizer.load(truncated)
    binary = tmp_path / "weights.bin"
    binary.write_bytes(bytes(range(256)))
    with pytest.raises(ValueError, match="not valid JSON"):
        Tokenizer.load(binary)
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"vocab": ["a"]}))
    with pytest.raises(ValueError, match="not a tokenizer file"):
        Tokenizer.load(foreign)

    payload = json.loads(path.read_text(encoding="utf-8"))
    payload["state"]["vocab"] = payload["state"]["vocab"][5:]  # drop the special tokens
    damaged = tmp_path / "damaged.json"
    damaged.write_text(json.dumps(payload))
    with pytest.raises(ValueError, match="damaged BPETokenizer"):
        BPETokenizer.load(damaged)
    payload = json.loads(path.read_text(encoding="utf-8"))
    payload["class"] = "SentencePiece"
    damaged.write_text(json.dumps(payload))
    with pytest.raises(ValueError, match="unknown tokenizer class"):
        Tokenizer.load(damaged)


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "tok.json"
    train("char").save(path)
    before = path.read_bytes()

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(tokenizer_base.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        train("word").save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["tok.json"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train("char").save(tmp_path / "no" / "such" / "folder.json")
