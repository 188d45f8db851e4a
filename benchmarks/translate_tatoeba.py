"""English -> French on Tatoeba: our Transformer against the same model in PyTorch.

Both frameworks train the same model on the same token ids in the same order, and
are scored the same way:

- data: ``tatoeba-eng-fra/eng-fra.tsv`` from the shared data folder, split by
  ``train_val_split(pairs, 0.1, seed, key=english)``, so every translation of
  one English sentence lands on the same side (Tatoeba lists many sentences with
  several French translations; otherwise the model would be scored on sentences it
  was trained on);
- tokens: one ``BPETokenizer`` per language, ours, trained on the training part; the
  training batches (``make_batches``, bucketed by length, reshuffled every epoch with
  the seeds ``minitransformer train`` uses) are built once and fed to both;
- model: our ``nn.Transformer`` (post-norm, ReLU), and the same architecture from
  PyTorch parts: ``nn.Embedding`` * sqrt(d) + the same sinusoidal table + dropout,
  ``nn.TransformerEncoder`` / ``nn.TransformerDecoder`` (``batch_first``), a
  ``nn.Linear`` generator. PyTorch starts from a copy of our initial weights
  (``nn.convert``; our init is Xavier-uniform matrices and N(0, 1/d) embeddings), and
  the two models' logits are checked to agree before training;
- training: AdamW (betas (0.9, 0.98), eps 1e-9, weight decay on matrices only) with
  linear warmup and decay, the i-th update at lr(i); cross-entropy with label
  smoothing, padding ignored; gradients clipped to norm 1; dropout everywhere
  PyTorch's layers have it; float32. Only the dropout masks differ (each framework
  draws its own).
- evaluation: greedy decoding of every held-out English sentence (ours with its
  key/value cache, PyTorch re-running the prefix, as ``nn.Transformer`` has no cache),
  ids turned back into text with our tokenizer's ``decode``, and corpus BLEU
  (sacrebleu, 13a) against the reference with its whitespace normalised as the
  tokenizer does (Tatoeba writes a narrow no-break space before "!" and "?"). BLEU is
  given per pair ("single": each French translation a separate sentence, the
  hypothesis repeated) and per English sentence with all its translations as
  references ("multi").

Threads: ``--threads N`` (default 1) sets PyTorch's intra-op threads, Numba's and
this thread's OpenBLAS calls to N. On the shared 2-core machine, loaded by other jobs,
2 threads per framework measured 6-15x slower per step than 1 (thread pools
spin-waiting for descheduled workers), so the default is 1; on an idle machine
``--threads 2`` uses both cores.

Timing: the two models train in one process, taking turns step by step (which one
goes first alternates), each step timed on its own, so bursts of load from other
processes hit both alike. Reported: the summed wall time of each framework's steps
(batch -> update; evaluation not included), their CPU time (less sensitive to load),
and the load average. Targets: ours within 1 BLEU of PyTorch, at most 1.5x its time.

    python benchmarks/translate_tatoeba.py                 # 10-30 min, as busy as the cores are
    python benchmarks/translate_tatoeba.py --steps 1000    # shorter
    python benchmarks/translate_tatoeba.py --quick         # a minute: tiny model, few steps
    python benchmarks/translate_tatoeba.py --profile       # also cProfile 3 steps of ours
"""

from __future__ import annotations

import argparse
import cProfile
import ctypes
import math
import os
import pstats
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numba
import numpy as np
import torch

import minitransformer as mt
from minitransformer import functional as F
from minitransformer import optim
from minitransformer.data import (
    Batch,
    data_dir,
    make_batches,
    pad_sequences,
    read_pairs_tsv,
    train_val_split,
)
from minitransformer.decoding import greedy_decode
from minitransformer.metrics import bleu
from minitransformer.nn import Transformer, convert
from minitransformer.tokenizers import BPETokenizer

try:
    from benchmarks._common import Table, op_times, save_results
except ImportError:  # run as a script: benchmarks/ itself is on sys.path
    from _common import Table, op_times, save_results

