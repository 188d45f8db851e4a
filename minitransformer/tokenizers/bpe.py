"""Byte-pair encoding (Sennrich et al., 2016) over characters.

Pre-tokenisation. Whitespace is normalised (every run becomes one space, the ends
are stripped), one space is put in front, and the text is cut into words that carry
their leading space (GPT-2's marker; SentencePiece writes it "▁"), by the pattern
`` ?\\w+| ?[^\\w\\s]+`` (a word, or a run of punctuation):

    "Don't  run!" -> " Don't run!" -> [" Don", "'", "t", " run", "!"]

The pieces concatenate to ``" " + normalised text``, so ``decode`` is a plain join
with the first space dropped, and ``decode(encode(text))`` gives back the normalised
text exactly whenever every character was seen in training.

Training. Every word starts as its characters. Then, until the vocabulary has
``vocab_size`` tokens:

    count each adjacent pair (x, y) over all words, weighted by word frequency;
    take the most frequent pair (ties: the pair whose (x, y) strings sort first);
    replace every x y by the new token xy and record (x, y) as the next merge.

It stops early when the best pair is seen fewer than ``min_frequency`` times. A
pair whose join is already a token (say "a"+"bc" once "ab"+"c" made "abc") is
never merged, so each merge adds exactly one token.

Speed: a merge only changes the words that contain its pair, so instead of
recounting the corpus we subtract those words' old pairs and add their new ones,
and keep the counts in a heap with lazy deletion (an entry whose count is out of
date is re-pushed when it surfaces). A merge costs time in proportion to the words
it touches, not to the corpus.

Encoding a word: split it into characters, then repeatedly merge the adjacent pair
with the lowest merge rank (every occurrence, left to right) until no adjacent pair
is in the merge table. This replays training's merges in training order, so a
training word gets its training segmentation. Characters never seen in training
become ``<unk>`` and merge with nothing.
"""

from __future__ import annotations

import heapq
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from minitransformer.tokenizers.base import TrainedTokenizer, check_text, special_vocab

PRETOKEN_PATTERN = re.compile(r" ?\w+| ?[^\w\s]+")

# Encodings of at most this many distinct words are cached.
CACHE_SIZE = 1 << 17


def normalize(text: str, lowercase: bool = False) -> str:
    """Runs of whitespace become one space; the ends are stripped."""
    text = " ".join(text.split())
    return text.lower() if lowercase else text


def pre_tokenize(normalized: str) -> list[str]:
    """Words of normalised text, each with its leading space (the first one too)."""
    if not normalized:
        return []
    return PRETOKEN_PATTERN.findall(" " + normalized)


def merge_pair(symbols: list[int], left: int, right: int, merged: int) -> list[int]:
    """Replace each ``left right`` in ``symbols`` by ``merged``, scanning left to right."""
    out = []
    i, n = 0, len(symbols)
    while i < n:
        if i + 1 < n and symbols[i] == left and symbols[i + 1] == right:
            out.append(merged)
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return out


def learn_merges(
    word_counts: dict[str, int], vocab: Sequence[str], vocab_size: int, min_frequency: int
) -> tuple[list[str], list[tuple[str, str]]]:
    """Greedy BPE on ``word_counts``, starting from ``vocab`` (specials + characters).

    Returns the grown vocabulary and the merges in the order they were learned.
    """
    vocab = list(vocab)
    ids = {token: i for i, token in enumerate(vocab)}
    words = [[ids[ch] for ch in word] for word in word_counts]
    freqs = list(word_counts.values())

    pair_counts: dict[tuple[int, int], int] = defaultdict(int)
    pair_words: dict[tuple[int, int], set[int]] = defaultdict(set)
    for w, symbols in enumerate(words):
        for pair in zip(symbols, symbols[1:]):
            pair_counts[pair] += freqs[w]
            pair_words[pair].add(w)

    def entry(pair: tuple[int, int], count: int) -> tuple[int, str, str, int, int]:
        # heapq pops the smallest: highest count first, then the smaller strings.
        return (-count, vocab[pair[0]], vocab[pair[1]], pair[0], pair[1])

    heap = [entry(pair, count) for pair, count in pair_counts.items()]
    heapq.heapify(heap)
    merges: list[tuple[str, str]] = []
    banned: set[tuple[int, int]] = set()  # pairs whose join is already a token
    while heap and len(vocab) < vocab_size:
        neg_count, left, right, a, b = heapq.heappop(heap)
        if (a, b) in banned:
            continue
        count = pair_counts.get((a, b), 0)
        if count != -neg_count:
            if count > 0:
                heapq.heappush(heap, entry((a, b), count))
            continue
        if count < min_frequency:
            break
        if left + right in ids:
            banned.add((a, b))
            continue
        new = len(vocab)
        vocab.append(left + right)
        ids[left + right] = new
        merges.append((left, right))

        delta: dict[tuple[int, int], int] = defaultdict(int)
        for w in pair_words.pop((a, b)):
            old = words[w]
            merged = merge_pair(old, a, b, new)
            if len(merged) == len(old):
                continue  # the word lost this pair to an earlier merge
            for pair in zip(old, old[1:]):
                delta[pair] -= freqs[w]
            for pair in zip(merged, merged[1:]):
                delta[pair] += freqs[w]
                pair_words[pair].add(w)
            words[w] = merged
        for pair, change in delta.items():
            pair_counts[pair] += change
            if pair_counts[pair] == 0:
                del pair_counts[pair]
            elif change > 0 and pair not in banned:
                # Lower counts are fixed lazily when their old, higher entry surfaces.
                heapq.heappush(heap, entry(pair, pair_counts[pair]))
    return vocab, merges


