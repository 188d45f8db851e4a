"""The training loop behind ``minitransformer train``: data -> tokenizers -> model -> steps.

One step of teacher-forced training of the encoder-decoder:

    logits = model(src_ids, tgt_in)                       (B, T, V)
    loss   = cross_entropy(logits, tgt_out, label_smoothing, ignore padding)
    loss.backward();  clip_grad_norm;  schedule.step();  optimizer.step();  zero_grad

and of the classifier: ``logits = model(ids, attention_mask)``, cross-entropy with the
labels. Every ``eval_every`` steps the loop validates (loss, token accuracy, greedy
exact match or classification accuracy) and writes a checkpoint to the output folder:

    model.safetensors          weights + metadata (kind, model config, labels)
    src_tokenizer.json, tgt_tokenizer.json  (translate)   tokenizer.json  (classify)
    train_state.safetensors    optimizer moments + JSON metadata: step, schedule,
                               data position and random state, for an exact resume
    history.json, loss.png, attention.png

Resuming (``resume=True``) restores all of it, so the continued run is bit-identical
to one that was never interrupted (``tests/test_train.py`` checks this).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import tomllib

from . import backend, optim
from . import functional as F
from .autograd.tape import no_grad
from .data import (
    make_batches,
    make_classification_batches,
    pad_sequences,
    read_labeled_tsv,
    read_pairs_tsv,
    synthetic_pairs,
    train_val_split,
)
from .decoding import greedy_decode
from .nn import Transformer, TransformerClassifier
from .serialization import load, load_metadata, save
from .tokenizers import BPETokenizer, CharTokenizer, Tokenizer, WordTokenizer

__all__ = ["TrainConfig", "train", "load_translator", "load_classifier", "TrainResult"]

TASKS = ("translate", "classify")
TOKENIZERS = {"char": CharTokenizer, "word": WordTokenizer, "bpe": BPETokenizer}


@dataclass
class TrainConfig:
    """Everything a run needs; the defaults train the toy translation task in minutes."""

    task: str = "translate"
    data: str | None = None  # None: the built-in synthetic task
    synthetic: str = "translation"  # which synthetic task when data is None
    num_examples: int = 20000  # synthetic examples to generate
    max_rows: int | None = None  # read at most this many rows of a data file
    val_fraction: float = 0.05
    out_dir: str | None = None
    tokenizer: str = "word"
    vocab_size: int = 8000  # BPE target size (word: None keeps all words)
    min_freq: int = 1  # word tokenizer: drop rarer words
    lowercase: bool = False
    max_len: int = 64  # longest token sequence kept (longer ones are truncated)
    d_model: int = 64
    num_heads: int = 4
    num_layers: int = 2
    d_ff: int = 256
    dropout: float = 0.1
    norm_first: bool = False
    activation: str = "relu"
    pooling: str = "cls"
    batch_size: int = 64
    max_tokens: int | None = None
    steps: int = 1000
    lr: float = 2e-3
    schedule: str = "linear"  # "linear" (warmup + decay) or "noam"
    warmup_steps: int = 100
    weight_decay: float = 0.01
    label_smoothing: float = 0.1
    clip_norm: float = 1.0
    eval_every: int = 250
    eval_examples: int = 500
    seed: int = 0
    device: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for f in fields(self):
            value, default = getattr(self, f.name), f.default
            if value is None or default is None or f.name == "extra":
                continue
            expected = float if isinstance(default, float) else type(default)
            ok = isinstance(value, expected) and not (
                expected is not bool and isinstance(value, bool)
            )
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                ok = True
            if not ok:
                raise ValueError(
                    f"setting {f.name} must be a {expected.__name__}, "
                    f"got {value!r} ({type(value).__name__})"
                )
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.tokenizer not in TOKENIZERS:
            raise ValueError(
                f"tokenizer must be one of {tuple(TOKENIZERS)}, got {self.tokenizer!r}"
            )
        if self.schedule not in ("linear", "noam"):
            raise ValueError(f"schedule must be 'linear' or 'noam', got {self.schedule!r}")
        for name in (
            "d_model",
            "num_heads",
            "num_layers",
            "d_ff",
            "batch_size",
            "steps",
            "eval_every",
            "max_len",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must lie in (0, 1), got {self.val_fraction}")
        if self.d_model % self.num_heads:
            raise ValueError(
                f"d_model={self.d_model} is not divisible by num_heads={self.num_heads}"
            )
        if backend.check_device(self.device) == "cuda" and not backend.gpu_available():
            raise ValueError("device 'cuda' was asked for, but CuPy or a CUDA GPU is not available")

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        """Read a TOML file of ``key = value`` lines (any field above); overrides win."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no config file at {path}")
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path} is not valid TOML: {exc}") from None
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"{path}: unknown settings {', '.join(unknown)}")
        raw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**raw)

    def output_folder(self) -> Path:
        if self.out_dir:
            return Path(self.out_dir)
        name = Path(self.data).stem if self.data else f"toy-{self.synthetic}"
        return Path("runs") / f"{self.task}-{name}"