TARGET_BLEU_GAP = 1.0  # ours may be at most this much below PyTorch
TARGET_TIME_RATIO = 1.5  # ours / PyTorch


@dataclass(frozen=True)
class Setup:
    d_model: int = 128
    num_heads: int = 4
    num_layers: int = 2  # encoder layers, and as many decoder layers
    d_ff: int = 512
    dropout: float = 0.1
    vocab_size: int = 2000  # BPE vocabulary of each language
    batch_size: int = 64  # sentence pairs per step
    steps: int = 2000
    warmup_steps: int = 200
    lr: float = 2e-3  # peak of the linear warmup + decay (1e-3 and 3e-3 gave lower BLEU)
    weight_decay: float = 0.01
    label_smoothing: float = 0.1
    clip_norm: float = 1.0
    max_len: int = 48  # longest token sequence kept, and the decoding limit
    val_fraction: float = 0.1  # of the distinct English sentences
    seed: int = 0


QUICK = Setup(
    d_model=64, num_layers=2, d_ff=128, vocab_size=1000, steps=60, warmup_steps=10, lr=2e-3
)


# ---------------------------------------------------------------- data


@dataclass
class Data:
    src_tok: BPETokenizer
    tgt_tok: BPETokenizer
    train_src: list[list[int]]
    train_tgt: list[list[int]]
    val_pairs: list[tuple[str, str]]
    val_src: list[list[int]]  # the distinct English sentences of val_pairs, encoded
    val_sources: list[str]  # ... and as text, in the same order


def prepare(s: Setup) -> Data:
    path = data_dir(required=True) / "tatoeba-eng-fra" / "eng-fra.tsv"
    pairs = read_pairs_tsv(path)
    train, val = train_val_split(pairs, s.val_fraction, seed=s.seed, key=lambda p: p[0])
    src_tok = BPETokenizer.train([e for e, _ in train], vocab_size=s.vocab_size)
    tgt_tok = BPETokenizer.train([f for _, f in train], vocab_size=s.vocab_size)
    sources = list(dict.fromkeys(e for e, _ in val))
    return Data(
        src_tok,
        tgt_tok,
        [src_tok.encode(e)[: s.max_len] for e, _ in train],
        [tgt_tok.encode(f)[: s.max_len] for _, f in train],
        val,
        [src_tok.encode(e)[: s.max_len] for e in sources],
        sources,
    )


def training_batches(data: Data, s: Setup) -> list[Batch]:
    """The ``s.steps`` batches of the run, epoch after epoch, as ``minitransformer train``."""
    batches: list[Batch] = []
    epoch = 0
    while len(batches) < s.steps:
        batches += make_batches(
            data.train_src,
            data.train_tgt,
            pad_id=data.tgt_tok.pad_id,
            bos_id=data.tgt_tok.bos_id,
            eos_id=data.tgt_tok.eos_id,
            batch_size=s.batch_size,
            seed=s.seed * 1_000_003 + epoch,
        )
        epoch += 1
    return batches[: s.steps]


def targets_of(batch: Batch) -> np.ndarray:
    """tgt_out with padding replaced by -100, the ignored class of both losses."""
    return np.where(batch.tgt_mask, batch.tgt_out, -100)


# ---------------------------------------------------------------- the two models


def build_ours(data: Data, s: Setup) -> Transformer:
    mt.manual_seed(s.seed)
    return Transformer(
        len(data.src_tok),
        len(data.tgt_tok),
        d_model=s.d_model,
        num_heads=s.num_heads,
        num_encoder_layers=s.num_layers,
        num_decoder_layers=s.num_layers,
        d_ff=s.d_ff,
        dropout=s.dropout,
        max_len=s.max_len + 2,
        pad_id=data.tgt_tok.pad_id,
    )


