"""The training loop end to end, at toy sizes: files, learning, exact resume, loading.

Every run here is the real ``train()`` on a model of width 16 with one layer, for a
few dozen steps, so it finishes in seconds. What is checked:

- a run writes ``model.safetensors``, its tokenizer(s), ``train_state.safetensors``,
  ``history.json``, ``metrics.json``, ``loss.png`` and ``attention.png``;
- the training loss falls: the mean over the last steps is below the mean over the
  first ones (at the start a model predicts about uniformly, loss ~ ln(vocab));
- resuming is exact. A run is a deterministic function of (weights, Adam moments,
  schedule step, data position, random state), so a checkpoint that holds all of
  them continues bit for bit: N steps in one go == N/2 steps, stop, resume to N;
- a checkpoint loads back for inference, and refuses to load as the other kind.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from minitransformer import backend
from minitransformer.data import pad_sequences
from minitransformer.decoding import greedy_decode
from minitransformer.serialization import load, load_metadata
from minitransformer.train import TrainConfig, load_classifier, load_translator, train

STEPS = 40  # N: long enough for the loss to fall, short enough for seconds per run
HALF = STEPS // 2

CHECKPOINT_FILES = ("model.safetensors", "train_state.safetensors", "history.json")
REPORT_FILES = ("metrics.json", "loss.png", "attention.png")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def quiet(*_: object) -> None:
    """A ``log`` for train() that prints nothing."""


def tiny_config(out_dir: Path, **overrides: object) -> TrainConfig:
    """A run of a few seconds: width 16, one layer, STEPS steps, validation every HALF.

    Dropout stays on (0.1) so a resume must also restore the random state to match.
    """
    settings: dict = dict(
        num_examples=300,
        d_model=16,
        num_heads=2,
        num_layers=1,
        d_ff=32,
        max_len=12,
        batch_size=16,
        steps=STEPS,
        eval_every=HALF,
        eval_examples=16,
        warmup_steps=5,
        lr=1e-2,
        dropout=0.1,
        out_dir=str(out_dir),
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def write_pairs_tsv(path: Path) -> Path:
    """A small parallel corpus in the Tatoeba layout, english<TAB>french, no header.

    Word-for-word translation with a fixed dictionary: learnable in a few steps.
    """
    nouns = {"cat": "chat", "dog": "chien", "bird": "oiseau", "fish": "poisson", "horse": "cheval"}
    verbs = {"sees": "voit", "likes": "aime", "eats": "mange", "follows": "suit"}
    lines = [
        f"the {a} {v} the {b}\tle {nouns[a]} {verbs[v]} le {nouns[b]}"
        for a in nouns
        for v in verbs
        for b in nouns
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_sentiment_tsv(path: Path, n: int = 300, seed: int = 0) -> Path:
    """GLUE-style ``sentence<TAB>label`` rows: label 1 iff the sentence says "good".

    Filler words carry no signal, so the one word "good" / "bad" decides the class.
    """
    rng = random.Random(seed)
    filler = ["the", "film", "was", "plot", "acting", "really", "quite", "a", "story", "music"]
    rows = ["sentence\tlabel"]
    for _ in range(n):
        words = rng.choices(filler, k=rng.randint(3, 7))
        label = rng.randint(0, 1)
        words.insert(rng.randint(0, len(words)), "good" if label else "bad")
        rows.append(f"{' '.join(words)}\t{label}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def read_history(folder: Path) -> list[dict]:
    return json.loads((folder / "history.json").read_text(encoding="utf-8"))


def step_losses(history: list[dict]) -> list[float]:
    return [h["loss"] for h in history if "loss" in h]


def assert_loss_falls(history: list[dict], window: int = 5) -> None:
    losses = step_losses(history)
    first, last = np.mean(losses[:window]), np.mean(losses[-window:])
    assert last < first, f"training loss did not fall: first {window} {first}, last {last}"


def assert_run_folder(folder: Path, tokenizer_files: tuple[str, ...]) -> None:
    for name in CHECKPOINT_FILES + REPORT_FILES + tokenizer_files:
        assert (folder / name).is_file(), f"{name} missing from {folder}"
    for name in ("loss.png", "attention.png"):
        assert (folder / name).read_bytes()[:8] == PNG_SIGNATURE, f"{name} is not a PNG"


def assert_same_weights(folder_a: Path, folder_b: Path, file: str = "model.safetensors") -> None:
    a, b = load(folder_a / file), load(folder_b / file)
    assert a.keys() == b.keys()
    for name in a:
        assert np.array_equal(a[name], b[name]), f"{file}: {name} differs"


def without_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip drawing loss.png / attention.png: the slowest part of a tiny run, and
    irrelevant to what the resume tests compare (weights, moments, history)."""
    from minitransformer import plots

    monkeypatch.setattr(plots, "plot_training_history", lambda *a, **k: None)
    monkeypatch.setattr(plots, "plot_attention_heads", lambda *a, **k: None)


