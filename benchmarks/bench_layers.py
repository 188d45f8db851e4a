"""Layer speed: one encoder layer and a small encoder-decoder, against PyTorch's layers.

For each configuration (batch B, sequence length S, d_model d, heads H, d_ff), in
float32 with dropout 0 and ``torch.set_num_threads(2)``:

- **encoder layer**: our ``nn.EncoderLayer`` against ``torch.nn.TransformerEncoderLayer``
  (``batch_first=True``), on x of shape (B, S, d), no mask;
- **transformer**: our ``nn.Transformer`` with 2 encoder and 2 decoder layers against
  the same model built from PyTorch parts (two ``nn.Embedding``, the same sinusoidal
  table, ``nn.TransformerEncoder`` / ``nn.TransformerDecoder`` of 2 layers each, an
  ``nn.Linear`` generator), on source and target ids of shape (B, S) over a vocabulary
  of ``VOCAB`` tokens, half of the batch padded in its last tenth, with the padding
  and causal masks each model builds.

Each pair is timed twice: **forward** (inference, under ``no_grad``, both models in
training mode so that PyTorch takes the same path as ours rather than its fused
inference kernel), and **forward + backward** (the backward of the output against a
fixed random upstream gradient, i.e. one training step without the optimizer). The
PyTorch model gets our weights (``nn.convert``), and the outputs and a gradient (of
the input, of the source embedding) are checked to agree before anything is timed, so
the two sides do the same work.

Candidates are called round-robin (``_common.timeit_stats``), so a burst of load from
elsewhere slows both alike. The table gives the ratio of the medians (what a user
sees) and the ratio of the minima (what each side does when it gets the cores), and
the 1-minute load average: on a shared machine, read the ratios, not the seconds.
Ratios are ours / PyTorch: below 1 we are faster. The target is at most 1.5.

``--profile`` then runs cProfile on one forward + backward of ours at one
configuration and prints (and saves in the JSON) the time spent in each op's forward
and backward (``Function`` subclasses), and the top functions by own time.

    python benchmarks/bench_layers.py            # ~7 min on 2 cores shared with 2 other jobs
    python benchmarks/bench_layers.py --quick    # tiny sizes, 2 rounds: start-up dominates
    python benchmarks/bench_layers.py --profile  # also profile ours at one config
"""

from __future__ import annotations

import argparse
import cProfile
import math
import os
import pstats
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

import minitransformer as mt
from minitransformer import nn
from minitransformer.nn import convert

try:
    from benchmarks._common import Table, op_times, save_results, timeit_stats
except ImportError:  # run as a script: benchmarks/ itself is on sys.path
    from _common import Table, op_times, save_results, timeit_stats

VOCAB = 1000
LAYERS = 2  # encoder and decoder layers of the full model
TARGET = 1.5  # ours / torch


@dataclass(frozen=True)
class Config:
    batch: int
    seq: int
    d_model: int
    heads: int
    d_ff: int

    def __str__(self) -> str:
        return f"B{self.batch} S{self.seq} d{self.d_model} H{self.heads} ff{self.d_ff}"


CONFIGS = (
    Config(32, 64, 128, 4, 512),
    Config(32, 128, 256, 8, 1024),
    Config(32, 256, 256, 8, 1024),
    Config(32, 128, 512, 8, 2048),
)
QUICK_CONFIGS = (Config(4, 16, 32, 4, 64), Config(8, 32, 64, 4, 128))
PROFILE_CONFIG = CONFIGS[1]


def _torch_load(module: torch.nn.Module, state: dict) -> None:
    module.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()})


def _check_output(name: str, ours: np.ndarray, theirs: np.ndarray) -> None:
    """The two sides must compute the same thing, or their timings compare different work."""
    np.testing.assert_allclose(ours, theirs, rtol=2e-3, atol=2e-4, err_msg=name)


