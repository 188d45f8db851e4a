"""Readers for the two real-data formats the project uses, and where to find them.

- ``read_pairs_tsv``: parallel text, one ``source<TAB>target`` pair per line, no
  header, UTF-8 (the Tatoeba English-French file).
- ``read_labeled_tsv``: GLUE-style classification data, a header line naming the
  columns, among them ``sentence`` and ``label`` (an integer class id >= 0), then
  one example per line (GLUE SST-2).

The readers refuse to guess: a line with the wrong number of columns, an empty
field, a label that is not an integer, a missing header, bytes that are not UTF-8
or an empty file raise ``ValueError`` naming the file and the 1-based line number.
Text is returned exactly as written (only the line ending is removed).

The data itself is never copied into the repository: ``data_dir()`` finds the shared
folder from the ``MT_DATA_DIR`` environment variable or at ``<repo root>/../shared/data``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["data_dir", "read_pairs_tsv", "read_labeled_tsv"]

DATA_DIR_ENV = "MT_DATA_DIR"


def data_dir(required: bool = False) -> Path | None:
    """The shared data folder, or None when there is none (raise instead if ``required``).

    ``MT_DATA_DIR`` wins when set; it must then name an existing folder, since a typo
    there should not silently fall back to another folder.
    """
    from_env = os.environ.get(DATA_DIR_ENV)
    if from_env:
        path = Path(from_env).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"{DATA_DIR_ENV}={from_env!r} does not name an existing folder")
        return path
    # This file is <repo root>/minitransformer/data/loaders.py.
    default = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    if default.is_dir():
        return default
    if required:
        raise FileNotFoundError(
            f"no shared data folder: {DATA_DIR_ENV} is not set and {default} does not exist; "
            f"set {DATA_DIR_ENV} to the folder that holds sst2/ and tatoeba-eng-fra/"
        )
    return None


def _read_lines(path: str | os.PathLike, what: str) -> list[str]:
    """The lines of a UTF-8 text file, without their line endings; line N is item N - 1."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} file not found: {path}")
    if not path.is_file():
        raise ValueError(f"{what} path is not a regular file: {path}")
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]  # a UTF-8 byte-order mark, as some editors write
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise ValueError(f"{path}, line {line}: not valid UTF-8 ({err.reason})") from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the newline that ends the last line does not start another
    if not lines:
        raise ValueError(f"{path}: the file is empty")
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _split_row(path: str | os.PathLike, number: int, text: str, expected: int, layout: str):
    """The tab-separated columns of line ``number``, which must number ``expected``."""
    if not text.strip():
        raise ValueError(f"{path}, line {number}: the line is empty, expected {layout}")
    columns = text.split("\t")
    if len(columns) != expected:
        raise ValueError(
            f"{path}, line {number}: expected {expected} tab-separated columns ({layout}), "
            f"found {len(columns)}: {text[:80]!r}"
        )
    return columns


def _check_max_rows(max_rows: int | None) -> None:
    if max_rows is not None and (isinstance(max_rows, bool) or max_rows < 1):
        raise ValueError(f"max_rows must be a positive int or None, got {max_rows!r}")


def read_pairs_tsv(path: str | os.PathLike, max_rows: int | None = None) -> list[tuple[str, str]]:
    """``[(source, target), ...]`` from a ``source<TAB>target`` file without header.

    Reads the first ``max_rows`` pairs when given, else all of them.
    """
    _check_max_rows(max_rows)
    lines = _read_lines(path, "pairs")
    pairs: list[tuple[str, str]] = []
    for number, text in enumerate(lines[:max_rows], start=1):
        source, target = _split_row(path, number, text, 2, "source<TAB>target")
        for side, column in (("source", source), ("target", target)):
            if not column.strip():
                raise ValueError(f"{path}, line {number}: the {side} column is empty")
        pairs.append((source, target))
    return pairs


def read_labeled_tsv(path: str | os.PathLike, max_rows: int | None = None) -> list[tuple[str, int]]:
    """``[(sentence, label), ...]`` from a TSV file whose header names ``sentence`` and ``label``.

    Other columns are allowed and ignored (GLUE files sometimes add an ``index``), but
    every row must have as many columns as the header. Reads the first ``max_rows``
    examples when given, else all of them.
    """
    _check_max_rows(max_rows)
    lines = _read_lines(path, "labeled")
    header = lines[0].split("\t")
    if "sentence" not in header or "label" not in header:
        raise ValueError(
            f"{path}, line 1: expected a header naming the columns 'sentence' and 'label' "
            f"(e.g. 'sentence<TAB>label'), found {lines[0][:80]!r}"
        )
    for name in ("sentence", "label"):
        if header.count(name) > 1:
            raise ValueError(f"{path}, line 1: the header names the column {name!r} twice")
    sentence_col, label_col = header.index("sentence"), header.index("label")
    layout = "<TAB>".join(header)
    rows = lines[1:] if max_rows is None else lines[1 : 1 + max_rows]
    examples: list[tuple[str, int]] = []
    for number, text in enumerate(rows, start=2):
        columns = _split_row(path, number, text, len(header), layout)
        sentence, label_text = columns[sentence_col], columns[label_col]
        if not sentence.strip():
            raise ValueError(f"{path}, line {number}: the sentence column is empty")
        # Stricter than int(): no signs, spaces or underscores, ASCII digits only.
        if not re.fullmatch(r"[0-9]+", label_text):
            raise ValueError(
                f"{path}, line {number}: the label must be an integer class id >= 0, "
                f"found {label_text!r}"
            )
        examples.append((sentence, int(label_text)))
    if not examples:
        raise ValueError(f"{path}: the file has a header but no examples")
    return examples
