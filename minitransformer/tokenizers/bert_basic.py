"""BERT's basic tokenizer: clean the text, then split it into words and punctuation.

The steps of Google's original ``tokenization.BasicTokenizer`` (and of the
``BertNormalizer`` + ``BertPreTokenizer`` of Hugging Face ``tokenizers``):

1. clean: drop NUL, U+FFFD and control characters (Unicode category C*, except tab,
   newline and carriage return); turn whitespace (space, tab, newline, carriage
   return, category Zs) into a space;
2. put spaces around every CJK ideograph, so each one is a word;
3. split on whitespace;
4. per word: lower-case it, and strip accents (decompose to NFD, drop the combining
   marks of category Mn) when ``strip_accents`` is True, or when it is None and
   ``do_lower_case`` is True;
5. split each word at punctuation: every punctuation character (ASCII symbols
   ``!"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~`` and every Unicode category P*) is a word
   of its own.

    "Héllo,  Ångström!" -> ["hello", ",", "angstrom", "!"]

Steps 1-2 act on single characters, so they run as one ``str.translate`` through a
table filled on demand; steps 4-5 depend on the word alone, so callers may cache them.
"""

from __future__ import annotations

import unicodedata

# CJK Unified Ideographs and their extensions, and the compatibility ideographs: the
# blocks BERT treats as one-character words. Hangul, Hiragana and Katakana are not here.
CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)


def is_whitespace(ch: str) -> bool:
    """Space, tab, newline, carriage return, or a Unicode space separator (Zs)."""
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def is_control(ch: str) -> bool:
    """A character of Unicode category C*, except tab, newline and carriage return."""
    return ch not in "\t\n\r" and unicodedata.category(ch).startswith("C")


def is_punctuation(ch: str) -> bool:
    """ASCII non-alphanumeric symbols (e.g. "$", "^", "`") or Unicode category P*."""
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def is_chinese_char(cp: int) -> bool:
    """Whether code point ``cp`` is a CJK ideograph (see ``CJK_RANGES``)."""
    return any(lo <= cp <= hi for lo, hi in CJK_RANGES)


def strip_accents(word: str) -> str:
    """Decompose (NFD) and drop the non-spacing marks: "Ångström" -> "Angstrom"."""
    return "".join(
        ch for ch in unicodedata.normalize("NFD", word) if unicodedata.category(ch) != "Mn"
    )


def split_on_punctuation(word: str) -> list[str]:
    """Cut ``word`` before and after each punctuation character: "don't" -> ["don", "'", "t"]."""
    pieces: list[str] = []
    current: list[str] = []
    for ch in word:
        if is_punctuation(ch):
            if current:
                pieces.append("".join(current))
                current = []
            pieces.append(ch)
        else:
            current.append(ch)
    if current:
        pieces.append("".join(current))
    return pieces


class _CleanTable(dict):
    """``str.translate`` table for steps 1-2, filled the first time a character is seen."""

    def __init__(self, split_chinese: bool) -> None:
        super().__init__()
        self.split_chinese = split_chinese

    def __missing__(self, cp: int) -> str | None:
        ch = chr(cp)
        if cp == 0 or cp == 0xFFFD or is_control(ch):
            out = None
        elif is_whitespace(ch):
            out = " "
        elif self.split_chinese and is_chinese_char(cp):
            out = f" {ch} "
        else:
            out = ch
        self[cp] = out
        return out


class BasicTokenizer:
    """Steps 1-5 above.

    Args:
        do_lower_case: lower-case every word.
        strip_accents: strip accents; None means "if ``do_lower_case``" (as in BERT).
        tokenize_chinese_chars: make every CJK ideograph a word of its own.
    """

    def __init__(
        self,
        do_lower_case: bool = True,
        strip_accents: bool | None = None,
        tokenize_chinese_chars: bool = True,
    ) -> None:
        self.do_lower_case = do_lower_case
        self.strip_accents = strip_accents
        self.tokenize_chinese_chars = tokenize_chinese_chars
        self._table = _CleanTable(tokenize_chinese_chars)

    def clean(self, text: str) -> str:
        """Steps 1-2: drop invalid and control characters, space out CJK ideographs."""
        return text.translate(self._table)

    def split_word(self, word: str) -> list[str]:
        """Steps 4-5 for one whitespace-free word."""
        if self.do_lower_case:
            # Character by character, as the tokenizers library does: str.lower() on the
            # whole word would also apply Greek final-sigma context (ΟΔΟΣ -> οδος).
            word = word.lower() if word.isascii() else "".join(ch.lower() for ch in word)
        if self.strip_accents or (self.strip_accents is None and self.do_lower_case):
            word = strip_accents(word)
        return split_on_punctuation(word)

    def tokenize(self, text: str) -> list[str]:
        """All five steps: text -> words and punctuation marks."""
        return [piece for word in self.clean(text).split() for piece in self.split_word(word)]
