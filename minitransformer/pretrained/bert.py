"""BERT (Devlin et al. 2018) built from our own layers, loadable from real weights.

    E      = LayerNorm(W_tok[ids] + W_pos[0..L-1] + W_type[token_type_ids])   (learned positions)
    H      = Encoder(E, padding mask)      post-norm EncoderLayers, GELU, eps from the config
    pooled = tanh(H[:, 0] W_p + b_p)       the "pooler" on the [CLS] token

A BERT encoder layer *is* our post-norm ``EncoderLayer``; only the names differ.
``HF_TO_OURS`` below is the whole mapping from Hugging Face's checkpoint names to ours
(``*`` is the layer number); linear weights are transposed because Hugging Face stores
them (out, in) and we store (in, out).

``from_pretrained`` maps every tensor by name, checks every shape, and refuses a
checkpoint with a missing or unexpected tensor: nothing is silently left random.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .. import backend
from .. import functional as F
from ..autograd.tensor import Tensor
from ..nn.dropout import Dropout
from ..nn.embedding import Embedding
from ..nn.linear import Linear
from ..nn.module import Module
from ..nn.normalization import LayerNorm
from ..nn.transformer import Encoder
from ..serialization import load, save

__all__ = [
    "BertConfig",
    "BertModel",
    "BertForSequenceClassification",
    "HF_TO_OURS",
    "NewWeightsWarning",
    "hf_to_ours",
    "ours_to_hf",
]

# Hugging Face name -> (our name, transpose?)
HF_TO_OURS: dict[str, tuple[str, bool]] = {
    "embeddings.word_embeddings.weight": ("embeddings.word_embeddings.weight", False),
    "embeddings.position_embeddings.weight": ("embeddings.position_embeddings.weight", False),
    "embeddings.token_type_embeddings.weight": ("embeddings.token_type_embeddings.weight", False),
    "embeddings.LayerNorm.weight": ("embeddings.norm.weight", False),
    "embeddings.LayerNorm.bias": ("embeddings.norm.bias", False),
    "encoder.layer.*.attention.self.query.weight": (
        "encoder.layers.*.self_attn.q_proj.weight",
        True,
    ),
    "encoder.layer.*.attention.self.query.bias": ("encoder.layers.*.self_attn.q_proj.bias", False),
    "encoder.layer.*.attention.self.key.weight": ("encoder.layers.*.self_attn.k_proj.weight", True),
    "encoder.layer.*.attention.self.key.bias": ("encoder.layers.*.self_attn.k_proj.bias", False),
    "encoder.layer.*.attention.self.value.weight": (
        "encoder.layers.*.self_attn.v_proj.weight",
        True,
    ),
    "encoder.layer.*.attention.self.value.bias": ("encoder.layers.*.self_attn.v_proj.bias", False),
    "encoder.layer.*.attention.output.dense.weight": (
        "encoder.layers.*.self_attn.out_proj.weight",
        True,
    ),
    "encoder.layer.*.attention.output.dense.bias": (
        "encoder.layers.*.self_attn.out_proj.bias",
        False,
    ),
    "encoder.layer.*.attention.output.LayerNorm.weight": ("encoder.layers.*.norm1.weight", False),
    "encoder.layer.*.attention.output.LayerNorm.bias": ("encoder.layers.*.norm1.bias", False),
    "encoder.layer.*.intermediate.dense.weight": (
        "encoder.layers.*.feed_forward.linear1.weight",
        True,
    ),
    "encoder.layer.*.intermediate.dense.bias": (
        "encoder.layers.*.feed_forward.linear1.bias",
        False,
    ),
    "encoder.layer.*.output.dense.weight": ("encoder.layers.*.feed_forward.linear2.weight", True),
    "encoder.layer.*.output.dense.bias": ("encoder.layers.*.feed_forward.linear2.bias", False),
    "encoder.layer.*.output.LayerNorm.weight": ("encoder.layers.*.norm2.weight", False),
    "encoder.layer.*.output.LayerNorm.bias": ("encoder.layers.*.norm2.bias", False),
    "pooler.dense.weight": ("pooler.weight", True),
    "pooler.dense.bias": ("pooler.bias", False),
    "classifier.weight": ("classifier.weight", True),
    "classifier.bias": ("classifier.bias", False),
}

# Tensors a checkpoint may carry that are not weights (recomputed here).
IGNORED_KEYS = ("embeddings.position_ids",)

_ACTIVATIONS = {
    "gelu": "gelu",
    "relu": "relu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
}


class NewWeightsWarning(UserWarning):
    """Some weights of a model were not in the checkpoint and start from random values."""


def _pattern(name: str) -> re.Pattern:
    return re.compile("^" + re.escape(name).replace(r"\*", r"(\d+)") + "$")


_HF_PATTERNS = [(_pattern(hf), ours, t) for hf, (ours, t) in HF_TO_OURS.items()]
_OUR_PATTERNS = [(_pattern(ours), hf, t) for hf, (ours, t) in HF_TO_OURS.items()]


def _translate(name: str, patterns: list) -> tuple[str, bool] | None:
    for pattern, target, transpose in patterns:
        m = pattern.match(name)
        if m:
            return (target.replace("*", m.group(1)) if m.groups() else target), transpose
    return None


def hf_to_ours(state: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Hugging Face BERT tensors -> our names (transposing linear weights).

    Returns (mapped state, names that have no counterpart here). A ``bert.`` prefix
    (as in ``BertForSequenceClassification`` checkpoints) is stripped.
    """
    out, unknown = {}, []
    for name, value in state.items():
        key = name[len("bert.") :] if name.startswith("bert.") else name
        if key in IGNORED_KEYS:
            continue
        hit = _translate(key, _HF_PATTERNS)
        if hit is None:
            unknown.append(name)
            continue
        ours, transpose = hit
        out[ours] = value.T if transpose else value
    return out, unknown