class TorchTransformer(torch.nn.Module):
    """Our nn.Transformer's architecture from PyTorch parts (post-norm, no final norms)."""

    def __init__(self, ours: Transformer) -> None:
        super().__init__()
        c = ours.config
        self.d_model, self.pad_id = c["d_model"], c["pad_id"]
        d, h, ff, p = c["d_model"], c["num_heads"], c["d_ff"], c["dropout"]
        self.src_embed = torch.nn.Embedding(c["src_vocab"], d, padding_idx=self.pad_id)
        self.tgt_embed = torch.nn.Embedding(c["tgt_vocab"], d, padding_idx=self.pad_id)
        self.register_buffer("pe", torch.from_numpy(ours.pos.pe.astype(np.float32)))
        self.pe_dropout = torch.nn.Dropout(p)
        self.encoder = torch.nn.TransformerEncoder(
            torch.nn.TransformerEncoderLayer(d, h, ff, dropout=p, batch_first=True),
            c["num_encoder_layers"],
            enable_nested_tensor=False,
        )
        self.decoder = torch.nn.TransformerDecoder(
            torch.nn.TransformerDecoderLayer(d, h, ff, dropout=p, batch_first=True),
            c["num_decoder_layers"],
        )
        self.generator = torch.nn.Linear(d, c["tgt_vocab"])
        state = ours.state_dict()
        own = {
            "src_embed.weight": state["src_embed.weight"],
            "tgt_embed.weight": state["tgt_embed.weight"],
            "generator.weight": state["generator.weight"].T,
            "generator.bias": state["generator.bias"],
            "pe": self.pe.numpy(),
        }
        for part, to_torch in (
            ("encoder", convert.encoder_to_torch),
            ("decoder", convert.decoder_to_torch),
        ):
            sub = {k[len(part) + 1 :]: v for k, v in state.items() if k.startswith(part + ".")}
            own.update({f"{part}.{k}": v for k, v in to_torch(sub).items()})
        self.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in own.items()})

    def embed(self, table: torch.nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
        return self.pe_dropout(table(ids) * math.sqrt(self.d_model) + self.pe[: ids.shape[1]])

    def encode(self, src: torch.Tensor) -> torch.Tensor:
        # PyTorch's key padding masks are True where a key may NOT be attended to
        return self.encoder(
            self.embed(self.src_embed, src), src_key_padding_mask=src == self.pad_id
        )

    def decode(self, tgt: torch.Tensor, memory: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
        t = tgt.shape[1]
        future = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
        y = self.decoder(
            self.embed(self.tgt_embed, tgt),
            memory,
            tgt_mask=future,
            tgt_key_padding_mask=tgt == self.pad_id,
            memory_key_padding_mask=src == self.pad_id,
        )
        return self.generator(y)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        return self.decode(tgt, self.encode(src), src)


def check_same_start(ours: Transformer, theirs: TorchTransformer, batch: Batch) -> None:
    """Before training, both models must compute the same logits (dropout off)."""
    ours.eval()
    theirs.eval()
    with mt.no_grad():
        a = ours(batch.src_ids, batch.tgt_in).data
    with torch.no_grad():
        b = theirs(torch.from_numpy(batch.src_ids), torch.from_numpy(batch.tgt_in)).numpy()
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4, err_msg="initial logits differ")


def decay_groups(named: list[tuple[str, object]]) -> tuple[list, list]:
    """(decayed, not decayed): weight decay on matrices, not on embeddings, biases, norms."""
    decay = [p for n, p in named if p.ndim >= 2 and "embed" not in n]
    rest = [p for n, p in named if not (p.ndim >= 2 and "embed" not in n)]
    return decay, rest


# ---------------------------------------------------------------- training


def loss_ours(model: Transformer, batch: Batch, label_smoothing: float) -> mt.Tensor:
    logits = model(batch.src_ids, batch.tgt_in)
    return F.cross_entropy(logits, targets_of(batch), label_smoothing=label_smoothing)


def loss_torch(model: TorchTransformer, batch: Batch, label_smoothing: float) -> torch.Tensor:
    logits = model(torch.from_numpy(batch.src_ids), torch.from_numpy(batch.tgt_in))
    return torch.nn.functional.cross_entropy(
        logits.flatten(0, 1),
        torch.from_numpy(targets_of(batch)).flatten(),
        ignore_index=-100,
        label_smoothing=label_smoothing,
    )


class OursTrainer:
    """One training step of one of our models: loss, backward, clip, schedule, AdamW.

    ``s`` is a setup with lr, warmup_steps, steps, weight_decay, label_smoothing and
    clip_norm; ``loss_fn(model, batch, label_smoothing)`` gives the loss tensor.
    """

    def __init__(self, model: mt.nn.Module, loss_fn: Callable, s: Any) -> None:
        self.model, self.loss_fn, self.s = model, loss_fn, s
        decay, rest = decay_groups(list(model.named_parameters()))
        self.opt = optim.AdamW(
            [
                {"params": decay, "weight_decay": s.weight_decay},
                {"params": rest, "weight_decay": 0},
            ],
            lr=s.lr,
            betas=(0.9, 0.98),
            eps=1e-9,
        )
        self.schedule = optim.LinearWarmupDecay(self.opt, s.lr, s.warmup_steps, s.steps)
        self.params = model.parameters()

    def step(self, batch: Any) -> float:
        self.model.train()
        loss = self.loss_fn(self.model, batch, self.s.label_smoothing)
        loss.backward()
        optim.clip_grad_norm(self.params, self.s.clip_norm)
        self.schedule.step()
        self.opt.step()
        self.opt.zero_grad()
        return loss.item()


class TorchTrainer:
    """The same step in PyTorch, with our schedule's learning rates."""

    def __init__(self, model: torch.nn.Module, loss_fn: Callable, s: Any) -> None:
        self.model, self.loss_fn, self.s = model, loss_fn, s
        decay, rest = decay_groups(list(model.named_parameters()))
        self.opt = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": s.weight_decay},
                {"params": rest, "weight_decay": 0},
            ],
            lr=s.lr,
            betas=(0.9, 0.98),
            eps=1e-9,
        )
        # our schedule's formula (on a stand-in optimizer), applied as ours applies it:
        # the i-th update uses lr(i)
        stand_in = optim.SGD([mt.zeros(1, requires_grad=True)], lr=0.0)
        self.lr_of = optim.LinearWarmupDecay(stand_in, s.lr, s.warmup_steps, s.steps)
        self.params = list(model.parameters())
        self.updates = 0

    def step(self, batch: Any) -> float:
        self.model.train()
        loss = self.loss_fn(self.model, batch, self.s.label_smoothing)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.s.clip_norm)
        self.updates += 1
        for group in self.opt.param_groups:
            group["lr"] = self.lr_of.get_lr(self.updates)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return loss.item()


