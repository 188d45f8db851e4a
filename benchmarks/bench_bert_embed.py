"""Sentence-embedding throughput of all-MiniLM-L6-v2: our BertModel against transformers'.

A batch of B = 32 sequences of exactly L = 64 tokens (``[CLS]``, 62 ordinary
WordPiece ids drawn at random, ``[SEP]``; no padding: a dense model's cost does not
depend on which tokens it reads) goes through the 6-layer, 384-wide encoder in
float32, under no_grad, in eval mode:

- **minitransformer**: ``BertModel.from_pretrained(minilm_folder())``;
- **torch (sdpa)**: ``transformers.BertModel`` as a user gets it (PyTorch's fused
  ``scaled_dot_product_attention``);
- **torch (eager)**: the same with ``attn_implementation="eager"``, the attention
  written as matmul, softmax, matmul, like ours;
- **numpy by hand**: the same forward pass written with raw NumPy arrays, every
  ``(B, L, d) @ (d, m)`` product folded into one 2-D GEMM ``(B*L, d) @ (d, m)``: the
  floor for any NumPy implementation on this machine.

Threads: NumPy's BLAS uses ``OPENBLAS_NUM_THREADS`` threads (2, the cores, when
unset), and PyTorch gets the same number. Timings are the median of the rounds (what
a user sees on a shared machine) beside the minimum (what the code does when it gets
the cores) and the CPU seconds.

The last hidden states of all four are checked to agree (to 1e-4) before anything
is timed; candidates are timed in interleaved rounds, so a busy machine slows them
alike. Throughput is sentences per second; the ratio is our time over PyTorch's
(target: at most 1.3 against torch (sdpa)).

Then ``--profile`` (on by default) runs cProfile on our forward and prints where the
time goes, by op (MatMul, Softmax, LayerNorm, Gelu, transposes and reshapes, ...),
and times each matrix product of one layer at its real shapes two ways: as the
library issues it and folded to 2-D.

    python benchmarks/bench_bert_embed.py             # ~1-2 minutes on 2 idle cores
    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_bert_embed.py    # 1 thread each
    python benchmarks/bench_bert_embed.py --quick     # fewer rounds, batch 8

Results: ``results/bench_bert_embed_<threads>thread.{json,png}`` (the profile is in
the JSON too).
"""

from __future__ import annotations

import argparse
import cProfile
import math
import os
import pstats
import time
from collections.abc import Callable

import numpy as np
import torch
import transformers

import minitransformer as mt
from minitransformer.backend import erf
from minitransformer.pretrained import BertModel, minilm_folder

try:
    from benchmarks._common import Table, op_times, save_results, timeit_stats
except ImportError:  # run as a script: benchmarks/ itself is on sys.path
    from _common import Table, op_times, save_results, timeit_stats

TARGET = 1.3  # our time / torch (sdpa)
# Function subclasses grouped under the names the report uses
CATEGORIES = {
    "MatMul": "matmul",
    "Softmax": "softmax",
    "LayerNorm": "layernorm",
    "Gelu": "gelu",
    "GeluTanh": "gelu",
    "Transpose": "transpose/reshape",
    "Reshape": "transpose/reshape",
    "Embedding": "embedding",
    "MaskedFill": "masking",
    "Where": "masking",
}


# ---------------------------------------------------------------- inputs and models


def make_batch(batch: int, length: int, vocab_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """[CLS] + random ordinary WordPiece ids + [SEP], every row exactly ``length`` tokens."""
    rng = np.random.default_rng(seed)
    cls_id, sep_id, first_ordinary = 101, 102, 1000  # BERT's uncased vocabulary
    ids = rng.integers(first_ordinary, vocab_size, size=(batch, length))
    ids[:, 0], ids[:, -1] = cls_id, sep_id
    return {
        "input_ids": ids.astype(np.int64),
        "token_type_ids": np.zeros((batch, length), dtype=np.int64),
        "attention_mask": np.ones((batch, length), dtype=np.int64),
    }


def numpy_forward(w: dict[str, np.ndarray], config, enc: dict[str, np.ndarray]) -> np.ndarray:
    """BERT's encoder on raw arrays (Hugging Face names and layouts), 2-D GEMMs only."""
    ids, types = enc["input_ids"], enc["token_type_ids"]
    B, L = ids.shape
    d, H, eps = config.hidden_size, config.num_attention_heads, config.layer_norm_eps
    dh = d // H

    def layer_norm(x, name):
        mu = x.mean(axis=-1, keepdims=True)
        var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * w[name + ".weight"] + w[name + ".bias"]

    def dense(x2, name):  # x2 (N, in); Hugging Face stores weight (out, in)
        return x2 @ w[name + ".weight"].T + w[name + ".bias"]

    bias = np.where(enc["attention_mask"][:, None, None, :] != 0, 0.0, -np.inf).astype(np.float32)
    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][np.arange(L)]
        + w["embeddings.token_type_embeddings.weight"][types]
    )
    x = layer_norm(x, "embeddings.LayerNorm").reshape(B * L, d)
    for i in range(config.num_hidden_layers):
        p = f"encoder.layer.{i}."
        q, k, v = (
            dense(x, p + f"attention.self.{n}").reshape(B, L, H, dh).transpose(0, 2, 1, 3)
            for n in ("query", "key", "value")
        )
        s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(dh) + bias
        s = np.exp(s - s.max(axis=-1, keepdims=True))
        ctx = (s / s.sum(axis=-1, keepdims=True)) @ v  # (B, H, L, dh)
        ctx = ctx.transpose(0, 2, 1, 3).reshape(B * L, d)
        attn = dense(ctx, p + "attention.output.dense")
        x = layer_norm(x + attn, p + "attention.output.LayerNorm")
        f = dense(x, p + "intermediate.dense")
        f = 0.5 * f * (1.0 + erf(f * np.float32(1 / math.sqrt(2))))
        x = layer_norm(x + dense(f, p + "output.dense"), p + "output.LayerNorm")
    return x.reshape(B, L, d)


