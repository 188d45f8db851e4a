"""Character tokenizer: every character is a token.

    "Run!" -> ["R", "u", "n", "!"] -> [ids]

The vocabulary is the special tokens ``<pad> <s> </s> <unk> [CLS]`` (ids 0-4)
followed by the characters seen in training, in code-point order. Whitespace is an
ordinary character, so ``decode(encode(text)) == text`` exactly when every
character of ``text`` was seen in training; an unseen character becomes ``<unk>``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from minitransformer.tokenizers.base import TrainedTokenizer, check_text, special_vocab


class CharTokenizer(TrainedTokenizer):
    """One token per character. Build it with :meth:`train` (or from a vocabulary list)."""

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        *,
        min_freq: int = 1,
        lowercase: bool = False,
        add_bos: bool = False,
        add_eos: bool = False,
        add_cls: bool = False,
        model_max_length: int | None = None,
    ) -> CharTokenizer:
        """Collect the characters of ``texts`` seen at least ``min_freq`` times.

        ``lowercase`` lower-cases text before training and encoding. ``add_bos``,
        ``add_eos``, ``add_cls`` choose the special tokens ``encode`` adds by default.
        """
        if min_freq < 1:
            raise ValueError(f"min_freq must be >= 1, got {min_freq}")
        counts: Counter[str] = Counter()
        for text in texts:
            text = check_text(text)
            counts.update(text.lower() if lowercase else text)
        # The special tokens are longer than one character, so they cannot collide.
        vocab = special_vocab() + sorted(ch for ch, n in counts.items() if n >= min_freq)
        return cls(
            vocab,
            add_bos=add_bos,
            add_eos=add_eos,
            add_cls=add_cls,
            lowercase=lowercase,
            model_max_length=model_max_length,
        )

    def tokenize(self, text: str) -> list[str]:
        text = check_text(text)
        return list(text.lower() if self.lowercase else text)

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return "".join(tokens)

    def _state(self) -> dict[str, Any]:
        return {"vocab": self.vocab, **self._options()}

    @classmethod
    def _from_state(cls, state: dict[str, Any]) -> CharTokenizer:
        return cls(state.pop("vocab"), **state)
