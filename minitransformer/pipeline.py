"""``mt.pipeline``: text in, answers out, as in Hugging Face's ``pipeline``.

    clf = mt.pipeline("sentiment-analysis", model="path/to/finetuned")
    clf(["a gripping film", "dull"])  ->  [{"label": "POSITIVE", "score": 0.98}, ...]

    emb = mt.pipeline("sentence-embedding")            # all-MiniLM-L6-v2 by default
    emb(["a cat", "a kitten"])  ->  (2, 384) NumPy array, each row of unit length

``model`` is a BERT folder (``config.json``, ``model.safetensors``, ``vocab.txt``:
the pretrained model, or one fine-tuned and saved with ``save_pretrained``), or the
output folder of ``minitransformer train --task classify``.

Sentence embeddings are the mean of the last hidden states over real tokens (the
pooling in the model folder's ``1_Pooling/config.json``), L2-normalised:

    e = sum_j m_j h_j / sum_j m_j,     e <- e / ||e||
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import backend
from . import functional as F
from .autograd.tape import no_grad
from .autograd.tensor import Tensor

__all__ = ["pipeline", "mean_pool", "SentimentPipeline", "EmbeddingPipeline"]

TASKS = ("sentiment-analysis", "text-classification", "sentence-embedding", "feature-extraction")


def mean_pool(hidden: Tensor, attention_mask: Any) -> Tensor:
    """Mean of ``hidden`` (B, L, H) over positions where ``attention_mask`` (B, L) is 1."""
    m = backend.as_array(attention_mask, device=hidden.device).astype(hidden.dtype)[:, :, None]
    counts = m.sum(axis=1)  # (B, 1)
    return (hidden * Tensor(m)).sum(axis=1) / Tensor(backend.array_module(m).maximum(counts, 1))


def _texts(texts: str | Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"text {i} is a {type(t).__name__}, not a str")
    return texts


def _batches(n: int, lengths: list[int], batch_size: int):
    """Indices grouped by similar length (less padding), in batches of ``batch_size``."""
    order = sorted(range(n), key=lambda i: lengths[i])
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


class EmbeddingPipeline:
    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        max_length: int,
        pooling: str,
        normalize: bool,
        batch_size: int = 32,
        device: str = "cpu",
    ) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.max_length, self.pooling, self.normalize = max_length, pooling, normalize
        self.batch_size, self.device = batch_size, device

    def __call__(self, texts: str | Sequence[str]) -> np.ndarray:
        texts = _texts(texts)
        hidden_size = self.model.config.hidden_size
        out = np.zeros((len(texts), hidden_size), dtype=np.float32)
        if not texts:
            return out
        lengths = [len(t) for t in texts]
        with no_grad():
            for idx in _batches(len(texts), lengths, self.batch_size):
                enc = self.tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                )
                ids = backend.to_device(enc["input_ids"], self.device)
                mask = backend.to_device(enc["attention_mask"], self.device)
                types = backend.to_device(enc["token_type_ids"], self.device)
                h = self.model(ids, mask, types)
                e = h[:, 0] if self.pooling == "cls" else mean_pool(h, mask)
                vec = e.numpy().astype(np.float64)
                if self.normalize:
                    vec /= np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12)
                out[idx] = vec
        return out


class SentimentPipeline:
    """Softmax over a classifier's logits; the most probable label and its probability."""

    def __init__(self, predict_logits: Any, labels: list[str], batch_size: int = 32) -> None:
        self.predict_logits, self.labels, self.batch_size = predict_logits, labels, batch_size

    def __call__(self, texts: str | Sequence[str]) -> list[dict[str, Any]]:
        texts = _texts(texts)
        results: list[dict[str, Any]] = [{} for _ in texts]
        with no_grad():
            for idx in _batches(len(texts), [len(t) for t in texts], self.batch_size):
                probs = F.softmax(self.predict_logits([texts[i] for i in idx]), axis=-1).numpy()
                for row, i in zip(probs, idx):
                    k = int(row.argmax())
                    results[i] = {"label": self.labels[k], "score": float(row[k])}
        return results