@dataclass
class TrainResult:
    out_dir: Path
    history: list[dict[str, Any]]
    final: dict[str, Any]
    samples: list[tuple[str, str, str]]
    seconds: float


# ---------------------------------------------------------------- data


def _load_examples(config: TrainConfig) -> list[tuple[str, Any]]:
    if config.task == "translate":
        if config.data is None:
            return synthetic_pairs(config.synthetic, config.num_examples, seed=config.seed)
        return read_pairs_tsv(config.data, max_rows=config.max_rows)
    if config.data is None:
        raise ValueError(
            "--task classify needs --data FILE (a TSV with header 'sentence<TAB>label')"
        )
    return read_labeled_tsv(config.data, max_rows=config.max_rows)


def _train_tokenizer(config: TrainConfig, texts: list[str], **options: Any) -> Tokenizer:
    cls = TOKENIZERS[config.tokenizer]
    if config.tokenizer == "bpe":
        return cls.train(texts, vocab_size=config.vocab_size, lowercase=config.lowercase, **options)
    if config.tokenizer == "word":
        return cls.train(texts, min_freq=config.min_freq, lowercase=config.lowercase, **options)
    return cls.train(texts, **options)


def _clip(ids: list[int], n: int) -> list[int]:
    return ids[:n] if len(ids) > n else ids


# ---------------------------------------------------------------- model, optimizer


def _build_model(config: TrainConfig, sizes: dict[str, int]) -> Any:
    c = config
    if c.task == "translate":
        return Transformer(
            sizes["src_vocab"],
            sizes["tgt_vocab"],
            d_model=c.d_model,
            num_heads=c.num_heads,
            num_encoder_layers=c.num_layers,
            num_decoder_layers=c.num_layers,
            d_ff=c.d_ff,
            dropout=c.dropout,
            max_len=c.max_len + 2,
            norm_first=c.norm_first,
            activation=c.activation,
        )
    return TransformerClassifier(
        sizes["vocab"],
        sizes["num_classes"],
        d_model=c.d_model,
        num_heads=c.num_heads,
        num_layers=c.num_layers,
        d_ff=c.d_ff,
        dropout=c.dropout,
        max_len=c.max_len + 1,
        pooling=c.pooling,
        norm_first=c.norm_first,
        activation=c.activation,
    )


def _optimizer(config: TrainConfig, model: Any) -> tuple[Any, Any]:
    # weight decay on matrices only: decaying biases, LayerNorm gains and embeddings'
    # padding rows pulls them towards 0 for no benefit
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embed" not in n)]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": rest, "weight_decay": 0.0},
    ]
    opt = optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.98), eps=1e-9)
    if config.schedule == "noam":
        sched = optim.NoamSchedule(
            opt,
            config.d_model,
            config.warmup_steps,
            factor=config.lr * math.sqrt(config.d_model * config.warmup_steps),
        )
    else:
        sched = optim.LinearWarmupDecay(
            opt, config.lr, min(config.warmup_steps, config.steps), config.steps
        )
    return opt, sched


# ---------------------------------------------------------------- the run


