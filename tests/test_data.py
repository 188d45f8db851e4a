"""Tests of the data layer: synthetic tasks, file readers, splits and batching.

The toy translation grammar is checked against a plain re-statement of its rules
written here, independently of the module's parser. Batching is checked row by row
against the lists it was built from. No tokenizer of the package is used: a tiny
whitespace tokenizer defined below stands in for one.
"""

from __future__ import annotations

import itertools
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minitransformer.data import (
    SYNTHETIC_TASKS,
    Batch,
    ClassificationBatch,
    as_generator,
    batch_indices,
    collate_seq2seq,
    copy_pairs,
    data_dir,
    loaders,
    make_batches,
    make_classification_batches,
    pad_sequences,
    padding_fraction,
    read_labeled_tsv,
    read_pairs_tsv,
    reverse_pairs,
    sequence_count,
    synthetic_pairs,
    toy_sentence_count,
    toy_translate,
    toy_translation_pairs,
    toy_vocabularies,
    train_val_split,
)
from minitransformer.data.toy_translation import (
    ADJECTIVES,
    ADVERBS,
    DETERMINERS,
    INTRANSITIVE_VERBS,
    NOUNS,
    TRANSITIVE_VERBS,
)

seeds = st.integers(min_value=0, max_value=2**32 - 1)


class WhitespaceTokenizer:
    """Stand-in tokenizer: split on spaces, one id per distinct word; 0-2 are special."""

    pad_id, bos_id, eos_id = 0, 1, 2

    def __init__(self, texts: list[str]) -> None:
        words = sorted({w for text in texts for w in text.split()})
        self.vocab = {w: i + 3 for i, w in enumerate(words)}
        self.words = {i: w for w, i in self.vocab.items()}

    def encode(self, text: str) -> list[int]:
        return [self.vocab[w] for w in text.split()]

    def decode(self, ids) -> str:
        return " ".join(self.words[int(i)] for i in ids)


# ---------------------------------------------------------------- copy and reverse


@settings(max_examples=40, deadline=None)
@given(
    seed=seeds,
    vocab_size=st.integers(1, 12),
    min_len=st.integers(1, 6),
    extra=st.integers(0, 6),
    n=st.integers(0, 40),
    task=st.sampled_from(["copy", "reverse"]),
)
def test_copy_and_reverse_obey_their_rule(seed, vocab_size, min_len, extra, n, task):
    max_len = min_len + extra
    n = min(n, sequence_count(vocab_size, min_len, max_len))
    pairs = synthetic_pairs(task, n, seed, vocab_size=vocab_size, min_len=min_len, max_len=max_len)
    assert len(pairs) == n
    for source, target in pairs:
        tokens = source.split(" ")
        assert min_len <= len(tokens) <= max_len
        assert all(0 <= int(t) < vocab_size and str(int(t)) == t for t in tokens)
        expected = tokens if task == "copy" else tokens[::-1]
        assert target.split(" ") == expected
    assert len({s for s, _ in pairs}) == n, "sources must be distinct by default"
    again = synthetic_pairs(task, n, seed, vocab_size=vocab_size, min_len=min_len, max_len=max_len)
    assert again == pairs


def test_sequence_count_matches_enumeration_and_bounds_unique_sampling():
    everything = {
        " ".join(map(str, seq))
        for length in (1, 2)
        for seq in itertools.product(range(2), repeat=length)
    }
    assert sequence_count(2, 1, 2) == len(everything) == 6
    pairs = copy_pairs(6, seed=3, vocab_size=2, min_len=1, max_len=2)
    assert {s for s, _ in pairs} == everything
    with pytest.raises(ValueError, match="only 6"):
        copy_pairs(7, seed=3, vocab_size=2, min_len=1, max_len=2)


def test_seed_or_generator():
    rng = np.random.default_rng(5)
    first = reverse_pairs(20, rng)
    second = reverse_pairs(20, rng)
    assert first == reverse_pairs(20, 5), "a generator seeded 5 acts like the seed 5"
    assert first != second, "a shared generator advances between calls"
    assert copy_pairs(20, 0) != copy_pairs(20, 1)
    with pytest.raises(TypeError, match="seed"):
        as_generator(1.5)
    with pytest.raises(ValueError, match="non-negative"):
        as_generator(-1)