@dataclass
class Trained:
    losses: list[float] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)  # wall time of each step
    cpu_seconds: float = 0.0  # CPU time of the process during the steps

    @property
    def seconds(self) -> float:
        return sum(self.step_seconds)


def train_interleaved(
    trainers: dict[str, OursTrainer | TorchTrainer], batches: list, every: int = 250
) -> dict[str, Trained]:
    """Train every model on the same batches, taking turns step by step.

    Each framework does step i before any does step i + 1, and which goes first
    alternates, so a burst of load from other processes hits both alike; each step
    is timed on its own (wall and CPU) and the times are summed per framework.
    """
    runs = {name: Trained() for name in trainers}
    names = list(trainers)
    for i, batch in enumerate(batches, start=1):
        for name in names if i % 2 else names[::-1]:
            wall, cpu = time.perf_counter(), time.process_time()
            loss = trainers[name].step(batch)
            run = runs[name]
            run.step_seconds.append(time.perf_counter() - wall)
            run.cpu_seconds += time.process_time() - cpu
            run.losses.append(loss)
        if i % every == 0 or i == len(batches):
            print(
                f"  step {i}/{len(batches)}: "
                + ", ".join(
                    f"{n} loss {r.losses[-1]:.3f} {r.seconds:.0f} s" for n, r in runs.items()
                )
                + f" (load {load_average()})",
                flush=True,
            )
    return runs


# ---------------------------------------------------------------- evaluation


