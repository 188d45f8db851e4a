"""Optimizers, schedules and clipping: parity with PyTorch, checkpoints, errors.

The parity tests run the same small least-squares problem in both frameworks, each
computing its own gradients (ours with our autograd), from identical float64 starting
points, and compare the parameters after every step. The loss is

    L(W, b) = sum((X @ W + b - Y) ** 2) / n

whose gradients are O(1) and never close to 0 over a few steps, so the two trajectories
can only drift apart by rounding: we allow a 1e-12 relative difference (measured
against the largest entry, so an entry that crosses 0 does not count as a large error).
"""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minitransformer as mt
from minitransformer import optim

N_STEPS = 8
RTOL = 1e-12


# ---------------------------------------------------------------- helpers


def torch_or_skip():
    return pytest.importorskip("torch")


def least_squares(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "W": rng.standard_normal((4, 3)),
        "b": rng.standard_normal(3),
        "X": rng.standard_normal((8, 4)),
        "Y": rng.standard_normal((8, 3)),
    }


def as_groups(params: list, groups: list[dict] | None) -> list:
    """Plain list, or one group per parameter with the given overrides."""
    if groups is None:
        return params
    return [{"params": [p], **g} for p, g in zip(params, groups)]


def ours_trajectory(name: str, prob: dict, hyper: dict, groups=None, steps=N_STEPS):
    W = mt.tensor(prob["W"].copy(), requires_grad=True)
    b = mt.tensor(prob["b"].copy(), requires_grad=True)
    X, Y = mt.tensor(prob["X"]), mt.tensor(prob["Y"])
    opt = getattr(optim, name)(as_groups([W, b], groups), **hyper)
    out = []
    for _ in range(steps):
        loss = ((X @ W + b - Y) ** 2).sum() / X.shape[0]
        loss.backward()
        opt.step()
        opt.zero_grad()
        out.append((W.data.copy(), b.data.copy()))
    return out, opt


def torch_trajectory(name: str, prob: dict, hyper: dict, groups=None, steps=N_STEPS):
    torch = torch_or_skip()
    W = torch.tensor(prob["W"].copy(), requires_grad=True)
    b = torch.tensor(prob["b"].copy(), requires_grad=True)
    X, Y = torch.tensor(prob["X"]), torch.tensor(prob["Y"])
    # foreach=False: the per-parameter loop, whose arithmetic ours follows.
    opt = getattr(torch.optim, name)(as_groups([W, b], groups), foreach=False, **hyper)
    out = []
    for _ in range(steps):
        loss = ((X @ W + b - Y) ** 2).sum() / X.shape[0]
        loss.backward()
        opt.step()
        opt.zero_grad()
        out.append((W.detach().numpy().copy(), b.detach().numpy().copy()))
    return out, opt


def assert_rel_close(ours, ref, rtol=RTOL, what=""):
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape, what
    scale = max(np.abs(ref).max(), 1e-300)
    err = np.abs(ours - ref).max() / scale
    assert err <= rtol, f"{what}: max |ours - torch| / max |torch| = {err:.3e} > {rtol:g}"


def assert_same_trajectory(ours, ref):
    for step, ((W1, b1), (W2, b2)) in enumerate(zip(ours, ref), start=1):
        assert_rel_close(W1, W2, what=f"W after step {step}")
        assert_rel_close(b1, b2, what=f"b after step {step}")


def param(shape=(3,), seed=0, dtype="float64"):
    data = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    return mt.tensor(data, requires_grad=True)


# ---------------------------------------------------------------- strategies

seeds = st.integers(0, 2**16)
lrs = st.floats(1e-4, 0.1)
small_decay = st.just(0.0) | st.floats(0.0, 0.2)


@st.composite
def sgd_hyper(draw):
    momentum = draw(st.sampled_from([0.0, 0.9]) | st.floats(0.0, 0.99))
    nesterov = momentum > 0 and draw(st.booleans())
    return {
        "lr": draw(lrs),
        "momentum": momentum,
        "dampening": 0.0 if nesterov else draw(st.just(0.0) | st.floats(0.0, 0.5)),
        "weight_decay": draw(small_decay),
        "nesterov": nesterov,
    }