class BPETokenizer(TrainedTokenizer):
    """Byte-pair encoding over characters with leading-space word markers.

    Args:
        vocab: the tokens, special tokens first (see :func:`special_vocab`).
        merges: ``(left, right)`` pairs in rank order; both sides and their join must be
            tokens of ``vocab``. A prefix of a trained merge table with the full
            vocabulary is valid: it shows the segmentation after that many merges.

    Build it with :meth:`train`. ``merges`` is the learned merge table.
    """

    def __init__(
        self,
        vocab: Sequence[str],
        merges: Iterable[Sequence[str]],
        *,
        add_bos: bool = False,
        add_eos: bool = False,
        add_cls: bool = False,
        lowercase: bool = False,
        model_max_length: int | None = None,
    ) -> None:
        super().__init__(
            vocab,
            add_bos=add_bos,
            add_eos=add_eos,
            add_cls=add_cls,
            lowercase=lowercase,
            model_max_length=model_max_length,
        )
        self._merges: list[tuple[str, str]] = []
        self._ranks: dict[tuple[int, int], tuple[int, int]] = {}
        made_by: dict[str, int] = {}
        for rank, merge in enumerate(merges):
            if isinstance(merge, str) or len(merge) != 2:
                raise ValueError(f"merge {rank} must be a (left, right) pair, got {merge!r}")
            left, right = merge
            for token in (left, right, left + right):
                if token not in self._token_to_id:
                    raise ValueError(
                        f"merge {rank} {merge!r} uses {token!r}, not in the vocabulary"
                    )
            if left + right in made_by:
                raise ValueError(
                    f"merges {made_by[left + right]} and {rank} both make {left + right!r}"
                )
            made_by[left + right] = rank
            self._merges.append((left, right))
            self._ranks[(self._token_to_id[left], self._token_to_id[right])] = (
                rank,
                self._token_to_id[left + right],
            )
        self._cache: dict[str, list[int]] = {}

    @property
    def merges(self) -> list[tuple[str, str]]:
        """The merge table, in the order the merges were learned (a copy)."""
        return list(self._merges)

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int = 8000,
        *,
        min_frequency: int = 2,
        lowercase: bool = False,
        add_bos: bool = False,
        add_eos: bool = False,
        add_cls: bool = False,
        model_max_length: int | None = None,
    ) -> BPETokenizer:
        """Learn merges from ``texts`` until the vocabulary has ``vocab_size`` tokens.

        Args:
            vocab_size: target size, special tokens and characters included; it may end
                smaller when no pair is seen ``min_frequency`` times any more.
            min_frequency: the fewest times a pair must occur to be merged.
            lowercase: lower-case text before training and encoding.
            add_bos, add_eos, add_cls: the special tokens ``encode`` adds by default.
        """
        if min_frequency < 1:
            raise ValueError(f"min_frequency must be >= 1, got {min_frequency}")
        word_counts: Counter[str] = Counter()
        for text in texts:
            word_counts.update(pre_tokenize(normalize(check_text(text), lowercase)))
        # A special token mixes letters and punctuation, which never share a word, so no
        # character or merge can spell one.
        alphabet = sorted({ch for word in word_counts for ch in word})
        base = special_vocab() + alphabet
        if vocab_size < len(base):
            raise ValueError(
                f"vocab_size={vocab_size} is smaller than the {len(special_vocab())} special "
                f"tokens plus the {len(alphabet)} characters of the corpus ({len(base)})"
            )
        vocab, merges = learn_merges(word_counts, base, vocab_size, min_frequency)
        return cls(
            vocab,
            merges,
            add_bos=add_bos,
            add_eos=add_eos,
            add_cls=add_cls,
            lowercase=lowercase,
            model_max_length=model_max_length,
        )

    def _encode_word(self, word: str) -> list[int]:
        ids = self._cache.get(word)
        if ids is not None:
            return ids
        unk = self.unk_id
        symbols = [self._token_to_id.get(ch, unk) for ch in word]
        while len(symbols) > 1:
            best = None
            for pair in zip(symbols, symbols[1:]):
                rank = self._ranks.get(pair)
                if rank is not None and (best is None or rank < best[0]):
                    best = (rank, pair)
            if best is None:
                break
            (_, merged), (left, right) = best
            symbols = merge_pair(symbols, left, right, merged)
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()
        self._cache[word] = symbols
        return symbols

    def text_to_ids(self, text: str) -> list[int]:
        ids: list[int] = []
        for word in pre_tokenize(normalize(check_text(text), self.lowercase)):
            ids.extend(self._encode_word(word))
        return ids

    def tokenize(self, text: str) -> list[str]:
        return [self._id_to_token[i] for i in self.text_to_ids(text)]

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        text = "".join(tokens)
        return text[1:] if text.startswith(" ") else text

    def _state(self) -> dict[str, Any]:
        return {"vocab": self.vocab, "merges": [list(m) for m in self._merges], **self._options()}

    @classmethod
    def _from_state(cls, state: dict[str, Any]) -> BPETokenizer:
        return cls(state.pop("vocab"), state.pop("merges"), **state)
