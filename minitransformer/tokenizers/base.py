"""What every tokenizer shares: a vocabulary, special tokens, batching and a file format.

A tokenizer maps text to integer ids and back:

    encode:  text --tokenize--> ["tok", "en", "s"] --vocabulary--> [17, 4, 9]
    decode:  [17, 4, 9] --vocabulary--> ["tok", "en", "s"] --join--> text

The vocabulary is a list: a token's id is its position. Tokens missing from it become
the unknown token. Special tokens have roles ("pad", "unk", "bos", "eos", "cls",
"sep", "mask") and are added around the text by :meth:`Tokenizer.build_inputs`
(``<s> ... </s>`` for a seq2seq target, ``[CLS] ...`` for a classifier, BERT's
``[CLS] A [SEP] B [SEP]`` ...).

Calling a tokenizer on a batch, ``tok(texts, padding=True, truncation=False,
max_length=None)``, returns a dict of int64 NumPy arrays of shape (B, L):
"input_ids" and "attention_mask" (1 = real token, 0 = padding), plus
"token_type_ids" (0 = first text, 1 = second) for tokenizers that take text pairs.
See :mod:`minitransformer.tokenizers.batch` for the padding and truncation rules.

``save(path)`` writes one JSON file, atomically (a temporary file in the same
folder, then ``os.replace``), so an interrupted save never leaves half a file;
``load(path)`` checks that the file is one of ours and of the right class.
"""

from __future__ import annotations

import json
import operator
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from minitransformer.tokenizers.batch import (
    check_padding,
    check_truncation,
    pad_batch,
    truncate_pair,
)

FILE_FORMAT = "minitransformer.tokenizer"
FILE_VERSION = 1

# The special tokens of the tokenizers trained here (Char, Word, BPE), in id order:
# padding is id 0, so a zero-initialised id array is all padding.
TRAINED_SPECIALS = {"pad": "<pad>", "bos": "<s>", "eos": "</s>", "unk": "<unk>", "cls": "[CLS]"}