class Interrupted(Exception):
    """Stands in for Ctrl-C or a crash right after a checkpoint was written."""


def interrupt_after_first_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    from minitransformer.train import _Run

    original = _Run.save_checkpoint

    def save_then_stop(run: _Run) -> None:
        original(run)
        raise Interrupted(f"stopped after the checkpoint at step {run.step}")

    monkeypatch.setattr(_Run, "save_checkpoint", save_then_stop)


# ---------------------------------------------------------------- shared runs


@pytest.fixture(scope="module")
def translator_run(tmp_path_factory):
    """STEPS steps of the built-in synthetic translation task in one go."""
    out = tmp_path_factory.mktemp("translator")
    return train(tiny_config(out), progress=False, log=quiet)


@pytest.fixture(scope="module")
def sentiment_tsv(tmp_path_factory) -> Path:
    return write_sentiment_tsv(tmp_path_factory.mktemp("data") / "sentiment.tsv")


def classifier_config(out_dir: Path, data: Path, **overrides: object) -> TrainConfig:
    return tiny_config(out_dir, task="classify", data=str(data), val_fraction=0.2, **overrides)


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory, sentiment_tsv):
    out = tmp_path_factory.mktemp("classifier")
    return train(classifier_config(out, sentiment_tsv), progress=False, log=quiet)


# ---------------------------------------------------------------- end to end


def test_translate_synthetic_end_to_end(translator_run):
    run = translator_run
    assert_run_folder(run.out_dir, ("src_tokenizer.json", "tgt_tokenizer.json"))
    assert_loss_falls(run.history)
    metrics = json.loads((run.out_dir / "metrics.json").read_text())
    assert set(metrics) == {
        "step",
        "val_loss",
        "val_token_accuracy",
        "val_exact_match",
        "val_bleu",
        "train_seconds",
    }
    assert metrics["step"] == STEPS
    assert 0 <= metrics["val_token_accuracy"] <= 1 and 0 <= metrics["val_exact_match"] <= 1
    assert 0 <= metrics["val_bleu"] <= 100
    assert np.isfinite(metrics["val_loss"])
    # one entry per step, and a validation entry after every eval_every steps
    assert [h["step"] for h in run.history if "loss" in h] == list(range(1, STEPS + 1))
    assert [h["step"] for h in run.history if "val_loss" in h] == [HALF, STEPS]
    assert read_history(run.out_dir) == run.history
    assert len(run.samples) == 5 and all(len(s) == 3 for s in run.samples)


def test_translate_from_pairs_tsv_end_to_end(tmp_path):
    data = write_pairs_tsv(tmp_path / "eng-fra.tsv")
    config = tiny_config(
        tmp_path / "run", data=str(data), tokenizer="bpe", vocab_size=60, val_fraction=0.1
    )
    run = train(config, progress=False, log=quiet)
    assert_run_folder(run.out_dir, ("src_tokenizer.json", "tgt_tokenizer.json"))
    assert_loss_falls(run.history)
    # 100 pairs, 10 held out for validation: the samples are 5 of those English sentences
    english = {line.split("\t")[0] for line in data.read_text().splitlines()}
    assert len(run.samples) == 5
    assert {src for src, _, _ in run.samples} <= english


def test_split_keeps_every_translation_of_a_sentence_on_one_side(tmp_path):
    """Tatoeba lists many English sentences with several French translations. A split
    by pair would train on one translation and score the other: the held-out English
    must be unseen in training."""
    lines = write_pairs_tsv(tmp_path / "base.tsv").read_text().splitlines()
    doubled = [line for line in lines for line in (line, line.replace("le ", "un ", 1))]
    data = tmp_path / "eng-fra.tsv"
    data.write_text("\n".join(doubled) + "\n", encoding="utf-8")
    from minitransformer.train import _Run

    run = _Run(tiny_config(tmp_path / "run", data=str(data), val_fraction=0.2), resume=False)
    train_english = {src for src, _ in run.train_set}
    val_english = {src for src, _ in run.val_set}
    assert len(run.train_set) + len(run.val_set) == len(doubled)
    assert val_english and not (train_english & val_english)
    assert len(run.val_set) == 2 * len(val_english)  # both translations held out together