class _Run:
    """The state of one training run; ``train()`` below drives it."""

    def __init__(self, config: TrainConfig, resume: bool) -> None:
        self.config = c = config
        self.out = c.output_folder()
        self.out.mkdir(parents=True, exist_ok=True)
        backend.manual_seed(c.seed)
        examples = _load_examples(c)
        if len(examples) < 2:
            raise ValueError(
                f"need at least 2 examples to split into train and validation, got {len(examples)}"
            )
        # Split by the input text: Tatoeba lists many English sentences with several
        # French translations (and SST-2 repeats texts); every example of one input
        # lands on the same side, so validation never scores an input seen in training.
        self.train_set, self.val_set = train_val_split(
            examples, c.val_fraction, seed=c.seed, key=lambda example: example[0]
        )
        if c.task == "translate":
            self._prepare_translation(resume)
        else:
            self._prepare_classification(resume)
        self.model = _build_model(c, self.sizes).to(c.device)
        self.opt, self.sched = _optimizer(c, self.model)
        self.step, self.epoch, self.position = 0, 0, 0
        self.history: list[dict[str, Any]] = []
        if resume:
            self._restore()

    # -- data preparation

    def _prepare_translation(self, resume: bool) -> None:
        c = self.config
        if resume and (self.out / "src_tokenizer.json").is_file():
            self.src_tok = Tokenizer.load(self.out / "src_tokenizer.json")
            self.tgt_tok = Tokenizer.load(self.out / "tgt_tokenizer.json")
        else:
            self.src_tok = _train_tokenizer(c, [s for s, _ in self.train_set])
            self.tgt_tok = _train_tokenizer(c, [t for _, t in self.train_set])
            self.src_tok.save(self.out / "src_tokenizer.json")
            self.tgt_tok.save(self.out / "tgt_tokenizer.json")
        self.sizes = {"src_vocab": len(self.src_tok), "tgt_vocab": len(self.tgt_tok)}

        def encode(pairs):
            src = [
                _clip(self.src_tok.encode(s), c.max_len) or [self.src_tok.unk_id] for s, _ in pairs
            ]
            tgt = [_clip(self.tgt_tok.encode(t), c.max_len) for _, t in pairs]
            return src, tgt

        self.train_ids = encode(self.train_set)
        self.val_ids = encode(self.val_set)

    def _prepare_classification(self, resume: bool) -> None:
        c = self.config
        labels = sorted({int(y) for _, y in self.train_set})
        if len(labels) < 2:
            raise ValueError(
                f"classification needs at least 2 classes in the training data, got {labels}"
            )
        self.label_names = [str(y) for y in labels]
        index = {y: i for i, y in enumerate(labels)}
        if resume and (self.out / "tokenizer.json").is_file():
            self.tok = Tokenizer.load(self.out / "tokenizer.json")
        else:
            self.tok = _train_tokenizer(c, [s for s, _ in self.train_set], add_cls=True)
            self.tok.save(self.out / "tokenizer.json")
        self.sizes = {"vocab": len(self.tok), "num_classes": len(labels)}

        def encode(rows):
            ids = [_clip(self.tok.encode(s), c.max_len + 1) for s, _ in rows]
            ys = [index.get(int(y), -1) for _, y in rows]
            keep = [
                i for i, y in enumerate(ys) if y >= 0
            ]  # a label unseen in training cannot be learned
            return [ids[i] for i in keep], [ys[i] for i in keep]

        self.train_ids = encode(self.train_set)
        self.val_ids = encode(self.val_set)

    def batches(self, epoch: int, which: str = "train") -> list:
        c = self.config
        ids = self.train_ids if which == "train" else self.val_ids
        seed = c.seed * 1_000_003 + epoch
        shuffle = which == "train"
        if c.task == "translate":
            return make_batches(
                ids[0],
                ids[1],
                pad_id=self.tgt_tok.pad_id,
                bos_id=self.tgt_tok.bos_id,
                eos_id=self.tgt_tok.eos_id,
                batch_size=c.batch_size,
                max_tokens=c.max_tokens,
                shuffle=shuffle,
                seed=seed,
            )
        return make_classification_batches(
            ids[0],
            ids[1],
            pad_id=self.tok.pad_id,
            batch_size=c.batch_size,
            max_tokens=c.max_tokens,
            shuffle=shuffle,
            seed=seed,
        )

    # -- one step

    def loss_of(self, batch: Any) -> tuple[Any, int, Any]:
        """(loss, tokens the loss averages over, logits) of one batch."""
        c = self.config
        dev = c.device
        if c.task == "translate":
            logits = self.model(
                backend.to_device(batch.src_ids, dev), backend.to_device(batch.tgt_in, dev)
            )
            xp = backend.module_for(dev)
            targets = xp.where(
                backend.to_device(batch.tgt_mask, dev), backend.to_device(batch.tgt_out, dev), -100
            )
            loss = F.cross_entropy(logits, targets, label_smoothing=c.label_smoothing)
            return loss, batch.num_tgt_tokens, logits
        logits = self.model(
            backend.to_device(batch.ids, dev), backend.to_device(batch.attention_mask, dev)
        )
        loss = F.cross_entropy(
            logits, backend.to_device(batch.labels, dev), label_smoothing=c.label_smoothing
        )
        return loss, batch.num_tokens, logits

    def train_step(self, batch: Any) -> tuple[float, int]:
        self.model.train()
        loss, tokens, _ = self.loss_of(batch)
        loss.backward()
        optim.clip_grad_norm(self.model.parameters(), self.config.clip_norm)
        self.sched.step()
        self.opt.step()
        self.opt.zero_grad()
        self.step += 1
        return float(loss.item()), tokens

    # -- evaluation

    def evaluate(self) -> dict[str, Any]:
        c = self.config
        self.model.eval()
        total, count, correct, positions = 0.0, 0, 0, 0
        with no_grad():
            for batch in self.batches(0, "val"):
                loss, _, logits = self.loss_of(batch)
                if c.task == "translate":
                    pred = backend.to_numpy(logits.data.argmax(axis=-1))
                    n = batch.num_tgt_tokens
                    correct += int(((pred == batch.tgt_out) & batch.tgt_mask).sum())
                else:
                    pred = backend.to_numpy(logits.data.argmax(axis=-1))
                    n = batch.size
                    correct += int((pred == batch.labels).sum())
                total += float(loss.item()) * (n if c.task == "translate" else batch.size)
                count += n
                positions += n
        result = {"step": self.step, "val_loss": total / max(count, 1)}
        if c.task == "translate":
            result["val_token_accuracy"] = correct / max(positions, 1)
            src, tgt = self.val_ids
            m = min(c.eval_examples, len(src))
            hyps = self.translate_ids(src[:m])
            result["val_exact_match"] = sum(h == t for h, t in zip(hyps, tgt[:m])) / max(m, 1)
        else:
            result["val_accuracy"] = correct / max(positions, 1)
        return result

    def translate_ids(self, src: list[list[int]], batch_size: int = 128) -> list[list[int]]:
        order = sorted(range(len(src)), key=lambda i: len(src[i]))
        results: dict[int, list[int]] = {}
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            ids, _ = pad_sequences([src[i] for i in idx], pad_id=self.src_tok.pad_id)
            hyps = greedy_decode(
                self.model,
                backend.to_device(ids, self.config.device),
                self.tgt_tok.bos_id,
                self.tgt_tok.eos_id,
                max_len=self.config.max_len + 1,
            )
            results.update(zip(idx, hyps))
        return [results[i] for i in range(len(src))]

    # -- checkpoints

    def save_checkpoint(self) -> None:
        c = self.config
        kind = "translator" if c.task == "translate" else "classifier"
        meta = {
            "kind": kind,
            "model_config": self.model.config,
            "train_config": asdict(c),
            "step": self.step,
        }
        if c.task == "classify":
            meta["labels"] = self.label_names
        save(self.model, self.out / "model.safetensors", metadata=meta)
        arrays, opt_meta = optim.flatten_state(self.opt.state_dict())
        state_meta = {
            "optimizer": opt_meta,
            "schedule": self.sched.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "position": self.position,
            "rng": backend.get_rng_state(),
            "history": self.history,
        }
        weights = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        save(
            {**weights, **{f"optimizer.{k}": v for k, v in arrays.items()}},
            self.out / "train_state.safetensors",
            metadata=state_meta,
        )
        (self.out / "history.json").write_text(
            json.dumps(self.history, indent=1) + "\n", encoding="utf-8"
        )

    def _restore(self) -> None:
        path = self.out / "train_state.safetensors"
        if not path.is_file():
            raise FileNotFoundError(f"cannot resume: no {path} (train without --resume first)")
        arrays = load(path, device=self.config.device)
        meta = load_metadata(path)
        weights = {k[len("model.") :]: v for k, v in arrays.items() if k.startswith("model.")}
        self.model.load_state_dict(weights)
        opt_arrays = {
            k[len("optimizer.") :]: v for k, v in arrays.items() if k.startswith("optimizer.")
        }
        self.opt.load_state_dict(optim.unflatten_state(opt_arrays, meta["optimizer"]))
        schedule = dict(meta["schedule"])
        if self.config.schedule == "linear":
            # resuming with more (or fewer) steps stretches the decay to the new end
            schedule["total_steps"] = self.config.steps
            schedule["warmup_steps"] = min(schedule["warmup_steps"], self.config.steps)
        self.sched.load_state_dict(schedule)
        self.step, self.epoch, self.position = meta["step"], meta["epoch"], meta["position"]
        self.history = meta["history"]
        backend.set_rng_state(meta["rng"])


