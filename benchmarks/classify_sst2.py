"""Sentiment on SST-2 from scratch: our TransformerClassifier against the same model in PyTorch.

- data: GLUE SST-2 ``train.tsv`` (67k lower-cased, tokenised phrases and sentences,
  label 0 negative / 1 positive) from the shared data folder, split by
  ``train_val_split(rows, ..., seed, key=text)`` into 3000 held-out distinct texts
  (``Setup.val_size``) and the rest (a text listed twice stays on one side);
- tokens: our ``WordTokenizer`` (words seen at least twice in the training part, a
  ``[CLS]`` in front), trained once; the batches (``make_classification_batches``,
  bucketed by length, reshuffled every epoch) are built once and fed to both;
- model: our ``nn.TransformerClassifier`` (post-norm encoder, ``[CLS]`` pooling), and
  the same from PyTorch parts: ``nn.Embedding`` * sqrt(d) + the same sinusoidal table
  + dropout, ``nn.TransformerEncoder`` (``batch_first``, key padding mask), the hidden
  state of position 0, a ``nn.Linear`` head. PyTorch starts from a copy of our initial
  weights, checked by comparing the logits before training;
- training: AdamW (betas (0.9, 0.98), eps 1e-9, weight decay on matrices only), linear
  warmup and decay, cross-entropy with label smoothing, gradients clipped to norm 1,
  the same dropout, float32, the same number of steps.

Reported: held-out accuracy of each (target: ours >= 80%), also on the held-out texts
of at least ``LONG_TEXT`` words alone, and the training time of
each and their ratio. Timing and threads as in ``translate_tatoeba.py``: the two
train in one process taking turns step by step, each step timed (wall and CPU);
``--threads``, default 1.

Caveat: SST-2's training file lists every phrase of its parsed sentences, so a
held-out phrase is often part of a training sentence (or contains a training
phrase). This split is therefore easier than GLUE's dev set of unseen whole
sentences, and its accuracy is not comparable with published SST-2 numbers; it
compares the two frameworks on equal terms.

    python benchmarks/classify_sst2.py               # 5-20 min, as busy as the cores are
    python benchmarks/classify_sst2.py --quick       # a minute
    python benchmarks/classify_sst2.py --profile     # also cProfile 3 steps of ours
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

import minitransformer as mt
from minitransformer import functional as F
from minitransformer.data import (
    ClassificationBatch,
    data_dir,
    make_classification_batches,
    read_labeled_tsv,
    train_val_split,
)
from minitransformer.nn import TransformerClassifier, convert
from minitransformer.tokenizers import WordTokenizer

try:
    from benchmarks._common import Table, save_results
    from benchmarks.translate_tatoeba import (
        OursTrainer,
        TorchTrainer,
        load_average,
        profile_training,
        setup_from_args,
        train_interleaved,
    )
except ImportError:  # run as a script: benchmarks/ itself is on sys.path
    from _common import Table, save_results
    from translate_tatoeba import (
        OursTrainer,
        TorchTrainer,
        load_average,
        profile_training,
        setup_from_args,
        train_interleaved,
    )

TARGET_ACCURACY = 0.80  # ours, on the held-out texts
LONG_TEXT = 20  # words: a held-out text this long counts as a sentence


@dataclass(frozen=True)
class Setup:
    d_model: int = 128
    num_heads: int = 4
    num_layers: int = 2
    d_ff: int = 512
    dropout: float = 0.1
    min_freq: int = 2  # words seen fewer times in training become <unk>
    batch_size: int = 64
    steps: int = 2000
    warmup_steps: int = 200
    lr: float = 1e-3  # peak of the linear warmup + decay
    weight_decay: float = 0.01
    label_smoothing: float = 0.1
    clip_norm: float = 1.0
    max_len: int = 64  # longest token sequence kept, [CLS] included
    val_size: int = 3000  # held-out distinct texts
    seed: int = 0


QUICK = Setup(d_model=32, d_ff=64, steps=40, warmup_steps=10, val_size=500)


# ---------------------------------------------------------------- data


@dataclass
class Data:
    tok: WordTokenizer
    train: tuple[list[list[int]], list[int]]
    val: tuple[list[list[int]], list[int]]


def prepare(s: Setup) -> Data:
    rows = read_labeled_tsv(data_dir(required=True) / "sst2" / "train.tsv")
    distinct = len({text for text, _ in rows})
    train, val = train_val_split(rows, s.val_size / distinct, seed=s.seed, key=lambda r: r[0])
    tok = WordTokenizer.train([t for t, _ in train], min_freq=s.min_freq, add_cls=True)

    def encode(part: list[tuple[str, int]]) -> tuple[list[list[int]], list[int]]:
        return [tok.encode(t)[: s.max_len] for t, _ in part], [y for _, y in part]

    return Data(tok, encode(train), encode(val))


def training_batches(data: Data, s: Setup) -> list[ClassificationBatch]:
    """The ``s.steps`` batches of the run, epoch after epoch, as ``minitransformer train``."""
    batches: list[ClassificationBatch] = []
    epoch = 0
    while len(batches) < s.steps:
        batches += make_classification_batches(
            *data.train,
            pad_id=data.tok.pad_id,
            batch_size=s.batch_size,
            seed=s.seed * 1_000_003 + epoch,
        )
        epoch += 1
    return batches[: s.steps]


# ---------------------------------------------------------------- the two models


def build_ours(data: Data, s: Setup) -> TransformerClassifier:
    mt.manual_seed(s.seed)
    return TransformerClassifier(
        len(data.tok),
        2,
        d_model=s.d_model,
        num_heads=s.num_heads,
        num_layers=s.num_layers,
        d_ff=s.d_ff,
        dropout=s.dropout,
        max_len=s.max_len,
        pooling="cls",
        pad_id=data.tok.pad_id,
    )


class TorchClassifier(torch.nn.Module):
    """Our TransformerClassifier (``[CLS]`` pooling, post-norm) from PyTorch parts."""

    def __init__(self, ours: TransformerClassifier) -> None:
        super().__init__()
        c = ours.config
        if c["pooling"] != "cls":
            raise ValueError(f"TorchClassifier pools [CLS] only, got pooling={c['pooling']!r}")
        d, p = c["d_model"], c["dropout"]
        self.d_model = d
        self.embed = torch.nn.Embedding(c["vocab_size"], d, padding_idx=c["pad_id"])
        self.register_buffer("pe", torch.from_numpy(ours.pos.pe.astype(np.float32)))
        self.pe_dropout = torch.nn.Dropout(p)
        self.encoder = torch.nn.TransformerEncoder(
            torch.nn.TransformerEncoderLayer(d, c["num_heads"], c["d_ff"], p, batch_first=True),
            c["num_layers"],
            enable_nested_tensor=False,
        )
        self.head = torch.nn.Linear(d, c["num_classes"])
        state = ours.state_dict()
        encoder = {k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}
        own = {
            "embed.weight": state["embed.weight"],
            "pe": self.pe.numpy(),
            "head.weight": state["head.weight"].T,
            "head.bias": state["head.bias"],
            **{f"encoder.{k}": v for k, v in convert.encoder_to_torch(encoder).items()},
        }
        self.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in own.items()})

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.pe_dropout(self.embed(ids) * math.sqrt(self.d_model) + self.pe[: ids.shape[1]])
        # PyTorch's key padding mask is True where a key may NOT be attended to
        h = self.encoder(x, src_key_padding_mask=~attention_mask)
        return self.head(h[:, 0])


def check_same_start(
    ours: TransformerClassifier, theirs: TorchClassifier, batch: ClassificationBatch
) -> None:
    """Before training, both models must compute the same logits (dropout off)."""
    ours.eval()
    theirs.eval()
    with mt.no_grad():
        a = ours(batch.ids, batch.attention_mask).data
    with torch.no_grad():
        b = theirs(torch.from_numpy(batch.ids), torch.from_numpy(batch.attention_mask)).numpy()
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4, err_msg="initial logits differ")


# ---------------------------------------------------------------- training


def loss_ours(
    model: TransformerClassifier, batch: ClassificationBatch, label_smoothing: float
) -> mt.Tensor:
    logits = model(batch.ids, batch.attention_mask)
    return F.cross_entropy(logits, batch.labels, label_smoothing=label_smoothing)


def loss_torch(
    model: TorchClassifier, batch: ClassificationBatch, label_smoothing: float
) -> torch.Tensor:
    logits = model(torch.from_numpy(batch.ids), torch.from_numpy(batch.attention_mask))
    return torch.nn.functional.cross_entropy(
        logits, torch.from_numpy(batch.labels), label_smoothing=label_smoothing
    )


# ---------------------------------------------------------------- evaluation


def val_batches(data: Data) -> list[ClassificationBatch]:
    return make_classification_batches(
        *data.val, pad_id=data.tok.pad_id, batch_size=256, shuffle=False
    )


def predict_ours(model: TransformerClassifier, data: Data) -> np.ndarray:
    """The predicted class of every held-out text, in the order of ``data.val``."""
    model.eval()
    pred = np.zeros(len(data.val[1]), dtype=np.int64)
    with mt.no_grad():
        for b in val_batches(data):
            pred[b.indices] = model(b.ids, b.attention_mask).data.argmax(axis=-1)
    return pred


def predict_torch(model: TorchClassifier, data: Data) -> np.ndarray:
    model.eval()
    pred = np.zeros(len(data.val[1]), dtype=np.int64)
    with torch.no_grad():
        for b in val_batches(data):
            logits = model(torch.from_numpy(b.ids), torch.from_numpy(b.attention_mask))
            pred[b.indices] = logits.argmax(dim=-1).numpy()
    return pred


def accuracies(pred: np.ndarray, data: Data) -> dict[str, float]:
    """Held-out accuracy over all texts, and over those of at least ``LONG_TEXT`` words
    (mostly whole sentences rather than phrases)."""
    right = pred == np.asarray(data.val[1])
    long = np.array([len(ids) - 1 >= LONG_TEXT for ids in data.val[0]])  # minus [CLS]
    return {"val_accuracy": float(right.mean()), "val_accuracy_long": float(right[long].mean())}


# ---------------------------------------------------------------- main


def main() -> None:
    args, s = setup_from_args(__doc__.split("\n")[0], Setup(), QUICK)

    data = prepare(s)
    batches = training_batches(data, s)
    ours = build_ours(data, s)
    theirs = TorchClassifier(ours)
    check_same_start(ours, theirs, batches[0])
    positive = float(np.mean(data.val[1]))
    long = sum(len(ids) - 1 >= LONG_TEXT for ids in data.val[0])
    print(
        f"SST-2: {len(data.train[1])} training texts, {len(data.val[1])} held-out "
        f"({positive:.1%} positive, {long} of >= {LONG_TEXT} words); {len(data.tok)} words; "
        f"{ours.num_parameters():,} parameters; {s.steps} steps of {s.batch_size} texts"
    )
    if args.profile:
        profile_training(OursTrainer(build_ours(data, s), loss_ours, s), batches)

    load_before = load_average()
    runs = train_interleaved(
        {
            "minitransformer": OursTrainer(ours, loss_ours, s),
            "torch": TorchTrainer(theirs, loss_torch, s),
        },
        batches,
    )
    load_after = load_average()
    results = [
        {
            "framework": name,
            "train_seconds": runs[name].seconds,
            "train_cpu_seconds": runs[name].cpu_seconds,
            "seconds_per_step": runs[name].seconds / s.steps,
            "final_train_loss": float(np.mean(runs[name].losses[-100:])),
            **accuracies(predict_fn(model, data), data),
            "losses": runs[name].losses,
        }
        for name, model, predict_fn in (
            ("minitransformer", ours, predict_ours),
            ("torch", theirs, predict_torch),
        )
    ]
    mine, ref = results

    table = Table(
        [
            "framework",
            "train s",
            "train CPU s",
            "s/step",
            "train loss",
            "val accuracy",
            f"val accuracy, >= {LONG_TEXT} words",
        ]
    )
    for r in results:
        table.add(
            [
                r["framework"],
                r["train_seconds"],
                r["train_cpu_seconds"],
                r["seconds_per_step"],
                r["final_train_loss"],
                r["val_accuracy"],
                r["val_accuracy_long"],
            ]
        )
    table.print()
    ratio = mine["train_seconds"] / ref["train_seconds"]
    cpu_ratio = mine["train_cpu_seconds"] / ref["train_cpu_seconds"]
    met = mine["val_accuracy"] >= TARGET_ACCURACY
    print(
        f"accuracy ours {mine['val_accuracy']:.2%} (target >= {TARGET_ACCURACY:.0%}: "
        f"{'met' if met else 'MISSED'}), torch {ref['val_accuracy']:.2%}; training time "
        f"ours / torch: {ratio:.2f} wall, {cpu_ratio:.2f} CPU; load average {load_before} "
        f"before training, {load_after} after"
    )
    rows = [{k: v for k, v in r.items() if k != "losses"} for r in results]
    save_results(
        "classify_sst2"
        + ("_quick" if args.quick else "")
        + (f"_{s.steps}steps" if args.steps else ""),
        rows,
        plot_losses(mine, ref),
        time_ratio=ratio,
        cpu_time_ratio=cpu_ratio,
        load_before=load_before,
        load_after=load_after,
        setup=asdict(s),
        threads=args.threads,
        loss_curves={r["framework"]: r["losses"] for r in results},
    )


def plot_losses(mine: dict, ref: dict):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in (mine, ref):
        losses = np.asarray(r["losses"])
        k = min(50, len(losses))
        smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
        ax.plot(
            np.arange(k, len(losses) + 1),
            smooth,
            label=f"{r['framework']} (held-out accuracy {r['val_accuracy']:.1%})",
        )
    ax.set_xlabel("step")
    ax.set_ylabel(f"training loss, mean of {k} steps")
    ax.set_title("SST-2 from scratch: same model, data and schedule")
    ax.legend()
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    main()