def test_synthetic_task_errors():
    assert set(SYNTHETIC_TASKS) == {"copy", "reverse", "translation"}
    with pytest.raises(ValueError, match="unknown synthetic task 'sort'"):
        synthetic_pairs("sort", 3)
    with pytest.raises(ValueError, match="min_len"):
        copy_pairs(3, min_len=5, max_len=4)
    with pytest.raises(ValueError, match="vocab_size"):
        copy_pairs(3, vocab_size=0)


# ---------------------------------------------------------------- toy translation


def plain_french(english: str) -> str:
    """The docstring's four rules, restated as a left-to-right scan."""
    words = english.split()
    front = []
    if words[-1] in ADVERBS:  # rule 4: the final adverb goes first
        front = [ADVERBS[words.pop()]]
    out, determiner, adjectives = [], None, []
    for word in words:
        if word in DETERMINERS:
            determiner = word
        elif word in ADJECTIVES:
            adjectives.append(word)
        elif word in NOUNS:
            french_noun, gender = NOUNS[word]
            g = 0 if gender == "m" else 1  # rule 2: agreement with the noun's gender
            out.append(DETERMINERS[determiner][g])
            out.append(french_noun)
            # rule 3: adjectives after the noun, nearest first
            out.extend(ADJECTIVES[a][g] for a in reversed(adjectives))
            determiner, adjectives = None, []
        else:
            out.append({**TRANSITIVE_VERBS, **INTRANSITIVE_VERBS}[word])  # rule 1
    return " ".join(front + out)


def is_noun_phrase(words: list[str]) -> bool:
    det, *adjs, noun = words
    return (
        det in DETERMINERS
        and noun in NOUNS
        and len(adjs) <= 2
        and all(a in ADJECTIVES for a in adjs)
        and len(set(adjs)) == len(adjs)
    )


def is_grammatical(english: str) -> bool:
    """S -> NP TV NP [ADV] | NP IV [ADV], NP -> DET ADJ{0,2} NOUN, by trying every cut."""
    words = english.split(" ")
    if words[-1] in ADVERBS:
        words = words[:-1]
    for v, verb in enumerate(words):
        if verb in INTRANSITIVE_VERBS and v == len(words) - 1 and is_noun_phrase(words[:v]):
            return True
        if verb in TRANSITIVE_VERBS and 2 <= v and len(words) - v - 1 >= 2:
            if is_noun_phrase(words[:v]) and is_noun_phrase(words[v + 1 :]):
                return True
    return False


@pytest.mark.parametrize(
    "english, french",
    [
        ("the cat sleeps", "le chat dort"),
        ("a mouse runs", "une souris court"),
        ("the big black cat sees a small mouse", "le chat noir grand voit une souris petite"),
        (
            "the old queen likes a red flower now",
            "maintenant la reine vieille aime une fleur rouge",
        ),
        ("a young girl sings often", "souvent une fille jeune chante"),
        (
            "a small girl sees the old black horse often",
            "souvent une fille petite voit le cheval noir vieux",
        ),
    ],
)
def test_hand_translated_examples(english, french):
    assert toy_translate(english) == french
    assert plain_french(english) == french


@settings(max_examples=25, deadline=None)
@given(seed=seeds)
def test_generated_pairs_obey_the_grammar(seed):
    pairs = toy_translation_pairs(150, seed)
    english_vocab, french_vocab = map(set, toy_vocabularies())
    french_genders = {fr: g for fr, g in NOUNS.values()}
    determiner_genders = {
        form: "mf"[i] for forms in DETERMINERS.values() for i, form in enumerate(forms)
    }
    for english, french in pairs:
        assert 3 <= len(english.split(" ")) <= 10
        assert is_grammatical(english), english
        assert french == plain_french(english)
        assert len(french.split(" ")) == len(english.split(" ")), "one-to-one"
        assert set(english.split()) <= english_vocab and set(french.split()) <= french_vocab
        # Every French determiner is followed by its noun, and agrees with it.
        fr = french.split(" ")
        for i, word in enumerate(fr):
            if word in determiner_genders:
                assert determiner_genders[word] == french_genders[fr[i + 1]], french
    assert len({e for e, _ in pairs}) == len(pairs)