def greedy_torch(
    model: TorchTransformer, src: np.ndarray, bos_id: int, eos_id: int, max_len: int
) -> list[list[int]]:
    """Greedy decoding as ``minitransformer.decoding.greedy_decode`` does it, without a cache."""
    src_t = torch.from_numpy(src)
    with torch.no_grad():
        memory = model.encode(src_t)
        ys = torch.full((src.shape[0], 1), bos_id, dtype=torch.int64)
        done = torch.zeros(src.shape[0], dtype=torch.bool)
        for _ in range(max_len):
            logp = torch.log_softmax(model.decode(ys, memory, src_t)[:, -1], dim=-1)
            logp[:, model.pad_id] = -math.inf
            logp[:, bos_id] = -math.inf
            nxt = torch.where(done, eos_id, logp.argmax(dim=-1))
            ys = torch.cat([ys, nxt[:, None]], dim=1)
            done |= nxt == eos_id
            if bool(done.all()):
                break
    rows = ys[:, 1:].tolist()
    return [r[: r.index(eos_id)] if eos_id in r else r for r in rows]


def translate(
    decode: Callable[[np.ndarray], list[list[int]]], src: list[list[int]], pad_id: int
) -> tuple[list[list[int]], float]:
    """(hypothesis ids per source, seconds): batches of 128 sources of similar length."""
    order = sorted(range(len(src)), key=lambda i: len(src[i]))
    hyps: dict[int, list[int]] = {}
    start = time.perf_counter()
    for k in range(0, len(order), 128):
        idx = order[k : k + 128]
        ids, _ = pad_sequences([src[i] for i in idx], pad_id=pad_id)
        hyps.update(zip(idx, decode(ids)))
    return [hyps[i] for i in range(len(src))], time.perf_counter() - start


def normalise(text: str) -> str:
    return " ".join(text.split())


def scores(data: Data, hyps: list[list[int]]) -> dict[str, float]:
    """Single- and multi-reference BLEU of the hypotheses for ``data.val_sources``."""
    import sacrebleu

    text = dict(zip(data.val_sources, (data.tgt_tok.decode(h) for h in hyps)))
    refs: dict[str, list[str]] = {}
    for e, f in data.val_pairs:
        refs.setdefault(e, []).append(normalise(f))
    single = bleu([text[e] for e, _ in data.val_pairs], [normalise(f) for _, f in data.val_pairs])
    # sacrebleu takes reference streams of equal length; a shorter list is padded with
    # None, which sacrebleu skips for that sentence
    width = max(len(r) for r in refs.values())
    streams = [
        [refs[e][j] if j < len(refs[e]) else None for e in data.val_sources] for j in range(width)
    ]
    multi = sacrebleu.corpus_bleu([text[e] for e in data.val_sources], streams).score
    return {"bleu_single": single, "bleu_multi": float(multi)}


def held_out_loss(forward: Callable[[Batch], float], data: Data, s: Setup) -> float:
    """Mean per-token cross-entropy (no smoothing, no dropout) over the held-out pairs."""
    src = [data.src_tok.encode(e)[: s.max_len] for e, _ in data.val_pairs]
    tgt = [data.tgt_tok.encode(f)[: s.max_len] for _, f in data.val_pairs]
    batches = make_batches(
        src,
        tgt,
        pad_id=data.tgt_tok.pad_id,
        bos_id=data.tgt_tok.bos_id,
        eos_id=data.tgt_tok.eos_id,
        batch_size=128,
        shuffle=False,
    )
    total = sum(forward(b) * b.num_tgt_tokens for b in batches)
    return total / sum(b.num_tgt_tokens for b in batches)


# ---------------------------------------------------------------- profile