def test_classify_end_to_end(classifier_run, sentiment_tsv):
    run = classifier_run
    assert_run_folder(run.out_dir, ("tokenizer.json",))
    assert_loss_falls(run.history)
    metrics = json.loads((run.out_dir / "metrics.json").read_text())
    assert set(metrics) == {"step", "val_loss", "val_accuracy", "train_seconds"}
    # the one word "good"/"bad" decides the label: the model must beat always guessing
    # the majority class of the file
    labels = [line.rsplit("\t", 1)[1] for line in sentiment_tsv.read_text().splitlines()[1:]]
    majority = max(Counter(labels).values()) / len(labels)
    assert metrics["val_accuracy"] > majority
    assert load_metadata(run.out_dir / "model.safetensors")["labels"] == ["0", "1"]


def test_classify_result_history_matches_history_json(classifier_run):
    assert classifier_run.history == read_history(classifier_run.out_dir)


# ---------------------------------------------------------------- checkpoints


def check_train_state(folder: Path, step: int) -> None:
    """train_state.safetensors holds the weights, both Adam moments of every
    parameter, and the step, schedule, data position and random state as metadata."""
    arrays = load(folder / "train_state.safetensors")
    meta = load_metadata(folder / "train_state.safetensors")
    weights = load(folder / "model.safetensors")
    assert meta["step"] == step
    assert meta["schedule"]["step_count"] == step
    assert {"epoch", "position", "rng", "history"} <= set(meta)
    assert meta["rng"]["cpu"]["state"], "no random generator state saved"
    assert [h["step"] for h in meta["history"] if "loss" in h] == list(range(1, step + 1))

    for name, w in weights.items():
        assert np.array_equal(arrays[f"model.{name}"], w), name
    optimizer = meta["optimizer"]
    param_ids = sorted(i for g in optimizer["param_groups"] for i in g["params"])
    assert param_ids == list(range(len(weights)))
    assert {int(i): s["step"] for i, s in optimizer["state"].items()} == dict.fromkeys(
        param_ids, step
    )
    for moment in ("exp_avg", "exp_avg_sq"):
        shapes = Counter(arrays[f"optimizer.state.{i}.{moment}"].shape for i in param_ids)
        assert shapes == Counter(w.shape for w in weights.values()), moment
        assert all(np.any(arrays[f"optimizer.state.{i}.{moment}"] != 0) for i in param_ids)


def test_checkpoint_holds_optimizer_state_and_step(translator_run):
    check_train_state(translator_run.out_dir, STEPS)


def test_checkpoint_of_classifier_holds_optimizer_state(classifier_run):
    check_train_state(classifier_run.out_dir, STEPS)


# ---------------------------------------------------------------- exact resume


def test_resume_after_interruption_is_bit_identical(translator_run, tmp_path, monkeypatch):
    """Stop right after the checkpoint at step N/2, resume the same config: the final
    weights, Adam moments and loss history equal those of the uninterrupted run."""
    config = tiny_config(tmp_path)
    with monkeypatch.context() as patch:
        interrupt_after_first_checkpoint(patch)
        with pytest.raises(Interrupted):
            train(config, progress=False, log=quiet)
    check_train_state(tmp_path, HALF)

    without_plots(monkeypatch)
    resumed = train(config, resume=True, progress=False, log=quiet)
    assert resumed.history == translator_run.history
    assert_same_weights(translator_run.out_dir, tmp_path)
    assert_same_weights(translator_run.out_dir, tmp_path, "train_state.safetensors")


def test_classifier_resume_after_interruption_is_bit_identical(
    classifier_run, sentiment_tsv, tmp_path, monkeypatch
):
    config = classifier_config(tmp_path, sentiment_tsv)
    with monkeypatch.context() as patch:
        interrupt_after_first_checkpoint(patch)
        with pytest.raises(Interrupted):
            train(config, progress=False, log=quiet)
    without_plots(monkeypatch)
    train(config, resume=True, progress=False, log=quiet)
    assert read_history(tmp_path) == read_history(classifier_run.out_dir)
    assert_same_weights(classifier_run.out_dir, tmp_path, "train_state.safetensors")


