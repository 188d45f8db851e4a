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
# # Lecture 10: the training machinery
#
# Lecture 9's loop had five lines around `loss.backward()` that we used without
# looking inside: a learning-rate schedule, label smoothing (not yet used there),
# gradient clipping, AdamW, and, in `minitransformer train`, checkpoints. Each is a
# few lines of code and a formula; each changes what training does. This lecture
# takes them one at a time, with `minitransformer/optim/` and
# `minitransformer/functional/losses.py` open:
#
# 1. the Transformer paper's learning-rate schedule ("Noam");
# 2. linear warmup and decay;
# 3. label smoothing: the target distribution, and the smallest loss it allows;
# 4. gradient clipping;
# 5. Adam's weight decay against AdamW's, one step by hand;
# 6. checkpoints, and a resumed run that is bit-identical to an uninterrupted one.

# %%
import math
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import minitransformer as mt
from minitransformer import functional as F
from minitransformer import nn, optim
from minitransformer.data import make_batches, synthetic_pairs
from minitransformer.serialization import load, load_metadata
from minitransformer.tokenizers import WordTokenizer
from minitransformer.train import TrainConfig, train

# MT_FAST=1 (set by the test suite) trains for fewer steps in sections 4 and 6; the
# lesson is the same.
FAST = os.environ.get("MT_FAST") == "1"
mt.manual_seed(0)
rng = np.random.default_rng(0)


def one_parameter_optimizer():
    """A schedule needs an optimizer to write its lr into; this one holds one number."""
    return optim.SGD([mt.tensor([0.0], requires_grad=True)], lr=0.0)


# %% [markdown]
# ## 1. The Noam schedule
#
# Vaswani et al. (2017, eq. 3) train with
#
# $$\text{lr}(s) = d^{-1/2} \cdot \min\left(s^{-1/2},\ s \cdot w^{-3/2}\right)$$
#
# at step $s$, with $d$ = `d_model` and $w$ warmup steps. For $s \le w$ the second
# term is the smaller: a linear rise. The two are equal at $s = w$, where the rate
# peaks at
#
# $$\text{lr}(w) = d^{-1/2} \cdot w^{-1/2} = (d\,w)^{-1/2},$$
#
# and after it the rate decays as $1/\sqrt{s}$: at $s = 4w$ it is half the peak. The
# base model, $d = 512$, $w = 4000$, peaks at $(512 \cdot 4000)^{-1/2} \approx
# 6.99 \times 10^{-4}$. A wider model gets a smaller rate; a longer warmup, a lower
# but later peak; and since the peak depends on $d\,w$ only, $(d, w) = (512, 8000)$
# and $(1024, 4000)$ peak at the same height, at different steps. (`factor` multiplies it all; `minitransformer train` sets it so the
# peak is its `lr`.)
#
# `NoamSchedule(optimizer, d_model, warmup_steps)` counts its `step()` calls and
# writes $\text{lr}(s)$ into the optimizer; `get_lr(s)` only computes it.

