"""The ``minitransformer`` command: train, translate, classify, and how it fails.

Most tests call ``minitransformer.cli.main(argv)`` in this process (fast, and the
printed text is captured); two run ``python -m minitransformer`` in a subprocess to
check the real entry point. The contract for bad input (a missing or malformed
file, a checkpoint of the wrong kind, a bad setting) is: exit status 2, exactly one
line on stderr that starts with "minitransformer", and no traceback.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_train import write_pairs_tsv, write_sentiment_tsv

import minitransformer
from minitransformer import backend
from minitransformer.cli import main
from minitransformer.data import pad_sequences, synthetic_pairs
from minitransformer.decoding import greedy_decode
from minitransformer.pipeline import pipeline
from minitransformer.serialization import load_metadata
from minitransformer.train import load_translator

STEPS, EVAL_EVERY = 30, 15

# A model of width 16 with one layer: a run takes seconds.
TINY_FLAGS = [
    "--d-model", "16",
    "--num-heads", "2",
    "--num-layers", "1",
    "--d-ff", "32",
    "--max-len", "12",
    "--batch-size", "16",
    "--lr", "0.01",
    "--warmup-steps", "5",
    "--no-progress",
]  # fmt: skip


def run_main(argv: list[str]) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``main(argv)`` in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def assert_one_line_error(code: int, stderr: str, *mentions: str) -> None:
    assert code == 2, f"exit status {code}, stderr {stderr!r}"
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {lines}"
    assert lines[0].startswith("minitransformer"), lines[0]
    for word in mentions:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"


# ---------------------------------------------------------------- trained folders


@pytest.fixture(scope="module")
def translator(tmp_path_factory) -> tuple[Path, int, str]:
    """``minitransformer train`` on the built-in toy translation task, flags only."""
    out = tmp_path_factory.mktemp("cli") / "translator"
    argv = ["train", "--num-examples", 300, "--steps", STEPS, "--eval-every", EVAL_EVERY]
    code, stdout, _ = run_main([*argv, *TINY_FLAGS, "--out-dir", out])
    return out, code, stdout


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> tuple[Path, Path, int, str]:
    """``minitransformer train --config run.toml`` with flags that override the file."""
    root = tmp_path_factory.mktemp("cli")
    data = write_sentiment_tsv(root / "sentiment.tsv")
    config = root / "run.toml"
    config.write_text(
        "\n".join(
            [
                'task = "classify"',
                f'data = "{data.as_posix()}"',
                "val_fraction = 0.2",  # only in the file: must reach the run
                "d_model = 16",
                "num_heads = 2",
                "num_layers = 1",
                "d_ff = 32",
                "max_len = 12",
                "batch_size = 16",
                "lr = 0.01",
                "warmup_steps = 5",
                "steps = 1000",  # the flags below override these three
                "eval_every = 500",
                f'out_dir = "{(root / "from-file").as_posix()}"',
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    out = root / "classifier"
    argv = ["train", "--config", config, "--steps", 40, "--eval-every", 20, "--out-dir", out]
    code, stdout, _ = run_main([*argv, "--no-progress"])
    return out, root, code, stdout


# ---------------------------------------------------------------- train


def test_version_in_a_subprocess():
    done = subprocess.run(
        [sys.executable, "-m", "minitransformer", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"minitransformer {minitransformer.__version__}"


def test_train_with_flags(translator):
    out, code, stdout = translator
    assert code == 0
    for name in ("model.safetensors", "src_tokenizer.json", "tgt_tokenizer.json", "loss.png"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["step"] == STEPS
    assert "validation: exact match" in stdout and "BLEU" in stdout
    assert str(out) in stdout  # where the checkpoint went
    train_config = load_metadata(out / "model.safetensors")["train_config"]
    assert (train_config["d_model"], train_config["num_layers"]) == (16, 1)


def test_train_config_file_with_flags_overriding(classifier):
    out, root, code, stdout = classifier
    assert code == 0
    assert not (root / "from-file").exists(), "--out-dir must override out_dir in the file"
    train_config = load_metadata(out / "model.safetensors")["train_config"]
    assert train_config["steps"] == 40 and train_config["eval_every"] == 20  # from flags
    assert train_config["val_fraction"] == 0.2 and train_config["task"] == "classify"  # file
    history = json.loads((out / "history.json").read_text())
    assert [h["step"] for h in history if "val_loss" in h] == [20, 40]
    assert "validation accuracy" in stdout


# ---------------------------------------------------------------- translate


def toy_sources(n: int = 3) -> list[str]:
    return [source for source, _ in synthetic_pairs("translation", n, seed=123)]


def library_translations(folder: Path, texts: list[str], max_len: int) -> list[str]:
    """What the CLI should print: greedy decoding with the loaded checkpoint."""
    model, src_tok, tgt_tok = load_translator(folder)
    lines = []
    for text in texts:
        ids, _ = pad_sequences([src_tok.encode(text)], pad_id=src_tok.pad_id)
        out = greedy_decode(model, ids, tgt_tok.bos_id, tgt_tok.eos_id, max_len=max_len)
        lines.append(tgt_tok.decode(out[0]))
    return lines


def test_translate_arguments(translator):
    folder = translator[0]
    texts = toy_sources()
    code, stdout, stderr = run_main(["translate", "--model", folder, "--max-len", 8, *texts])
    assert code == 0, stderr
    assert stdout.splitlines() == library_translations(folder, texts, max_len=8)


def test_translate_from_stdin(translator, monkeypatch):
    folder = translator[0]
    texts = toy_sources()
    # blank lines are skipped, every other line is one sentence
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{texts[0]}\n\n{texts[1]}\n{texts[2]}\n"))
    code, stdout, stderr = run_main(["translate", "--model", folder, "--max-len", 8])
    assert code == 0, stderr
    assert stdout.splitlines() == library_translations(folder, texts, max_len=8)


def test_translate_with_beam_search_prints_one_line_per_sentence(translator):
    texts = toy_sources()
    code, stdout, _ = run_main(["translate", "--model", translator[0], "--beam", 3, *texts])
    assert code == 0
    assert len(stdout.splitlines()) == len(texts)


# ---------------------------------------------------------------- classify


def test_classify(classifier):
    folder = classifier[0]
    texts = ["the film was good", "the plot was bad", "really good music"]
    code, stdout, stderr = run_main(["classify", "--model", folder, *texts])
    assert code == 0, stderr
    rows = [line.split("\t") for line in stdout.splitlines()]
    assert [text for _, _, text in rows] == texts
    expected = pipeline("sentiment-analysis", model=folder)(texts)
    assert [label for label, _, _ in rows] == [r["label"] for r in expected]
    # the printed score is the top softmax probability, so for 2 classes in [1/2, 1]
    for (_, score, _), r in zip(rows, expected):
        assert float(score) == pytest.approx(r["score"], abs=5e-5)
        assert 0.5 <= float(score) <= 1.0
    # the training data made "good" mean 1 and "bad" mean 0
    assert [label for label, _, _ in rows] == ["1", "0", "1"]


def test_classify_from_stdin(classifier, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("a good story\na bad story\n"))
    code, stdout, _ = run_main(["classify", "--model", classifier[0]])
    assert code == 0
    assert [line.split("\t")[0] for line in stdout.splitlines()] == ["1", "0"]


# ---------------------------------------------------------------- bad input


def test_missing_data_file(tmp_path):
    missing = tmp_path / "nope.tsv"
    code, _, stderr = run_main(["train", "--data", missing, "--out-dir", tmp_path / "run"])
    assert_one_line_error(code, stderr, "nope.tsv")


def test_pairs_file_with_three_columns(tmp_path):
    data = write_pairs_tsv(tmp_path / "pairs.tsv")
    lines = data.read_text().splitlines()
    lines[3] += "\textra"
    data.write_text("\n".join(lines) + "\n")
    argv = ["train", "--data", data, "--out-dir", tmp_path / "run", *TINY_FLAGS]
    code, _, stderr = run_main(argv)
    assert_one_line_error(code, stderr, "line 4", "3")


@pytest.mark.parametrize(
    "edit, mentions",
    [
        (lambda lines: lines[1:], ("line 1", "header")),  # the header is gone
        (lambda lines: [*lines[:5], lines[5] + "\t1", *lines[6:]], ("line 6", "3")),
    ],
    ids=["no-header", "three-columns"],
)
def test_classification_file_of_the_wrong_format(tmp_path, edit, mentions):
    data = write_sentiment_tsv(tmp_path / "sentiment.tsv", n=20)
    data.write_text("\n".join(edit(data.read_text().splitlines())) + "\n")
    argv = ["train", "--task", "classify", "--data", data, "--out-dir", tmp_path / "run"]
    code, _, stderr = run_main([*argv, *TINY_FLAGS])
    assert_one_line_error(code, stderr, *mentions)


def test_classify_with_a_translator_checkpoint(translator):
    code, _, stderr = run_main(["classify", "--model", translator[0], "a good film"])
    assert_one_line_error(code, stderr, "translator", "classifier")


def test_translate_with_a_classifier_checkpoint(classifier):
    code, _, stderr = run_main(["translate", "--model", classifier[0], "a good film"])
    assert_one_line_error(code, stderr, "translator", "classifier")


@pytest.mark.parametrize("command", ["translate", "classify"])
def test_nonexistent_model_folder(tmp_path, command):
    code, _, stderr = run_main([command, "--model", tmp_path / "no-such-model", "text"])
    assert_one_line_error(code, stderr, "no-such-model")


def test_nonexistent_model_folder_in_a_subprocess(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "minitransformer", "translate", "--model", tmp_path / "none", "x"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_one_line_error(done.returncode, done.stderr, "none")


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_unknown_toml_key(tmp_path):
    config = write_toml(tmp_path / "run.toml", "d_model = 16\nlearning_rate = 0.1\n")
    code, _, stderr = run_main(["train", "--config", config, "--out-dir", tmp_path / "run"])
    assert_one_line_error(code, stderr, "learning_rate")


def test_invalid_toml(tmp_path):
    config = write_toml(tmp_path / "run.toml", "d_model = = 16\n")
    code, _, stderr = run_main(["train", "--config", config, "--out-dir", tmp_path / "run"])
    assert_one_line_error(code, stderr, "run.toml")


def test_missing_config_file(tmp_path):
    config = tmp_path / "absent.toml"
    code, _, stderr = run_main(["train", "--config", config, "--out-dir", tmp_path / "run"])
    assert_one_line_error(code, stderr, "absent.toml")


def test_toml_value_of_the_wrong_type(tmp_path):
    config = write_toml(tmp_path / "run.toml", 'steps = "ten"\n')
    code, _, stderr = run_main(["train", "--config", config, "--out-dir", tmp_path / "run"])
    assert_one_line_error(code, stderr, "steps")


@pytest.mark.skipif(backend.gpu_available(), reason="a GPU is present, so cuda is valid here")
def test_unavailable_device(tmp_path):
    code, _, stderr = run_main(["train", "--device", "cuda", "--out-dir", tmp_path / "run"])
    assert_one_line_error(code, stderr, "cuda")


def test_empty_stdin(translator, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n  \n"))
    code, _, stderr = run_main(["translate", "--model", translator[0]])
    assert_one_line_error(code, stderr, "no text")


@pytest.fixture(autouse=True)
def _run_in_tmp(tmp_path, monkeypatch):
    """A default output folder (runs/...) would land in the working directory."""
    monkeypatch.chdir(tmp_path)
