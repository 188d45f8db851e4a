"""The tape's overhead: time per op (forward + backward) on tiny tensors, against PyTorch.

On a tensor of 4 or 64 elements the arithmetic costs well under a microsecond, so the
time per op is almost all bookkeeping: wrapping arrays, writing the tape entry,
walking the tape backwards. This measures that overhead on a chain of N elementwise
ops that cycles through

    y = y + x,  y = y * x,  y = tanh(y),  y = exp(y),  y = y - x,  y = y * 0.5

then ``y.sum().backward()``, and reports seconds / (N + 1 ops). Beside it, in the
same run:

- PyTorch eager, with ``torch.set_num_threads(1)`` and with 2 threads;
- NumPy by hand: the same chain and its backward written out with raw arrays and no
  tape, the floor that any Python autograd on NumPy sits above.

Ratios are against PyTorch with 1 thread: ``mt / torch`` below 1 means we are
faster. The target is at most 0.5 per tiny op: twice as fast as PyTorch's eager
autograd, possible only if our per-op Python bookkeeping stays below PyTorch's
dispatch through its C++ layers.

One mid-size chain shows the opposite regime, where the arithmetic dominates:
``L = sum(tanh(X @ W))`` with X, W of shape (256, 256), forward + backward.

Candidates are timed interleaved, call by call, so a busy machine slows them alike;
the table shows the best call of each (the cost with nothing else in the way) and,
last, the ratio of medians, which load on the machine skews: PyTorch, which hands
work between threads, suffers more from a busy machine than our single thread. The
load average is saved with the results. NumPy's BLAS (behind our matmul and
NumPy's) is pinned to 1 thread unless ``OPENBLAS_NUM_THREADS`` is already set: that
compares like with like against PyTorch on 1 thread, and on a busy 2-core machine
OpenBLAS's spinning worker threads make a (256, 256) matmul swing from 1 ms to 150 ms.

``--profile`` then runs cProfile on our tiny chain and prints the functions that
take the most time of their own (mostly in ``autograd/``).

    python benchmarks/bench_tape.py            # about a minute on 2 idle cores
    python benchmarks/bench_tape.py --quick    # seconds: fewer ops and rounds
    python benchmarks/bench_tape.py --profile  # also profile our tiny chain
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
from collections.abc import Callable

# read by OpenBLAS when NumPy loads it, so it must come before the imports below
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import minitransformer as mt  # noqa: E402

try:
    from benchmarks._common import Table, save_results, timeit
except ImportError:  # run as a script: benchmarks/ itself is on sys.path
    from _common import Table, save_results, timeit

CHAIN = ("add", "mul", "tanh", "exp", "sub", "scale")
TINY_SHAPES = ((4,), (8, 8))
MID_SIZE = 256
TARGET = 0.5  # ours / torch (1 thread), per tiny op
COLUMNS = ("case", "shape", "per", "mt_us", "torch1_us", "torch2_us", "numpy_us")
COLUMNS += ("mt_over_torch1", "mt_over_torch2", "mt_over_numpy", "median_mt_over_torch1")


# ---------------------------------------------------------------- the tiny chain


def chain(x: object, n_ops: int, tanh: Callable, exp: Callable) -> object:
    """The forward chain, written once for any tensor type with + - * (mt, torch)."""
    y = x
    for k in range(n_ops):
        kind = CHAIN[k % len(CHAIN)]
        if kind == "add":
            y = y + x
        elif kind == "mul":
            y = y * x
        elif kind == "tanh":
            y = tanh(y)
        elif kind == "exp":
            y = exp(y)
        elif kind == "sub":
            y = y - x
        else:
            y = y * 0.5
    return y


def numpy_chain_grad(x: np.ndarray, n_ops: int) -> np.ndarray:
    """d sum(chain(x)) / dx with raw arrays: the chain, then its backward by hand."""
    saved = []
    y = x
    for k in range(n_ops):
        kind = CHAIN[k % len(CHAIN)]
        if kind == "add":
            y = y + x
        elif kind == "mul":
            saved.append(y)
            y = y * x
        elif kind == "tanh":
            y = np.tanh(y)
            saved.append(y)
        elif kind == "exp":
            y = np.exp(y)
            saved.append(y)
        elif kind == "sub":
            y = y - x
        else:
            y = y * 0.5
    float(y.sum())
    g = np.ones_like(y)  # dL/dy for L = sum(y)
    gx = np.zeros_like(x)
    for k in reversed(range(n_ops)):
        kind = CHAIN[k % len(CHAIN)]
        if kind == "add":  # y' = y + x
            gx = gx + g
        elif kind == "mul":  # y' = y * x
            y_in = saved.pop()
            gx = gx + g * y_in
            g = g * x
        elif kind == "tanh":  # y' = tanh y, dy'/dy = 1 - y'^2
            z = saved.pop()
            g = g * (1 - z * z)
        elif kind == "exp":  # y' = e^y, dy'/dy = y'
            g = g * saved.pop()
        elif kind == "sub":  # y' = y - x
            gx = gx - g
        else:
            g = g * 0.5
    return gx + g  # the chain starts at y = x


def tiny_candidates(shape: tuple[int, ...], n_ops: int) -> dict[str, Callable[[], object]]:
    rng = np.random.default_rng(0)
    x0 = (rng.random(shape) * 0.1).astype(np.float32)
    x_mt = mt.tensor(x0, requires_grad=True)
    x_t = torch.tensor(x0, requires_grad=True)

    def run_mt() -> np.ndarray:
        x_mt.grad = None
        chain(x_mt, n_ops, mt.Tensor.tanh, mt.Tensor.exp).sum().backward()
        return x_mt.grad

    def run_torch() -> np.ndarray:
        x_t.grad = None
        chain(x_t, n_ops, torch.tanh, torch.exp).sum().backward()
        return x_t.grad.numpy()

    def run_numpy() -> np.ndarray:
        return numpy_chain_grad(x0, n_ops)

    # the three compute the same gradient, or the timings compare different work
    np.testing.assert_allclose(run_mt(), run_numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(run_torch(), run_numpy(), rtol=1e-4, atol=1e-6)
    return {"minitransformer": run_mt, "torch": run_torch, "numpy": run_numpy}


# ---------------------------------------------------------------- the mid-size chain


def mid_candidates(n: int) -> dict[str, Callable[[], object]]:
    """L = sum(tanh(X @ W)), X and W (n, n): forward and both gradients."""
    rng = np.random.default_rng(1)
    X0 = (rng.standard_normal((n, n)) / np.sqrt(n)).astype(np.float32)
    W0 = (rng.standard_normal((n, n)) / np.sqrt(n)).astype(np.float32)
    X, W = mt.tensor(X0, requires_grad=True), mt.tensor(W0, requires_grad=True)
    Xt, Wt = torch.tensor(X0, requires_grad=True), torch.tensor(W0, requires_grad=True)

    def run_mt() -> tuple[np.ndarray, np.ndarray]:
        X.grad = W.grad = None
        (X @ W).tanh().sum().backward()
        return X.grad, W.grad

    def run_torch() -> tuple[np.ndarray, np.ndarray]:
        Xt.grad = Wt.grad = None
        torch.tanh(Xt @ Wt).sum().backward()
        return Xt.grad.numpy(), Wt.grad.numpy()

    def run_numpy() -> tuple[np.ndarray, np.ndarray]:
        H = np.tanh(X0 @ W0)
        float(H.sum())
        dP = 1 - H * H  # dL/dP for P = X W, with dL/dH = 1
        return dP @ W0.T, X0.T @ dP

    for got in (run_mt(), run_torch()):
        for g, want in zip(got, run_numpy()):
            np.testing.assert_allclose(g, want, rtol=1e-3, atol=1e-4)
    return {"minitransformer": run_mt, "torch": run_torch, "numpy": run_numpy}


# ---------------------------------------------------------------- timing and report


def measure(cases: list[tuple], threads: int) -> list[dict[str, dict[str, float]]]:
    """Best and median seconds per call of each case's candidates, PyTorch on ``threads``.

    With 1 thread: ours, PyTorch and NumPy by hand; with 2: ours and PyTorch. Each
    group is timed interleaved, one call each in turn, so each ratio to PyTorch comes
    from calls that met the same load. All 1-thread groups run before any 2-thread one:
    PyTorch's OpenMP workers keep spinning for a while after a parallel region, and on
    2 cores they would slow whatever runs next.
    """
    torch.set_num_threads(threads)
    names = ("minitransformer", "torch", "numpy") if threads == 1 else ("minitransformer", "torch")
    results = []
    for *_, rounds, candidates in cases:
        group = {name: candidates[name] for name in names}
        calls = [timeit(group, rounds=1, warmup=0) for _ in range(rounds + 1)][1:]
        results.append(
            {
                name: {
                    "best": min(c[name] for c in calls),
                    "median": float(np.median([c[name] for c in calls])),
                }
                for name in names
            }
        )
    return results


def report_row(case: str, shape: str, per: str, n: int, one: dict, two: dict) -> dict:
    """Best times per ``per`` (op or call) in microseconds and the ratios of ours to each;
    also the ratio of medians to PyTorch on 1 thread, which load on the machine skews."""
    us = 1e6 / n
    return {
        "case": case,
        "shape": shape,
        "per": per,
        "mt_us": one["minitransformer"]["best"] * us,
        "torch1_us": one["torch"]["best"] * us,
        "torch2_us": two["torch"]["best"] * us,
        "numpy_us": one["numpy"]["best"] * us,
        "mt_over_torch1": one["minitransformer"]["best"] / one["torch"]["best"],
        "mt_over_torch2": two["minitransformer"]["best"] / two["torch"]["best"],
        "mt_over_numpy": one["minitransformer"]["best"] / one["numpy"]["best"],
        "median_mt_over_torch1": one["minitransformer"]["median"] / one["torch"]["median"],
        "median_mt_us": one["minitransformer"]["median"] * us,
        "median_torch1_us": one["torch"]["median"] * us,
    }


def plot_ratios(rows: list[dict]):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    labels = [f"{r['case']}\n{r['shape']}" for r in rows]
    width = 0.27
    for k, (key, name) in enumerate(
        (
            ("mt_over_torch1", "/ torch 1 thread"),
            ("mt_over_torch2", "/ torch 2 threads"),
            ("mt_over_numpy", "/ numpy by hand"),
        )
    ):
        ax.bar(np.arange(len(rows)) + (k - 1) * width, [r[key] for r in rows], width, label=name)
    ax.axhline(TARGET, color="red", lw=1, ls="--", label=f"target {TARGET} (vs torch)")
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xticks(np.arange(len(rows)), labels)
    ax.set_yscale("log")
    ax.set_ylabel("minitransformer time / other time")
    ax.set_title("tape overhead: time per op, forward + backward")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def profile(shape: tuple[int, ...], n_ops: int, calls: int) -> None:
    """cProfile our tiny chain: where the microseconds per op go."""
    run = tiny_candidates(shape, n_ops)["minitransformer"]
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        run()
    profiler.disable()
    print(
        f"\nprofile of our chain of {n_ops} ops on {shape}, {calls} calls "
        f"({calls * (n_ops + 1)} ops), top functions by own time:"
    )
    pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer ops and rounds")
    parser.add_argument("--profile", action="store_true", help="cProfile our tiny chain")
    args = parser.parse_args()

    n_ops = 24 if args.quick else 96
    # calls per candidate, interleaved one by one: a tiny chain takes ~1 ms, the matmul ~10 ms
    tiny_rounds, mid_rounds = (30, 5) if args.quick else (300, 40)
    table = Table(
        ["case", "shape", "per", "mt us", "torch1 us", "torch2 us", "numpy us"]
        + ["mt/torch1", "mt/torch2", "mt/numpy", "median mt/torch1"]
    )
    rows = []
    torch.set_num_threads(1)  # from the start: even the agreement checks leave workers spinning
    cases = [
        (
            f"chain of {n_ops} ops",
            shape,
            "op",
            n_ops + 1,
            tiny_rounds,
            tiny_candidates(shape, n_ops),
        )
        for shape in TINY_SHAPES
    ]
    cases.append(
        ("sum(tanh(X @ W))", (MID_SIZE, MID_SIZE), "call", 1, mid_rounds, mid_candidates(MID_SIZE))
    )
    ones, twos = measure(cases, threads=1), measure(cases, threads=2)
    for (case, shape, per, n, _, _), one, two in zip(cases, ones, twos):
        row = report_row(case, str(shape), per, n, one, two)
        rows.append(row)
        table.add([row[k] for k in COLUMNS])
    table.print()
    tiny = [r for r in rows if r["per"] == "op"]
    worst = max(r["mt_over_torch1"] for r in tiny)
    verdict = "meets" if worst <= TARGET else "misses"
    print(
        f"tiny ops: worst minitransformer / torch (1 thread) = {worst:.2f}; "
        f"{verdict} the target of {TARGET}"
    )
    print(f"load average (1, 5, 15 min) at the end: {os.getloadavg()}")
    save_results(
        "bench_tape",
        rows,
        plot_ratios(rows),
        target=TARGET,
        chain=list(CHAIN),
        openblas_num_threads=os.environ["OPENBLAS_NUM_THREADS"],
    )

    if args.profile:
        profile(TINY_SHAPES[0], n_ops, calls=200 if args.quick else 2000)


if __name__ == "__main__":
    main()