@st.composite
def adam_hyper(draw, decay=small_decay):
    return {
        "lr": draw(lrs),
        # beta1 below 0.5 takes the other branch of torch's lerp; beta2 = 0 makes v = g^2
        "betas": (draw(st.floats(0.0, 0.99)), draw(st.floats(0.0, 0.9999))),
        "eps": 10.0 ** draw(st.integers(-10, -4)),
        "weight_decay": draw(decay),
    }


# ---------------------------------------------------------------- parity with torch


@pytest.mark.torch
@pytest.mark.parametrize(
    "hyper",
    [
        {"lr": 0.05},
        {"lr": 0.05, "momentum": 0.9},
        {"lr": 0.05, "momentum": 0.9, "dampening": 0.3},
        {"lr": 0.05, "momentum": 0.9, "nesterov": True},
        {"lr": 0.05, "weight_decay": 0.1},
        {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.1},
    ],
    ids=["plain", "momentum", "dampening", "nesterov", "decay", "nesterov+decay"],
)
def test_sgd_matches_torch(hyper):
    prob = least_squares(0)
    ours, opt = ours_trajectory("SGD", prob, hyper)
    ref, topt = torch_trajectory("SGD", prob, hyper)
    assert_same_trajectory(ours, ref)
    if hyper.get("momentum"):
        buf = opt.state_dict()["state"][0]["momentum_buffer"]
        tbuf = next(iter(topt.state.values()))["momentum_buffer"].numpy()
        assert_rel_close(buf, tbuf, what="momentum buffer of W")


@pytest.mark.torch
@settings(max_examples=15, deadline=None)
@given(seed=seeds, hyper=sgd_hyper())
def test_sgd_matches_torch_random_hyperparameters(seed, hyper):
    prob = least_squares(seed)
    assert_same_trajectory(
        ours_trajectory("SGD", prob, hyper)[0], torch_trajectory("SGD", prob, hyper)[0]
    )


@pytest.mark.torch
@pytest.mark.parametrize("name", ["Adam", "AdamW"])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adam_family_matches_torch(name, weight_decay):
    prob = least_squares(1)
    hyper = {"lr": 0.05, "weight_decay": weight_decay}
    ours, opt = ours_trajectory(name, prob, hyper)
    ref, topt = torch_trajectory(name, prob, hyper)
    assert_same_trajectory(ours, ref)
    state = opt.state_dict()["state"][0]
    tstate = next(iter(topt.state.values()))
    assert state["step"] == int(tstate["step"]) == N_STEPS
    assert_rel_close(state["exp_avg"], tstate["exp_avg"].numpy(), what="exp_avg of W")
    assert_rel_close(state["exp_avg_sq"], tstate["exp_avg_sq"].numpy(), what="exp_avg_sq of W")


@pytest.mark.torch
@settings(max_examples=15, deadline=None)
@given(seed=seeds, hyper=adam_hyper())
def test_adam_matches_torch_random_hyperparameters(seed, hyper):
    prob = least_squares(seed)
    assert_same_trajectory(
        ours_trajectory("Adam", prob, hyper)[0], torch_trajectory("Adam", prob, hyper)[0]
    )


@pytest.mark.torch
@settings(max_examples=15, deadline=None)
@given(seed=seeds, hyper=adam_hyper(decay=st.floats(0.0, 0.5)))
def test_adamw_matches_torch_random_hyperparameters(seed, hyper):
    prob = least_squares(seed)
    assert_same_trajectory(
        ours_trajectory("AdamW", prob, hyper)[0], torch_trajectory("AdamW", prob, hyper)[0]
    )