def candidates(enc: dict[str, np.ndarray]) -> dict[str, Callable[[], np.ndarray]]:
    folder = minilm_folder()
    ours = BertModel.from_pretrained(folder)
    sdpa = transformers.BertModel.from_pretrained(str(folder), attn_implementation="sdpa").eval()
    eager = transformers.BertModel.from_pretrained(str(folder), attn_implementation="eager").eval()
    weights = mt.load(folder / "model.safetensors")
    torch_enc = {k: torch.from_numpy(v) for k, v in enc.items()}

    def run_ours() -> np.ndarray:
        with mt.no_grad():
            return ours(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]).numpy()

    def run_torch(model) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            with torch.no_grad():
                return model(**torch_enc).last_hidden_state.numpy()

        return run

    def run_numpy() -> np.ndarray:
        return numpy_forward(weights, ours.config, enc)

    found = {
        "minitransformer": run_ours,
        "torch (sdpa)": run_torch(sdpa),
        "torch (eager)": run_torch(eager),
        "numpy by hand": run_numpy,
    }
    # the four compute the same states, or the timings compare different work
    reference = found["torch (eager)"]()
    for name, run in found.items():
        err = float(np.abs(run() - reference).max())
        if err > 1e-4:
            raise AssertionError(f"{name} differs from torch (eager) by {err:.3g}")
    return found


# ---------------------------------------------------------------- profile


def forward_times(stats: pstats.Stats) -> dict[str, tuple[float, int]]:
    """Seconds in each op's forward (with what it calls), and its calls."""
    return {name: (fwd, calls) for name, fwd, _, calls in op_times(stats) if calls > 0}


