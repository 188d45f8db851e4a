"""The ``minitransformer`` command (also ``python -m minitransformer``).

    minitransformer train             (toy English -> pseudo-French, a few minutes)
    minitransformer train --task translate --data eng-fra.tsv --tokenizer bpe
    minitransformer train --task classify --data sst2/train.tsv --config sst2.toml
    minitransformer translate --model runs/translate-toy-translation "the cat sleeps"
    minitransformer classify --model runs/classify-train "a gripping film"
    echo "a dull film" | minitransformer classify --model path/to/bert-folder

Bad input (a missing file, a file of the wrong format, a checkpoint of the wrong
kind) prints one line on stderr and exits with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from . import __version__

# Flags that map one-to-one onto TrainConfig fields (type, help).
_TRAIN_FLAGS = {
    "data": (str, "training data file (TSV); default: the built-in synthetic task"),
    "synthetic": (str, "synthetic task when no --data: translation, copy or reverse"),
    "num_examples": (int, "number of synthetic examples"),
    "max_rows": (int, "read at most this many rows of --data"),
    "out_dir": (str, "output folder (default: runs/<task>-<data>)"),
    "tokenizer": (str, "char, word or bpe"),
    "vocab_size": (int, "BPE vocabulary size"),
    "max_len": (int, "longest token sequence kept"),
    "d_model": (int, "model width"),
    "num_heads": (int, "attention heads"),
    "num_layers": (int, "encoder (and decoder) layers"),
    "d_ff": (int, "feed-forward width"),
    "dropout": (float, "dropout probability"),
    "batch_size": (int, "sentences per batch"),
    "steps": (int, "optimizer steps"),
    "lr": (float, "peak learning rate"),
    "warmup_steps": (int, "learning-rate warmup steps"),
    "eval_every": (int, "validate and save every N steps"),
    "seed": (int, "random seed"),
    "device": (str, "cpu or cuda"),
    "pooling": (str, "classifier pooling: cls or mean"),
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="minitransformer", description="A from-scratch transformer framework."
    )
    p.add_argument("--version", action="version", version=f"minitransformer {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a translator or a classifier")
    t.add_argument("--task", choices=("translate", "classify"), default=None)
    t.add_argument("--config", help="a TOML file of settings (flags override it)")
    t.add_argument("--resume", action="store_true", help="continue the run in the output folder")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    for name, (typ, text) in _TRAIN_FLAGS.items():
        t.add_argument("--" + name.replace("_", "-"), dest=name, type=typ, default=None, help=text)

    for name, text in (
        ("translate", "translate sentences with a trained model"),
        ("classify", "classify sentences with a trained model"),
    ):
        s = sub.add_parser(name, help=text)
        s.add_argument(
            "--model",
            required=True,
            help="a training output folder (or a BERT folder for classify)",
        )
        s.add_argument(
            "texts", nargs="*", help="sentences; read from stdin, one per line, when none are given"
        )
        if name == "translate":
            s.add_argument("--beam", type=int, default=1, help="beam size (1: greedy)")
            s.add_argument("--max-len", type=int, default=None, help="longest output in tokens")
    return p


class CLIError(Exception):
    """A problem with the user's input: printed as one line, exit status 2."""


def _texts(args: argparse.Namespace) -> list[str]:
    texts = list(args.texts) or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not texts:
        raise CLIError("no text given: pass sentences as arguments or on stdin")
    return texts


def _cmd_train(args: argparse.Namespace) -> int:
    from .train import TrainConfig, train

    overrides = {
        name: getattr(args, name) for name in _TRAIN_FLAGS if getattr(args, name) is not None
    }
    if args.task is not None:
        overrides["task"] = args.task
    if args.config:
        config = TrainConfig.from_toml(args.config, **overrides)
    else:
        known = {f.name for f in fields(TrainConfig)}
        config = TrainConfig(**{k: v for k, v in overrides.items() if k in known})
    if config.data is not None and not Path(config.data).is_file():
        raise CLIError(f"no data file at {config.data}")
    result = train(config, resume=args.resume, progress=not args.no_progress)
    f = result.final
    print()
    if config.task == "translate":
        print(
            f"validation: exact match {f.get('val_exact_match', 0):.2%}, token accuracy "
            f"{f.get('val_token_accuracy', 0):.2%}, BLEU {f.get('val_bleu', 0):.1f}"
        )
        print("sample translations (source => reference | model):")
        for src, ref, hyp in result.samples:
            print(f"  {src}\n    => {ref}\n     | {hyp}")
    else:
        print(f"validation accuracy {f.get('val_accuracy', 0):.2%}")
        for text, gold, pred in result.samples:
            print(f"  [{gold} -> {pred}] {text}")
    print(
        f"trained in {result.seconds:.0f} s; "
        f"checkpoint, loss.png and attention.png in {result.out_dir}"
    )
    return 0


def _cmd_translate(args: argparse.Namespace) -> int:
    from . import backend
    from .data import pad_sequences
    from .decoding import beam_search, greedy_decode
    from .train import load_translator

    if args.beam < 1:
        raise CLIError(f"--beam must be at least 1, got {args.beam}")
    if args.max_len is not None and args.max_len < 1:
        raise CLIError(f"--max-len must be at least 1, got {args.max_len}")
    model, src_tok, tgt_tok = load_translator(args.model)
    # training kept sequences of up to max_len tokens; the positions allow max_len + 2
    trained_len = model.pos.max_len - 2
    max_len = trained_len if args.max_len is None else args.max_len
    for text in _texts(args):
        ids = src_tok.encode(text)[:trained_len] or [src_tok.unk_id]
        src, _ = pad_sequences([ids], pad_id=src_tok.pad_id)
        src = backend.as_array(src)
        if args.beam > 1:
            out = beam_search(
                model, src, tgt_tok.bos_id, tgt_tok.eos_id, beam_size=args.beam, max_len=max_len
            )
        else:
            out = greedy_decode(model, src, tgt_tok.bos_id, tgt_tok.eos_id, max_len=max_len)
        print(tgt_tok.decode(out[0]))
    return 0


def _cmd_classify(args: argparse.Namespace) -> int:
    from .pipeline import pipeline

    clf = pipeline("sentiment-analysis", model=args.model)
    texts = _texts(args)
    for text, r in zip(texts, clf(texts)):
        print(f"{r['label']}\t{r['score']:.4f}\t{text}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    commands = {"train": _cmd_train, "translate": _cmd_translate, "classify": _cmd_classify}
    try:
        return commands[args.command](args)
    except (
        CLIError,
        FileNotFoundError,
        ValueError,
        KeyError,
        IsADirectoryError,
        UnicodeDecodeError,
    ) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"minitransformer {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