# %%
settings = [(512, 4000), (512, 8000), (256, 4000), (1024, 4000)]
s_axis = np.arange(1, 20_001)
fig, ax = plt.subplots(figsize=(7, 3.5))
for d, w in settings:
    noam = optim.NoamSchedule(one_parameter_optimizer(), d_model=d, warmup_steps=w)
    ax.plot(s_axis, [noam.get_lr(int(s)) for s in s_axis], label=f"d = {d}, w = {w}")
    peak = noam.get_lr(w)
    print(f"d = {d:4d}, w = {w}: peak {peak:.3e} at step {w}, lr(4w) = {noam.get_lr(4 * w):.3e}")
    assert np.isclose(peak, (d * w) ** -0.5)
    assert np.isclose(noam.get_lr(4 * w), peak / 2)
    assert np.isclose(noam.get_lr(w // 2), peak / 2)  # the rise is linear
ax.set_xlabel("step s")
ax.set_ylabel("learning rate")
ax.legend()
ax.set_title("Noam: linear warmup, then 1/sqrt(s)")
plt.show()

assert np.isclose((512 * 4000) ** -0.5, 6.99e-4, rtol=1e-3)
peak_of = {
    (d, w): optim.NoamSchedule(one_parameter_optimizer(), d, w).get_lr(w) for d, w in settings
}
assert np.isclose(peak_of[(512, 8000)], peak_of[(1024, 4000)])

# %% [markdown]
# The schedule is stepped **before** each update, so the $i$-th update uses
# $\text{lr}(i)$, counted from 1 as in the paper; before any step the rate is
# $\text{lr}(0) = 0$.

# %%
opt = one_parameter_optimizer()
noam = optim.NoamSchedule(opt, d_model=512, warmup_steps=4000)
assert opt.param_groups[0]["lr"] == 0.0
noam.step()
assert opt.param_groups[0]["lr"] == noam.get_lr(1) == 512**-0.5 * 4000**-1.5

# %% [markdown]
# ## 2. Linear warmup, then linear decay
#
# The schedule of BERT and of lecture 9: rise linearly from 0 to the peak $P$ over
# $w$ steps, then fall linearly to the final rate $F$ (usually 0) at the last step
# $T$, and stay there:
#
# $$\text{lr}(s) = \begin{cases} P \, s / w & s < w \\
#   F + (P - F)\,\max\!\left(0, \frac{T - s}{T - w}\right) & s \ge w \end{cases}$$
#
# With $P = 10^{-3}$, $w = 100$, $T = 1000$, $F = 0$: $\text{lr}(50) = 5 \times
# 10^{-4}$, $\text{lr}(100) = 10^{-3}$, $\text{lr}(550) = 5 \times 10^{-4}$ (half way
# down), $\text{lr}(1000) = 0$. Unlike Noam, it depends on $T$: a run told to stop
# at 500 steps has a different rate at step 200 than one told 1000 (section 6 uses
# this).

# %%
P, w, T = 1e-3, 100, 1000
lin = optim.LinearWarmupDecay(one_parameter_optimizer(), peak_lr=P, warmup_steps=w, total_steps=T)
short = optim.LinearWarmupDecay(one_parameter_optimizer(), P, w, total_steps=500)
s_axis = np.arange(0, 1101)
fig, ax = plt.subplots(figsize=(7, 3))
ax.plot(s_axis, [lin.get_lr(int(s)) for s in s_axis], label="T = 1000")
ax.plot(s_axis, [short.get_lr(int(s)) for s in s_axis], "--", label="T = 500")
ax.set_xlabel("step s")
ax.set_ylabel("learning rate")
ax.legend()
ax.set_title("linear warmup (w = 100) and decay")
plt.show()

assert np.isclose(lin.get_lr(50), 5e-4) and np.isclose(lin.get_lr(100), 1e-3)
assert np.isclose(lin.get_lr(550), 5e-4) and lin.get_lr(1000) == 0 == lin.get_lr(1100)
assert short.get_lr(200) != lin.get_lr(200)

# %% [markdown]
# ## 3. Label smoothing
#
# Cross-entropy against a one-hot target is minimised by putting probability 1 on
# the target, so the model is pushed to ever larger logits. **Label smoothing**
# (Szegedy et al. 2016; the Transformer paper uses $\epsilon = 0.1$) trains against
# a softened target instead: with $C$ classes and target $t$,
#
# $$q = (1 - \epsilon)\,\text{onehot}(t) + \frac{\epsilon}{C}, \qquad
#   L = -\sum_c q_c \log p_c = (1 - \epsilon)(-\log p_t) + \epsilon \cdot \text{mean}_c(-\log p_c).$$
#
# The gradient with respect to the logits is $p - q$, so training moves $p$ towards
# $q$, and stops there.
#
# For $C = 10$, $\epsilon = 0.1$: $q_t = 0.9 + 0.01 = 0.91$ and every other
# $q_c = 0.01$.

# %%
C, eps, t = 10, 0.1, 3
q = (1 - eps) * np.eye(C)[t] + eps / C

logits = mt.tensor(rng.normal(size=(1, C)), requires_grad=True)
loss = F.cross_entropy(logits, np.array([t]), label_smoothing=eps)
loss.backward()
p = np.exp(logits.numpy()) / np.exp(logits.numpy()).sum()
print("q =", q.round(3))
print(f"loss {loss.item():.6f}, -sum q log p = {-(q * np.log(p)).sum():.6f}")

assert np.isclose(q[t], 0.91) and np.allclose(np.delete(q, t), 0.01) and np.isclose(q.sum(), 1)
assert np.isclose(loss.item(), -(q * np.log(p)).sum())
assert np.allclose(logits.grad, p - q)

fig, ax = plt.subplots(figsize=(6, 2.8))
ax.bar(np.arange(C) - 0.2, np.eye(C)[t], width=0.4, label="one-hot (eps = 0)")
ax.bar(np.arange(C) + 0.2, q, width=0.4, label=f"smoothed (eps = {eps})")
ax.set_xticks(range(C))
ax.set_xlabel("class c")
ax.set_ylabel("target probability")
ax.legend()
ax.set_title(f"label smoothing: (1 - eps) onehot + eps / C, target t = {t}")
plt.show()

# %% [markdown]
# ### A perfect prediction no longer has loss 0
#
# $L = -\sum_c q_c \log p_c$ is the cross-entropy of $p$ against $q$, which is
# smallest when $p = q$ (Gibbs' inequality), and there equals the **entropy** of $q$:
#
# $$L_{\min} = H(q) = -\left(1 - \epsilon + \tfrac{\epsilon}{C}\right)\ln\left(1 - \epsilon + \tfrac{\epsilon}{C}\right)
#   - (C - 1)\,\tfrac{\epsilon}{C}\ln\tfrac{\epsilon}{C}.$$
#
# For $C = 10$, $\epsilon = 0.1$: $-0.91 \ln 0.91 - 9 \cdot 0.01 \ln 0.01 = 0.0858 +
# 0.4145 = 0.5003$. A model that puts *all* its probability on the right class does
# worse: $-\log p_c \to \infty$ for the other classes.
#
# Walk along the logits $z = (g \text{ at } t,\ 0 \text{ elsewhere})$: the model's
# confidence grows with the gap $g$. Without smoothing the loss falls towards 0 for
# ever; with it, it has a minimum where $p = q$, i.e. $e^{g} = q_t / q_c$:
#
# $$g^* = \ln\frac{1 - \epsilon + \epsilon / C}{\epsilon / C} = \ln 91 \approx 4.51,$$
#
# and rises again beyond: overconfidence is penalised. (So a smoothed loss curve
# levels off above 0: compare it with $H(q)$, not with 0. For a vocabulary of
# $C = 15$ tokens, as in lecture 9, $H(q) \approx 0.556$.)

# %%
H = -(q * np.log(q)).sum()
by_formula = -(1 - eps + eps / C) * math.log(1 - eps + eps / C) - (C - 1) * (eps / C) * math.log(
    eps / C
)
at_q = F.cross_entropy(mt.tensor(np.log(q)[None]), np.array([t]), label_smoothing=eps).item()
print(f"H(q) = {H:.4f} (formula {by_formula:.4f}); loss with p = q: {at_q:.4f}")
assert np.isclose(H, by_formula) and np.isclose(H, 0.5003, atol=1e-4)
assert np.isclose(at_q, H)

gaps = np.linspace(0, 12, 241)
z = np.zeros((len(gaps), C))
z[:, t] = gaps
targets = np.full(len(gaps), t)
curves = {
    e: F.cross_entropy(mt.tensor(z), targets, label_smoothing=e, reduction="none").numpy()
    for e in (0.0, eps)
}
g_star = math.log((1 - eps + eps / C) / (eps / C))
fig, ax = plt.subplots(figsize=(6, 3))
for e, curve in curves.items():
    ax.plot(gaps, curve, label=f"eps = {e}")
ax.axhline(H, color="grey", ls=":", lw=0.8, label="H(q)")
ax.axvline(g_star, color="grey", ls="--", lw=0.8, label="g* = ln 91")
ax.set_xlabel("logit gap g of the target class")
ax.set_ylabel("loss")
ax.legend()
ax.set_title("with smoothing, certainty is not rewarded")
plt.show()

print(f"smoothed loss is smallest at g = {gaps[curves[eps].argmin()]:.2f}, g* = {g_star:.2f}")
assert abs(gaps[curves[eps].argmin()] - g_star) <= gaps[1] - gaps[0]
assert np.isclose(curves[eps].min(), H, atol=1e-3)
assert (np.diff(curves[0.0]) < 0).all()  # without smoothing: always lower with a larger gap
assert curves[eps][-1] > curves[eps].min() + 0.5

# %% [markdown]
# ## 4. Gradient clipping
#
# `clip_grad_norm(params, max_norm)` treats all gradients as one long vector $g$,
# and if $\|g\| >$ `max_norm` scales every one of them by
# $c = \text{max\_norm} / (\|g\| + 10^{-6})$. The direction of the update is kept;
# only its length is capped. It returns the norm **before** clipping, which is worth
# logging: spikes in it are the first sign of trouble.
#
# By hand: gradients $(3, 4)$ and $(12)$ have the global norm
# $\sqrt{9 + 16 + 144} = 13$. Clipped to 1, they become $(3, 4, 12) / 13$; clipped to
# 20, they are left alone.

# %%
a = mt.tensor([0.0, 0.0], requires_grad=True)
b = mt.tensor([0.0], requires_grad=True)
a.grad, b.grad = np.array([3.0, 4.0]), np.array([12.0])
before = optim.clip_grad_norm([a, b], max_norm=1.0)
after = math.sqrt((a.grad**2).sum() + (b.grad**2).sum())
print(f"norm before {before}, after {after:.6f}; grads {a.grad.round(4)}, {b.grad.round(4)}")

assert before == 13.0
assert np.isclose(after, 1.0)
assert np.allclose(np.concatenate([a.grad, b.grad]), [3 / 13, 4 / 13, 12 / 13])
a.grad, b.grad = np.array([3.0, 4.0]), np.array([12.0])
assert optim.clip_grad_norm([a, b], max_norm=20.0) == 13.0
assert np.array_equal(a.grad, [3.0, 4.0]) and np.array_equal(b.grad, [12.0])

# %% [markdown]
# And in training: lecture 9's copy model, trained with a deliberately high learning
# rate, no warmup and `max_norm = 1`. We record the norm before clipping (what
# `clip_grad_norm` returns) and measure it again after: every step that was above 1
# is brought down to 1, and the others are untouched.

# %%
pairs = synthetic_pairs("copy", 2000, seed=0, max_len=8)
tok = WordTokenizer.train([s for s, _ in pairs])
ids = [tok.encode(s) for s, _ in pairs]
batches = make_batches(
    ids, ids, pad_id=tok.pad_id, bos_id=tok.bos_id, eos_id=tok.eos_id, batch_size=32, seed=0
)
model = nn.Transformer(
    len(tok),
    len(tok),
    d_model=32,
    num_heads=4,
    num_encoder_layers=1,
    num_decoder_layers=1,
    d_ff=64,
    dropout=0.0,
    max_len=16,
)
params = list(model.parameters())
adam = optim.Adam(params, lr=1e-2)
norms_before, norms_after = [], []
for batch in batches[: 20 if FAST else 60]:
    loss = F.cross_entropy(
        model(batch.src_ids, batch.tgt_in), batch.tgt_out, ignore_index=tok.pad_id
    )
    loss.backward()
    norms_before.append(optim.clip_grad_norm(params, max_norm=1.0))
    norms_after.append(math.sqrt(sum(float((p.grad**2).sum()) for p in params)))
    adam.step()
    adam.zero_grad()

fig, ax = plt.subplots(figsize=(6, 3))
ax.semilogy(norms_before, "o-", ms=3, label="before clipping")
ax.semilogy(norms_after, "s-", ms=3, label="after clipping")
ax.axhline(1.0, color="grey", ls="--", lw=0.8)
ax.set_xlabel("step")
ax.set_ylabel("global gradient norm")
ax.legend()
plt.show()

nb, na = np.array(norms_before), np.array(norms_after)
print(f"{(nb > 1).sum()} of {len(nb)} steps clipped; largest norm {nb.max():.2f}")
assert (nb > 1).any()
assert np.allclose(na[nb > 1], 1.0, atol=1e-5)
assert np.allclose(na[nb <= 1], nb[nb <= 1])

# %% [markdown]
# ## 5. Adam's weight decay and AdamW's
#
# Weight decay pulls weights towards 0 by $\lambda p$ per step, as if the loss had a
# term $\frac{\lambda}{2}\|p\|^2$. The two optimizers apply it in different places
# (`adam.py` and `adamw.py`):
#
# - **Adam** (with `weight_decay`) adds it to the gradient, $g' = g + \lambda p$, and
#   then divides by $\sqrt{\hat v}$ like any gradient;
# - **AdamW** shrinks the weight directly, $p \leftarrow p\,(1 - \text{lr}\,\lambda)$,
#   and runs Adam on $g$ alone.
#
# The first step shows the difference. With $m_0 = v_0 = 0$, after one step
# $m = (1 - \beta_1) g'$ and $v = (1 - \beta_2) g'^2$, and the bias corrections undo
# the factors: $\hat m = g'$, $\sqrt{\hat v} = |g'|$. So the first Adam step is
#
# $$p \leftarrow p - \text{lr}\,\frac{g'}{|g'| + \epsilon} \approx p - \text{lr}\cdot\text{sign}(g').$$
#
# Take two weights, both $p = 2$, with gradients $g = 0$ and $g = 1$; lr $= 0.1$,
# $\lambda = 0.01$:
#
# | | $g = 0$ | $g = 1$ |
# | --- | --- | --- |
# | Adam: $g' = g + \lambda p$ | $0.02$ | $1.02$ |
# | Adam: new $p \approx 2 - 0.1\,\text{sign}(g')$ | $1.9$ | $1.9$ |
# | AdamW: $p\,(1 - 0.001) - 0.1\,\text{sign}(g)$ | $1.998$ | $1.898$ |
#
# Adam's decay moved the weight without gradient by a full learning-rate step (the
# division by $|g'|$ blew the tiny $0.02$ up to 1), and did nothing visible to the
# other one (the $0.02$ drowned in $1.02$). AdamW decays both by the same
# $\text{lr}\,\lambda\,p = 0.002$, which is what weight decay was meant to do.

# %%
lr, lam = 0.1, 0.01
p0, g = np.array([2.0, 2.0]), np.array([0.0, 1.0])
results = {}
for cls in (optim.Adam, optim.AdamW):
    p = mt.tensor(p0.copy(), dtype="float64", requires_grad=True)
    opt = cls([p], lr=lr, weight_decay=lam)
    p.grad = g.copy()
    opt.step()
    results[cls.__name__] = p.numpy()
    print(f"{cls.__name__:5s}: p = {p.numpy()}")

eps_adam = 1e-8
g_adam = g + lam * p0
by_hand_adam = p0 - lr * g_adam / (np.abs(g_adam) + eps_adam)
by_hand_adamw = p0 * (1 - lr * lam) - lr * g / (np.abs(g) + eps_adam)
assert np.allclose(results["Adam"], by_hand_adam, rtol=1e-12)
assert np.allclose(results["AdamW"], by_hand_adamw, rtol=1e-12)
assert np.allclose(results["Adam"], [1.9, 1.9]) and np.allclose(results["AdamW"], [1.998, 1.898])

# %% [markdown]
# Over many steps the weight without gradient shows the two behaviours plainly:
# under AdamW it decays geometrically, $p_k = 2\,(1 - \text{lr}\,\lambda)^k$; under
# Adam it walks towards 0 by about one learning rate per step whatever $\lambda$ is,
# because $\hat m / \sqrt{\hat v} \approx \text{sign}(p)$ when the only "gradient" is
# $\lambda p$. (A little less than one as $p$ shrinks, since $\hat v$ still remembers
# the larger $\lambda p$ of earlier steps; and it overshoots 0, as a sign step would.)

# %%
k_steps = 40
paths = {}
for cls in (optim.Adam, optim.AdamW):
    p = mt.tensor([2.0], dtype="float64", requires_grad=True)
    opt = cls([p], lr=lr, weight_decay=lam)
    path = [2.0]
    for _ in range(k_steps):
        p.grad = np.zeros(1)
        opt.step()
        path.append(p.item())
    paths[cls.__name__] = np.array(path)

fig, ax = plt.subplots(figsize=(6, 3))
for name, path in paths.items():
    ax.plot(path, "o-", ms=3, label=name)
ax.set_xlabel("step")
ax.set_ylabel("weight (its gradient is 0)")
ax.legend()
ax.set_title(f"weight decay, lr = {lr}, lambda = {lam}")
plt.show()

k = np.arange(k_steps + 1)
assert np.allclose(paths["AdamW"], 2 * (1 - lr * lam) ** k)
assert np.allclose(paths["Adam"][:11], 2 - lr * k[:11], atol=0.03)  # ~ lr per step
assert paths["Adam"].min() < 0 < 1.9 < paths["AdamW"].min()

# %% [markdown]
# ## 6. Checkpoints and an exact resume
#
# A long run is interrupted sooner or later. `minitransformer.train.train` writes a
# checkpoint every `eval_every` steps, and `train(config, resume=True)` continues
# from it. For the continued run to be *the same* run, the checkpoint must hold
# everything the next step depends on:
#
# - the weights (`model.safetensors`, and again in `train_state.safetensors`);
# - Adam's moments $m$, $v$ and step counts: restarting them at 0 would make the
#   next steps full-size sign steps (section 5);
# - the schedule's step counter;
# - where in which epoch's shuffled batches the run was (`epoch`, `position`);
# - the random state (dropout masks).
#
# We check it at tiny sizes on the toy translation task: one run of $N$ steps
# straight through, and one of $N/2$ steps that is then resumed up to $N$. The
# weights at the end must be identical, bit for bit, and so must the loss at every
# step. We use the Noam schedule: as section 2 showed, a linear decay depends on the
# total number of steps, so a run *told* to stop at $N/2$ would use other learning
# rates than the first half of a run of $N$. (For such a run `train` stretches the
# decay to the new end on resume: it continues, but is no longer the one-go run.)
#
# Where the checkpoint stands in the data: 300 toy sentences, 5% held out, leave 285
# for training; in batches of 16 that is $\lceil 285 / 16 \rceil = 18$ batches per
# epoch, so after $N/2$ steps the run is in epoch $\lfloor (N/2) / 18 \rfloor$ at
# batch $(N/2) \bmod 18$. With $N = 60$ (without `MT_FAST`) that is the middle of
# the second epoch: the resumed run must rebuild that epoch's shuffled batches and
# pick up at batch 12.

# %%
N = 10 if FAST else 60


def tiny_config(out_dir: Path, steps: int) -> TrainConfig:
    return TrainConfig(
        num_examples=300,
        d_model=16,
        num_heads=2,
        num_layers=1,
        d_ff=32,
        max_len=12,
        batch_size=16,
        steps=steps,
        eval_every=N // 2,
        eval_examples=16,
        warmup_steps=5,
        lr=1e-2,
        dropout=0.1,
        schedule="noam",
        out_dir=str(out_dir),
    )


def quiet(*_):
    """A log function for train() that prints nothing."""


with tempfile.TemporaryDirectory() as tmp:
    one_go = train(tiny_config(Path(tmp) / "a", N), progress=False, log=quiet)
    train(tiny_config(Path(tmp) / "b", N // 2), progress=False, log=quiet)
    meta = load_metadata(Path(tmp) / "b" / "train_state.safetensors")
    state = load(Path(tmp) / "b" / "train_state.safetensors")
    resumed = train(tiny_config(Path(tmp) / "b", N), resume=True, progress=False, log=quiet)
    weights_a = load(Path(tmp) / "a" / "model.safetensors")
    weights_b = load(Path(tmp) / "b" / "model.safetensors")
    files = sorted(f.name for f in (Path(tmp) / "b").iterdir())

print("files:", files)
print("checkpoint metadata:", {k: meta[k] for k in ("step", "epoch", "position", "schedule")})
print(
    "arrays:",
    len([k for k in state if k.startswith("model.")]),
    "weights,",
    len([k for k in state if k.startswith("optimizer.")]),
    "optimizer arrays, e.g.",
    [k for k in state if k.startswith("optimizer.")][:3],
)
losses_a = [h["loss"] for h in one_go.history if "loss" in h]
losses_b = [h["loss"] for h in resumed.history if "loss" in h]
print("loss at the last steps, one go :", np.round(losses_a[-3:], 6))
print("loss at the last steps, resumed:", np.round(losses_b[-3:], 6))

assert meta["step"] == N // 2 and meta["schedule"]["step_count"] == N // 2
assert (meta["epoch"], meta["position"]) == divmod(N // 2, math.ceil(285 / 16))
assert weights_a.keys() == weights_b.keys()
assert all(np.array_equal(weights_a[k], weights_b[k]) for k in weights_a)
assert losses_a == losses_b and len(losses_a) == N

# %% [markdown]
# ## Exercises
#
# 1. With the Noam schedule, $d = 512$, $w = 4000$: at which step after the peak has
#    the learning rate fallen to a tenth of the peak?
#    *Expected:* $\text{lr}(s) / \text{lr}(w) = \sqrt{w / s} = 1/10$ at
#    $s = 100\,w = 400{,}000$.
# 2. What is the smallest possible smoothed loss for lecture 9's vocabulary,
#    $C = 15$, $\epsilon = 0.1$? And for a 32,000-token vocabulary?
#    *Expected:* $H(q)$ with $q_t = 0.9 + 0.1/C$:
#    $-0.9067 \ln 0.9067 - 14 \cdot \tfrac{0.1}{15} \ln \tfrac{0.1}{15} \approx 0.556$
#    for $C = 15$, and
#    $\approx 1.362$ for $C = 32{,}000$ (most of it is the $\epsilon \ln(C/\epsilon)$
#    term: the spread over the other classes).
# 3. Gradients $(1, 2, 2)$ and $(4)$ are clipped to `max_norm = 2.5`. What does
#    `clip_grad_norm` return, and what are the gradients after?
#    *Expected:* the norm $\sqrt{1 + 4 + 4 + 16} = 5$; every gradient is halved,
#    $(0.5, 1, 1)$ and $(2)$ (up to the $10^{-6}$).
#
# Try them before reading on: the cells below are one solution each.

# %%
noam = optim.NoamSchedule(one_parameter_optimizer(), d_model=512, warmup_steps=4000)
assert np.isclose(noam.get_lr(400_000), noam.get_lr(4000) / 10)


# %%
def smoothed_minimum(classes: int, e: float) -> float:
    qt, qo = 1 - e + e / classes, e / classes
    return -qt * math.log(qt) - (classes - 1) * qo * math.log(qo)


for classes, expected in ((15, 0.556), (32_000, 1.362)):
    qs = np.full(classes, eps / classes)
    qs[0] += 1 - eps
    at_q = F.cross_entropy(mt.tensor(np.log(qs)[None]), np.array([0]), label_smoothing=eps).item()
    assert np.isclose(at_q, smoothed_minimum(classes, eps), rtol=1e-5)
    assert np.isclose(smoothed_minimum(classes, eps), expected, atol=1e-3)

# %%
a = mt.tensor([0.0, 0.0, 0.0], requires_grad=True)
b = mt.tensor([0.0], requires_grad=True)
a.grad, b.grad = np.array([1.0, 2.0, 2.0]), np.array([4.0])
assert optim.clip_grad_norm([a, b], max_norm=2.5) == 5.0
assert np.allclose(a.grad, [0.5, 1.0, 1.0]) and np.allclose(b.grad, [2.0])
print("all exercises check out")