def profile_training(trainer: OursTrainer, batches: list, steps: int = 3) -> None:
    """cProfile ``steps`` training steps of ours, after one to warm up; print the time
    in each op's forward and backward, and the top functions by own time."""
    trainer.step(batches[0])  # Numba compiles, caches fill
    profiler = cProfile.Profile()
    profiler.enable()
    for batch in batches[1 : 1 + steps]:
        trainer.step(batch)
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = stats.total_tt
    rows = op_times(stats)
    print(f"\nprofile of {steps} training steps of ours: {total:.2f} s")
    print(f"{'op':<24s}{'forward s':>11s}{'backward s':>12s}{'share':>8s}")
    for name, fwd, bwd, _ in rows[:15]:
        print(f"{name:<24s}{fwd:>11.3f}{bwd:>12.3f}{(fwd + bwd) / total:>8.1%}")
    stats.sort_stats("tottime").print_stats(15)


# ---------------------------------------------------------------- main


def evaluate_ours(model: Transformer, data: Data, s: Setup) -> tuple[list[list[int]], float, float]:
    """(greedy hypotheses of the held-out sources, decoding seconds, held-out loss)."""
    model.eval()
    tok = data.tgt_tok

    def loss(b: Batch) -> float:
        with mt.no_grad():
            return F.cross_entropy(model(b.src_ids, b.tgt_in), targets_of(b)).item()

    hyps, seconds = translate(
        lambda ids: greedy_decode(model, ids, tok.bos_id, tok.eos_id, s.max_len),
        data.val_src,
        data.src_tok.pad_id,
    )
    return hyps, seconds, held_out_loss(loss, data, s)


def evaluate_torch(
    model: TorchTransformer, data: Data, s: Setup
) -> tuple[list[list[int]], float, float]:
    model.eval()
    tok = data.tgt_tok

    def loss(b: Batch) -> float:
        with torch.no_grad():
            z = model(torch.from_numpy(b.src_ids), torch.from_numpy(b.tgt_in))
            t = torch.from_numpy(targets_of(b))
            return float(torch.nn.functional.cross_entropy(z.flatten(0, 1), t.flatten()))

    hyps, seconds = translate(
        lambda ids: greedy_torch(model, ids, tok.bos_id, tok.eos_id, s.max_len),
        data.val_src,
        data.src_tok.pad_id,
    )
    return hyps, seconds, held_out_loss(loss, data, s)