class Tokenizer:
    """A vocabulary of tokens with special tokens; subclasses define how text is split.

    Args:
        vocab: the tokens; a token's id is its position. No duplicates.
        specials: role -> token string, e.g. ``{"pad": "<pad>", "unk": "<unk>"}``.
            "pad" and "unk" are required; every token must be in ``vocab``.
        model_max_length: the longest input the model accepts; used as ``max_length``
            when truncation or ``padding="max_length"`` is asked for without one.

    Subclasses implement :meth:`tokenize`, :meth:`convert_tokens_to_string`,
    :meth:`build_inputs` and the file state (``_state`` / ``_from_state``).
    """

    takes_pairs: ClassVar[bool] = False
    """Whether the tokenizer encodes text pairs and returns "token_type_ids"."""

    _registry: ClassVar[dict[str, type[Tokenizer]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Tokenizer._registry[cls.__name__] = cls

    def __init__(
        self,
        vocab: Sequence[str],
        specials: Mapping[str, str],
        model_max_length: int | None = None,
    ) -> None:
        if isinstance(vocab, str):
            raise TypeError("vocab must be a list of tokens, got a str")
        self._id_to_token: list[str] = list(vocab)
        self._token_to_id: dict[str, int] = {}
        for i, token in enumerate(self._id_to_token):
            if not isinstance(token, str):
                raise TypeError(f"vocabulary entry {i} must be a str, got {type(token).__name__}")
            if token in self._token_to_id:
                raise ValueError(
                    f"token {token!r} appears twice in the vocabulary "
                    f"(ids {self._token_to_id[token]} and {i})"
                )
            self._token_to_id[token] = i
        for role in ("pad", "unk"):
            if role not in specials:
                raise ValueError(f"a tokenizer needs a {role!r} special token")
        for role, token in specials.items():
            if token not in self._token_to_id:
                raise ValueError(
                    f"special token {token!r} ({role}) is not in the vocabulary of "
                    f"{len(self._id_to_token)} tokens"
                )
        self.specials: dict[str, str] = dict(specials)
        self._special_ids = frozenset(self._token_to_id[t] for t in self.specials.values())
        if model_max_length is not None:
            _check_positive("model_max_length", model_max_length)
        self.model_max_length = None if model_max_length is None else int(model_max_length)

    # ---- vocabulary ---------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._id_to_token)

    @property
    def vocab(self) -> list[str]:
        """The tokens in id order (a copy)."""
        return list(self._id_to_token)

    def token_to_id(self, token: str) -> int:
        """The id of ``token``, or the unknown token's id."""
        return self._token_to_id.get(token, self.unk_id)

    def id_to_token(self, token_id: int) -> str:
        token_id = operator.index(token_id)
        if not 0 <= token_id < len(self._id_to_token):
            raise IndexError(
                f"token id {token_id} is out of range for a vocabulary of "
                f"{len(self._id_to_token)} tokens"
            )
        return self._id_to_token[token_id]

    def _special_id(self, role: str) -> int:
        if role not in self.specials:
            raise AttributeError(f"{type(self).__name__} has no {role} token")
        return self._token_to_id[self.specials[role]]

    @property
    def pad_id(self) -> int:
        return self._special_id("pad")

    @property
    def unk_id(self) -> int:
        return self._special_id("unk")

    @property
    def bos_id(self) -> int:
        return self._special_id("bos")

    @property
    def eos_id(self) -> int:
        return self._special_id("eos")

    @property
    def cls_id(self) -> int:
        return self._special_id("cls")

    @property
    def sep_id(self) -> int:
        return self._special_id("sep")

    @property
    def mask_id(self) -> int:
        return self._special_id("mask")

    @property
    def special_ids(self) -> frozenset[int]:
        return self._special_ids

    # ---- what subclasses define ---------------------------------------------------

    def tokenize(self, text: str) -> list[str]:
        """Split ``text`` into tokens of the vocabulary (no special tokens added)."""
        raise NotImplementedError

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        """Join tokens back into text: the inverse of :meth:`tokenize`."""
        raise NotImplementedError

    def build_inputs(
        self,
        ids_a: list[int],
        ids_b: list[int] | None = None,
        *,
        add_bos: bool | None = None,
        add_eos: bool | None = None,
        add_cls: bool | None = None,
    ) -> tuple[list[int], list[int]]:
        """Add the special tokens around one text (or a pair): -> (ids, token_type_ids)."""
        raise NotImplementedError

    def _state(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def _from_state(cls, state: dict[str, Any]) -> Tokenizer:
        raise NotImplementedError

    # ---- encode / decode ----------------------------------------------------------

    def text_to_ids(self, text: str) -> list[int]:
        """The ids of ``text``'s tokens, without special tokens. Subclasses may cache."""
        return [self.token_to_id(token) for token in self.tokenize(check_text(text))]

    def encode(
        self,
        text: str,
        add_special_tokens: bool = True,
        *,
        add_bos: bool | None = None,
        add_eos: bool | None = None,
        add_cls: bool | None = None,
    ) -> list[int]:
        """Ids of ``text``, wrapped in the tokenizer's special tokens.

        ``add_special_tokens=False`` gives the bare ids. ``add_bos`` / ``add_eos`` /
        ``add_cls`` override, for this call, the tokenizer's own setting of whether to
        add ``<s>``, ``</s>`` and ``[CLS]`` (see :meth:`build_inputs`).
        """
        ids = self.text_to_ids(text)
        if not add_special_tokens:
            return ids
        return self.build_inputs(ids, add_bos=add_bos, add_eos=add_eos, add_cls=add_cls)[0]

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        tokens = []
        for position, token_id in enumerate(ids):
            try:
                index = operator.index(token_id)
            except TypeError:
                raise TypeError(
                    f"token ids must be integers; position {position} holds "
                    f"{type(token_id).__name__} {token_id!r}"
                ) from None
            tokens.append(self.id_to_token(index))
        return tokens

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """Text of a 1-D sequence of ids (list, tuple or NumPy array).

        ``skip_special_tokens`` drops every special token (padding, ``<s>``, the
        unknown token ...), as Hugging Face does.
        """
        tokens = self.convert_ids_to_tokens(ids)
        if skip_special_tokens:
            specials = set(self.specials.values())
            tokens = [t for t in tokens if t not in specials]
        return self.convert_tokens_to_string(tokens)

    def batch_decode(
        self, batch: Iterable[Iterable[int]], skip_special_tokens: bool = True
    ) -> list[str]:
        """:meth:`decode` of each row of a (B, L) array or list of id lists."""
        return [self.decode(row, skip_special_tokens) for row in batch]

    # ---- the batch call -----------------------------------------------------------

    def __call__(
        self,
        texts: str | Sequence[str],
        text_pair: str | Sequence[str] | None = None,
        *,
        padding: bool | str = True,
        truncation: bool | str = False,
        max_length: int | None = None,
        add_special_tokens: bool = True,
        add_bos: bool | None = None,
        add_eos: bool | None = None,
        add_cls: bool | None = None,
    ) -> dict[str, np.ndarray]:
        """Encode a batch into int64 arrays "input_ids" and "attention_mask" of shape (B, L).

        Args:
            texts: a list of texts; a single str is a batch of one.
            text_pair: second texts, one per text, for tokenizers that take pairs.
            padding: True / "longest" pads to the longest row; "max_length" to
                ``max_length``; False / "do_not_pad" requires rows of equal length.
            truncation: True / "longest_first", "only_first", "only_second" cut rows to
                ``max_length`` tokens (special tokens included and kept); False cuts nothing.
            max_length: the length for truncation and ``padding="max_length"``; defaults
                to ``model_max_length``. With ``padding=True`` and no truncation it is
                not used (as in Hugging Face).
            add_special_tokens, add_bos, add_eos, add_cls: as in :meth:`encode`.

        Returns "token_type_ids" too when the tokenizer takes pairs.
        """
        batch_a = _as_batch(texts, "texts")
        batch_b = None if text_pair is None else _as_batch(text_pair, "text_pair")
        if batch_b is not None and not self.takes_pairs:
            raise ValueError(
                f"{type(self).__name__} encodes single texts; text pairs are a "
                "WordPieceTokenizer feature"
            )
        if batch_b is not None and len(batch_b) != len(batch_a):
            raise ValueError(
                f"text_pair must have one text per text: got {len(batch_a)} texts and "
                f"{len(batch_b)} pairs"
            )
        pad_strategy = check_padding(padding)
        cut_strategy = check_truncation(truncation)
        if max_length is not None:
            _check_positive("max_length", max_length)
        elif cut_strategy != "do_not_truncate" or pad_strategy == "max_length":
            if self.model_max_length is None:
                raise ValueError(
                    f"truncation={truncation!r} / padding={padding!r} need max_length: "
                    f"{type(self).__name__} has no model_max_length"
                )
            max_length = self.model_max_length

        template = {"add_bos": add_bos, "add_eos": add_eos, "add_cls": add_cls}
        n_special = 0
        if add_special_tokens:
            empty_pair = None if batch_b is None else []
            n_special = len(self.build_inputs([], empty_pair, **template)[0])
        if cut_strategy != "do_not_truncate" and max_length < n_special:
            raise ValueError(
                f"max_length={max_length} leaves no room: {type(self).__name__} "
                f"adds {n_special} special tokens"
            )
        ids_rows, type_rows = [], []
        for i, text in enumerate(batch_a):
            ids_a = self.text_to_ids(text)
            ids_b = None if batch_b is None else self.text_to_ids(batch_b[i])
            if cut_strategy != "do_not_truncate":
                ids_a, ids_b = truncate_pair(ids_a, ids_b, max_length - n_special, cut_strategy)
            if add_special_tokens:
                ids, type_ids = self.build_inputs(ids_a, ids_b, **template)
            else:
                ids = ids_a + (ids_b or [])
                type_ids = [0] * len(ids_a) + [1] * len(ids_b or [])
            ids_rows.append(ids)
            type_rows.append(type_ids)

        input_ids, attention_mask = pad_batch(ids_rows, self.pad_id, pad_strategy, max_length)
        out = {"input_ids": input_ids}
        if self.takes_pairs:
            out["token_type_ids"] = pad_batch(type_rows, 0, pad_strategy, max_length)[0]
        out["attention_mask"] = attention_mask
        return out

    # ---- files --------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write the tokenizer to one JSON file, atomically."""
        payload = {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "class": type(self).__name__,
            "state": self._state(),
        }
        atomic_write_text(Path(path), json.dumps(payload, ensure_ascii=False, indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Tokenizer:
        """Read a file written by :meth:`save`.

        ``Tokenizer.load`` returns whichever class the file holds; ``BPETokenizer.load``
        insists on a BPE file. A missing file raises FileNotFoundError; a file that is
        not one of ours, or is damaged, raises ValueError.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer file at {path}")
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(
                f"{path} is not a tokenizer file: it is not valid JSON ({err})"
            ) from err
        if not isinstance(payload, dict) or payload.get("format") != FILE_FORMAT:
            raise ValueError(f"{path} is not a tokenizer file: no format {FILE_FORMAT!r}")
        if payload.get("version") != FILE_VERSION:
            raise ValueError(
                f"{path} has tokenizer file version {payload.get('version')!r}; "
                f"this code reads version {FILE_VERSION}"
            )
        name = payload.get("class")
        stored = Tokenizer._registry.get(name) if isinstance(name, str) else None
        if stored is None:
            raise ValueError(f"{path} holds an unknown tokenizer class {name!r}")
        if not issubclass(stored, cls):
            raise ValueError(f"{path} holds a {name}, not a {cls.__name__}")
        state = payload.get("state")
        if not isinstance(state, dict):
            raise ValueError(f"{path} is damaged: its 'state' is not an object")
        try:
            return stored._from_state(state)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path} holds a damaged {name}: {err!r}") from err

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={len(self)})"


class TrainedTokenizer(Tokenizer):
    """Base of the tokenizers trained here: Char, Word and BPE.

    Their special tokens are ``<pad> <s> </s> <unk> [CLS]`` with ids 0 to 4. The text is
    wrapped as ``[CLS]? <s>? text </s>?``: set ``add_bos`` / ``add_eos`` (a seq2seq
    target: ``<s> y1 ... yn </s>``) or ``add_cls`` (a classifier that pools ``[CLS]``)
    when building the tokenizer, or per call in ``encode`` / ``__call__``. All three
    default to False: ``encode`` gives the bare ids.
    """

    def __init__(
        self,
        vocab: Sequence[str],
        *,
        add_bos: bool = False,
        add_eos: bool = False,
        add_cls: bool = False,
        lowercase: bool = False,
        model_max_length: int | None = None,
    ) -> None:
        super().__init__(vocab, TRAINED_SPECIALS, model_max_length)
        for name, value in (("add_bos", add_bos), ("add_eos", add_eos), ("add_cls", add_cls)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
        self.add_bos = add_bos
        self.add_eos = add_eos
        self.add_cls = add_cls
        self.lowercase = bool(lowercase)

    def build_inputs(
        self,
        ids_a: list[int],
        ids_b: list[int] | None = None,
        *,
        add_bos: bool | None = None,
        add_eos: bool | None = None,
        add_cls: bool | None = None,
    ) -> tuple[list[int], list[int]]:
        """``[CLS]? <s>? ids </s>?``; each flag left as None uses the tokenizer's setting."""
        if ids_b is not None:
            raise ValueError(
                f"{type(self).__name__} encodes single texts; text pairs are a "
                "WordPieceTokenizer feature"
            )
        prefix = []
        if self.add_cls if add_cls is None else add_cls:
            prefix.append(self.cls_id)
        if self.add_bos if add_bos is None else add_bos:
            prefix.append(self.bos_id)
        suffix = [self.eos_id] if (self.add_eos if add_eos is None else add_eos) else []
        ids = prefix + list(ids_a) + suffix
        return ids, [0] * len(ids)

    def _options(self) -> dict[str, Any]:
        return {
            "add_bos": self.add_bos,
            "add_eos": self.add_eos,
            "add_cls": self.add_cls,
            "lowercase": self.lowercase,
            "model_max_length": self.model_max_length,
        }


def special_vocab() -> list[str]:
    """The first tokens of every trained vocabulary: ``<pad> <s> </s> <unk> [CLS]``."""
    return list(TRAINED_SPECIALS.values())


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``."""
    folder = path.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot save to {path}: folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")


def check_text(text: Any) -> str:
    """``text`` itself if it is a str; TypeError otherwise."""
    if not isinstance(text, str):
        raise TypeError(f"a text must be a str, got {type(text).__name__}")
    return text


def _as_batch(texts: Any, name: str) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    if not isinstance(texts, Sequence) and not isinstance(texts, np.ndarray):
        raise TypeError(f"{name} must be a str or a list of str, got {type(texts).__name__}")
    batch = list(texts)
    for i, text in enumerate(batch):
        if not isinstance(text, str):
            raise TypeError(f"{name}[{i}] must be a str, got {type(text).__name__}")
    return batch