def test_sentence_count_by_enumerating_noun_phrases():
    adjective_runs = [p for k in range(3) for p in itertools.permutations(ADJECTIVES, k)]
    noun_phrases = [(d, *adjs, n) for d in DETERMINERS for adjs in adjective_runs for n in NOUNS]
    assert all(is_noun_phrase(list(np_)) for np_ in noun_phrases)
    endings = len(ADVERBS) + 1  # an adverb or none
    expected = (
        len(noun_phrases) * len(TRANSITIVE_VERBS) * len(noun_phrases) * endings
        + len(noun_phrases) * len(INTRANSITIVE_VERBS) * endings
    )
    assert toy_sentence_count() == expected
    assert expected > 10**8, "far too many sentences to memorise"


def test_vocabularies_are_small_and_cover_the_lexicon():
    english, french = toy_vocabularies()
    assert len(english) < 100 and len(french) < 100
    assert len(english) == len(set(english))
    for word in [
        *DETERMINERS,
        *NOUNS,
        *ADJECTIVES,
        *TRANSITIVE_VERBS,
        *INTRANSITIVE_VERBS,
        *ADVERBS,
    ]:
        assert word in english


def test_word_order_really_changes():
    """Mapping each French word back to English gives the English words, reordered.

    A sentence keeps its word order only without an adverb (probability 1/2) and
    without adjectives (1/2 per noun phrase): 1/4 of intransitive and 1/8 of
    transitive sentences, so about 1 - (0.3/4 + 0.7/8) = 84% are reordered.
    """
    back = {fr: en for en, forms in {**DETERMINERS, **ADJECTIVES}.items() for fr in forms}
    back |= {fr: en for en, (fr, _) in NOUNS.items()}
    back |= {
        fr: en
        for table in (TRANSITIVE_VERBS, INTRANSITIVE_VERBS, ADVERBS)
        for en, fr in table.items()
    }
    pairs = toy_translation_pairs(2000, 11)
    reordered = 0
    for english, french in pairs:
        words_back = [back[w] for w in french.split()]
        assert sorted(words_back) == sorted(english.split()), "one-to-one"
        reordered += words_back != english.split()
    assert reordered / len(pairs) > 0.75


@pytest.mark.parametrize(
    "sentence, where",
    [
        ("cat sleeps", "determiner"),
        ("the cat", "verb"),
        ("the big big cat sleeps", "2 different adjectives"),
        ("the big black red cat sleeps", "2 different adjectives"),
        ("the cat sleeps now here", "adverb"),
        ("the cat sees", "determiner"),
        ("the unicorn sleeps", "noun"),
        ("The cat sleeps", "determiner"),
    ],
)
def test_toy_translate_rejects_sentences_outside_the_grammar(sentence, where):
    with pytest.raises(ValueError, match=where):
        toy_translate(sentence)


def test_toy_translation_split_shares_no_sentence():
    train, val = train_val_split(toy_translation_pairs(3000, 0), 0.1, seed=0)
    assert not {e for e, _ in train} & {e for e, _ in val}


# ---------------------------------------------------------------- file readers


def write(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


text_field = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\t\n\r\ufeff"),
    min_size=1,
    max_size=12,
).filter(lambda s: s.strip())


@settings(max_examples=40, deadline=None)
@given(
    pairs=st.lists(st.tuples(text_field, text_field), min_size=1, max_size=8),
    newline=st.sampled_from(["\n", "\r\n"]),
    final_newline=st.booleans(),
)
def test_read_pairs_round_trip(pairs, newline, final_newline):
    with tempfile.TemporaryDirectory() as folder:
        content = newline.join(f"{a}\t{b}" for a, b in pairs) + (newline if final_newline else "")
        path = write(Path(folder) / "pairs.tsv", content)
        assert read_pairs_tsv(path) == pairs
        assert read_pairs_tsv(path, max_rows=1) == pairs[:1]