@pytest.mark.torch
@pytest.mark.parametrize(
    ("name", "hyper", "groups"),
    [
        ("SGD", {"lr": 0.05, "momentum": 0.9}, [{"weight_decay": 0.1}, {"lr": 0.2}]),
        ("Adam", {"lr": 0.01}, [{"lr": 0.05, "weight_decay": 0.1}, {"betas": (0.5, 0.9)}]),
        ("AdamW", {"lr": 0.01}, [{"weight_decay": 0.3}, {"lr": 0.03, "weight_decay": 0.0}]),
    ],
)
def test_param_groups_match_torch(name, hyper, groups):
    prob = least_squares(2)
    ours, opt = ours_trajectory(name, prob, hyper, groups)
    ref, _ = torch_trajectory(name, prob, hyper, groups)
    assert_same_trajectory(ours, ref)
    # each group kept its own overrides and took the defaults for the rest
    for group, overrides in zip(opt.param_groups, groups):
        for key, value in {**hyper, **overrides}.items():
            assert group[key] == value


def test_adamw_decay_is_decoupled_from_the_gradient():
    """With a zero gradient Adam's update is 0 (m = v = 0) while AdamW still shrinks p
    by exactly (1 - lr * lambda): the decay does not pass through m and v."""
    lr, lam = 0.1, 0.5
    for name, factor in [("Adam", None), ("AdamW", 1 - lr * lam)]:
        p = param()
        start = p.data.copy()
        opt = getattr(optim, name)([p], lr=lr, weight_decay=lam)
        p.grad = np.zeros_like(p.data)
        opt.step()
        if factor is None:
            # L2 decay: g = lam * p, so the first step is lr * sign(p) (up to eps)
            np.testing.assert_allclose(p.data, start - lr * np.sign(start), rtol=1e-6)
        else:
            np.testing.assert_array_equal(p.data, start * factor)


def test_float32_parameters_stay_float32():
    p = param(dtype="float32")
    opt = optim.Adam([p], lr=0.1, weight_decay=0.1)
    for _ in range(3):
        p.grad = np.ones_like(p.data)
        opt.step()
    assert p.data.dtype == np.float32
    state = opt.state_dict()["state"][0]
    assert state["exp_avg"].dtype == state["exp_avg_sq"].dtype == np.float32


# ---------------------------------------------------------------- step mechanics


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
        lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1),
        lambda ps: optim.Adam(ps, lr=0.1),
        lambda ps: optim.AdamW(ps, lr=0.1),
    ],
    ids=["SGD-momentum", "SGD-nesterov-decay", "Adam", "AdamW"],
)
def test_step_updates_in_place_reads_grad_and_skips_none(make):
    with_grad, without_grad = param(seed=1), param(seed=2)
    opt = make([with_grad, without_grad])
    data_ref = with_grad.data
    untouched = without_grad.data.copy()
    grad = np.arange(3.0)
    for _ in range(3):
        with_grad.grad = grad
        opt.step()
        # the same array object, changed in place; the grad neither replaced nor written
        assert with_grad.data is data_ref and with_grad.grad is grad
        np.testing.assert_array_equal(grad, np.arange(3.0))
    np.testing.assert_array_equal(without_grad.data, untouched)
    assert list(opt.state_dict()["state"]) == [0]  # no state for the skipped parameter
    opt.zero_grad()
    assert with_grad.grad is None and without_grad.grad is None


def test_wrong_shaped_grad_is_an_error_not_a_broadcast():
    p = param((2, 3))
    opt = optim.SGD([p], lr=0.1)
    p.grad = np.ones(3)
    with pytest.raises(ValueError, match=r"shape \(2, 3\) but its grad has shape \(3,\)"):
        opt.step()


def test_schedules_can_set_group_lr():
    p = param()
    opt = optim.SGD([p], lr=1.0)
    opt.param_groups[0]["lr"] = 0.25
    start = p.data.copy()
    p.grad = np.ones(3)
    opt.step()
    np.testing.assert_array_equal(p.data, start - 0.25)


def test_optim_never_imports_numpy():
    """optim/ must compute with the parameter's array module, so it runs on CuPy too."""
    folder = Path(optim.__file__).parent
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n.split(".")[0] in ("numpy", "cupy") for n in names), path.name


