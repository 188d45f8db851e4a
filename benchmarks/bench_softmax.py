"""Softmax forward and backward on the CPU: our fused Numba kernels against NumPy and PyTorch.

For rows of length n = 1k ... 16k (float32, last axis), with as many rows as make each
array ``ARRAY_MB`` MiB, it times, round-robin in one run:

- **copy**: ``np.copyto(dst, x)``, the machine's copy bandwidth for the same bytes;
- **ours**: ``softmax_forward(x)`` (allocating its output, as the autograd calls it) and
  ``softmax_forward(x, out=y)`` (into a reused array: no page faults on fresh memory);
- **numpy**: the naive formula ``e = exp(x - max); e / sum(e)``;
- **torch**: ``torch.softmax(x, -1)`` with ``torch.set_num_threads(2)``;
and the same for the backward ``gx = y * (gy - sum(gy * y))`` (PyTorch's is
``torch._softmax_backward_data``).

Achieved bandwidth counts the bytes a pass must move: read x and write y for the
forward (2 arrays, as for the copy), read y and gy and write gx for the backward (3).
Targets: forward at least 2.5x faster than ``torch.softmax`` and at least 50% of copy
bandwidth.

    python benchmarks/bench_softmax.py           # about a minute
    python benchmarks/bench_softmax.py --quick   # seconds: small arrays, few rounds
"""

from __future__ import annotations

import argparse
import importlib
import os

import numpy as np

from minitransformer.kernels.softmax import softmax_backward, softmax_forward

try:
    from benchmarks._common import Table, save_results, timeit_stats
except ImportError:  # run as a script: benchmarks/ itself is on sys.path
    from _common import Table, save_results, timeit_stats

# torch after the kernels: they set OMP_WAIT_POLICY=PASSIVE (see kernels/_numba.py) and
# PyTorch's OpenMP runtime then reads it too, so both sides wait for work the same way.
torch = importlib.import_module("torch")

ARRAY_MB = 32
LENGTHS = (1024, 2048, 4096, 8192, 16384)
TARGET_VS_TORCH = 2.5
TARGET_OF_COPY = 0.5