def ours_to_hf(state: dict[str, Any]) -> dict[str, Any]:
    """Our names -> Hugging Face names (the inverse of ``hf_to_ours``)."""
    out = {}
    for name, value in state.items():
        hit = _translate(name, _OUR_PATTERNS)
        if hit is None:
            raise ValueError(f"no Hugging Face name for parameter {name!r}")
        hf, transpose = hit
        out[hf] = value.T if transpose else value
    return out


@dataclass
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    position_embedding_type: str = "absolute"
    num_labels: int = 2
    id2label: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> BertConfig:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no config.json at {path}")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from None
        if raw.get("model_type", "bert") != "bert":
            raise ValueError(f"{path} describes a {raw.get('model_type')!r} model, not 'bert'")
        known = {f.name for f in fields(cls)}
        config = cls(**{k: v for k, v in raw.items() if k in known})
        if config.position_embedding_type != "absolute":
            raise ValueError(
                f"position_embedding_type={config.position_embedding_type!r} is not supported "
                "(only learned absolute positions)"
            )
        if config.hidden_act not in _ACTIVATIONS:
            raise ValueError(
                f"hidden_act={config.hidden_act!r} is not supported ({sorted(_ACTIVATIONS)})"
            )
        if "id2label" in raw:
            config.num_labels = len(raw["id2label"])
        return config

    def to_json(self, path: str | os.PathLike, architecture: str = "BertModel") -> None:
        data = {"model_type": "bert", "architectures": [architecture], **asdict(self)}
        Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