def limit_threads(n: int) -> None:
    """Run PyTorch, Numba's parallel kernels and this thread's OpenBLAS calls on n threads."""
    if n < 1:
        raise ValueError(f"--threads must be at least 1, got {n}")
    torch.set_num_threads(n)
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    # NumPy's wheels bundle their own OpenBLAS; set its per-thread count through ctypes
    for path in sorted(
        (Path(np.__file__).resolve().parent.parent / "numpy.libs").glob("*openblas*")
    ):
        setter = getattr(ctypes.CDLL(str(path)), "openblas_set_num_threads_local", None)
        if setter is not None:
            setter(n)


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def setup_from_args(description: str, default: Any, quick: Any) -> tuple[argparse.Namespace, Any]:
    """The command line of a training benchmark: (args, the run's Setup).

    ``default`` and ``quick`` are Setups (``--quick`` picks the second); ``--steps``
    shortens the run; ``--threads`` limits both frameworks; torch is seeded from the Setup.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="tiny model, few steps")
    parser.add_argument("--steps", type=int, help=f"training steps (default {default.steps})")
    parser.add_argument("--profile", action="store_true", help="cProfile a few steps of ours")
    parser.add_argument("--threads", type=int, default=1, help="threads per framework")
    args = parser.parse_args()
    s = quick if args.quick else default
    if args.steps:
        s = replace(s, steps=args.steps, warmup_steps=min(s.warmup_steps, args.steps))
    limit_threads(args.threads)
    torch.manual_seed(s.seed)
    return args, s


def main() -> None:
    args, s = setup_from_args(__doc__.split("\n")[0], Setup(), QUICK)

    data = prepare(s)
    batches = training_batches(data, s)
    ours = build_ours(data, s)
    theirs = TorchTransformer(ours)
    check_same_start(ours, theirs, batches[0])
    print(
        f"Tatoeba eng-fra: {len(data.train_src)} training pairs, {len(data.val_pairs)} held-out "
        f"pairs ({len(data.val_sources)} English sentences); BPE {len(data.src_tok)} / "
        f"{len(data.tgt_tok)} tokens; {ours.num_parameters():,} parameters; "
        f"{s.steps} steps of {s.batch_size} pairs"
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
    results = []
    for name, model, evaluate_fn in (
        ("minitransformer", ours, evaluate_ours),
        ("torch", theirs, evaluate_torch),
    ):
        run = runs[name]
        hyps, decode_seconds, val_loss = evaluate_fn(model, data, s)
        results.append(
            {
                "framework": name,
                "train_seconds": run.seconds,
                "train_cpu_seconds": run.cpu_seconds,
                "seconds_per_step": run.seconds / s.steps,
                "final_train_loss": float(np.mean(run.losses[-100:])),
                "val_loss": val_loss,
                **scores(data, hyps),
                "decode_seconds": decode_seconds,
                "losses": run.losses,
                "step_seconds": run.step_seconds,
                "hyps": hyps,
            }
        )
    mine, ref = results

    table = Table(
        [
            "framework",
            "train s",
            "train CPU s",
            "s/step",
            "train loss",
            "val loss",
            "BLEU",
            "BLEU multi-ref",
            "decode s",
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
                r["val_loss"],
                r["bleu_single"],
                r["bleu_multi"],
                r["decode_seconds"],
            ]
        )
    table.print()
    gap = ref["bleu_single"] - mine["bleu_single"]
    ratio = mine["train_seconds"] / ref["train_seconds"]
    cpu_ratio = mine["train_cpu_seconds"] / ref["train_cpu_seconds"]
    print(
        f"BLEU torch - ours: {gap:+.2f} (target <= {TARGET_BLEU_GAP}: "
        f"{'met' if gap <= TARGET_BLEU_GAP else 'MISSED'}); training time ours / torch: "
        f"{ratio:.2f} wall (target <= {TARGET_TIME_RATIO}: "
        f"{'met' if ratio <= TARGET_TIME_RATIO else 'MISSED'}), {cpu_ratio:.2f} CPU; "
        f"load average {load_before} before training, {load_after} after"
    )
    print("\nsample translations of held-out sentences:")
    for i in range(0, len(data.val_sources), max(1, len(data.val_sources) // 8))[:8]:
        print(f"  en     {data.val_sources[i]}")
        for r in results:
            print(f"  {r['framework'][:5]:<6s} {data.tgt_tok.decode(r['hyps'][i])}")

    rows = [
        {k: v for k, v in r.items() if k not in ("losses", "step_seconds", "hyps")} for r in results
    ]
    save_results(
        "translate_tatoeba"
        + ("_quick" if args.quick else "")
        + (f"_{s.steps}steps" if args.steps else ""),
        rows,
        plot_losses(mine, ref),
        bleu_gap=gap,
        time_ratio=ratio,
        cpu_time_ratio=cpu_ratio,
        load_before=load_before,
        load_after=load_after,
        setup=asdict(s),
        threads=args.threads,
        loss_curves={r["framework"]: r["losses"] for r in results},
        samples=[
            {"en": data.val_sources[i]}
            | {r["framework"]: data.tgt_tok.decode(r["hyps"][i]) for r in results}
            for i in range(0, len(data.val_sources), max(1, len(data.val_sources) // 20))
        ],
    )


def plot_losses(mine: dict, ref: dict):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for r in (mine, ref):
        losses = np.asarray(r["losses"])
        k = min(50, len(losses))
        smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
        steps = np.arange(k, len(losses) + 1)
        label = f"{r['framework']} (BLEU {r['bleu_single']:.1f})"
        axes[0].plot(steps, smooth, label=label)
        axes[1].plot(np.cumsum(r["step_seconds"])[k - 1 :], smooth, label=label)
    axes[0].set_xlabel("step")
    axes[1].set_xlabel("wall time, s")
    for ax in axes:
        ax.set_ylabel(f"training loss, mean of {k} steps")
        ax.legend()
    fig.suptitle("Tatoeba English -> French: same model, data and schedule")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    main()