def _load_bert_classifier(folder: Path, device: str, batch_size: int) -> SentimentPipeline:
    from .pretrained.bert import BertForSequenceClassification
    from .tokenizers import WordPieceTokenizer

    model = BertForSequenceClassification.from_pretrained(folder).to(device)
    model.eval()
    tok = WordPieceTokenizer.from_pretrained(folder)
    max_len = min(model.config.max_position_embeddings, 512)

    def logits(texts: list[str]) -> Tensor:
        enc = tok(texts, padding=True, truncation=True, max_length=max_len)
        return model(
            *(
                backend.to_device(enc[k], device)
                for k in ("input_ids", "attention_mask", "token_type_ids")
            )
        )

    return SentimentPipeline(logits, model.labels, batch_size)


def _load_scratch_classifier(folder: Path, device: str, batch_size: int) -> SentimentPipeline:
    from .train import load_classifier

    model, tok, labels = load_classifier(folder)
    model.to(device)
    model.eval()

    def logits(texts: list[str]) -> Tensor:
        enc = tok(
            texts, padding=True, truncation=True, max_length=model.config["max_len"], add_cls=True
        )
        return model(
            backend.to_device(enc["input_ids"], device),
            backend.to_device(enc["attention_mask"], device),
        )

    return SentimentPipeline(logits, labels, batch_size)


def pipeline(
    task: str,
    model: str | Path | None = None,
    device: str = "cpu",
    batch_size: int = 32,
    max_length: int | None = None,
) -> Any:
    """A callable for ``task`` ('sentiment-analysis' / 'text-classification' or
    'sentence-embedding' / 'feature-extraction') backed by ``model``."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    backend.check_device(device)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if model is None:
        if task in ("sentiment-analysis", "text-classification"):
            raise ValueError(
                "sentiment-analysis needs model=: a fine-tuned BERT folder or a "
                "`minitransformer train --task classify` output folder"
            )
        from .pretrained.hub import minilm_folder

        model = minilm_folder()
    path = Path(model)
    if not path.exists():
        raise FileNotFoundError(f"no model at {path}")
    folder = path if path.is_dir() else path.parent

    if task in ("sentiment-analysis", "text-classification"):
        if (folder / "config.json").is_file():
            return _load_bert_classifier(folder, device, batch_size)
        return _load_scratch_classifier(folder, device, batch_size)

    from .pretrained.bert import BertModel
    from .tokenizers import WordPieceTokenizer

    if not (folder / "config.json").is_file():
        raise ValueError(f"{folder} is not a BERT model folder (no config.json)")
    bert = BertModel.from_pretrained(folder).to(device)
    tok = WordPieceTokenizer.from_pretrained(folder)
    pooling, normalize = "mean", True
    pooling_config = folder / "1_Pooling" / "config.json"
    if pooling_config.is_file():
        cfg = json.loads(pooling_config.read_text(encoding="utf-8"))
        if cfg.get("pooling_mode_cls_token"):
            pooling = "cls"
    st_config = folder / "sentence_bert_config.json"
    if max_length is None:
        max_length = bert.config.max_position_embeddings
        if st_config.is_file():
            max_length = json.loads(st_config.read_text(encoding="utf-8")).get(
                "max_seq_length", max_length
            )
    if not 2 <= max_length <= bert.config.max_position_embeddings:
        raise ValueError(
            f"max_length={max_length} must lie in [2, {bert.config.max_position_embeddings}]"
        )
    return EmbeddingPipeline(bert, tok, int(max_length), pooling, normalize, batch_size, device)


def cosine_similarity_matrix(embeddings: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarity of row vectors (for unit rows, just E E^T)."""
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    unit = embeddings / np.maximum(norms, 1e-12)
    return unit @ unit.T
