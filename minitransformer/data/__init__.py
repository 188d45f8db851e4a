"""The data layer: synthetic tasks, file readers, splits and batching.

Everything works on plain Python strings and lists of token ids, so it does not
depend on which tokenizer produced them; batches are host-side NumPy arrays.

    pairs = synthetic_pairs("translation", 20_000, seed=0)      # [(english, french), ...]
    train, val = train_val_split(pairs, val_fraction=0.1, seed=0)
    src = [src_tok.encode(s) for s, _ in train]
    tgt = [tgt_tok.encode(t) for _, t in train]
    batches = make_batches(src, tgt, pad_id=0, bos_id=1, eos_id=2, max_tokens=2048, seed=epoch)
"""

from .batching import (
    Batch,
    ClassificationBatch,
    batch_indices,
    collate_classification,
    collate_seq2seq,
    make_batches,
    make_classification_batches,
    pad_sequences,
    padding_fraction,
)
from .loaders import data_dir, read_labeled_tsv, read_pairs_tsv
from .seeding import as_generator
from .split import train_val_split
from .synthetic import SYNTHETIC_TASKS, copy_pairs, reverse_pairs, sequence_count, synthetic_pairs
from .toy_translation import (
    toy_sentence_count,
    toy_translate,
    toy_translation_pairs,
    toy_vocabularies,
)

__all__ = [
    "Batch",
    "ClassificationBatch",
    "batch_indices",
    "collate_classification",
    "collate_seq2seq",
    "make_batches",
    "make_classification_batches",
    "pad_sequences",
    "padding_fraction",
    "data_dir",
    "read_labeled_tsv",
    "read_pairs_tsv",
    "as_generator",
    "train_val_split",
    "SYNTHETIC_TASKS",
    "copy_pairs",
    "reverse_pairs",
    "sequence_count",
    "synthetic_pairs",
    "toy_sentence_count",
    "toy_translate",
    "toy_translation_pairs",
    "toy_vocabularies",
]
