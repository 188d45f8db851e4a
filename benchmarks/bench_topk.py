"""Sparse top-k attention on the CPU: our Numba kernels against PyTorch's dense attention.

Batch 1, 8 heads, head size d = 64, float32, sequence length n = 1k, 2k, 4k, 8k
(``--quick``: 256, 512, 1k), top_k = 32 and 64, no mask. Timed round-robin in one run,
median of 3 rounds (from n = 4k, where a call takes seconds, one round):

- **ours**: ``topk_attention_forward`` (keeps each query's top_k keys) and forward +
  ``topk_attention_backward``, on q, k, v of shape (8, n, 64);
- **flash**: ``torch.nn.functional.scaled_dot_product_attention`` under
  ``sdpa_kernel(SDPBackend.FLASH_ATTENTION)`` (PyTorch's fused CPU kernel, dense: every
  key), forward and forward + ``backward()``, on (1, 8, n, 64);
- **math**: the same call under ``SDPBackend.MATH``, which materialises the (n, n)
  scores and weights;
- **dense reference**: our ``topk_attention_reference`` (NumPy, dense scores and a full
  sort), only up to n = 2048 (beyond, its sort needs tens of GB).

Peak extra memory during forward + backward: for ours, ``tracemalloc``'s peak (NumPy
allocations are traced; it excludes the inputs, which exist before), and the part of
it that is scratch rather than the outputs (out, idx, p, gq, gk, gv); for PyTorch, which
tracemalloc cannot see, the peak resident set size above the one before the call,
sampled every millisecond from /proc/self/statm by a thread (so brief peaks can be
missed, and only memory actually touched counts). The table also gives the math path's
theoretical floor: its (8, n, n) float32 weights alone, 32 n^2 bytes.

Targets at n = 8k: our forward no slower than flash's, our forward + backward at most
0.6x flash's, our peak extra memory at least 50x below the math path's.

PyTorch runs on 2 threads (``torch.set_num_threads(2)``); ours uses ``num_threads()``.

    python benchmarks/bench_topk.py            # 10-20 minutes on 2 busy cores
    python benchmarks/bench_topk.py --quick    # about a minute
"""

from __future__ import annotations

import argparse
import importlib
import os
import threading
import time
import tracemalloc
from collections.abc import Callable

import numpy as np

from minitransformer.kernels.topk import (
    topk_attention_backward,
    topk_attention_backward_reference,
    topk_attention_forward,
    topk_attention_reference,
)

try:
    from benchmarks._common import Table, save_results, timeit_stats
except ImportError:  # run as a script: benchmarks/ itself is on sys.path
    from _common import Table, save_results, timeit_stats

# torch after the kernels: they set OMP_WAIT_POLICY=PASSIVE (see kernels/_numba.py) and
# PyTorch's OpenMP runtime then reads it too, so both sides wait for work the same way.
torch = importlib.import_module("torch")
F = importlib.import_module("torch.nn.functional")
attention = importlib.import_module("torch.nn.attention")

HEADS, D = 8, 64
TOP_KS = (32, 64)
LENGTHS = (1024, 2048, 4096, 8192)
QUICK_LENGTHS = (256, 512, 1024)
DENSE_REFERENCE_MAX_N = 2048
TARGET_FWD, TARGET_FWD_BWD, TARGET_MEMORY = 1.0, 0.6, 50.0


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_delta(fn: Callable[[], object]) -> int:
    """Peak resident memory above the level before ``fn()``, sampled every millisecond."""
    before = rss_bytes()
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        fn()
    finally:
        done.set()
        sampler.join()
    return max(peak, rss_bytes()) - before