class BertEmbeddings(Module):
    """E = LayerNorm(token + position + token-type embeddings), then dropout."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        c = config
        self.word_embeddings = Embedding(c.vocab_size, c.hidden_size, padding_idx=c.pad_token_id)
        self.position_embeddings = Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = Embedding(c.type_vocab_size, c.hidden_size)
        self.norm = LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = Dropout(c.hidden_dropout_prob)
        self.max_len = c.max_position_embeddings

    def forward(self, ids: Any, token_type_ids: Any) -> Tensor:
        # ids, token_type_ids (B, L) -> (B, L, hidden)
        length = ids.shape[1]
        if length > self.max_len:
            raise ValueError(
                f"sequence of length {length} exceeds max_position_embeddings={self.max_len}"
            )
        positions = backend.array_module(ids).arange(length)[None, :]  # (1, L)
        e = (
            self.word_embeddings(ids)
            + self.position_embeddings(positions)
            + self.token_type_embeddings(token_type_ids)
        )
        return self.dropout(self.norm(e))


def _as_ids(x: Any, name: str) -> Any:
    data = x.data if isinstance(x, Tensor) else backend.as_array(x)
    if data.ndim != 2:
        raise ValueError(f"{name} must be (batch, seq), got shape {tuple(data.shape)}")
    if data.dtype.kind not in "iub":
        raise TypeError(f"{name} must hold integers, got dtype {data.dtype}")
    return data


class BertModel(Module):
    """BERT's encoder: ``model(input_ids, attention_mask, token_type_ids)`` -> (B, L, hidden)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.embeddings = BertEmbeddings(c)
        self.encoder = Encoder(
            c.num_hidden_layers,
            c.hidden_size,
            c.num_attention_heads,
            c.intermediate_size,
            dropout=c.hidden_dropout_prob,
            activation=_ACTIVATIONS[c.hidden_act],
            norm_first=False,
            eps=c.layer_norm_eps,
        )
        self.pooler = Linear(c.hidden_size, c.hidden_size)
        self.last_pooled: Tensor | None = None

    def forward(
        self, input_ids: Any, attention_mask: Any = None, token_type_ids: Any = None
    ) -> Tensor:
        ids = _as_ids(input_ids, "input_ids")
        xp = backend.array_module(ids)
        real = (
            xp.ones(ids.shape, dtype=bool)
            if attention_mask is None
            else _as_ids(attention_mask, "attention_mask") != 0
        )
        types = (
            xp.zeros_like(ids)
            if token_type_ids is None
            else _as_ids(token_type_ids, "token_type_ids")
        )
        for name, arr in (("attention_mask", real), ("token_type_ids", types)):
            if arr.shape != ids.shape:
                raise ValueError(
                    f"{name} shape {tuple(arr.shape)} != input_ids shape {tuple(ids.shape)}"
                )
        h = self.encoder(self.embeddings(ids, types), real[:, None, None, :])  # (B, L, hidden)
        return h

    def pool(self, hidden: Tensor) -> Tensor:
        """BERT's pooler: tanh(W h_[CLS] + b), (B, hidden)."""
        return F.tanh(self.pooler(hidden[:, 0]))

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, **overrides: Any) -> BertModel:
        folder = Path(folder)
        config = BertConfig.from_json(folder / "config.json")
        for k, v in overrides.items():
            setattr(config, k, v)
        model = cls(config)
        model.eval()
        load_pretrained_weights(model, folder / "model.safetensors", allow_new=())
        return model

    def save_pretrained(self, folder: str | os.PathLike, tokenizer: Any = None) -> None:
        """Write config.json and model.safetensors with Hugging Face names (and the
        tokenizer's vocab.txt when given, so the folder alone feeds ``mt.pipeline``)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(folder)
        self.config.to_json(folder / "config.json")
        save(ours_to_hf(self.state_dict()), folder / "model.safetensors")


def load_pretrained_weights(model: Module, path: Path, allow_new: tuple[str, ...]) -> list[str]:
    """Load a Hugging Face BERT checkpoint into ``model``; return the names left new.

    Only names in ``allow_new`` (e.g. a fresh classification head) may be missing;
    any other missing, unexpected or mis-shaped tensor raises a ValueError naming it.
    """
    hf_state = load(path)
    mapped, unknown = hf_to_ours(hf_state)
    own = dict(model.named_parameters())
    unexpected = unknown + [k for k in mapped if k not in own]
    missing = [k for k in own if k not in mapped]
    new = [k for k in missing if k.split(".")[0] in allow_new]
    missing = [k for k in missing if k not in new]
    misshaped = [
        f"{k}: checkpoint {tuple(mapped[k].shape)} vs model {own[k].shape}"
        for k in own
        if k in mapped and tuple(mapped[k].shape) != own[k].shape
    ]
    if missing or unexpected or misshaped:
        problems = []
        if missing:
            problems.append("missing from the checkpoint: " + ", ".join(missing))
        if unexpected:
            problems.append("not used by the model: " + ", ".join(unexpected))
        if misshaped:
            problems.append("wrong shape: " + "; ".join(misshaped))
        raise ValueError(f"cannot load {path} into {type(model).__name__}: " + " | ".join(problems))
    for name, p in own.items():
        if name in mapped:
            p.data = backend.to_device(mapped[name], p.device).astype(p.dtype, copy=True)
    return new


class BertForSequenceClassification(Module):
    """BERT + dropout + a linear head on the pooled [CLS] vector -> logits (B, num_labels)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.bert = BertModel(config)
        self.dropout = Dropout(config.hidden_dropout_prob)
        self.classifier = Linear(config.hidden_size, config.num_labels)

    def forward(
        self, input_ids: Any, attention_mask: Any = None, token_type_ids: Any = None
    ) -> Tensor:
        hidden = self.bert(input_ids, attention_mask, token_type_ids)
        return self.classifier(self.dropout(self.bert.pool(hidden)))

    @property
    def labels(self) -> list[str]:
        id2label = self.config.id2label or {}
        return [
            str(id2label.get(str(i), id2label.get(i, f"LABEL_{i}")))
            for i in range(self.config.num_labels)
        ]

    def named_parameters(self, prefix: str = ""):
        # our names drop the "bert." level so they line up with HF_TO_OURS
        for name, p in super().named_parameters(prefix):
            yield (name[len("bert.") :] if name.startswith("bert.") else name), p

    @classmethod
    def from_pretrained(
        cls, folder: str | os.PathLike, num_labels: int | None = None, id2label: dict | None = None
    ) -> BertForSequenceClassification:
        """Load BERT weights; a classification head missing from the checkpoint starts new
        (a ``NewWeightsWarning`` names it), as in ``transformers``."""
        folder = Path(folder)
        config = BertConfig.from_json(folder / "config.json")
        if num_labels is not None:
            if num_labels < 1:
                raise ValueError(f"num_labels must be positive, got {num_labels}")
            if config.id2label and len(config.id2label) != num_labels:
                config.id2label = {}
            config.num_labels = num_labels
        if id2label is not None:
            config.id2label = {str(k): v for k, v in id2label.items()}
            config.num_labels = len(id2label)
        model = cls(config)
        model.eval()
        new = load_pretrained_weights(
            model, folder / "model.safetensors", allow_new=("classifier",)
        )
        model.new_weights = new
        if new:
            warnings.warn(
                f"weights newly initialised (not in {folder / 'model.safetensors'}): "
                + ", ".join(new)
                + ". Fine-tune the model before using its predictions.",
                NewWeightsWarning,
                stacklevel=2,
            )
        return model

    def save_pretrained(self, folder: str | os.PathLike, tokenizer: Any = None) -> None:
        """Write config.json (with the labels) and model.safetensors; with ``tokenizer``,
        also its vocab.txt so the folder alone feeds ``mt.pipeline``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(folder)
        if not self.config.id2label:
            self.config.id2label = {str(i): f"LABEL_{i}" for i in range(self.config.num_labels)}
        self.config.to_json(folder / "config.json", architecture="BertForSequenceClassification")
        hf = ours_to_hf(self.state_dict())
        # Hugging Face's BertForSequenceClassification keeps the encoder under "bert."
        hf = {(k if k.startswith("classifier.") else f"bert.{k}"): v for k, v in hf.items()}
        save(hf, folder / "model.safetensors")