def train(
    config: TrainConfig,
    resume: bool = False,
    progress: bool = True,
    log: Any = print,
    plots: bool = True,
) -> TrainResult:
    """Run (or resume) training as ``config`` says; returns the history and final metrics.

    ``plots=False`` skips drawing loss.png and attention.png (most of a tiny run's time).
    """
    from tqdm.auto import tqdm

    start = time.perf_counter()
    run = _Run(config, resume)
    c = config
    log(
        f"{c.task}: {len(run.train_set)} training / {len(run.val_set)} validation examples; "
        f"model with {run.model.num_parameters():,} parameters; output folder {run.out}"
    )
    bar = tqdm(
        total=c.steps, initial=run.step, disable=not progress, desc="train", dynamic_ncols=True
    )
    batches = run.batches(run.epoch)
    window_tokens, window_start = 0, time.perf_counter()
    while run.step < c.steps:
        if run.position >= len(batches):
            run.epoch, run.position = run.epoch + 1, 0
            batches = run.batches(run.epoch)
        batch = batches[run.position]
        run.position += 1
        lr = run.sched.get_lr(run.step + 1)
        loss, tokens = run.train_step(batch)
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"the training loss became {loss} at step {run.step}; lower the learning rate"
            )
        window_tokens += tokens
        run.history.append({"step": run.step, "loss": loss, "lr": lr})
        elapsed = time.perf_counter() - window_start
        bar.set_postfix(
            loss=f"{loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{window_tokens / max(elapsed, 1e-9):.0f}"
        )
        bar.update(1)
        if run.step % c.eval_every == 0 or run.step == c.steps:
            result = run.evaluate()
            run.history.append(result)
            bar.write(
                "  ".join(
                    f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in result.items()
                )
            )
            run.save_checkpoint()
            window_tokens, window_start = 0, time.perf_counter()
    bar.close()
    evals = [h for h in run.history if "val_loss" in h]
    final = dict(evals[-1]) if evals else run.evaluate()
    samples = _samples_and_plots(run, plots=plots)
    if c.task == "translate":
        from .metrics import bleu

        src, tgt = run.val_ids
        m = min(c.eval_examples, len(src))
        hyps = run.translate_ids(src[:m])
        final["val_bleu"] = bleu(
            [run.tgt_tok.decode(h) for h in hyps], [run.tgt_tok.decode(t) for t in tgt[:m]]
        )
    seconds = time.perf_counter() - start
    final["train_seconds"] = seconds
    (run.out / "metrics.json").write_text(json.dumps(final, indent=1) + "\n", encoding="utf-8")
    return TrainResult(run.out, run.history, final, samples, seconds)


