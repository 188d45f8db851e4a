"""Greedy decoding with and without the key/value cache, for output lengths 16 to 128.

Without a cache, step t re-runs the decoder on the whole prefix y_0 .. y_t: for an
output of length T that is 1 + 2 + ... + T = T (T + 1) / 2 token positions through
every decoder layer, and attention over the prefix costs sum_t t^2 ~ T^3 / 3. With
the cache (``use_cache=True``) step t feeds only y_t, whose query attends to the
cached keys and values of y_0 .. y_t: T positions in all, attention ~ T^2 / 2. The
expected speed-up therefore grows roughly linearly with T (the encoder, run once,
and per-step overheads are shared).

Model: the translation benchmark's ``nn.Transformer`` (``translate_tatoeba.Setup``:
its d_model, heads, layers, d_ff and BPE vocabulary size), untrained (seeded), in
eval mode, float32, positional table long enough for 128 tokens. Its generator's
``</s>`` bias is set to -1e4 so that ``</s>`` never wins the argmax and every
sentence runs to ``max_len``: we time exactly T steps. Sources are random ids of
length ``SRC_LEN``.

For each batch size and output length T, both ways are timed (median of a few
rounds, interleaved) and must produce identical tokens (asserted). Threads as in
``translate_tatoeba.py`` (``--threads``, default 1).

    python benchmarks/bench_decode_cache.py            # a few minutes on 2 busy cores
    python benchmarks/bench_decode_cache.py --quick    # seconds
"""

from __future__ import annotations

import argparse
from functools import partial

import numpy as np

import minitransformer as mt
from minitransformer.decoding import greedy_decode
from minitransformer.nn import Transformer

try:
    from benchmarks._common import Table, save_results, timeit
    from benchmarks.translate_tatoeba import Setup, limit_threads, load_average
except ImportError:  # run as a script: benchmarks/ itself is on sys.path
    from _common import Table, save_results, timeit
    from translate_tatoeba import Setup, limit_threads, load_average

LENGTHS = (16, 32, 64, 128)
BATCHES = (1, 32)
SRC_LEN = 12
PAD, BOS, EOS = 0, 1, 2  # the special ids of our trained tokenizers


def build(s: Setup, max_len: int) -> Transformer:
    mt.manual_seed(s.seed)
    model = Transformer(
        s.vocab_size,
        s.vocab_size,
        d_model=s.d_model,
        num_heads=s.num_heads,
        num_encoder_layers=s.num_layers,
        num_decoder_layers=s.num_layers,
        d_ff=s.d_ff,
        dropout=s.dropout,
        max_len=max_len + 1,
        pad_id=PAD,
    )
    model.generator.bias.data[EOS] = -1e4  # </s> never wins: every output has max_len tokens
    return model.eval()


def decode_into(
    outputs: dict, model: Transformer, src: np.ndarray, n: int, use_cache: bool
) -> None:
    outputs[use_cache] = greedy_decode(model, src, BOS, EOS, n, use_cache=use_cache)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small model, short outputs")
    parser.add_argument("--threads", type=int, default=1, help="threads")
    args = parser.parse_args()
    limit_threads(args.threads)
    s = Setup(d_model=64, d_ff=128, vocab_size=1000) if args.quick else Setup()
    lengths = LENGTHS[:2] if args.quick else LENGTHS
    rounds = 1 if args.quick else 3
    model = build(s, max(lengths))
    rng = np.random.default_rng(0)
    print(
        f"greedy decoding, untrained Transformer d_model={s.d_model}, {s.num_layers}+"
        f"{s.num_layers} layers, d_ff={s.d_ff}, vocabulary {s.vocab_size}; "
        f"sources of {SRC_LEN} tokens; load {load_average()}"
    )

    table = Table(["batch", "tokens", "no cache s", "cache s", "speed-up", "ms/token cached"])
    rows = []
    for batch in BATCHES:
        src = rng.integers(3, s.vocab_size, size=(batch, SRC_LEN))
        for n in lengths:
            outputs: dict[bool, list[list[int]]] = {}
            times = timeit(
                {
                    "no cache": partial(decode_into, outputs, model, src, n, use_cache=False),
                    "cache": partial(decode_into, outputs, model, src, n, use_cache=True),
                },
                rounds=rounds,
            )
            if outputs[True] != outputs[False]:
                raise AssertionError(
                    f"batch {batch}, {n} tokens: cached and uncached decoding differ"
                )
            if any(len(row) != n for row in outputs[True]):
                raise AssertionError(f"an output stopped before {n} tokens")
            speedup = times["no cache"] / times["cache"]
            per_token = 1e3 * times["cache"] / n
            rows.append(
                {
                    "batch": batch,
                    "tokens": n,
                    "no_cache_s": times["no cache"],
                    "cache_s": times["cache"],
                    "speedup": speedup,
                    "ms_per_token_cached": per_token,
                }
            )
            table.add(batch, n, times["no cache"], times["cache"], speedup, per_token)
            print(f"  batch {batch}, {n} tokens: {speedup:.1f}x (load {load_average()})")
    table.print()
    print(f"identical tokens with and without the cache in every case; load {load_average()}")
    save_results(
        "bench_decode_cache_quick" if args.quick else "bench_decode_cache",
        rows,
        plot(rows),
        model=dict(model.config),
        src_len=SRC_LEN,
        threads=args.threads,
    )


def plot(rows: list[dict]):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for batch in sorted({r["batch"] for r in rows}):
        mine = [r for r in rows if r["batch"] == batch]
        n = [r["tokens"] for r in mine]
        axes[0].plot(n, [r["no_cache_s"] for r in mine], "o--", label=f"batch {batch}, no cache")
        axes[0].plot(n, [r["cache_s"] for r in mine], "o-", label=f"batch {batch}, cache")
        axes[1].plot(n, [r["speedup"] for r in mine], "o-", label=f"batch {batch}")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("output tokens")
        ax.legend()
    axes[0].set_yscale("log")
    axes[0].set_ylabel("greedy decoding time, s")
    axes[1].set_ylabel("speed-up from the key/value cache")
    axes[1].axhline(1.0, color="grey", lw=0.8)
    fig.suptitle("Greedy decoding with and without the key/value cache")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    main()
