# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lecture 15: making attention fast
#
# Attention is a matrix product, a softmax and another matrix product. The matrix
# products run in a BLAS library tuned for decades; the softmax in between is ours,
# and written naively it is the slow part. Worse, the score matrix it works on has
# $n \times n$ entries per head, so at long sequence lengths memory runs out before
# time does.
#
# This lecture measures both problems on *your* machine and shows the cures that
# `minitransformer` uses:
#
# 1. the naive NumPy softmax: how many passes over memory, how many temporaries;
# 2. the fused Numba kernel, and why it is faster: bytes moved, against the bandwidth
#    of a plain copy;
# 3. numerical stability: subtract the max; a fully masked row gives zeros;
# 4. the online softmax: one pass with a running max and a rescaled running sum;
# 5. sparse top-k attention: what it keeps, what it drops, and the error that costs;
# 6. memory: $n^2$ scores against $n \cdot k$ kept pairs;
# 7. dense against top-k attention, timed for growing $n$;
# 8. the same code on a GPU with CuPy.
#
# Read `minitransformer/kernels/softmax.py` and `minitransformer/kernels/topk.py`
# beside it. Timings depend on the machine and on whatever else it is doing, so the
# asserts check the *counts* (passes, bytes, temporaries) exactly and the timings
# only where the margin is large.

# %%
import math
import os
import subprocess
import sys
import time
import tracemalloc

import matplotlib.pyplot as plt
import numpy as np

import minitransformer as mt
from minitransformer import functional as F
from minitransformer import nn
from minitransformer.kernels.softmax import softmax_forward, softmax_reference
from minitransformer.kernels.topk import topk_attention_forward, topk_keep_mask

# MT_FAST=1 (set by the test suite) shrinks the arrays and sequence lengths below.
FAST = os.environ.get("MT_FAST") == "1"
mt.manual_seed(0)
rng = np.random.default_rng(0)