def _samples_and_plots(run: _Run, n: int = 5, plots: bool = True) -> list[tuple[str, str, str]]:
    """Sample outputs on validation examples, and the loss curve and an attention map."""
    from . import plots as draw

    if plots:
        draw.plot_training_history(run.history, path=run.out / "loss.png")
    samples = []
    if run.config.task == "translate":
        src, tgt = run.val_ids
        hyps = run.translate_ids(src[:n])
        for i, h in enumerate(hyps):
            samples.append((run.val_set[i][0], run.val_set[i][1], run.tgt_tok.decode(h)))
        if src:
            s_ids, hyp = src[0], hyps[0]
            run.model.eval()
            with no_grad():
                run.model(backend.as_array([s_ids]), backend.as_array([[run.tgt_tok.bos_id, *hyp]]))
            weights = backend.to_numpy(run.model.decoder.layers[-1].cross_attn.last_weights.data)[0]
            if plots:
                draw.plot_attention_heads(
                    weights,
                    xlabels=run.src_tok.convert_ids_to_tokens(s_ids),
                    ylabels=run.tgt_tok.convert_ids_to_tokens([run.tgt_tok.bos_id, *hyp]),
                    title="cross-attention, last decoder layer",
                    path=run.out / "attention.png",
                )
    else:
        rows = run.val_set[:n]
        with no_grad():
            enc = run.tok(
                [s for s, _ in rows],
                padding=True,
                truncation=True,
                max_length=run.config.max_len + 1,
            )
            run.model.eval()
            logits = run.model(enc["input_ids"], enc["attention_mask"])
        pred = backend.to_numpy(logits.data.argmax(axis=-1))
        for (s, y), p in zip(rows, pred):
            samples.append((s, str(y), run.label_names[int(p)]))
        ids = enc["input_ids"][0][enc["attention_mask"][0] == 1]
        weights = backend.to_numpy(run.model.encoder.layers[-1].self_attn.last_weights.data)[0][
            :, : len(ids), : len(ids)
        ]
        toks = run.tok.convert_ids_to_tokens(ids.tolist())
        if plots:
            draw.plot_attention_heads(
                weights,
                xlabels=toks,
                ylabels=toks,
                title="self-attention, last encoder layer",
                path=run.out / "attention.png",
            )
    return samples