def _check_gradient(name: str, ours: np.ndarray, theirs: np.ndarray, tol: float = 1e-2) -> None:
    """Gradients are compared as whole arrays, ||ours - theirs|| / ||theirs|| < tol.

    Not element by element: a ReLU unit whose input lies within float32 rounding of 0
    can fall on different sides of the kink in the two implementations, and its
    gradient, O(1) different, spreads through the layers below. Seen here at the first
    configuration: one such unit in the top encoder layer made the source-embedding
    gradient differ by 0.2 in entries of up to 70, 6e-4 of the array's norm (float64
    runs of both agree to 1e-6). A wrong gradient is off by O(1) of the norm.
    """
    error = float(np.linalg.norm(ours - theirs) / np.linalg.norm(theirs))
    if not error < tol:
        raise AssertionError(f"{name}: ||ours - torch|| / ||torch|| = {error:.2e} >= {tol}")


# ---------------------------------------------------------------- one encoder layer


def encoder_layer_pair(c: Config) -> dict[str, dict[str, Callable[[], object]]]:
    """{"forward": {...}, "forward+backward": {...}}, each {"minitransformer": f, "torch": f}."""
    rng = np.random.default_rng(0)
    ours = nn.EncoderLayer(c.d_model, c.heads, c.d_ff, dropout=0.0)
    theirs = torch.nn.TransformerEncoderLayer(
        c.d_model, c.heads, c.d_ff, dropout=0.0, batch_first=True
    )
    _torch_load(theirs, convert.encoder_layer_to_torch(ours.state_dict()))

    x0 = rng.standard_normal((c.batch, c.seq, c.d_model)).astype(np.float32)
    g0 = rng.standard_normal((c.batch, c.seq, c.d_model)).astype(np.float32)
    x, xt = mt.tensor(x0, requires_grad=True), torch.tensor(x0, requires_grad=True)
    gt = torch.from_numpy(g0)

    def ours_forward() -> np.ndarray:
        with mt.no_grad():
            return ours(x).data

    def torch_forward() -> np.ndarray:
        with torch.no_grad():
            return theirs(xt).numpy()

    def ours_step() -> np.ndarray:
        ours.zero_grad()
        x.grad = None
        ours(x).backward(g0)
        return x.grad

    def torch_step() -> np.ndarray:
        theirs.zero_grad(set_to_none=True)
        xt.grad = None
        theirs(xt).backward(gt)
        return xt.grad.numpy()

    _check_output(f"encoder layer {c}: output", ours_forward(), torch_forward())
    _check_gradient(f"encoder layer {c}: dL/dx", ours_step(), torch_step())
    return {
        "forward": {"minitransformer": ours_forward, "torch": torch_forward},
        "forward+backward": {"minitransformer": ours_step, "torch": torch_step},
    }


# ---------------------------------------------------------------- the encoder-decoder


class TorchTransformer(torch.nn.Module):
    """Our nn.Transformer's architecture from PyTorch parts (post-norm, no final norms)."""

    def __init__(self, c: Config, pe: np.ndarray) -> None:
        super().__init__()
        self.d_model = c.d_model
        self.src_embed = torch.nn.Embedding(VOCAB, c.d_model, padding_idx=0)
        self.tgt_embed = torch.nn.Embedding(VOCAB, c.d_model, padding_idx=0)
        self.register_buffer("pe", torch.from_numpy(pe[: c.seq].astype(np.float32)))
        encoder_layer = torch.nn.TransformerEncoderLayer(
            c.d_model, c.heads, c.d_ff, dropout=0.0, batch_first=True
        )
        decoder_layer = torch.nn.TransformerDecoderLayer(
            c.d_model, c.heads, c.d_ff, dropout=0.0, batch_first=True
        )
        self.encoder = torch.nn.TransformerEncoder(
            encoder_layer, LAYERS, norm=None, enable_nested_tensor=False
        )
        self.decoder = torch.nn.TransformerDecoder(decoder_layer, LAYERS, norm=None)
        self.generator = torch.nn.Linear(c.d_model, VOCAB)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        scale = math.sqrt(self.d_model)
        src_pad, tgt_pad = src == 0, tgt == 0  # PyTorch: True = may NOT attend
        t = tgt.shape[1]
        future = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
        memory = self.encoder(
            self.src_embed(src) * scale + self.pe[: src.shape[1]], src_key_padding_mask=src_pad
        )
        y = self.decoder(
            self.tgt_embed(tgt) * scale + self.pe[:t],
            memory,
            tgt_mask=future,
            tgt_key_padding_mask=tgt_pad,
            memory_key_padding_mask=src_pad,
        )
        return self.generator(y)