def test_read_pairs_with_byte_order_mark(tmp_path):
    path = write(tmp_path / "bom.tsv", b"\xef\xbb\xbfGo.\tVa !\nHi.\tSalut !\n")
    assert read_pairs_tsv(path) == [("Go.", "Va !"), ("Hi.", "Salut !")]


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "empty"),
        ("\n", "empty"),
        ("a\tb\nc\td\ne\tf\tg\n", "line 3: expected 2 tab-separated columns.*found 3"),
        ("a\tb\nno tab here\n", "line 2: expected 2 tab-separated columns.*found 1"),
        ("a\tb\n\nc\td\n", "line 2: the line is empty"),
        ("a\tb\nc\t \n", "line 2: the target column is empty"),
        ("\tb\n", "line 1: the source column is empty"),
        (b"a\tb\nc\t\xff\xfe\n", "line 2: not valid UTF-8"),
    ],
)
def test_read_pairs_errors_name_file_and_line(tmp_path, content, message):
    path = write(tmp_path / "bad.tsv", content)
    with pytest.raises(ValueError, match=message) as err:
        read_pairs_tsv(path)
    assert str(path) in str(err.value)


def test_read_pairs_missing_file_and_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.tsv"):
        read_pairs_tsv(tmp_path / "nowhere.tsv")
    with pytest.raises(ValueError, match="not a regular file"):
        read_pairs_tsv(tmp_path)
    path = write(tmp_path / "ok.tsv", "a\tb\n")
    with pytest.raises(ValueError, match="max_rows"):
        read_pairs_tsv(path, max_rows=0)


def test_read_labeled_tsv(tmp_path):
    path = write(tmp_path / "sst.tsv", "sentence\tlabel\ngood fun \t1\ndull\t0\n")
    assert read_labeled_tsv(path) == [("good fun ", 1), ("dull", 0)]
    assert read_labeled_tsv(path, max_rows=1) == [("good fun ", 1)]
    reordered = write(tmp_path / "glue.tsv", "index\tlabel\tsentence\n0\t2\tmeh\n")
    assert read_labeled_tsv(reordered) == [("meh", 2)]


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "empty"),
        ("a fine film\t1\n", "line 1: expected a header naming the columns 'sentence' and 'label'"),
        ("sentence\tlabel\n", "header but no examples"),
        ("sentence\tlabel\nok\t1\nbad\tpositive\n", "line 3: the label must be an integer"),
        ("sentence\tlabel\nbad\t1.0\n", "line 2: the label must be an integer"),
        ("sentence\tlabel\nbad\t-1\n", "line 2: the label must be an integer class id >= 0"),
        ("sentence\tlabel\nok\t1\nno label\n", "line 3: expected 2 tab-separated columns"),
        ("sentence\tlabel\nok\t1\t7\n", "line 2: expected 2 tab-separated columns.*found 3"),
        ("sentence\tlabel\n\t1\n", "line 2: the sentence column is empty"),
        ("sentence\tlabel\tlabel\nok\t1\t1\n", "column 'label' twice"),
    ],
)
def test_read_labeled_errors_name_file_and_line(tmp_path, content, message):
    path = write(tmp_path / "bad.tsv", content)
    with pytest.raises(ValueError, match=message) as err:
        read_labeled_tsv(path)
    assert str(path) in str(err.value)


def test_read_labeled_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.tsv"):
        read_labeled_tsv(tmp_path / "missing.tsv")


def test_data_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MT_DATA_DIR", str(tmp_path))
    assert data_dir() == tmp_path
    monkeypatch.setenv("MT_DATA_DIR", str(tmp_path / "typo"))
    with pytest.raises(FileNotFoundError, match="typo"):
        data_dir()


def test_data_dir_default_and_absent(tmp_path, monkeypatch):
    monkeypatch.delenv("MT_DATA_DIR", raising=False)
    # Pretend the package lives in <tmp>/repo/minitransformer/data/, with no shared folder.
    monkeypatch.setattr(loaders, "__file__", str(tmp_path / "repo/minitransformer/data/x.py"))
    assert data_dir() is None
    with pytest.raises(FileNotFoundError, match="MT_DATA_DIR"):
        data_dir(required=True)
    (tmp_path / "shared" / "data").mkdir(parents=True)
    assert data_dir() == tmp_path / "shared" / "data"


def shared_file(*parts: str) -> Path:
    folder = data_dir()
    if folder is None or not folder.joinpath(*parts).is_file():
        pytest.skip(f"shared data file {'/'.join(parts)} is not present (set MT_DATA_DIR)")
    return folder.joinpath(*parts)


