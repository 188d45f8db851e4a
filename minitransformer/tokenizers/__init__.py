"""Tokenizers: text to integer ids and back.

- :class:`CharTokenizer`: one token per character.
- :class:`WordTokenizer`: one token per word or punctuation mark.
- :class:`BPETokenizer`: byte-pair encoding learned from a corpus.
- :class:`WordPieceTokenizer`: BERT's WordPiece, read from a pretrained ``vocab.txt``.

All share :class:`Tokenizer`: ``encode``, ``decode``, ``len``, ``pad_id``, ``save`` /
``load`` and the batch call ``tok(texts, padding=True, truncation=False,
max_length=None)`` that returns int64 NumPy arrays "input_ids" and "attention_mask".
"""

from minitransformer.tokenizers.base import Tokenizer, TrainedTokenizer
from minitransformer.tokenizers.bert_basic import BasicTokenizer
from minitransformer.tokenizers.bpe import BPETokenizer
from minitransformer.tokenizers.char import CharTokenizer
from minitransformer.tokenizers.word import WordTokenizer
from minitransformer.tokenizers.wordpiece import WordPieceTokenizer

__all__ = [
    "Tokenizer",
    "TrainedTokenizer",
    "CharTokenizer",
    "WordTokenizer",
    "BPETokenizer",
    "BasicTokenizer",
    "WordPieceTokenizer",
]
