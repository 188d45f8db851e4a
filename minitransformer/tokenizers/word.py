"""Word tokenizer: words and punctuation marks are tokens.

Pre-tokenisation is one regular expression, ``\\w+|[^\\w\\s]``: a token is a run of
letters, digits and underscores, or a single punctuation mark; whitespace only
separates tokens.

    "Don't run!" -> ["Don", "'", "t", "run", "!"]

The vocabulary is the special tokens ``<pad> <s> </s> <unk> [CLS]`` (ids 0-4) and
then the training words, most frequent first (ties in string order), keeping those
seen ``min_freq`` times or more, at most ``vocab_size`` tokens in all. Other words
become ``<unk>``.

``decode`` joins tokens with single spaces, so ``decode(encode(text)) == text`` for a
text of known tokens written with single spaces between them, and
``encode(decode(ids)) == ids`` for ids of non-special tokens.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from minitransformer.tokenizers.base import TrainedTokenizer, check_text, special_vocab

WORD_PATTERN = re.compile(r"\w+|[^\w\s]")


def split_words(text: str) -> list[str]:
    """Words and single punctuation marks of ``text``, in order."""
    return WORD_PATTERN.findall(text)


class WordTokenizer(TrainedTokenizer):
    """One token per word or punctuation mark. Build it with :meth:`train`."""

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int | None = None,
        min_freq: int = 1,
        lowercase: bool = False,
        *,
        add_bos: bool = False,
        add_eos: bool = False,
        add_cls: bool = False,
        model_max_length: int | None = None,
    ) -> WordTokenizer:
        """Count the words of ``texts`` and keep the frequent ones.

        Args:
            vocab_size: the most tokens to keep, special tokens included; None keeps
                every word seen ``min_freq`` times.
            min_freq: drop words seen fewer times.
            lowercase: lower-case text before training and encoding.
            add_bos, add_eos, add_cls: the special tokens ``encode`` adds by default.
        """
        n_special = len(special_vocab())
        if vocab_size is not None and vocab_size <= n_special:
            raise ValueError(
                f"vocab_size={vocab_size} leaves no room for words after the "
                f"{n_special} special tokens"
            )
        if min_freq < 1:
            raise ValueError(f"min_freq must be >= 1, got {min_freq}")
        counts: Counter[str] = Counter()
        for text in texts:
            text = check_text(text)
            counts.update(split_words(text.lower() if lowercase else text))
        # No special token matches the word pattern, so they cannot collide with words.
        ranked = sorted(
            (word for word, n in counts.items() if n >= min_freq),
            key=lambda word: (-counts[word], word),
        )
        if vocab_size is not None:
            ranked = ranked[: vocab_size - n_special]
        return cls(
            special_vocab() + ranked,
            add_bos=add_bos,
            add_eos=add_eos,
            add_cls=add_cls,
            lowercase=lowercase,
            model_max_length=model_max_length,
        )

    def tokenize(self, text: str) -> list[str]:
        text = check_text(text)
        return split_words(text.lower() if self.lowercase else text)

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return " ".join(tokens)

    def _state(self) -> dict[str, Any]:
        return {"vocab": self.vocab, **self._options()}

    @classmethod
    def _from_state(cls, state: dict[str, Any]) -> WordTokenizer:
        return cls(state.pop("vocab"), **state)