def count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def test_smoke_read_tatoeba():
    path = shared_file("tatoeba-eng-fra", "eng-fra.tsv")
    pairs = read_pairs_tsv(path)
    assert len(pairs) == count_lines(path)
    assert all(e.strip() and f.strip() for e, f in pairs)
    assert read_pairs_tsv(path, max_rows=10) == pairs[:10]
    # Tatoeba repeats English sentences with several translations: a keyed split keeps
    # each English sentence on one side.
    train, val = train_val_split(pairs, 0.1, seed=0, key=lambda p: p[0])
    assert len(train) + len(val) == len(pairs)
    assert not {e for e, _ in train} & {e for e, _ in val}


def test_smoke_read_sst2():
    path = shared_file("sst2", "train.tsv")
    examples = read_labeled_tsv(path)
    assert len(examples) == count_lines(path) - 1  # minus the header
    labels = {label for _, label in examples}
    assert labels == {0, 1}


# ---------------------------------------------------------------- splits


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 300), fraction=st.floats(0.01, 0.99), seed=seeds)
def test_split_is_disjoint_complete_and_deterministic(n, fraction, seed):
    items = list(range(n))
    train, val = train_val_split(items, fraction, seed)
    assert sorted(train + val) == items, "complete, and nothing twice"
    assert not set(train) & set(val)
    assert len(val) == min(max(math.floor(fraction * n + 0.5), 1), n - 1)
    assert train == sorted(train) and val == sorted(val), "original order kept"
    assert train_val_split(items, fraction, seed) == (train, val)


@settings(max_examples=40, deadline=None)
@given(keys=st.lists(st.integers(0, 15), min_size=2, max_size=80), seed=seeds)
def test_keyed_split_keeps_groups_together(keys, seed):
    if len(set(keys)) < 2:
        with pytest.raises(ValueError, match="distinct keys"):
            train_val_split(list(enumerate(keys)), 0.3, seed, key=lambda item: item[1])
        return
    items = list(enumerate(keys))
    train, val = train_val_split(items, 0.3, seed, key=lambda item: item[1])
    assert sorted(train + val) == items
    assert not {k for _, k in train} & {k for _, k in val}
    groups = len(set(keys))
    assert len({k for _, k in val}) == min(max(math.floor(0.3 * groups + 0.5), 1), groups - 1)


def test_split_seed_matters_and_errors():
    items = list(range(100))
    assert train_val_split(items, 0.2, 0) != train_val_split(items, 0.2, 1)
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="val_fraction"):
            train_val_split(items, bad, 0)
    with pytest.raises(ValueError, match="at least 2"):
        train_val_split([1], 0.5, 0)


# ---------------------------------------------------------------- batching

id_lists = st.lists(st.integers(0, 40), min_size=0, max_size=15)
corpora = st.lists(st.tuples(id_lists.filter(len), id_lists), min_size=1, max_size=60)


def check_row(ids_row, mask_row, expected, pad_id):
    """Row = expected ids then pad_id; mask True exactly on the expected part."""
    n = len(expected)
    assert ids_row[:n].tolist() == list(expected)
    assert (ids_row[n:] == pad_id).all()
    assert mask_row.tolist() == [True] * n + [False] * (len(mask_row) - n)