@pytest.mark.gpu
def test_state_lives_on_the_parameter_device():
    if not mt.gpu_available():
        pytest.skip("no CUDA GPU")
    p = param().to("cuda").requires_grad_(True)
    opt = optim.Adam([p], lr=0.1)
    p.grad = p.data * 0 + 1
    opt.step()
    state = next(iter(opt.state.values()))
    assert type(state["exp_avg"]) is type(p.data)


# ---------------------------------------------------------------- checkpoints


def save_and_load(sd: dict, tmp_path: Path, name: str) -> dict:
    """What a training checkpoint does: arrays to safetensors, the rest to JSON."""
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    arrays, meta = optim.flatten_state(sd)
    safetensors_numpy.save_file(arrays, str(tmp_path / f"{name}.safetensors"))
    (tmp_path / f"{name}.json").write_text(json.dumps(meta))
    loaded = safetensors_numpy.load_file(str(tmp_path / f"{name}.safetensors"))
    return optim.unflatten_state(loaded, json.loads((tmp_path / f"{name}.json").read_text()))


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
        lambda ps: optim.Adam(
            [{"params": ps[:1]}, {"params": ps[1:], "lr": 0.03}], lr=0.1, weight_decay=0.1
        ),
        lambda ps: optim.AdamW(ps, lr=0.1, betas=(0.8, 0.99)),
    ],
    ids=["SGD", "Adam-groups", "AdamW"],
)
def test_state_dict_round_trip_continues_bit_identically(make, tmp_path):
    rng = np.random.default_rng(0)
    grads = [[rng.standard_normal(s) for s in ((4, 3), (3,), (2,))] for _ in range(7)]
    ps = [param(s, seed=i) for i, s in enumerate(((4, 3), (3,), (2,)))]
    opt = make(ps)

    def step(opt, ps, gs):
        for p, g in zip(ps, gs):
            p.grad = g
        ps[2].grad = None  # a parameter without a gradient has no state
        opt.step()

    for gs in grads[:3]:
        step(opt, ps, gs)
    sd = opt.state_dict()
    restored_sd = save_and_load(sd, tmp_path, "opt")

    clones = [mt.tensor(p.data.copy(), requires_grad=True) for p in ps]
    other = make(clones)
    other.load_state_dict(restored_sd)
    snapshot = {k: v.copy() for k, v in sd["state"][0].items() if hasattr(v, "copy")}
    for gs in grads[3:]:
        step(opt, ps, gs)
        step(other, clones, gs)
    for p, c in zip(ps, clones):
        np.testing.assert_array_equal(p.data, c.data)
    a, b = opt.state_dict(), other.state_dict()
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys() == {0, 1}
    for idx in a["state"]:
        for key, value in a["state"][idx].items():
            np.testing.assert_array_equal(value, b["state"][idx][key])
    # the snapshot taken earlier did not move with the live state
    for key, value in snapshot.items():
        np.testing.assert_array_equal(sd["state"][0][key], value)


def test_flatten_state_layout_and_json_round_trip():
    p, q = param(seed=0), param((2,), seed=1)
    opt = optim.Adam([p, q], lr=0.1)
    p.grad = np.ones(3)
    opt.step()
    sd = opt.state_dict()
    arrays, meta = optim.flatten_state(sd)
    assert sorted(arrays) == ["state.0.exp_avg", "state.0.exp_avg_sq"]
    assert meta["state"] == {"0": {"step": 1}}
    assert json.loads(json.dumps(meta)) == meta
    back = optim.unflatten_state(arrays, json.loads(json.dumps(meta)))
    assert back["param_groups"] == sd["param_groups"]  # betas is a tuple again
    assert back["state"][0]["step"] == 1