def test_resume_with_more_steps_is_bit_identical(tmp_path, monkeypatch):
    """train(steps=N/2), then train(steps=N, resume=True) == train(steps=N).

    With the Noam schedule, lr(s) does not depend on the total number of steps, so
    the first half of the short run is the first half of the long one. N/2 falls
    inside the second epoch (285 training pairs / 16 = 18 batches per epoch), so the
    resumed run must restore the data position mid-epoch, then reshuffle for epoch 3.
    """
    without_plots(monkeypatch)
    one_go = train(tiny_config(tmp_path / "a", schedule="noam"), progress=False, log=quiet)
    train(tiny_config(tmp_path / "b", schedule="noam", steps=HALF), progress=False, log=quiet)
    meta = load_metadata(tmp_path / "b" / "train_state.safetensors")
    assert (meta["epoch"], meta["step"]) == (1, HALF)
    assert 0 < meta["position"] < HALF
    resumed = train(
        tiny_config(tmp_path / "b", schedule="noam"), resume=True, progress=False, log=quiet
    )
    assert resumed.history == one_go.history
    assert_same_weights(tmp_path / "a", tmp_path / "b")
    assert_same_weights(tmp_path / "a", tmp_path / "b", "train_state.safetensors")


def test_resume_with_more_steps_keeps_training_under_linear_schedule(tmp_path, monkeypatch):
    """The default schedule decays linearly to 0 at ``steps``. Asking a finished run
    for more steps must give those steps a learning rate above 0; else the extra
    steps silently change nothing."""
    without_plots(monkeypatch)
    train(tiny_config(tmp_path, steps=HALF), progress=False, log=quiet)
    before = load(tmp_path / "model.safetensors")
    resumed = train(tiny_config(tmp_path), resume=True, progress=False, log=quiet)
    new_steps = [h for h in resumed.history if "lr" in h and h["step"] > HALF]
    assert len(new_steps) == STEPS - HALF
    assert all(h["lr"] > 0 for h in new_steps[:-1])  # lr reaches 0 at the last step only
    after = load(tmp_path / "model.safetensors")
    assert any(not np.array_equal(before[k], after[k]) for k in before)


def test_resume_without_checkpoint_names_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_state.safetensors"):
        train(tiny_config(tmp_path), resume=True, progress=False, log=quiet)


# ---------------------------------------------------------------- loading for inference


def test_load_translator_round_trip(translator_run):
    """The loaded model has the saved weights and translates the validation samples
    exactly as the model in memory did at the end of training."""
    model, src_tok, tgt_tok = load_translator(translator_run.out_dir)
    saved = load(translator_run.out_dir / "model.safetensors")
    state = model.state_dict()
    assert state.keys() == saved.keys()
    for name, value in saved.items():
        assert np.array_equal(backend.to_numpy(state[name]), value), name
    assert not model.training

    sources = [s for s, _, _ in translator_run.samples]
    ids, _ = pad_sequences([src_tok.encode(s) for s in sources], pad_id=src_tok.pad_id)
    config = translator_run.out_dir / "model.safetensors"
    max_len = load_metadata(config)["train_config"]["max_len"] + 1
    hyps = greedy_decode(model, ids, tgt_tok.bos_id, tgt_tok.eos_id, max_len=max_len)
    assert [tgt_tok.decode(h) for h in hyps] == [hyp for _, _, hyp in translator_run.samples]


def test_load_classifier_round_trip(classifier_run):
    model, tok, labels = load_classifier(classifier_run.out_dir)
    saved = load(classifier_run.out_dir / "model.safetensors")
    for name, value in model.state_dict().items():
        assert np.array_equal(backend.to_numpy(value), saved[name]), name
    assert labels == ["0", "1"]
    assert len(tok) == model.config["vocab_size"]
    texts = [text for text, _, _ in classifier_run.samples]
    batch = tok(texts, padding=True)
    logits = model(batch["input_ids"], batch["attention_mask"]).numpy()
    predicted = [labels[k] for k in logits.argmax(axis=-1)]
    assert predicted == [pred for _, _, pred in classifier_run.samples]


def test_loading_the_wrong_kind_names_both_kinds(translator_run, classifier_run):
    with pytest.raises(ValueError, match="translator") as err:
        load_classifier(translator_run.out_dir)
    assert "classifier" in str(err.value)
    with pytest.raises(ValueError, match="classifier") as err:
        load_translator(classifier_run.out_dir)
    assert "translator" in str(err.value)


def test_loading_a_missing_folder_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_translator(tmp_path / "nowhere")