@settings(max_examples=60, deadline=None)
@given(
    corpus=corpora,
    batch_size=st.one_of(st.none(), st.integers(1, 8)),
    budget_rows=st.one_of(st.none(), st.integers(1, 6)),
    slack=st.integers(0, 15),
    bucket=st.booleans(),
    shuffle=st.booleans(),
    pool_size=st.integers(1, 64),
    seed=seeds,
)
def test_seq2seq_batches_hold_every_example_once_with_exact_padding(
    corpus, batch_size, budget_rows, slack, bucket, shuffle, pool_size, seed
):
    src, tgt = [s for s, _ in corpus], [t for _, t in corpus]
    # A token budget of a few longest rows, so that tight budgets get tested too.
    longest = max(max(len(s), len(t) + 1) for s, t in corpus)
    max_tokens = None if budget_rows is None else budget_rows * longest + slack
    if batch_size is None and max_tokens is None:
        batch_size = 4
    pad_id, bos_id, eos_id = 0, 41, 42
    options = dict(
        pad_id=pad_id,
        bos_id=bos_id,
        eos_id=eos_id,
        batch_size=batch_size,
        max_tokens=max_tokens,
        bucket=bucket,
        shuffle=shuffle,
        pool_size=pool_size,
        seed=seed,
    )
    batches = make_batches(src, tgt, **options)
    seen = np.concatenate([b.indices for b in batches])
    assert sorted(seen.tolist()) == list(range(len(corpus))), "each example exactly once"
    for b in batches:
        assert isinstance(b, Batch)
        assert b.src_ids.dtype == np.int64 and b.tgt_in.dtype == np.int64
        assert b.src_mask.dtype == bool and b.tgt_mask.dtype == bool
        assert b.tgt_in.shape == b.tgt_out.shape == b.tgt_mask.shape
        assert b.src_ids.shape == b.src_mask.shape and b.src_ids.shape[0] == b.size
        # No column is padding in every row: the width is the longest row.
        assert b.src_mask[:, -1].any() and b.tgt_mask[:, -1].any()
        if batch_size is not None:
            assert b.size <= batch_size
        if max_tokens is not None:
            assert b.size * max(b.src_ids.shape[1], b.tgt_in.shape[1]) <= max_tokens
        for row, i in enumerate(b.indices):
            check_row(b.src_ids[row], b.src_mask[row], src[i], pad_id)
            check_row(b.tgt_in[row], b.tgt_mask[row], [bos_id, *tgt[i]], pad_id)
            check_row(b.tgt_out[row], b.tgt_mask[row], [*tgt[i], eos_id], pad_id)
        assert b.num_src_tokens == sum(len(src[i]) for i in b.indices)
        assert b.num_tgt_tokens == sum(len(tgt[i]) + 1 for i in b.indices)
    again = make_batches(src, tgt, **options)
    assert [b.indices.tolist() for b in again] == [b.indices.tolist() for b in batches]


@settings(max_examples=40, deadline=None)
@given(
    corpus=st.lists(st.tuples(id_lists.filter(len), st.integers(0, 4)), min_size=1, max_size=60),
    batch_size=st.integers(1, 16),
    bucket=st.booleans(),
    seed=seeds,
)
def test_classification_batches(corpus, batch_size, bucket, seed):
    seqs, labels = [s for s, _ in corpus], [y for _, y in corpus]
    batches = make_classification_batches(
        seqs, labels, pad_id=3, batch_size=batch_size, bucket=bucket, seed=seed
    )
    assert sorted(np.concatenate([b.indices for b in batches]).tolist()) == list(range(len(seqs)))
    for b in batches:
        assert isinstance(b, ClassificationBatch)
        assert b.ids.dtype == np.int64 and b.attention_mask.dtype == bool
        assert b.labels.dtype == np.int64 and b.labels.shape == (b.size,)
        assert b.size <= batch_size
        for row, i in enumerate(b.indices):
            check_row(b.ids[row], b.attention_mask[row], seqs[i], 3)
            assert b.labels[row] == labels[i]


def test_masks_come_from_lengths_not_from_pad_values():
    ids, mask = pad_sequences([[0, 5], [0]], pad_id=0)
    assert ids.tolist() == [[0, 5], [0, 0]]
    assert mask.tolist() == [[True, True], [True, False]]


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 50), min_size=1, max_size=300),
    batch_size=st.integers(1, 32),
    pool_size=st.integers(1, 400),
    seed=seeds,
)
def test_bucketing_bounds_the_padding(lengths, batch_size, pool_size, seed):
    """Sorted batches of size <= B from one pool waste at most B * (max - min) positions.

    Inside a pool the batches cover disjoint runs of the sorted lengths, and a batch
    pads each of its (<= B) rows by at most (its longest - its shortest); these
    spans add up to at most the pool's range of lengths.
    """
    batches = batch_indices(lengths, batch_size=batch_size, pool_size=pool_size, seed=seed)
    lengths = np.asarray(lengths)
    wasted = sum(len(b) * lengths[b].max() - lengths[b].sum() for b in batches)
    pools = math.ceil(len(lengths) / pool_size)
    assert wasted <= pools * batch_size * (lengths.max() - lengths.min())


def test_bucketing_lowers_padding_against_random_batches():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 60, size=2000)  # a corpus of very varied lengths
    seqs = [[7] * int(n) for n in lengths]
    labels = [0] * len(seqs)
    random = make_classification_batches(seqs, labels, pad_id=0, batch_size=32, bucket=False)
    bucketed = make_classification_batches(seqs, labels, pad_id=0, batch_size=32, bucket=True)
    assert padding_fraction(bucketed) < padding_fraction(random) / 5