def best_of(fn: Callable[[], object], repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_shapes(B: int, L: int, config, repeat: int) -> list[dict]:
    """Each product of one BERT layer at its real shapes: as issued, and folded to 2-D."""
    rng = np.random.default_rng(0)
    d, ff, H = config.hidden_size, config.intermediate_size, config.num_attention_heads
    dh = d // H

    def r(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    rows = []
    for what, k, m, count in (
        ("x @ W_qkvo (d -> d)", d, d, 4),
        ("x @ W_1 (d -> ff)", d, ff, 1),
        ("h @ W_2 (ff -> d)", ff, d, 1),
    ):
        x, W = r(B, L, k), r(k, m)
        rows.append(
            {
                "product": what,
                "per_layer": count,
                "as_issued_s": best_of(lambda x=x, W=W: x @ W, repeat),
                "folded_2d_s": best_of(lambda x=x, W=W: x.reshape(-1, W.shape[0]) @ W, repeat),
            }
        )
    q, kt, p = r(B, H, L, dh), r(B, H, dh, L), r(B, H, L, L)
    rows.append(
        {
            "product": "Q @ K^T (batched)",
            "per_layer": 1,
            "as_issued_s": best_of(lambda: q @ kt, repeat),
            "folded_2d_s": None,  # a true batch: B * H different small products
        }
    )
    rows.append(
        {
            "product": "P @ V (batched)",
            "per_layer": 1,
            "as_issued_s": best_of(lambda: p @ q, repeat),
            "folded_2d_s": None,  # a true batch: B * H different small products
        }
    )
    return rows


def profile(enc: dict[str, np.ndarray], calls: int, repeat: int) -> dict:
    model = BertModel.from_pretrained(minilm_folder())
    ids, mask, types = enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]
    with mt.no_grad():
        model(ids, mask, types)  # warm up: Numba compiles, caches fill
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(calls):
            model(ids, mask, types)
        profiler.disable()
    stats = pstats.Stats(profiler)
    total = stats.total_tt / calls
    ops = forward_times(stats)
    by_category: dict[str, float] = {}
    for name, (seconds, _) in ops.items():
        key = CATEGORIES.get(name, "elementwise and other ops")
        by_category[key] = by_category.get(key, 0.0) + seconds / calls
    by_category["python outside ops"] = total - sum(by_category.values())

    print(f"\nprofile of our forward, batch {ids.shape}, {calls} calls: {total:.3f} s per call")
    print(f"{'part':<28s}{'s / call':>10s}{'share':>8s}")
    for key, seconds in sorted(by_category.items(), key=lambda kv: -kv[1]):
        print(f"{key:<28s}{seconds:>10.4f}{seconds / total:>8.1%}")
    print(f"\n{'op':<16s}{'s / call':>10s}{'calls / forward':>17s}")
    for name, (seconds, n) in sorted(ops.items(), key=lambda kv: -kv[1][0])[:10]:
        print(f"{name:<16s}{seconds / calls:>10.4f}{n // calls:>17d}")

    shapes = matmul_shapes(ids.shape[0], ids.shape[1], model.config, repeat)
    table = Table(["product", "per layer", "as issued s", "folded 2-D s", "issued / folded"])
    for row in shapes:
        table.add(
            [
                row["product"],
                row["per_layer"],
                row["as_issued_s"],
                row["folded_2d_s"],
                row["folded_2d_s"] and row["as_issued_s"] / row["folded_2d_s"],
            ]
        )
    print("\nthe matrix products of one layer, NumPy alone (best of", repeat, "):")
    table.print()
    return {"seconds_per_call": total, "by_category": by_category, "matmul_shapes": shapes}


# ---------------------------------------------------------------- main


def plot_throughput(rows: list[dict], threads: int):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = [r["candidate"] for r in rows]
    ax.barh(names, [r["sentences_per_s"] for r in rows], color="tab:blue")  # by median
    ax.invert_yaxis()
    ax.set_xlabel("sentences / s (higher is better)")
    r = rows[0]
    ax.set_title(
        f"all-MiniLM-L6-v2 forward, batch {r['batch']} x {r['length']} tokens, float32, "
        f"{threads} thread(s)"
    )
    fig.tight_layout()
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="batch 8, fewer rounds")
    parser.add_argument("--no-profile", action="store_true", help="skip the profile")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=64)
    args = parser.parse_args()

    # PyTorch gets as many threads as NumPy's BLAS (OPENBLAS_NUM_THREADS, else 2)
    threads = int(os.environ.get("OPENBLAS_NUM_THREADS", "2"))
    torch.set_num_threads(threads)
    batch = 8 if args.quick else args.batch
    rounds = 2 if args.quick else 5
    config = BertModel.from_pretrained(minilm_folder()).config
    enc = make_batch(batch, args.length, config.vocab_size)

    stats = timeit_stats(candidates(enc), repeat=rounds)
    median = {name: s["median"] for name, s in stats.items()}
    best = {name: s["min"] for name, s in stats.items()}
    table = Table(
        [
            "candidate",
            "median s",
            "min s",
            "cpu s",
            "sentences / s",
            "/ torch sdpa (median)",
            "/ torch sdpa (min)",
            "/ torch eager (median)",
        ]
    )
    rows = []
    for name, s in stats.items():
        row = {
            "candidate": name,
            "batch": batch,
            "length": args.length,
            "threads": threads,
            "seconds_median": s["median"],
            "seconds_min": s["min"],
            "cpu_seconds_median": s["cpu_median"],
            "sentences_per_s": batch / s["median"],
            "ratio_vs_torch_sdpa": s["median"] / median["torch (sdpa)"],
            "ratio_vs_torch_sdpa_min": s["min"] / best["torch (sdpa)"],
            "ratio_vs_torch_eager": s["median"] / median["torch (eager)"],
        }
        rows.append(row)
        table.add(
            name,
            s["median"],
            s["min"],
            s["cpu_median"],
            row["sentences_per_s"],
            row["ratio_vs_torch_sdpa"],
            row["ratio_vs_torch_sdpa_min"],
            row["ratio_vs_torch_eager"],
        )
    print(f"batch {batch} x {args.length} tokens, float32, {threads} thread(s), {rounds} rounds")
    table.print()
    ratio = median["minitransformer"] / median["torch (sdpa)"]
    verdict = "meets" if ratio <= TARGET else "misses"
    print(f"ours / torch (sdpa) = {ratio:.2f} (median): {verdict} the target of {TARGET}x")
    print(f"load average (1, 5, 15 min) at the end: {os.getloadavg()}")

    report = None
    if not args.no_profile:
        report = profile(enc, calls=2 if args.quick else 5, repeat=3 if args.quick else 10)
    name = "bench_bert_embed_quick" if args.quick else f"bench_bert_embed_{threads}thread"
    save_results(name, rows, plot_throughput(rows, threads), profile=report)


if __name__ == "__main__":
    main()
