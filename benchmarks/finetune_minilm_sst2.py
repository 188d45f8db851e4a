"""Fine-tune all-MiniLM-L6-v2 for sentiment on SST-2; report held-out accuracy and time.

    model  = BertForSequenceClassification.from_pretrained(minilm, num_labels=2)
    loss   = cross_entropy(model(ids, mask, types), labels)          batch 32, <= 64 tokens
    AdamW(lr 5e-5, betas (0.9, 0.999), weight decay 0.01), gradients clipped to norm 1,
    lr: linear warmup over the first 10% of steps, then linear decay to 0

The data are the 67,349 labelled phrases of SST-2's ``train.tsv``. A seeded split
holds out ``--val-size`` of them (2,000 by default; identical phrases always fall on
the same side, so no held-out phrase was trained on), and the model trains on
``--train-size`` of the rest. Batches group phrases of similar length
(``batch_indices``, shuffled pools sorted by length) so that little of each batch is
padding. The target is at least 88% accuracy on the held-out phrases.

At the end the model and its tokenizer are saved with ``save_pretrained`` (about
90 MB) to ``--out`` (``benchmarks/results/minilm-sst2/`` by default, ignored by git);
the summary is printed as JSON and written with the per-step losses to
``results/<--name>.json``, the learning curve to ``results/<--name>.png``.

    python benchmarks/finetune_minilm_sst2.py --train-size 8000 --steps 250   # ~20 min
    python benchmarks/finetune_minilm_sst2.py --train-size 96 --steps 3 --val-size 64 \
        --out /tmp/smoke --name finetune_minilm_sst2_quick                    # a smoke run
    python benchmarks/finetune_minilm_sst2.py                                # one epoch

On a busy 2-core machine set ``OPENBLAS_NUM_THREADS=1``: two BLAS threads fighting
other processes for the cores make the many small matrix products of a BERT step
several times slower.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
import warnings
from pathlib import Path

import numpy as np

import minitransformer as mt
from minitransformer import functional as F
from minitransformer import optim
from minitransformer.data import batch_indices, data_dir, read_labeled_tsv, train_val_split
from minitransformer.pretrained import (
    BertForSequenceClassification,
    NewWeightsWarning,
    minilm_folder,
)
from minitransformer.tokenizers import WordPieceTokenizer

try:
    from benchmarks._common import RESULTS_DIR, save_results
except ImportError:  # run as a script: benchmarks/ itself is on sys.path
    from _common import RESULTS_DIR, save_results

TARGET = 0.88
LABELS = {0: "NEGATIVE", 1: "POSITIVE"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-size", type=int, default=None, help="phrases to train on")
    parser.add_argument("--val-size", type=int, default=2000, help="held-out phrases")
    parser.add_argument("--steps", type=int, default=None, help="updates (default: one epoch)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-5, help="peak learning rate")
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--warmup", type=float, default=0.1, help="fraction of steps")
    parser.add_argument("--max-length", type=int, default=64, help="tokens, [CLS] and [SEP] in")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "minilm-sst2")
    parser.add_argument("--name", default="finetune_minilm_sst2", help="results/<name>.json")
    args = parser.parse_args()
    for name in ("val_size", "batch_size", "max_length", "log_every"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1")
    if args.steps is not None and args.steps < 1:
        raise SystemExit("--steps must be >= 1")
    if not 0.0 <= args.warmup <= 1.0:
        raise SystemExit(f"--warmup is a fraction of the steps in [0, 1], got {args.warmup}")
    return args


def split(args: argparse.Namespace) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    examples = read_labeled_tsv(data_dir(required=True) / "sst2" / "train.tsv")
    if not 1 <= args.val_size < len(examples):
        raise SystemExit(f"--val-size must lie in [1, {len(examples) - 1}], got {args.val_size}")
    # the fraction applies to distinct phrases; round it so that val holds about val_size
    distinct = len({s for s, _ in examples})
    train, val = train_val_split(
        examples, val_fraction=args.val_size / distinct, seed=args.seed, key=lambda ex: ex[0]
    )
    rng = np.random.default_rng(args.seed)
    train = [train[i] for i in rng.permutation(len(train))]
    if args.train_size is not None:
        if not 1 <= args.train_size <= len(train):
            raise SystemExit(f"--train-size must lie in [1, {len(train)}], got {args.train_size}")
        train = train[: args.train_size]
    return train, val


def schedule_of_batches(lengths: list[int], batch_size: int, steps: int, seed: int) -> list:
    """``steps`` batches of indices: length-bucketed epochs, reshuffled each epoch."""
    batches: list[np.ndarray] = []
    epoch = 0
    while len(batches) < steps:
        batches += batch_indices(lengths, batch_size=batch_size, seed=seed + epoch)
        epoch += 1
    return batches[:steps]


def accuracy(model, tok, data, max_length: int, batch_size: int = 64) -> float:
    model.eval()
    order = np.argsort([len(s) for s, _ in data])  # similar lengths together: less padding
    correct = 0
    with mt.no_grad():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            enc = tok(
                [data[i][0] for i in idx], padding=True, truncation=True, max_length=max_length
            )
            logits = model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
            correct += int((logits.numpy().argmax(axis=1) == [data[i][1] for i in idx]).sum())
    return correct / len(data)


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def plot_curve(losses: list[float]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(range(1, len(losses) + 1), losses, lw=0.7, alpha=0.5, label="batch loss")
    window = max(1, len(losses) // 20)
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    ax.plot(np.arange(window, len(losses) + 1), smooth, lw=2, label=f"mean of {window}")
    ax.axhline(math.log(2), color="grey", ls="--", lw=1, label="log 2 (a coin toss)")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy")
    ax.set_title("all-MiniLM-L6-v2 fine-tuned on SST-2")
    ax.legend()
    fig.tight_layout()
    return fig


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    mt.manual_seed(args.seed)
    folder = minilm_folder()
    tok = WordPieceTokenizer.from_pretrained(folder)
    train, val = split(args)
    steps = args.steps or math.ceil(len(train) / args.batch_size)
    lengths = [min(len(tok.encode(s)), args.max_length) for s, _ in train]
    batches = schedule_of_batches(lengths, args.batch_size, steps, args.seed)
    print(
        f"{len(train)} training phrases (mean {np.mean(lengths):.1f} tokens), {len(val)} held "
        f"out; {steps} steps of {args.batch_size} = {steps * args.batch_size / len(train):.2f} "
        f"epochs; OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}",
        flush=True,
    )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NewWeightsWarning)  # the new head is the point
        model = BertForSequenceClassification.from_pretrained(folder, id2label=LABELS)
    opt = optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    schedule = optim.LinearWarmupDecay(
        opt, peak_lr=args.lr, warmup_steps=round(args.warmup * steps), total_steps=steps
    )

    losses, step_times, correct, seen = [], [], 0, 0
    train_started = time.perf_counter()
    model.train()
    for step, idx in enumerate(batches, start=1):
        t0 = time.perf_counter()
        schedule.step()
        enc = tok(
            [train[i][0] for i in idx], padding=True, truncation=True, max_length=args.max_length
        )
        labels = np.array([train[i][1] for i in idx])
        logits = model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
        loss = F.cross_entropy(logits, labels)
        loss.backward()
        optim.clip_grad_norm(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        step_times.append(time.perf_counter() - t0)
        losses.append(loss.item())
        correct += int((logits.numpy().argmax(axis=1) == labels).sum())
        seen += len(idx)
        if step % args.log_every == 0 or step == steps:
            elapsed = time.perf_counter() - train_started
            recent = losses[-args.log_every :]
            print(
                f"step {step:5d}/{steps}  lr {schedule.lr:.2e}  loss {np.mean(recent):.4f}  "
                f"train acc {correct / seen:.3f}  {elapsed:7.1f} s  "
                f"eta {elapsed / step * (steps - step):6.0f} s",
                flush=True,
            )
            correct = seen = 0
    train_seconds = time.perf_counter() - train_started

    eval_started = time.perf_counter()
    val_accuracy = accuracy(model, tok, val, args.max_length)
    eval_seconds = time.perf_counter() - eval_started

    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)
    tok.save_pretrained(args.out)
    summary = {
        "model": "all-MiniLM-L6-v2",
        "task": "SST-2 (held-out phrases of train.tsv)",
        "train_size": len(train),
        "val_size": len(val),
        "steps": steps,
        "batch_size": args.batch_size,
        "epochs": steps * args.batch_size / len(train),
        "peak_lr": args.lr,
        "weight_decay": args.weight_decay,
        "warmup_steps": round(args.warmup * steps),
        "max_length": args.max_length,
        "seed": args.seed,
        "val_accuracy": val_accuracy,
        "target": TARGET,
        "meets_target": val_accuracy >= TARGET,
        "final_train_loss": float(np.mean(losses[-args.log_every :])),
        "step_seconds_median": float(np.median(step_times)),
        "step_seconds_mean": float(np.mean(step_times)),
        "first_step_seconds": step_times[0],
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "wall_seconds": time.perf_counter() - started,
        "saved_to": str(args.out),
        "saved_bytes": folder_size(args.out),
        "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
    }
    save_results(args.name, [summary], plot_curve(losses), losses=losses)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