def best_time(fn, repeat: int = 5) -> float:
    """The fastest of ``repeat`` runs of fn(), in seconds.

    The minimum, not the mean: on a shared machine other programs only ever add time,
    so the fastest run is the one closest to what the code itself costs.
    """
    fn()  # warm-up: Numba compiles on the first call, and fresh memory is paged in
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def peak_bytes(fn) -> int:
    """Peak bytes NumPy allocated while fn() ran (NumPy reports its buffers to tracemalloc)."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak - base


# %% [markdown]
# ## 1. The naive softmax
#
# Row by row, $\mathrm{softmax}(x)_j = e^{x_j - m} / \sum_l e^{x_l - m}$ with
# $m = \max_l x_l$. In NumPy, each step is one whole-array operation:
#
# | step | reads | writes | new array |
# | --- | --- | --- | --- |
# | `m = x.max(-1)` | `x` | (one number per row) | |
# | `z = x - m` | `x` | `z` | temporary 1 |
# | `e = np.exp(z)` | `z` | `e` | temporary 2 |
# | `s = e.sum(-1)` | `e` | (one number per row) | |
# | `y = e / s` | `e` | `y` | the output |
#
# That is **5 reads and 3 writes** of a full-size array: 8 array-sizes of memory
# traffic, plus 2 temporaries alive at the same time as the output. Once the array is
# bigger than the CPU caches every pass goes to main memory, and the arithmetic (one
# subtraction, one `exp`, one addition, one multiplication per element) is cheap next
# to the memory traffic.
#
# tracemalloc sees every NumPy buffer, so we can check the temporaries: at its peak
# the naive version holds `z`, `e` and `y`, three arrays the size of `x`.


# %%
def naive_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=-1, keepdims=True)  # pass 1
    z = x - m  # pass 2, temporary 1
    e = np.exp(z)  # pass 3, temporary 2
    s = e.sum(axis=-1, keepdims=True)  # pass 4
    return e / s  # pass 5, the output


NAIVE_READS, NAIVE_WRITES = 5, 3
FUSED_READS, FUSED_WRITES = 1, 1  # read x once from memory, write y once

x = rng.standard_normal((512, 1024)).astype(np.float32)
nbytes = x.nbytes
assert np.allclose(naive_softmax(x), softmax_reference(x), atol=1e-6)
assert np.allclose(softmax_forward(x), softmax_reference(x), atol=1e-6)

naive_peak = peak_bytes(lambda: naive_softmax(x))
fused_peak = peak_bytes(lambda: softmax_forward(x))
print(f"array: {nbytes / 2**20:.1f} MiB")
print(f"naive softmax peak allocation: {naive_peak / nbytes:.2f} arrays")
print(f"fused softmax peak allocation: {fused_peak / nbytes:.2f} arrays")
assert 3 <= naive_peak / nbytes < 3.1  # z, e and y, plus a few per-row numbers
assert 1 <= fused_peak / nbytes < 1.1  # only the output

# %% [markdown]
# ## 2. The fused kernel, and why it is faster
#
# `softmax_forward` runs one Numba loop per row (rows in parallel with `prange`):
#
# ```
# m = max_j x_j                        read the row from memory
# y_j = exp(x_j - m);  s += y_j        the row is now in cache: no memory traffic
# y_j *= 1 / s                         a pass over the cached output row
# ```
#
# A row of a few thousand floats fits in the L1/L2 cache, so main memory sees one read
# of `x` and one write of `y`: **2 array-sizes of traffic instead of 8**, and no
# temporaries. That is exactly the traffic of a plain copy, `np.copyto(y, x)`, so the
# copy's speed is the ceiling for any softmax: the best a kernel can do is move the
# bytes as fast as the machine can.
#
# We time the three at a few array sizes and report the *useful* bandwidth of each,
# $2 \times \text{bytes} / \text{time}$ (the bytes a softmax must move, read plus
# write), so all three are on the same scale. The naive version actually moves
# $8 \times$ bytes, so its useful bandwidth is at most a quarter of the copy's.

# %%
ROW = 1024
SIZES_MB = [1, 4, 16] if FAST else [1, 4, 16, 64]
REPEAT = 3 if FAST else 7
results = {"copy": [], "fused": [], "naive": []}
for mb in SIZES_MB:
    x = rng.standard_normal((mb * 2**20 // (4 * ROW), ROW)).astype(np.float32)
    y = np.empty_like(x)
    results["copy"].append(best_time(lambda x=x, y=y: np.copyto(y, x), REPEAT))
    results["fused"].append(best_time(lambda x=x, y=y: softmax_forward(x, out=y), REPEAT))
    results["naive"].append(best_time(lambda x=x: naive_softmax(x), REPEAT))

gbps = {k: [2 * mb * 2**20 / t / 1e9 for mb, t in zip(SIZES_MB, ts)] for k, ts in results.items()}
print(f"{'MiB':>5} | " + " | ".join(f"{k + ' ms':>9} {k + ' GB/s':>11}" for k in results))
for i, mb in enumerate(SIZES_MB):
    cells = [f"{results[k][i] * 1e3:9.2f} {gbps[k][i]:11.2f}" for k in results]
    print(f"{mb:5d} | " + " | ".join(cells))
speedup = results["naive"][-1] / results["fused"][-1]
print(
    f"at {SIZES_MB[-1]} MiB: fused is {speedup:.1f}x faster than naive, "
    f"at {gbps['fused'][-1] / gbps['copy'][-1]:.0%} of copy bandwidth"
)
traffic_ratio = (NAIVE_READS + NAIVE_WRITES) / (FUSED_READS + FUSED_WRITES)
print(
    f"traffic: naive {NAIVE_READS + NAIVE_WRITES} array-sizes, fused "
    f"{FUSED_READS + FUSED_WRITES}: {traffic_ratio:.0f}x less for the fused kernel"
)
assert traffic_ratio == 4
# 4x less traffic and no temporaries: a margin wide enough to hold on a busy machine
assert results["fused"][-1] < results["naive"][-1]

# %%
fig, (ax_t, ax_b) = plt.subplots(1, 2, figsize=(10, 3.8))
for name, style in (("copy", "k--"), ("fused", "o-"), ("naive", "s-")):
    ax_t.plot(SIZES_MB, np.array(results[name]) * 1e3, style, label=name)
    ax_b.plot(SIZES_MB, gbps[name], style, label=name)
ax_t.set(
    xscale="log",
    yscale="log",
    xlabel="array size (MiB)",
    ylabel="time (ms)",
    title="softmax forward, rows of 1024 float32",
)
ax_b.set(
    xscale="log",
    xlabel="array size (MiB)",
    ylabel="useful GB/s (2 x bytes / time)",
    title="bandwidth: the copy is the ceiling",
)
for ax in (ax_t, ax_b):
    ax.set_xticks(SIZES_MB, [str(s) for s in SIZES_MB])
    ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# The saved benchmark `benchmarks/bench_softmax.py` (results in
# `benchmarks/results/bench_softmax.json`) does the same with more sizes, the backward
# pass and `torch.softmax` for comparison.
#
# ## 3. Numerical stability: subtract the max
#
# In float32, $e^{x}$ overflows to `inf` for $x > 88.7$, and `inf / inf` is NaN. Scores
# of a few hundred are not unusual in a model with large activations. Since
# $e^{x_j - m} / \sum_l e^{x_l - m} = e^{x_j} / \sum_l e^{x_l}$ for any $m$, we are free
# to choose $m = \max_l x_l$: then every exponent is $\le 0$, the largest term is
# exactly $e^0 = 1$, and the sum lies between 1 and $n$. Nothing overflows.
#
# Masked scores are $-\infty$ and get $e^{-\infty} = 0$. A row that is masked
# *everywhere* (a padding query that may attend to nothing) has $m = -\infty$, and
# $x - m = -\infty - (-\infty)$ is NaN. The kernel tests for that row and writes zeros,
# so a padding position contributes a zero output instead of poisoning the batch.

# %%
big = np.array([[1000.0, 1001.0, 1002.0]], dtype=np.float32)
with np.errstate(over="ignore", invalid="ignore"):
    unstable = np.exp(big) / np.exp(big).sum(axis=-1, keepdims=True)
stable = softmax_forward(big)
by_hand = np.exp([-2.0, -1.0, 0.0]) / np.exp([-2.0, -1.0, 0.0]).sum()
print("without the max:", unstable)
print("with the max   :", stable, " by hand:", by_hand.round(4))
assert np.isnan(unstable).all()
assert np.allclose(stable, by_hand)

masked = np.array([[0.5, -np.inf, 1.5], [-np.inf, -np.inf, -np.inf]], dtype=np.float32)
with np.errstate(invalid="ignore"):
    naive_masked = naive_softmax(masked)
print("naive, masked rows :", naive_masked)
print("kernel, masked rows:", softmax_forward(masked))
assert np.isnan(naive_masked[1]).all()
assert np.allclose(softmax_forward(masked)[0], [1 / (1 + math.e), 0, math.e / (1 + math.e)])
assert (softmax_forward(masked)[1] == 0).all()
assert (softmax_reference(masked)[1] == 0).all()

# %% [markdown]
# ## 4. The online softmax: one pass over the row
#
# The stable softmax needs the max before it can start summing: two passes over the
# row (three with the normalisation). When the row does not fit in fast memory (a long
# row of scores on a GPU, whose fast on-chip memory holds only a few kilobytes per
# block) a second pass means a second trip to slow memory. The **online softmax**
# computes the max and the sum together, one chunk at a time. Keep a running max $m$
# and a running sum $\ell = \sum_{\text{seen } j} e^{x_j - m}$. When a chunk $c$
# arrives:
#
# $$m' = \max(m, \max_{j \in c} x_j), \qquad
#   \ell' = \ell \, e^{m - m'} + \sum_{j \in c} e^{x_j - m'}.$$
#
# The factor $e^{m - m'}$ re-expresses the old sum relative to the new max; it is 1
# when the max did not change. At the end, $\ell$ is exactly the two-pass denominator.
#
# The same trick carries the attention *output*: keep $o = \sum_j e^{x_j - m} v_j$
# and rescale it by the same factor. After the last chunk, $o / \ell$ is
# $\sum_j \mathrm{softmax}(x)_j v_j$, computed without ever holding the whole row of
# weights. This is the core of FlashAttention, which tiles $Q K^T$ this way and never
# writes the $n \times n$ matrix to memory.


# %%
def online_softmax_attention(scores: np.ndarray, v: np.ndarray, chunk: int):
    """One pass over ``scores`` (n,) in chunks: returns (m, l, out) with out = softmax @ v."""
    m, ell, o = -np.inf, 0.0, np.zeros(v.shape[1])
    history = []
    for c0 in range(0, scores.size, chunk):
        s, vc = scores[c0 : c0 + chunk], v[c0 : c0 + chunk]
        m_new = max(m, s.max())
        rescale = math.exp(m - m_new) if m > -np.inf else 0.0  # nothing seen yet: 0
        p = np.exp(s - m_new)
        ell = ell * rescale + p.sum()
        o = o * rescale + p @ vc
        m = m_new
        history.append((c0 + s.size, m, ell))
    return m, ell, o / ell, history


n_row, d_v = 1000, 4
scores = rng.standard_normal(n_row) * 3
values = rng.standard_normal((n_row, d_v))
m2 = scores.max()  # the two-pass version: max first, then the sum
ell2 = np.exp(scores - m2).sum()
out2 = softmax_reference(scores) @ values
for chunk in (1, 7, 64, n_row):
    m1, ell1, out1, history = online_softmax_attention(scores, values, chunk)
    assert m1 == m2
    assert math.isclose(ell1, ell2, rel_tol=1e-12)
    assert np.allclose(out1, out2, rtol=1e-12, atol=1e-12)
print(
    f"two-pass: m = {m2:.4f}, l = {ell2:.4f}; online (chunks of 64) agree: "
    f"m = {m1:.4f}, l = {ell1:.4f}"
)

_, _, _, history = online_softmax_attention(scores, values, 64)
seen, run_m, run_l = map(np.array, zip(*history))
fig, ax = plt.subplots(figsize=(7, 3.2))
ax.step(seen, run_m, where="post", label="running max m")
ax.set(xlabel="scores seen", ylabel="running max m", title="online softmax, chunks of 64")
ax2 = ax.twinx()
ax2.plot(seen, run_l, "C1o-", ms=3, label="running sum l")
ax2.set_ylabel("running sum l")
fig.legend(loc="lower right")
fig.tight_layout()
plt.show()
# the sum drops whenever the max jumps: the old terms are rescaled by exp(m - m') < 1
jumps = np.flatnonzero(np.diff(run_m) > 0) + 1
print("max jumped after chunks", jumps.tolist())

# %% [markdown]
# ## 5. Sparse top-k attention: what it keeps and what it drops
#
# Most of a softmax row's mass usually sits on a few keys. **Top-k attention** keeps,
# for each query $i$, only the $k$ keys with the highest scores $K_i$ and renormalises
# over them:
#
# $$p_{ij} = \frac{e^{s_{ij}}}{\sum_{l \in K_i} e^{s_{il}}} \text{ for } j \in K_i,
#   \quad 0 \text{ elsewhere}; \qquad \mathrm{out}_i = \sum_{j \in K_i} p_{ij} v_j.$$
#
# `F.topk_attention(q, k, v, top_k)` returns the output and the weights (dense, zeros
# off the kept keys, for looking at). Take one query and 12 keys:

# %%
n_small, d_small, k_small = 12, 8, 4
q = mt.randn(1, d_small, dtype="float64")
k = mt.randn(n_small, d_small, dtype="float64")
v = mt.randn(n_small, d_small, dtype="float64")
out_k, w_k = F.topk_attention(q, k, v, top_k=k_small)
out_d, w_d = F.scaled_dot_product_attention(q, k, v)

s = (q.numpy() @ k.numpy().T)[0] / math.sqrt(d_small)
kept = np.flatnonzero(w_k.numpy()[0])
print("scores     :", s.round(2))
print("dense w    :", w_d.numpy()[0].round(3))
print("top-4 w    :", w_k.numpy()[0].round(3))
print(
    "kept keys  :", kept.tolist(), " = the 4 highest scores:", np.sort(np.argsort(-s)[:4]).tolist()
)
dropped_mass = 1 - w_d.numpy()[0, kept].sum()
print(f"dense probability mass on the dropped keys: {dropped_mass:.3f}")

assert set(kept) == set(np.argsort(-s)[:k_small])
# the kept weights are the dense ones renormalised: divided by the mass they had
assert np.allclose(w_k.numpy()[0, kept], w_d.numpy()[0, kept] / (1 - dropped_mass))
assert np.allclose(out_k.numpy(), w_k.numpy() @ v.numpy())

fig, ax = plt.subplots(figsize=(7, 3))
pos = np.arange(n_small)
ax.bar(pos - 0.2, w_d.numpy()[0], 0.4, label="dense")
ax.bar(pos + 0.2, w_k.numpy()[0], 0.4, label=f"top-{k_small}")
ax.set(xlabel="key j", ylabel="weight", title="one query: top-k keeps the largest and renormalises")
ax.set_xticks(pos)
ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# How much does dropping cost? Let $\delta_i$ be the dense probability mass on the
# dropped keys. The dense output splits into the kept part and the dropped part,
#
# $$\mathrm{out}^{\text{dense}}_i = (1 - \delta_i)\, \mathrm{out}^{\text{top-}k}_i
#   + \delta_i\, \bar v_i, \qquad \bar v_i = \text{the dropped keys' weighted average of } v,$$
#
# so $\mathrm{out}^{\text{top-}k}_i - \mathrm{out}^{\text{dense}}_i
# = \delta_i (\mathrm{out}^{\text{top-}k}_i - \bar v_i)$. Both are averages of values,
# so in each coordinate the error is at most $\delta_i (\max_j v_j - \min_j v_j)$.
# The error is controlled by the dropped mass, which can only shrink as $k$ grows, and
# at $k = n$ nothing is dropped: top-k attention *is* dense attention.

# %%
n_err, d_err = 128 if FAST else 256, 32
q = mt.randn(n_err, d_err, dtype="float64")
k = mt.randn(n_err, d_err, dtype="float64")
v = mt.randn(n_err, d_err, dtype="float64")
out_d, w_d = F.scaled_dot_product_attention(q, k, v)
out_d, w_d, vn = out_d.numpy(), w_d.numpy(), v.numpy()
spread = vn.max(axis=0) - vn.min(axis=0)
top_ks = sorted({1, 2, 4, 8, 16, 32, 64, n_err // 2, n_err})
max_err, mean_dropped = [], []
for tk in top_ks:
    out_k, w_k = F.topk_attention(q, k, v, top_k=tk)
    delta = 1 - np.where(w_k.numpy() > 0, w_d, 0).sum(axis=-1)  # (n,) dropped mass per query
    err = np.abs(out_k.numpy() - out_d)
    assert (err <= delta[:, None] * spread + 1e-12).all()  # the bound above, every entry
    max_err.append(err.max())
    mean_dropped.append(delta.mean())
for tk, e, dm in zip(top_ks, max_err, mean_dropped):
    print(f"top_k = {tk:4d}: max |error| = {e:.2e}, mean dropped mass = {dm:.3f}")
assert all(a >= b for a, b in zip(mean_dropped, mean_dropped[1:]))  # more keys, less dropped
assert max_err[-1] < 1e-12 and mean_dropped[-1] < 1e-12  # top_k = n: dense up to rounding

out_n, w_n = F.topk_attention(q, k, v, top_k=n_err)
keep_all = topk_keep_mask(q.numpy() @ k.numpy().T, n_err)
assert keep_all.all()  # the same keys as dense attention...
assert np.allclose(w_n.numpy(), w_d, rtol=0, atol=1e-14)  # ...and the same weights

fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(top_ks, max_err, "o-", label="max |out_topk - out_dense|")
ax.plot(top_ks, mean_dropped, "s-", label="mean dropped mass")
ax.set(xscale="log", yscale="log", xlabel="top_k", title=f"top-k vs dense attention, n = {n_err}")
ax.set_xticks(top_ks, [str(t) for t in top_ks])
ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# With random queries and keys the scores are spread evenly, the hardest case for
# top-k: trained models, whose attention is concentrated on a few keys, drop much less
# mass at the same $k$.
#
# ## 6. Memory: $n^2$ against $n \cdot k$
#
# Dense attention materialises the scores and the weights, $n \times n$ numbers per
# head each (and keeps the weights for the backward pass). The top-k kernel
# (`topk_attention_forward`) computes scores one block of queries at a time into a
# fixed buffer of about 2 MiB per thread (at least 128 rows), keeps each query's best $k$ in a heap, and
# stores only the kept indices (int32) and probabilities: $n \cdot k \cdot (4 + 4)$
# bytes in float32, for the backward too.


# %%
def dense_bytes(n: int, itemsize: int = 4) -> int:
    return n * n * itemsize  # one (n, n) score matrix


def topk_bytes(n: int, top_k: int, itemsize: int = 4) -> int:
    return n * top_k * (4 + itemsize)  # int32 index + probability per kept pair


TOPK = 32
ns = 2 ** np.arange(8, 18)
assert dense_bytes(1024) == 4 * 2**20  # 1024^2 floats of 4 bytes: 4 MiB
assert topk_bytes(1024, 32) == 256 * 2**10  # 1024 * 32 pairs of 8 bytes: 256 KiB
assert dense_bytes(65536) == 16 * 2**30  # 16 GiB per head: more than most GPUs hold
for n in (1024, 8192, 65536):
    print(
        f"n = {n:6d}: dense scores {dense_bytes(n) / 2**20:10.1f} MiB, "
        f"top-{TOPK} pairs {topk_bytes(n, TOPK) / 2**20:6.2f} MiB, "
        f"ratio {dense_bytes(n) / topk_bytes(n, TOPK):6.0f} = n / (2 k)"
    )
    assert dense_bytes(n) / topk_bytes(n, TOPK) == n / (2 * TOPK)

fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(ns, [dense_bytes(n) / 2**20 for n in ns], "o-", label="dense: n x n float32")
for tk in (32, 128):
    ax.plot(ns, [topk_bytes(n, tk) / 2**20 for n in ns], "s-", label=f"top-{tk}: n x k (idx, p)")
ax.set(
    xscale="log",
    yscale="log",
    xlabel="sequence length n",
    ylabel="MiB per head",
    title="attention memory per head",
)
ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# The formula is what the kernel must hold; tracemalloc checks what it actually
# allocates, against the dense forward (which holds scores *and* weights, $2 n^2$
# floats).

# %%
n_mem, d_mem = 4096, 64  # big enough that n^2 dwarfs the fixed per-thread buffers
qm, km, vm = (rng.standard_normal((n_mem, d_mem)).astype(np.float32) for _ in range(3))
tq, tk_, tv = mt.tensor(qm), mt.tensor(km), mt.tensor(vm)
with mt.no_grad():
    dense_peak = peak_bytes(lambda: F.scaled_dot_product_attention(tq, tk_, tv))
topk_peak = peak_bytes(lambda: topk_attention_forward(qm, km, vm, TOPK))
print(
    f"n = {n_mem}: dense forward peak {dense_peak / 2**20:.1f} MiB "
    f"(2 n^2 floats = {2 * dense_bytes(n_mem) / 2**20:.1f} MiB), "
    f"top-{TOPK} forward peak {topk_peak / 2**20:.1f} MiB"
)
assert dense_peak >= 2 * dense_bytes(n_mem)
assert topk_peak < dense_bytes(n_mem) / 4  # a fraction of a single n x n matrix

# %% [markdown]
# The top-k peak is mostly the fixed score block of each thread (about 2 MiB), the
# output and the kept pairs; beyond the fixed part it grows as $n \cdot k$, the dense
# one as $n^2$. (Try `n_mem = 1024`: there the fixed buffers are as large as the
# dense matrices, and top-k saves nothing.)
#
# ## 7. Dense against top-k attention: time
#
# Dense attention does $2 n^2 d$ multiply-adds in its two matrix products, plus the
# softmax over $n^2$ scores. The top-k kernel still computes all $n^2$ scores (it has to
# look at every key to know which are the best), but then selects and uses only $k$ per
# query: the second product shrinks from $n^2 d$ to $n k d$ and the softmax from $n^2$
# to $n k$. So both grow like $n^2$, and top-k can at best save a constant factor; what
# it saves for certain is memory. Choosing the best $k$ of each row is not free either
# (a heap per query, fed by every score), so at small $n$ the dense version, two BLAS
# calls and the fused softmax, is usually faster, and top-k only pays off once the
# $n \times n$ matrices no longer fit in the caches. Timings on this machine (forward
# only, 4 heads of $d = 64$, float32):

# %%
T_NS = [128, 256, 512] if FAST else [256, 512, 1024, 2048]
heads, d_head = 4, 64
t_dense, t_topk = [], []
for n in T_NS:
    qkv = [mt.randn(1, heads, n, d_head) for _ in range(3)]

    def dense(qkv=qkv):
        return F.scaled_dot_product_attention(*qkv)[0]

    def topk(qkv=qkv):
        return F.topk_attention(*qkv, top_k=TOPK, need_weights=False)[0]

    with mt.no_grad():
        t_dense.append(best_time(dense, REPEAT))
        t_topk.append(best_time(topk, REPEAT))
        out_topk = topk()
    assert out_topk.shape == (1, heads, n, d_head)
for n, a, b in zip(T_NS, t_dense, t_topk):
    print(
        f"n = {n:5d}: dense {a * 1e3:8.2f} ms, top-{TOPK} {b * 1e3:8.2f} ms, "
        f"dense / top-k = {a / b:5.2f}"
    )

fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(T_NS, np.array(t_dense) * 1e3, "o-", label="dense (scaled_dot_product_attention)")
ax.plot(T_NS, np.array(t_topk) * 1e3, "s-", label=f"top-{TOPK} (topk_attention)")
ref = np.array(T_NS, dtype=float) ** 2
ax.plot(T_NS, ref / ref[-1] * t_dense[-1] * 1e3, "k:", label="~ n^2")
ax.set(
    xscale="log",
    yscale="log",
    xlabel="n",
    ylabel="forward time (ms)",
    title=f"attention forward, {heads} heads x d={d_head}",
)
ax.set_xticks(T_NS, [str(n) for n in T_NS])
ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# `benchmarks/bench_topk.py` (results in `benchmarks/results/bench_topk.json`) times
# larger $n$, the backward pass, and PyTorch's dense "math" attention and its
# FlashAttention kernel next to ours. In its latest run on 2 quiet cores (8 heads,
# $d = 64$) at $n = 8192$ the top-32 forward took 0.51 s against 0.61 s for flash and
# 10 s for the math path, and forward + backward 0.60 s against flash's 2.2 s.
# In a model, top-k is one argument: `nn.MultiHeadAttention(d_model, heads, top_k=32)`
# uses `F.topk_attention` in place of the dense softmax, with everything else the same.

# %%
mha_dense = nn.MultiHeadAttention(64, 4)
mha_topk = nn.MultiHeadAttention(64, 4, top_k=8)
mha_topk.load_state_dict(mha_dense.state_dict())  # the same weights
xs = mt.randn(2, 8, 64, dtype=mha_dense.q_proj.weight.dtype)
with mt.no_grad():
    # 8 tokens and top_k = 8: nothing is dropped, so the two layers agree
    assert np.allclose(mha_dense(xs, xs, xs).numpy(), mha_topk(xs, xs, xs).numpy(), atol=1e-5)

# %% [markdown]
# ## 7b. Dense attention as one op: work in cache-sized blocks
#
# The fused softmax removed passes over memory inside one op. The same idea applies to
# attention as a whole. Written as separate ops, $\mathrm{softmax}(QK^\top/\sqrt{d}) V$
# writes the $(B, H, L_q, L_k)$ score array, reads it back to mask it, again for the
# softmax, and again for the product with $V$; and each batched product is one small
# BLAS call per head. `F.scaled_dot_product_attention` runs instead as one op,
# `kernels/attention.py`: it takes a few heads at a time (a *block*, whose scores fit
# in the L2 cache), and for each block does the product, the mask, the softmax and the
# second product back to back, while the scores are still in cache. Two threads take
# blocks in turn. The backward does the same with its four products and the softmax
# backward. What the op saves for the backward is only $P$, like the composed ops.
# Below, the composed version built from our ops against the one op, forward and
# backward, at the size of one encoder layer's attention.

# %%
def composed_attention(q, k, v, mask):
    scores = (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.swapaxes(-1, -2)
    scores = F.masked_fill(scores, ~mask, -math.inf)
    return F.softmax(scores, axis=-1) @ v


B_ATT, H_ATT, L_ATT, D_ATT = (4, 4, 64, 32) if FAST else (32, 8, 128, 32)
qkv = [mt.randn(B_ATT, H_ATT, L_ATT, D_ATT, requires_grad=True) for _ in range(3)]
key_mask = np.ones((B_ATT, 1, 1, L_ATT), dtype=bool)
key_mask[::2, ..., L_ATT // 2 :] = False  # half the batch is padded
upstream = np.ones((B_ATT, H_ATT, L_ATT, D_ATT), dtype=np.float32)


def train_step(attend):
    for t in qkv:
        t.grad = None
    attend().backward(upstream)
    return [t.grad for t in qkv]


def fused():
    return F.scaled_dot_product_attention(*qkv, mask=key_mask)[0]


def composed():
    return composed_attention(*qkv, mask=key_mask)


# the same numbers, forward and backward
for a, b in zip(train_step(fused), train_step(composed)):
    assert np.allclose(a, b, atol=1e-5)
with mt.no_grad():
    t_fwd = [best_time(f, REPEAT) for f in (composed, fused)]
t_step = [best_time(lambda f=f: train_step(f), REPEAT) for f in (composed, fused)]
print(f"(B, H, L, d) = {(B_ATT, H_ATT, L_ATT, D_ATT)}")
print(f"forward:            composed {t_fwd[0] * 1e3:6.1f} ms, one op {t_fwd[1] * 1e3:6.1f} ms")
print(f"forward + backward: composed {t_step[0] * 1e3:6.1f} ms, one op {t_step[1] * 1e3:6.1f} ms")

# %% [markdown]
# On the development machine (2 cores, quiet) the one op took about 10 ms forward and
# 22 ms forward + backward against about 17 ms and 60 ms for the composed ops: the
# same arithmetic, fewer trips to memory, and BLAS calls that each stay on one core.
#
# A pitfall met on the way: OpenBLAS has *one* thread count for the whole process. The
# blocks want single-threaded BLAS calls (two threads already share the cores), so the
# op lowers that count to 1 while its blocks run. A first version did it in each worker
# thread and never set it back, believing the setting was per thread: from the first
# attention on, every matrix product of the process ran on one core, and a whole
# encoder layer got 1.4x slower, although the attention op itself had become faster.
# Measure the whole model, not only the part you changed.


# %% [markdown]
# ## 8. The same code on a GPU
#
# Every op in `minitransformer` finds its array library with `xp = array_module(x)`:
# NumPy for a CPU tensor, CuPy for a GPU one. Moving data and models is one call,
# `x.to("cuda")` and `model.to("cuda")`; after that the same Python runs on the GPU.
# `softmax_forward` and `topk_attention_forward` see a CuPy array and hand it to the
# Numba CUDA kernels in `kernels/cuda_softmax.py` (one thread block per row; the max and
# the sum are tree reductions in shared memory) and `kernels/cuda_topk.py`. The cell
# runs only where `mt.gpu_available()` says a GPU and CuPy are present:

# %%
if mt.gpu_available():
    xg = mt.randn(1, heads, 1024, d_head).to("cuda")  # a CuPy array inside
    model = nn.MultiHeadAttention(heads * d_head, heads, top_k=TOPK).to("cuda")
    tokens = mt.randn(2, 512, heads * d_head).to("cuda")
    with mt.no_grad():
        og, _ = F.topk_attention(xg, xg, xg, top_k=TOPK, need_weights=False)
        yg = model(tokens, tokens, tokens)
    print("GPU:", og.device, yg.device, tuple(yg.shape))
    assert og.device == "cuda" and yg.device == "cuda"
else:
    print("no GPU here: the cell above ran nothing (mt.gpu_available() is False)")

# %% [markdown]
# Without a GPU you can still run the CUDA kernels: Numba's **CUDA simulator** runs
# every CUDA thread as a Python thread on NumPy arrays. It must be switched on before
# Numba is imported, so we start a fresh Python with `NUMBA_ENABLE_CUDASIM=1` and check
# the CUDA softmax against the reference, masked row included. (It is slow, fine for a
# tiny array and for the tests, useless for speed.)

# %%
SIM_CODE = """
import numpy as np
from minitransformer.kernels.cuda_softmax import cuda_softmax_forward
from minitransformer.kernels.softmax import softmax_reference
x = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
x[1] = -np.inf
print(np.abs(cuda_softmax_forward(x) - softmax_reference(x)).max())
"""
sim = subprocess.run(
    [sys.executable, "-c", SIM_CODE],
    capture_output=True,
    text=True,
    timeout=120,
    env={**os.environ, "NUMBA_ENABLE_CUDASIM": "1"},
)
assert sim.returncode == 0, sim.stderr
print("CUDA kernel under the simulator, max |difference| from the reference:", sim.stdout.strip())
assert float(sim.stdout) < 1e-6

# %% [markdown]
# ## Exercises
#
# 1. A naive **backward** `gx = y * (gy - (gy * y).sum(-1, keepdims=True))` in NumPy:
#    count its reads, writes and temporaries as in section 1, and the useful traffic
#    (the fused kernel reads `y` and `gy` and writes `gx`).
#    *Expected:* `gy * y` reads 2, writes 1 (temporary); `.sum` reads 1; `gy - d`
#    reads 1, writes 1 (temporary); `y * (...)` reads 2, writes 1 (output): 6 reads +
#    3 writes = 9 array-sizes against 3 for the fused kernel, with 2 temporaries. Yet
#    tracemalloc sees a peak of only about *one* array: `gy * y` is freed as soon as
#    its sum is taken, and NumPy writes `y * (gy - d)` into the temporary `gy - d` in
#    place, since nothing else refers to it ("temporary elision", for arrays above
#    256 KiB). Fewer allocations, but the 9 passes over memory remain.
# 2. Run the online softmax over the scores $(1, 3, 2)$ in chunks of one and write down
#    $(m, \ell)$ after each chunk.
#    *Expected:* $(1, 1)$, then $(3, e^{-2} + 1) \approx (3, 1.1353)$, then
#    $(3, e^{-2} + 1 + e^{-1}) \approx (3, 1.5032)$, equal to
#    $\sum_j e^{x_j - 3}$.
# 3. A model runs 12 heads at $n = 16384$ in float32. How much memory do one layer's
#    dense scores take, and how much the top-64 (index, probability) pairs?
#    *Expected:* $12 \cdot 16384^2 \cdot 4$ bytes $= 12$ GiB against
#    $12 \cdot 16384 \cdot 64 \cdot 8$ bytes $= 96$ MiB: $n / (2k) = 128$ times less.
#
# Try them before reading on: the cells below are one solution each.

# %%
yb, gyb = softmax_reference(rng.standard_normal((256, 512))), rng.standard_normal((256, 512))
backward_peak = peak_bytes(lambda: yb * (gyb - (gyb * yb).sum(-1, keepdims=True)))
naive_bwd_traffic, fused_bwd_traffic = 6 + 3, 2 + 1
print(
    f"naive backward peak: {backward_peak / yb.nbytes:.2f} arrays; "
    f"traffic {naive_bwd_traffic} vs {fused_bwd_traffic} array-sizes"
)
assert 1 <= backward_peak / yb.nbytes < 1.1  # gy - d, reused in place as the output gx

# %%
_, _, _, hist = online_softmax_attention(np.array([1.0, 3.0, 2.0]), np.zeros((3, 1)), 1)
expected = [(1, 1.0), (3, math.exp(-2) + 1), (3, math.exp(-2) + 1 + math.exp(-1))]
for (_, m_i, l_i), (m_e, l_e) in zip(hist, expected):
    assert m_i == m_e and math.isclose(l_i, l_e)
print("(m, l) after each chunk:", [(float(m_i), round(float(l_i), 4)) for _, m_i, l_i in hist])

# %%
dense_layer = 12 * dense_bytes(16384)
topk_layer = 12 * topk_bytes(16384, 64)
print(f"dense {dense_layer / 2**30:.0f} GiB, top-64 {topk_layer / 2**20:.0f} MiB")
assert dense_layer == 12 * 2**30 and topk_layer == 96 * 2**20
assert dense_layer / topk_layer == 16384 / (2 * 64)