# ---------------------------------------------------------------- loading for inference


def _read_kind(folder: str | Path, kind: str) -> tuple[Path, dict[str, Any]]:
    folder = Path(folder)
    path = folder if folder.suffix == ".safetensors" else folder / "model.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"no model at {path}")
    meta = load_metadata(path)
    found = meta.get("kind")
    if found is None:
        raise ValueError(
            f"{path} is not a minitransformer training checkpoint (no 'kind' in its metadata)"
        )
    if found != kind:
        raise ValueError(f"{path} holds a {found}, not a {kind}")
    return path, meta


def load_translator(folder: str | Path) -> tuple[Transformer, Tokenizer, Tokenizer]:
    """(model, source tokenizer, target tokenizer) from a ``train --task translate`` folder."""
    path, meta = _read_kind(folder, "translator")
    model = Transformer(**meta["model_config"])
    model.load_state_dict(load(path))
    model.eval()
    return (
        model,
        Tokenizer.load(path.parent / "src_tokenizer.json"),
        Tokenizer.load(path.parent / "tgt_tokenizer.json"),
    )


def load_classifier(folder: str | Path) -> tuple[TransformerClassifier, Tokenizer, list[str]]:
    """(model, tokenizer, label names) from a ``train --task classify`` folder."""
    path, meta = _read_kind(folder, "classifier")
    model = TransformerClassifier(**meta["model_config"])
    model.load_state_dict(load(path))
    model.eval()
    return model, Tokenizer.load(path.parent / "tokenizer.json"), list(meta["labels"])