def _padded_ids(rng: np.random.Generator, c: Config) -> np.ndarray:
    ids = rng.integers(1, VOCAB, size=(c.batch, c.seq))
    ids[: c.batch // 2, c.seq - max(1, c.seq // 10) :] = 0  # half the batch ends in padding
    return ids


def transformer_pair(c: Config) -> dict[str, dict[str, Callable[[], object]]]:
    rng = np.random.default_rng(1)
    ours = nn.Transformer(
        VOCAB, VOCAB, c.d_model, c.heads, LAYERS, LAYERS, c.d_ff, dropout=0.0, max_len=c.seq
    )
    theirs = TorchTransformer(c, ours.pos.pe)
    state = ours.state_dict()
    torch_state = {
        "src_embed.weight": state["src_embed.weight"],
        "tgt_embed.weight": state["tgt_embed.weight"],
        "generator.weight": state["generator.weight"].T,  # Linear: ours (in, out), torch (out, in)
        "generator.bias": state["generator.bias"],
        "pe": theirs.pe.numpy(),
    }
    for stack, to_torch in (
        ("encoder", convert.encoder_to_torch),
        ("decoder", convert.decoder_to_torch),
    ):
        for key, value in to_torch(_sub(state, f"{stack}.")).items():
            torch_state[f"{stack}.{key}"] = value
    _torch_load(theirs, torch_state)

    src, tgt = _padded_ids(rng, c), _padded_ids(rng, c)
    src_t, tgt_t = torch.from_numpy(src), torch.from_numpy(tgt)
    g0 = rng.standard_normal((c.batch, c.seq, VOCAB)).astype(np.float32)
    gt = torch.from_numpy(g0)

    def ours_forward() -> np.ndarray:
        with mt.no_grad():
            return ours(src, tgt).data

    def torch_forward() -> np.ndarray:
        with torch.no_grad():
            return theirs(src_t, tgt_t).numpy()

    def ours_step() -> np.ndarray:
        ours.zero_grad()
        ours(src, tgt).backward(g0)
        return ours.src_embed.weight.grad

    def torch_step() -> np.ndarray:
        theirs.zero_grad(set_to_none=True)
        theirs(src_t, tgt_t).backward(gt)
        return theirs.src_embed.weight.grad.numpy()

    _check_output(f"transformer {c}: logits", ours_forward(), torch_forward())
    _check_gradient(f"transformer {c}: dL/dE_src", ours_step(), torch_step())
    return {
        "forward": {"minitransformer": ours_forward, "torch": torch_forward},
        "forward+backward": {"minitransformer": ours_step, "torch": torch_step},
    }


def _sub(state: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


# ---------------------------------------------------------------- profile


def profile(c: Config, steps: int) -> dict[str, dict]:
    """cProfile our encoder layer's and transformer's forward + backward at config ``c``.

    Prints, and returns, the seconds spent in each op's forward and backward.
    """
    report = {}
    for part, make in (("encoder layer", encoder_layer_pair), ("transformer", transformer_pair)):
        step = make(c)["forward+backward"]["minitransformer"]
        step()  # warm up (Numba compiles, caches fill)
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(steps):
            step()
        profiler.disable()
        stats = pstats.Stats(profiler)
        total = stats.total_tt
        ops = op_times(stats)
        print(f"\nprofile of our {part} forward + backward at {c}, {steps} steps: {total:.2f} s")
        print(f"{'op':<16s}{'forward s':>11s}{'backward s':>12s}{'share':>8s}{'calls':>7s}")
        for name, fwd, bwd, calls in ops[:12]:
            print(f"{name:<16s}{fwd:>11.3f}{bwd:>12.3f}{(fwd + bwd) / total:>8.1%}{calls:>7d}")
        print("top functions by own time:")
        stats.sort_stats("tottime").print_stats(8)
        report[part] = {
            "config": str(c),
            "steps": steps,
            "total_s": total,
            "ops": [
                {"op": name, "forward_s": fwd, "backward_s": bwd, "calls": calls}
                for name, fwd, bwd, calls in ops
            ],
        }
    return report


# ---------------------------------------------------------------- plot


def plot_ratios(rows: list[dict]):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, part in zip(axes, ("encoder layer", "transformer")):
        mine = [r for r in rows if r["part"] == part]
        configs = list(dict.fromkeys(r["config"] for r in mine))
        ratio = {(r["config"], r["pass"]): r["ratio"] for r in mine}
        width = 0.38
        for k, mode in enumerate(("forward", "forward+backward")):
            ratios = [ratio[cfg, mode] for cfg in configs]
            ax.bar(np.arange(len(configs)) + (k - 0.5) * width, ratios, width, label=mode)
        ax.axhline(TARGET, color="red", lw=1, ls="--", label=f"target {TARGET}x")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_xticks(range(len(configs)), configs, rotation=20, fontsize=7)
        ax.set_title(part)
        ax.set_ylabel("time, minitransformer / PyTorch")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few rounds")
    parser.add_argument("--profile", action="store_true", help="cProfile ours at one config")
    args = parser.parse_args()

    torch.set_num_threads(2)
    mt.manual_seed(0)
    configs = QUICK_CONFIGS if args.quick else CONFIGS
    rounds = 2 if args.quick else 3

    table = Table(
        ["part", "config", "pass", "ours s", "torch s", "ours / torch", "(best / best)", "load"]
    )
    rows = []
    for part, make in (("encoder layer", encoder_layer_pair), ("transformer", transformer_pair)):
        for c in configs:
            for mode, candidates in make(c).items():
                # no warm-up calls: building the pair already ran each candidate once
                stats = timeit_stats(candidates, repeat=rounds, warmup=0)
                ours, theirs = stats["minitransformer"], stats["torch"]
                row = {
                    "part": part,
                    "config": str(c),
                    "pass": mode,
                    "minitransformer_s": ours["median"],
                    "torch_s": theirs["median"],
                    "ratio": ours["median"] / theirs["median"],
                    "ratio_of_minima": ours["min"] / theirs["min"],
                    "load_avg_1min": os.getloadavg()[0],  # other work on the machine skews both
                }
                rows.append(row)
                print(f"{part}, {c}, {mode}: ours / torch = {row['ratio']:.2f}", flush=True)
                table.add(
                    part,
                    str(c),
                    mode,
                    row["minitransformer_s"],
                    row["torch_s"],
                    row["ratio"],
                    row["ratio_of_minima"],
                    row["load_avg_1min"],
                )
    table.print()
    for key, what in (("ratio", "medians"), ("ratio_of_minima", "minima")):
        worst = max(r[key] for r in rows)
        verdict = "meets" if worst <= TARGET else "misses"
        print(f"worst ours / torch ({what}) = {worst:.2f}: {verdict} the target of {TARGET}x")
    print(f"load average (1, 5, 15 min) at the end: {os.getloadavg()}")

    extra = {}
    if args.profile:
        extra["profile"] = profile(QUICK_CONFIGS[-1] if args.quick else PROFILE_CONFIG, steps=1)
    name = "bench_layers_quick" if args.quick else "bench_layers"
    save_results(name, rows, plot_ratios(rows), **extra)


if __name__ == "__main__":
    main()
