"""Pretrained models: BERT built from our layers, loaded from real weights."""

from .bert import (
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    NewWeightsWarning,
    hf_to_ours,
    ours_to_hf,
)
from .hub import find_minilm_folder, minilm_folder

__all__ = [
    "BertConfig",
    "BertForSequenceClassification",
    "BertModel",
    "NewWeightsWarning",
    "find_minilm_folder",
    "hf_to_ours",
    "minilm_folder",
    "ours_to_hf",
]