def test_load_state_dict_copies_and_rejects_mismatches_atomically():
    p = param((2, 2))
    opt = optim.Adam([p], lr=0.1)
    p.grad = np.ones((2, 2))
    opt.step()
    sd = opt.state_dict()

    fresh = optim.Adam([param((2, 2), seed=3)], lr=0.5)
    fresh.load_state_dict(sd)
    sd["state"][0]["exp_avg"][...] = 123.0  # editing the dict afterwards changes nothing
    assert not (fresh.state_dict()["state"][0]["exp_avg"] == 123.0).any()
    assert fresh.param_groups[0]["lr"] == 0.1  # hyperparameters come from the checkpoint

    before = fresh.state_dict()
    wrong_shape = optim.Adam([param((3,))], lr=0.1)
    with pytest.raises(ValueError, match=r"shape \(2, 2\), the parameter has shape \(3,\)"):
        wrong_shape.load_state_dict(sd)
    with pytest.raises(ValueError, match="1 parameter groups, this optimizer has 2"):
        optim.Adam([{"params": [param()]}, {"params": [param()]}]).load_state_dict(sd)
    with pytest.raises(ValueError, match="hyperparameters"):
        optim.SGD([param((2, 2))], lr=0.1).load_state_dict(sd)
    bad = {**sd, "state": {0: {"exp_avg": sd["state"][0]["exp_avg"]}}}
    with pytest.raises(ValueError, match="entries"):
        fresh.load_state_dict(bad)
    after = fresh.state_dict()
    assert after["param_groups"] == before["param_groups"]
    np.testing.assert_array_equal(after["state"][0]["exp_avg"], before["state"][0]["exp_avg"])


# ---------------------------------------------------------------- schedules


def noam_formula(step: int, d_model: int, warmup: int, factor: float) -> float:
    return factor * d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)


@settings(max_examples=25, deadline=None)
@given(
    d_model=st.integers(1, 1024),
    warmup=st.integers(1, 200),
    factor=st.floats(0.1, 10.0),
)
def test_noam_follows_the_formula_and_peaks_at_warmup(d_model, warmup, factor):
    opt = optim.SGD([param()], lr=123.0)
    sched = optim.NoamSchedule(opt, d_model, warmup, factor=factor)
    assert opt.param_groups[0]["lr"] == sched.get_lr(0) == 0.0
    steps = range(1, 3 * warmup + 2)
    lrs = [sched.get_lr(s) for s in steps]
    for s, lr in zip(steps, lrs):
        assert lr == pytest.approx(noam_formula(s, d_model, warmup, factor), rel=1e-15)
    assert max(lrs) == lrs[warmup - 1]  # the peak is at step == warmup
    assert lrs[warmup - 1] == pytest.approx(factor / math.sqrt(d_model * warmup), rel=1e-12)
    for s in range(1, 6):
        sched.step()
        assert sched.step_count == s
        assert opt.param_groups[0]["lr"] == sched.lr == sched.get_lr(s)


def test_noam_sets_every_group():
    opt = optim.Adam([{"params": [param()], "lr": 1.0}, {"params": [param()], "lr": 2.0}])
    sched = optim.NoamSchedule(opt, d_model=16, warmup_steps=4)
    sched.step()
    assert [g["lr"] for g in opt.param_groups] == [noam_formula(1, 16, 4, 1.0)] * 2


def linear_lambda(step: int, warmup: int, total: int) -> float:
    """Hugging Face's get_linear_schedule_with_warmup multiplier."""
    if step < warmup:
        return float(step) / float(max(1, warmup))
    return max(0.0, float(total - step) / float(max(1, total - warmup)))