def test_padding_fraction_counts_positions():
    # Sources of lengths 1 and 3: 6 positions, 4 real. Targets of lengths 0 and 2,
    # plus <s>/</s>: widths 3, 6 positions, 1 + 3 = 4 real. Overall 1 - 8/12.
    batch = collate_seq2seq([[5], [5, 6, 7]], [[], [8, 9]], pad_id=0, bos_id=1, eos_id=2)
    assert padding_fraction([batch]) == pytest.approx(1 - 8 / 12)
    clf = make_classification_batches([[4], [4, 4, 4]], [0, 1], pad_id=0, batch_size=2)
    assert padding_fraction(clf) == pytest.approx(1 - 4 / 6)
    with pytest.raises(ValueError, match="at least one"):
        padding_fraction([])
    with pytest.raises(TypeError, match="Batch"):
        padding_fraction([np.zeros(3)])


def test_unshuffled_bucketing_sorts_the_whole_pool():
    lengths = [5, 1, 4, 2, 3, 2]
    batches = batch_indices(lengths, batch_size=2, shuffle=False, pool_size=len(lengths))
    order = np.concatenate(batches)
    assert [lengths[i] for i in order] == sorted(lengths)


def test_token_budget_makes_short_batches_larger():
    lengths = [2] * 20 + [10] * 20
    batches = batch_indices(lengths, max_tokens=20, shuffle=False)
    sizes = {int(np.asarray(lengths)[b].max()): len(b) for b in batches}
    assert sizes == {2: 10, 10: 2}


@pytest.mark.parametrize("limits", [{"batch_size": 1}, {"max_tokens": 5}, {"max_tokens": 9}])
def test_limits_that_fit_one_example_give_batches_of_one(limits):
    batches = batch_indices([5, 5, 5, 5], **limits, seed=1)
    assert sorted(b.tolist() for b in batches) == [[0], [1], [2], [3]]


def test_batching_errors():
    with pytest.raises(ValueError, match="source sequence 1 is empty"):
        make_batches([[1], []], [[1], [1]], pad_id=0, bos_id=1, eos_id=2, batch_size=2)
    with pytest.raises(ValueError, match="example 1 needs 9 positions.*max_tokens=8"):
        batch_indices([3, 9], max_tokens=8)
    with pytest.raises(ValueError, match="batch_size, max_tokens"):
        batch_indices([3, 9])
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        batch_indices([3, 9], batch_size=0)
    with pytest.raises(ValueError, match="2 source sequences but 1 target"):
        make_batches([[1], [2]], [[1]], pad_id=0, bos_id=1, eos_id=2, batch_size=2)
    with pytest.raises(TypeError, match="integer token ids"):
        pad_sequences([[1.5, 2.0]], pad_id=0)
    with pytest.raises(ValueError, match="negative token id -3"):
        pad_sequences([[1, -3]], pad_id=0)
    with pytest.raises(ValueError, match="bos_id"):
        collate_seq2seq([[1]], [[1]], pad_id=0, bos_id=-1, eos_id=2)
    with pytest.raises(ValueError, match="labels must be integer class ids"):
        make_classification_batches([[1]], [-1], pad_id=0, batch_size=1)


def test_end_to_end_with_a_stand_in_tokenizer():
    """Synthetic text -> ids -> batches -> text again, with nothing lost or reordered."""
    pairs = synthetic_pairs("translation", 300, seed=2)
    src_tok = WhitespaceTokenizer([e for e, _ in pairs])
    tgt_tok = WhitespaceTokenizer([f for _, f in pairs])
    src = [src_tok.encode(e) for e, _ in pairs]
    tgt = [tgt_tok.encode(f) for _, f in pairs]
    batches = make_batches(src, tgt, pad_id=0, bos_id=1, eos_id=2, max_tokens=128, seed=4)
    for b in batches:
        for row, i in enumerate(b.indices):
            assert src_tok.decode(b.src_ids[row][b.src_mask[row]]) == pairs[i][0]
            assert tgt_tok.decode(b.tgt_out[row][b.tgt_mask[row]][:-1]) == pairs[i][1]