def traced_peak(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def candidates(n: int, rng: np.random.Generator) -> tuple[dict, dict]:
    """Timed functions (name -> fn) and memory probes (name -> fn) at length n."""
    q, k, v, gout = (rng.standard_normal((HEADS, n, D), dtype=np.float32) for _ in range(4))
    qt, kt, vt, gt = (torch.from_numpy(a)[None] for a in (q, k, v, gout))
    leaves = [t.clone().requires_grad_(True) for t in (qt, kt, vt)]

    def ours(top_k: int, backward: bool) -> Callable[[], object]:
        def run() -> object:
            out, idx, p = topk_attention_forward(q, k, v, top_k)
            if backward:
                return topk_attention_backward(q, k, v, idx, p, gout)
            return out

        return run

    def torch_sdpa(backend, backward: bool) -> Callable[[], object]:
        def run() -> object:
            with attention.sdpa_kernel(backend):
                if not backward:
                    with torch.no_grad():
                        return F.scaled_dot_product_attention(qt, kt, vt)
                for leaf in leaves:
                    leaf.grad = None
                out = F.scaled_dot_product_attention(*leaves)
                out.backward(gt)
                return out

        return run

    def dense_reference(backward: bool) -> Callable[[], object]:
        def run() -> object:
            out, w, keep = topk_attention_reference(q, k, v, TOP_KS[-1])
            if backward:
                return topk_attention_backward_reference(q, k, v, w, keep, gout)
            return out

        return run

    flash, math_ = attention.SDPBackend.FLASH_ATTENTION, attention.SDPBackend.MATH
    timed = {}
    for top_k in TOP_KS:
        timed[f"ours k={top_k} fwd"] = ours(top_k, False)
        timed[f"ours k={top_k} fwd+bwd"] = ours(top_k, True)
    timed["flash fwd"] = torch_sdpa(flash, False)
    timed["flash fwd+bwd"] = torch_sdpa(flash, True)
    timed["math fwd"] = torch_sdpa(math_, False)
    timed["math fwd+bwd"] = torch_sdpa(math_, True)
    if n <= DENSE_REFERENCE_MAX_N:
        timed[f"dense ref k={TOP_KS[-1]} fwd"] = dense_reference(False)
        timed[f"dense ref k={TOP_KS[-1]} fwd+bwd"] = dense_reference(True)
    memory = {
        **{f"ours k={top_k}": ours(top_k, True) for top_k in TOP_KS},
        "flash": torch_sdpa(flash, True),
        "math": torch_sdpa(math_, True),
    }
    return timed, memory


def check_agreement(rng: np.random.Generator) -> None:
    """With top_k = n every key is kept: ours must then equal PyTorch's dense attention."""
    n = 128
    q, k, v = (rng.standard_normal((HEADS, n, D), dtype=np.float32) for _ in range(3))
    ours, _, _ = topk_attention_forward(q, k, v, n)
    theirs = F.scaled_dot_product_attention(*(torch.from_numpy(a)[None] for a in (q, k, v)))
    np.testing.assert_allclose(ours, theirs[0].numpy(), rtol=1e-4, atol=1e-5)


def measure(n: int, rounds: int, warmup: int, rng: np.random.Generator) -> dict:
    timed, memory = candidates(n, rng)
    stats = timeit_stats(timed, rounds, warmup)
    row: dict = {
        "n": n,
        "seconds": {name: s["median"] for name, s in stats.items()},
        "best_seconds": {name: s["min"] for name, s in stats.items()},
        "cpu_seconds": {name: s["cpu_median"] for name, s in stats.items()},
        "load_avg_1min": os.getloadavg()[0],  # other work on the machine skews all numbers
    }
    peaks = {}
    for name, fn in memory.items():
        if name.startswith("ours"):
            peaks[name] = traced_peak(fn)
            peaks[name + " (rss)"] = peak_rss_delta(fn)
        else:
            peaks[name + " (rss)"] = peak_rss_delta(fn)
    peaks["math weights (theory)"] = HEADS * n * n * 4
    for top_k in TOP_KS:  # what ours must return: out, idx, p, and gq, gk, gv
        outputs = HEADS * n * (D + 2 * top_k + 3 * D) * 4
        peaks[f"ours k={top_k} scratch"] = peaks[f"ours k={top_k}"] - outputs
    row["peak_extra_bytes"] = peaks
    return row


def plot(rows: list[dict]):
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 4.5))
    ns = [r["n"] for r in rows]
    for name in rows[0]["seconds"]:
        if name.startswith("dense ref"):
            continue
        style = "o-" if name.startswith("ours") else "s--"
        ax_t.plot(ns, [r["seconds"][name] for r in rows], style, label=name)
    ax_t.set_xscale("log", base=2)
    ax_t.set_yscale("log")
    ax_t.set_xlabel("sequence length n")
    ax_t.set_ylabel("seconds (median)")
    ax_t.set_title(f"attention, {HEADS} heads, d = {D}, float32")
    ax_t.legend(fontsize=7)
    ax_t.grid(True, alpha=0.3)
    for name in rows[0]["peak_extra_bytes"]:
        style = "o-" if name.startswith("ours") else "s--"
        mib = [r["peak_extra_bytes"][name] / 2**20 for r in rows]
        ax_m.plot(ns, np.maximum(mib, 1e-2), style, label=name)
    ax_m.set_xscale("log", base=2)
    ax_m.set_yscale("log")
    ax_m.set_xlabel("sequence length n")
    ax_m.set_ylabel("peak extra memory, MiB (forward + backward)")
    ax_m.legend(fontsize=7)
    ax_m.grid(True, alpha=0.3)
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short sequences, few rounds")
    args = parser.parse_args()
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    check_agreement(rng)
    lengths = QUICK_LENGTHS if args.quick else LENGTHS

    rows = []
    for n in lengths:
        # long sequences take seconds per call (the math path minutes on a busy machine):
        # one round, no warm-up (ours is compiled by then, and nothing else needs one)
        rounds, warmup = (1, 0) if n >= 4096 else (2 if args.quick else 3, 1)
        rows.append(measure(n, rounds, warmup, rng))
        print(f"n = {n} done (load average {os.getloadavg()[0]:.1f})", flush=True)

    time_table = Table(
        ["n", "top_k", "ours fwd s", "flash fwd s", "math fwd s", "fwd / flash",
         "(cpu s)", "ours fwd+bwd s", "flash fwd+bwd s", "math fwd+bwd s",
         "fwd+bwd / flash", "(cpu s) ", "dense ref fwd+bwd s"]
    )  # fmt: skip
    memory_table = Table(
        ["n", "top_k", "ours MiB (tracemalloc)", "of which scratch", "ours MiB (rss)",
         "flash MiB (rss)", "math MiB (rss)", "math weights MiB (theory)", "math rss / ours",
         "theory / ours"]
    )  # fmt: skip
    for r in rows:
        s, c, m, n = r["seconds"], r["cpu_seconds"], r["peak_extra_bytes"], r["n"]
        for top_k in TOP_KS:
            fwd, both = s[f"ours k={top_k} fwd"], s[f"ours k={top_k} fwd+bwd"]
            r[f"k={top_k} fwd / flash"] = fwd / s["flash fwd"]
            r[f"k={top_k} fwd+bwd / flash"] = both / s["flash fwd+bwd"]
            r[f"k={top_k} fwd / flash (cpu s)"] = c[f"ours k={top_k} fwd"] / c["flash fwd"]
            r[f"k={top_k} fwd+bwd / flash (cpu s)"] = (
                c[f"ours k={top_k} fwd+bwd"] / c["flash fwd+bwd"]
            )
            ours_mem = m[f"ours k={top_k}"]
            r[f"k={top_k} math memory / ours"] = m["math (rss)"] / ours_mem
            time_table.add(
                n, top_k, fwd, s["flash fwd"], s["math fwd"], r[f"k={top_k} fwd / flash"],
                r[f"k={top_k} fwd / flash (cpu s)"], both, s["flash fwd+bwd"],
                s["math fwd+bwd"], r[f"k={top_k} fwd+bwd / flash"],
                r[f"k={top_k} fwd+bwd / flash (cpu s)"], s.get(f"dense ref k={top_k} fwd+bwd"),
            )  # fmt: skip
            memory_table.add(
                n, top_k, ours_mem / 2**20, m[f"ours k={top_k} scratch"] / 2**20,
                m[f"ours k={top_k} (rss)"] / 2**20,
                m["flash (rss)"] / 2**20, m["math (rss)"] / 2**20,
                m["math weights (theory)"] / 2**20, r[f"k={top_k} math memory / ours"],
                m["math weights (theory)"] / ours_mem,
            )  # fmt: skip
    print(
        f"\n{HEADS} heads, d = {D}, float32; times are medians of wall time; '/ flash' below"
        " 1: ours faster; '(cpu s)': the same ratio in CPU seconds of all threads\n"
    )
    time_table.print()
    print("\npeak extra memory during forward + backward\n")
    memory_table.print()

    last = rows[-1]
    print(f"\ntargets at n = {last['n']}:")
    for top_k in TOP_KS:
        fwd, both = last[f"k={top_k} fwd / flash"], last[f"k={top_k} fwd+bwd / flash"]
        mem = last[f"k={top_k} math memory / ours"]
        print(
            f"  top_k {top_k}: fwd / flash {fwd:.2f} (<= {TARGET_FWD}: "
            f"{'met' if fwd <= TARGET_FWD else 'NOT met'}), fwd+bwd / flash {both:.2f} "
            f"(<= {TARGET_FWD_BWD}: {'met' if both <= TARGET_FWD_BWD else 'NOT met'}), "
            f"math memory / ours {mem:.0f}x (>= {TARGET_MEMORY:.0f}x: "
            f"{'met' if mem >= TARGET_MEMORY else 'NOT met'})"
        )
    print(f"load average (1, 5, 15 min) at the end: {os.getloadavg()}")
    name = "bench_topk_quick" if args.quick else "bench_topk"
    json_path, _ = save_results(name, rows, plot(rows), heads=HEADS, d=D, top_ks=TOP_KS)
    print(f"saved {json_path} and .png")


if __name__ == "__main__":
    main()