@pytest.mark.torch
@settings(max_examples=20, deadline=None)
@given(
    peak=st.floats(1e-5, 1.0),
    warmup=st.integers(0, 20),
    extra=st.integers(0, 30),
    final_fraction=st.sampled_from([0.0, 0.0, 0.1, 0.5]),
)
def test_linear_warmup_decay_matches_lambda_lr(peak, warmup, extra, final_fraction):
    torch = torch_or_skip()
    total = max(1, warmup + extra)
    final = peak * final_fraction

    def lam(s):
        # (final + (peak - final) * decay) / peak, written so final = 0 is exactly HF's
        if s < warmup:
            return linear_lambda(s, warmup, total)
        return final / peak + (1 - final / peak) * linear_lambda(s, warmup, total)

    w = torch.zeros(1, requires_grad=True)
    topt = torch.optim.SGD([w], lr=peak)
    tsched = torch.optim.lr_scheduler.LambdaLR(topt, lam)
    opt = optim.SGD([param()], lr=peak)
    sched = optim.LinearWarmupDecay(opt, peak, warmup, total, final_lr=final)
    for s in range(total + 5):
        ours, ref = opt.param_groups[0]["lr"], topt.param_groups[0]["lr"]
        if final == 0.0:
            assert ours == ref, f"step {s}"
        else:
            assert ours == pytest.approx(ref, rel=1e-12, abs=1e-300), f"step {s}"
        topt.step()  # LambdaLR warns if stepped before its optimizer
        tsched.step()
        sched.step()
    assert sched.get_lr(warmup) == peak and sched.get_lr(total + 3) == final


@pytest.mark.parametrize(
    ("make", "make_different"),
    [
        (
            lambda o: optim.NoamSchedule(o, d_model=64, warmup_steps=10, factor=2.0),
            lambda o: optim.NoamSchedule(o, d_model=1, warmup_steps=1),
        ),
        (
            lambda o: optim.LinearWarmupDecay(o, 0.1, 5, 20, final_lr=0.01),
            lambda o: optim.LinearWarmupDecay(o, 1.0, 1, 2),
        ),
    ],
    ids=["Noam", "LinearWarmupDecay"],
)
def test_schedule_state_dict_round_trip(make, make_different):
    opt, opt2 = optim.SGD([param()], lr=1.0), optim.SGD([param()], lr=1.0)
    sched, other = make(opt), make_different(opt2)
    for _ in range(7):
        sched.step()
    other.load_state_dict(json.loads(json.dumps(sched.state_dict())))
    assert other.step_count == 7
    for _ in range(15):
        assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
        sched.step()
        other.step()


# ---------------------------------------------------------------- clipping


@pytest.mark.torch
@settings(max_examples=25, deadline=None)
@given(seed=seeds, max_norm=st.floats(0.1, 10.0), scale=st.sampled_from([0.01, 1.0, 100.0]))
def test_clip_grad_norm_matches_torch(seed, max_norm, scale):
    torch = torch_or_skip()
    rng = np.random.default_rng(seed)
    shapes = [(4, 3), (3,), (2, 2, 2)]
    grads = [scale * rng.standard_normal(s) for s in shapes]
    ours = [param(s) for s in shapes] + [param()]  # the last one has no grad
    theirs = [torch.zeros(s, dtype=torch.float64, requires_grad=True) for s in shapes]
    for p, t, g in zip(ours, theirs, grads):
        p.grad, t.grad = g.copy(), torch.tensor(g)
    before = [p.grad for p in ours[:3]]

    norm = optim.clip_grad_norm(ours, max_norm)
    tnorm = torch.nn.utils.clip_grad_norm_(theirs, max_norm, foreach=False)

    assert isinstance(norm, float)
    assert norm == pytest.approx(float(tnorm), rel=RTOL)
    assert norm == pytest.approx(math.sqrt(sum((g**2).sum() for g in grads)), rel=RTOL)
    for p, t, old, g in zip(ours, theirs, before, grads):
        assert_rel_close(p.grad, t.grad.numpy(), what="clipped grad")
        np.testing.assert_array_equal(old, g)  # the old array was not written into
    assert ours[3].grad is None
    clipped = math.sqrt(sum((p.grad**2).sum() for p in ours[:3]))
    assert clipped <= max_norm * (1 + 1e-12)
    if norm > max_norm:
        assert all(p.grad is not old for p, old in zip(ours, before))


def test_clip_grad_norm_sums_float32_squares_without_overflow():
    p = param(dtype="float32")
    p.grad = np.array([3e20, 4e20, 0.0], dtype=np.float32)
    norm = optim.clip_grad_norm([p], 1.0)
    assert norm == pytest.approx(5e20, rel=1e-6)
    np.testing.assert_allclose(p.grad, [0.6, 0.8, 0.0], rtol=1e-5)