def numpy_forward(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def numpy_backward(y: np.ndarray, gy: np.ndarray) -> np.ndarray:
    return y * (gy - (gy * y).sum(axis=-1, keepdims=True))


def measure(n: int, array_mb: float, rounds: int) -> dict:
    rows = max(1, int(array_mb * 2**20) // (4 * n))
    rng = np.random.default_rng(n)
    x = (rng.standard_normal((rows, n), dtype=np.float32) * 3).astype(np.float32)
    gy = rng.standard_normal((rows, n), dtype=np.float32)
    y = softmax_forward(x)
    np.testing.assert_allclose(y, numpy_forward(x), rtol=1e-5, atol=1e-7)  # same work first
    dst, gx = np.empty_like(x), np.empty_like(x)
    xt, yt, gyt = (torch.from_numpy(a) for a in (x, y, gy))
    stats = timeit_stats(
        {
            "copy": lambda: np.copyto(dst, x),
            "ours fwd": lambda: softmax_forward(x),
            "ours fwd out=": lambda: softmax_forward(x, out=dst),
            "numpy fwd": lambda: numpy_forward(x),
            "torch fwd": lambda: torch.softmax(xt, -1),
            "ours bwd": lambda: softmax_backward(y, gy),
            "ours bwd out=": lambda: softmax_backward(y, gy, out=gx),
            "numpy bwd": lambda: numpy_backward(y, gy),
            "torch bwd": lambda: torch._softmax_backward_data(gyt, yt, -1, torch.float32),
        },
        rounds,
    )
    times = {name: st["median"] for name, st in stats.items()}
    best = {name: st["min"] for name, st in stats.items()}
    cpu = {name: st["cpu_median"] for name, st in stats.items()}
    gb = x.nbytes / 1e9
    bandwidth = {
        name: (3 if "bwd" in name else 2) * gb / seconds for name, seconds in times.items()
    }
    return {
        "n": n,
        "rows": rows,
        "array_mb": x.nbytes / 2**20,
        "seconds": times,
        "best_seconds": best,
        "gb_per_s": bandwidth,
        "cpu_seconds": cpu,
        "best_fwd_vs_torch": best["torch fwd"] / best["ours fwd"],
        "cpu_fwd_vs_torch": cpu["torch fwd"] / cpu["ours fwd"],
        "best_fwd_of_copy": (best["copy"] / best["ours fwd"]),
        "fwd_vs_torch": times["torch fwd"] / times["ours fwd"],
        "fwd_vs_numpy": times["numpy fwd"] / times["ours fwd"],
        "fwd_of_copy": bandwidth["ours fwd"] / bandwidth["copy"],
        "fwd_out_of_copy": bandwidth["ours fwd out="] / bandwidth["copy"],
        "bwd_vs_torch": times["torch bwd"] / times["ours bwd"],
        "bwd_vs_numpy": times["numpy bwd"] / times["ours bwd"],
        "load_avg_1min": os.getloadavg()[0],  # other work on the machine skews all numbers
    }


def plot(results: list[dict]):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    ns = [r["n"] for r in results]
    for ax, kind in zip(axes, ("fwd", "bwd")):
        ax.plot(ns, [r["gb_per_s"]["copy"] for r in results], "k--", label="np.copyto")
        for name, style in (("ours", "o-"), ("ours out=", "o:"), ("torch", "s-"), ("numpy", "^-")):
            key = f"{name.split()[0]} {kind}" + (" out=" if "out=" in name else "")
            ax.plot(ns, [r["gb_per_s"][key] for r in results], style, label=name)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("row length n (float32)")
        ax.set_title(f"softmax {'forward' if kind == 'fwd' else 'backward'}")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("achieved GB/s (bytes a pass must move)")
    axes[0].legend()
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small arrays, few rounds")
    args = parser.parse_args()
    torch.set_num_threads(2)
    array_mb, rounds = (4, 3) if args.quick else (ARRAY_MB, 7)

    results = [measure(n, array_mb, rounds) for n in LENGTHS]
    table = Table(
        [
            "n",
            "rows",
            "copy GB/s",
            "fwd GB/s",
            "fwd out= GB/s",
            "fwd / copy",
            "fwd vs numpy",
            "fwd vs torch",
            "fwd vs torch (cpu s)",
            "bwd GB/s",
            "bwd vs numpy",
            "bwd vs torch",
        ]
    )
    for r in results:
        bw = r["gb_per_s"]
        table.add(
            r["n"],
            r["rows"],
            bw["copy"],
            bw["ours fwd"],
            bw["ours fwd out="],
            r["fwd_of_copy"],
            r["fwd_vs_numpy"],
            r["fwd_vs_torch"],
            r["cpu_fwd_vs_torch"],
            bw["ours bwd"],
            r["bwd_vs_numpy"],
            r["bwd_vs_torch"],
        )
    print(f"float32 softmax over the last axis, {array_mb} MiB per array, 2 threads")
    print(
        "'vs' columns: how many times faster ours is (their median wall time / ours);"
        " '(cpu s)': the same with CPU seconds of all threads\n"
    )
    table.print()
    worst_torch = min(r["fwd_vs_torch"] for r in results)
    worst_copy = min(r["fwd_of_copy"] for r in results)
    print(
        f"\nforward vs torch.softmax: worst {worst_torch:.2f}x "
        f"(target >= {TARGET_VS_TORCH}x: {'met' if worst_torch >= TARGET_VS_TORCH else 'NOT met'})"
    )
    print(
        f"forward bandwidth / copy bandwidth: worst {worst_copy:.0%} "
        f"(target >= {TARGET_OF_COPY:.0%}: {'met' if worst_copy >= TARGET_OF_COPY else 'NOT met'})"
    )
    print(f"load average (1, 5, 15 min) at the end: {os.getloadavg()}")
    name = "bench_softmax_quick" if args.quick else "bench_softmax"
    json_path, _ = save_results(name, results, plot(results), array_mb=array_mb, rounds=rounds)
    print(f"saved {json_path} and .png")


if __name__ == "__main__":
    main()
