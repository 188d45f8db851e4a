"""WordPiece, BERT's tokenizer, reading a pretrained ``vocab.txt``.

Text goes through the basic tokenizer (:mod:`bert_basic`: clean, split CJK
ideographs, lower-case, strip accents, split punctuation), then every word is cut
greedily, longest match first, into vocabulary pieces; a piece that does not start
the word is looked up with the prefix "##":

    "unaffable" -> "un" + "##aff" + "##able"     (the longest prefix in the vocabulary,
                                                 then the longest "##" piece, ...)

A word that cannot be cut, or that has more than ``max_input_chars_per_word`` (100)
characters, becomes ``[UNK]`` as a whole.

Special tokens: ``encode`` gives ``[CLS] A [SEP]``; a pair gives
``[CLS] A [SEP] B [SEP]`` with ``token_type_ids`` 0 over ``[CLS] A [SEP]`` and 1 over
``B [SEP]``. As in Hugging Face, a special token written in the text (``"[SEP]"``,
``"[MASK]"``) is that token and is not tokenized further. ``decode`` joins the
pieces with spaces and glues each "##" piece to the one before: it gives the basic
tokenizer's words, lower-cased, with punctuation as separate words.

The ids equal those of Hugging Face's ``BertTokenizer`` (Fast) on the same
``vocab.txt``; ``tests/test_wordpiece.py`` checks every sentence of SST-2.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from minitransformer.tokenizers.base import Tokenizer, atomic_write_text, check_text
from minitransformer.tokenizers.bert_basic import BasicTokenizer

# Encodings of at most this many distinct words are cached.
CACHE_SIZE = 1 << 17

# Hugging Face writes int(1e30) as model_max_length to mean "no limit".
NO_LIMIT = 10**12

SPECIAL_ROLES = {
    "pad": "pad_token",
    "unk": "unk_token",
    "cls": "cls_token",
    "sep": "sep_token",
    "mask": "mask_token",
}
DEFAULT_SPECIALS = {
    "pad": "[PAD]",
    "unk": "[UNK]",
    "cls": "[CLS]",
    "sep": "[SEP]",
    "mask": "[MASK]",
}


def read_vocab(path: Path) -> list[str]:
    """One token per line, the id being the line number (as BERT's ``load_vocab``)."""
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


class WordPieceTokenizer(Tokenizer):
    """BERT's WordPiece tokenizer.

    Args:
        vocab: the tokens in id order (the lines of ``vocab.txt``).
        do_lower_case, strip_accents, tokenize_chinese_chars: the basic tokenizer's
            options (:class:`~minitransformer.tokenizers.bert_basic.BasicTokenizer`).
        model_max_length: the default ``max_length`` of truncation (512 for BERT).
        max_input_chars_per_word: longer words become ``[UNK]``.
        specials: role -> token; defaults to ``[PAD] [UNK] [CLS] [SEP] [MASK]``.

    Usually built with :meth:`from_pretrained`.
    """

    takes_pairs = True

    def __init__(
        self,
        vocab: Sequence[str],
        *,
        do_lower_case: bool = True,
        strip_accents: bool | None = None,
        tokenize_chinese_chars: bool = True,
        model_max_length: int | None = 512,
        max_input_chars_per_word: int = 100,
        specials: dict[str, str] | None = None,
    ) -> None:
        specials = dict(DEFAULT_SPECIALS if specials is None else specials)
        for role in ("cls", "sep"):
            if role not in specials:
                raise ValueError(f"WordPiece needs a {role!r} special token for [CLS] A [SEP]")
        super().__init__(vocab, specials, model_max_length)
        if max_input_chars_per_word < 1:
            raise ValueError(
                f"max_input_chars_per_word must be >= 1, got {max_input_chars_per_word}"
            )
        self.max_input_chars_per_word = max_input_chars_per_word
        self.basic = BasicTokenizer(do_lower_case, strip_accents, tokenize_chinese_chars)
        # Longest first, so that a special token containing another is matched whole.
        by_length = sorted(set(self.specials.values()), key=len, reverse=True)
        self._special_pattern = re.compile("(" + "|".join(map(re.escape, by_length)) + ")")
        self._cache: dict[str, list[int]] = {}

    # ---- loading ------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike) -> WordPieceTokenizer:
        """Read ``folder/vocab.txt`` and, if present, ``folder/tokenizer_config.json``.

        The config's ``do_lower_case``, ``strip_accents``, ``tokenize_chinese_chars``,
        ``model_max_length`` and special-token names are used; options this tokenizer
        does not implement (``do_basic_tokenize: false``, ``never_split``) raise
        ValueError rather than be ignored.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"no tokenizer folder at {folder}")
        vocab_path = folder / "vocab.txt"
        if not vocab_path.is_file():
            raise FileNotFoundError(f"{folder} has no vocab.txt")
        config: dict[str, Any] = {}
        config_path = folder / "tokenizer_config.json"
        if config_path.is_file():
            try:
                config = json.loads(config_path.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                raise ValueError(f"{config_path} is not valid JSON ({err})") from err
            if not isinstance(config, dict):
                raise ValueError(f"{config_path} must hold a JSON object")
        if config.get("do_basic_tokenize", True) is not True:
            raise ValueError(f"{config_path}: do_basic_tokenize=false is not supported")
        if config.get("never_split"):
            raise ValueError(f"{config_path}: never_split is not supported")
        specials = dict(DEFAULT_SPECIALS)
        for role, key in SPECIAL_ROLES.items():
            token = config.get(key)
            if isinstance(token, dict):  # an AddedToken written as {"content": ...}
                token = token.get("content")
            if isinstance(token, str):
                specials[role] = token
        max_len = config.get("model_max_length", 512)
        return cls(
            read_vocab(vocab_path),
            do_lower_case=bool(config.get("do_lower_case", True)),
            strip_accents=config.get("strip_accents"),
            tokenize_chinese_chars=bool(config.get("tokenize_chinese_chars", True)),
            model_max_length=None if max_len is None or max_len >= NO_LIMIT else int(max_len),
            specials=specials,
        )

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """Write ``vocab.txt`` and ``tokenizer_config.json`` into ``folder`` (created if needed)."""
        for i, token in enumerate(self._id_to_token):
            if "\n" in token or "\r" in token:
                raise ValueError(f"token {i} {token!r} has a line break: vocab.txt cannot hold it")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / "vocab.txt", "".join(t + "\n" for t in self._id_to_token))
        config = {
            "tokenizer_class": "BertTokenizer",
            **self._config(),
            **{SPECIAL_ROLES[role]: token for role, token in self.specials.items()},
        }
        atomic_write_text(folder / "tokenizer_config.json", json.dumps(config, indent=1))

    def _config(self) -> dict[str, Any]:
        return {
            "do_lower_case": self.basic.do_lower_case,
            "strip_accents": self.basic.strip_accents,
            "tokenize_chinese_chars": self.basic.tokenize_chinese_chars,
            "model_max_length": self.model_max_length,
        }

    def _state(self) -> dict[str, Any]:
        return {
            "vocab": self.vocab,
            **self._config(),
            "max_input_chars_per_word": self.max_input_chars_per_word,
            "specials": self.specials,
        }

    @classmethod
    def _from_state(cls, state: dict[str, Any]) -> WordPieceTokenizer:
        return cls(state.pop("vocab"), **state)

    # ---- tokenizing ---------------------------------------------------------------

    def wordpiece(self, word: str) -> list[str]:
        """Greedy longest-match-first pieces of one word, or ``[UNK]``."""
        if len(word) > self.max_input_chars_per_word:
            return [self.specials["unk"]]
        pieces = []
        start = 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self._token_to_id:
                    break
                end -= 1
            else:  # no vocabulary piece starts here: the whole word is unknown
                return [self.specials["unk"]]
            pieces.append(piece)
            start = end
        return pieces

    def _segments(self, text: str) -> Iterable[tuple[str, bool]]:
        """Pieces of ``text`` between special tokens, each flagged "is a special token"."""
        for i, segment in enumerate(self._special_pattern.split(text)):
            if segment:
                yield segment, i % 2 == 1

    def _word_ids(self, word: str) -> list[int]:
        ids = self._cache.get(word)
        if ids is None:
            ids = [
                self._token_to_id[piece]
                for basic_word in self.basic.split_word(word)
                for piece in self.wordpiece(basic_word)
            ]
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            self._cache[word] = ids
        return ids

    def text_to_ids(self, text: str) -> list[int]:
        ids: list[int] = []
        for segment, is_special in self._segments(check_text(text)):
            if is_special:
                ids.append(self._token_to_id[segment])
                continue
            for word in self.basic.clean(segment).split():
                ids.extend(self._word_ids(word))
        return ids

    def tokenize(self, text: str) -> list[str]:
        return [self._id_to_token[i] for i in self.text_to_ids(text)]

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return " ".join(tokens).replace(" ##", "").strip()

    def build_inputs(
        self,
        ids_a: list[int],
        ids_b: list[int] | None = None,
        *,
        add_bos: bool | None = None,
        add_eos: bool | None = None,
        add_cls: bool | None = None,
    ) -> tuple[list[int], list[int]]:
        """``[CLS] A [SEP]`` or ``[CLS] A [SEP] B [SEP]``, with token types 0 (A) and 1 (B)."""
        for name, value in (("add_bos", add_bos), ("add_eos", add_eos), ("add_cls", add_cls)):
            if value is not None:
                raise ValueError(
                    f"WordPieceTokenizer always uses BERT's [CLS] A [SEP] template; {name} "
                    "is not an option (add_special_tokens=False gives the bare ids)"
                )
        ids = [self.cls_id, *ids_a, self.sep_id]
        type_ids = [0] * len(ids)
        if ids_b is not None:
            ids += [*ids_b, self.sep_id]
            type_ids += [1] * (len(ids_b) + 1)
        return ids, type_ids