def test_clip_grad_norm_rejects_non_finite_gradients():
    ok, bad = param(seed=0), param((2,), seed=1)
    ok.grad, bad.grad = np.ones(3), np.array([1.0, np.nan])
    with pytest.raises(ValueError, match=r"parameters 1 \(shape \(2,\)\)"):
        optim.clip_grad_norm([ok, bad], 1.0)
    np.testing.assert_array_equal(ok.grad, np.ones(3))  # nothing was scaled
    # opting out behaves like torch: the NaN norm is returned and spreads into the grads
    assert math.isnan(optim.clip_grad_norm([ok, bad], 1.0, error_if_nonfinite=False))
    assert np.isnan(ok.grad).all()


def test_clip_grad_norm_without_grads_is_zero():
    assert optim.clip_grad_norm([param(), param()], 1.0) == 0.0


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda p: optim.SGD([p], lr=-0.1), ValueError, r"lr must be >= 0, got -0\.1"),
        (lambda p: optim.Adam([p], lr=-1), ValueError, r"lr must be >= 0, got -1"),
        (lambda p: optim.Adam([p], betas=(1.0, 0.9)), ValueError, r"beta1 .* \[0, 1\), got 1\.0"),
        (lambda p: optim.AdamW([p], betas=(0.9, -0.1)), ValueError, r"beta2 .* got -0\.1"),
        (lambda p: optim.Adam([p], betas=(0.9,)), ValueError, r"betas must be a pair"),
        (lambda p: optim.Adam([p], eps=0.0), ValueError, r"eps must be > 0, got 0\.0"),
        (lambda p: optim.AdamW([p], eps=-1e-8), ValueError, r"eps must be > 0, got -1e-08"),
        (lambda p: optim.SGD([p], lr=0.1, weight_decay=-1.0), ValueError, "weight_decay"),
        (lambda p: optim.SGD([p], lr=0.1, momentum=-0.5), ValueError, "momentum must be >= 0"),
        (lambda p: optim.SGD([p], lr=0.1, nesterov=True), ValueError, "nesterov=True needs"),
        (lambda p: optim.SGD([p], lr=float("nan")), ValueError, "lr must be finite"),
        (lambda p: optim.SGD([], lr=0.1), ValueError, "empty parameter list"),
        (lambda p: optim.SGD(p, lr=0.1), TypeError, "wrap a single tensor in a list"),
        (lambda p: optim.SGD([p.detach()], lr=0.1), ValueError, r"shape \(3,\)\) does not"),
        (lambda p: optim.SGD([p, p], lr=0.1), ValueError, "more than once"),
        (lambda p: optim.SGD([{"params": [p], "lr_": 1}], lr=0.1), ValueError, "unknown keys"),
        (lambda p: optim.SGD([{"lr": 1}], lr=0.1), ValueError, "no 'params' key"),
        (lambda p: optim.SGD([p, {"params": [p]}], lr=0.1), TypeError, "mixes"),
        (lambda p: optim.NoamSchedule(optim.SGD([p], lr=1), 0, 10), ValueError, "d_model"),
        (lambda p: optim.NoamSchedule(optim.SGD([p], lr=1), 8, 0), ValueError, "warmup_steps"),
        (
            lambda p: optim.LinearWarmupDecay(optim.SGD([p], lr=1), 0.1, 10, 5),
            ValueError,
            r"warmup_steps \(10\) must not exceed total_steps \(5\)",
        ),
        (
            lambda p: optim.LinearWarmupDecay(optim.SGD([p], lr=1), 0.1, 1, 5, final_lr=0.2),
            ValueError,
            "final_lr",
        ),
        (lambda p: optim.NoamSchedule(optim.SGD([p], lr=1), 8, 4).get_lr(-1), ValueError, "step"),
        (lambda p: optim.clip_grad_norm([p], 0.0), ValueError, "max_norm must be a number > 0"),
    ],
)
def test_invalid_arguments_raise_clear_errors(make, error, match):
    with pytest.raises(error, match=match):
        make(param())
