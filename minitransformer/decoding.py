"""Decoding: turning an encoder-decoder's next-token distributions into sentences.

All three strategies start from ``<s>`` and extend the target one token at a time
until ``</s>`` or ``max_len``:

    greedy   y_t = argmax_w p(w | y_<t, x)
    beam     keep the ``beam_size`` best partial sentences by total log-probability;
             finished ones are ranked by  log p(y) / lp(y),  lp = ((5 + |y|) / 6)^alpha
             (the GNMT length penalty; alpha = 0 compares raw log-probabilities, which
             favours short sentences)
    sample   y_t ~ softmax(logits / temperature), optionally only among the top_k words

With ``use_cache=True`` (the default) the decoder keeps every layer's keys and values
(``model.new_cache()``) and each step feeds only the newest token: a step costs O(t)
instead of re-running the whole prefix, O(t^2). ``use_cache=False`` re-runs the prefix;
both give the same tokens (``tests/test_decoding.py``).
"""

from __future__ import annotations

import math
from typing import Any

from . import backend
from . import functional as F
from .autograd.tape import no_grad
from .autograd.tensor import Tensor

__all__ = ["greedy_decode", "beam_search", "sample_decode", "length_penalty"]


def _src(src_ids: Any) -> Any:
    data = src_ids.data if isinstance(src_ids, Tensor) else backend.as_array(src_ids)
    if data.ndim == 1:
        data = data[None, :]
    if data.ndim != 2 or data.shape[1] == 0:
        raise ValueError(
            f"src_ids must be (batch, seq) with seq >= 1, got shape {tuple(data.shape)}"
        )
    return data


def _check(max_len: int, model: Any) -> None:
    if max_len < 1:
        raise ValueError(f"max_len must be at least 1, got {max_len}")
    limit = model.pos.max_len
    if max_len + 1 > limit:
        raise ValueError(f"max_len={max_len} exceeds the model's positional max_len={limit} - 1")


def _step_logits(
    model: Any, ys: Any, memory: Tensor, src: Any, cache: list | None, bos_id: int
) -> Any:
    """Log-probabilities of the next token for each row of prefix ``ys`` (B, t): (B, V)."""
    if cache is None:
        logits = model.decode(ys, memory, src)[:, -1]
    else:
        t = ys.shape[1]
        logits = model.decode(ys[:, -1:], memory, src, cache=cache, offset=t - 1)[:, 0]
    logp = F.log_softmax(logits, axis=-1).data
    # a decoder never emits padding or <s>: they would change what the next steps mask
    logp[:, model.pad_id] = -math.inf
    logp[:, bos_id] = -math.inf
    return logp


def _trim(row: list[int], eos_id: int) -> list[int]:
    return row[: row.index(eos_id)] if eos_id in row else row


def greedy_decode(
    model: Any,
    src_ids: Any,
    bos_id: int,
    eos_id: int,
    max_len: int = 64,
    use_cache: bool = True,
) -> list[list[int]]:
    """The most probable next token at each step, for a batch of sources (B, S).

    Returns one list of ids per source, without ``<s>`` and ``</s>``.
    """
    src = _src(src_ids)
    _check(max_len, model)
    xp = backend.array_module(src)
    b = src.shape[0]
    with no_grad():
        memory = model.encode(src)
        cache = model.new_cache() if use_cache else None
        ys = xp.full((b, 1), bos_id, dtype=xp.int64)
        done = xp.zeros(b, dtype=bool)
        for _ in range(max_len):
            logp = _step_logits(model, ys, memory, src, cache, bos_id)
            nxt = logp.argmax(axis=-1)
            nxt = xp.where(done, eos_id, nxt)  # finished rows keep emitting </s>
            ys = xp.concatenate([ys, nxt[:, None]], axis=1)
            done |= nxt == eos_id
            if bool(done.all()):
                break
    rows = backend.to_numpy(ys[:, 1:]).tolist()
    return [_trim(r, eos_id) for r in rows]


def length_penalty(length: int, alpha: float) -> float:
    """GNMT's lp(Y) = ((5 + |Y|) / 6)^alpha."""
    return ((5.0 + length) / 6.0) ** alpha


def _reorder_cache(cache: list[dict], origins: Any) -> None:
    """After a beam step, row i of every cached self-attention key/value must be the
    row of the beam it grew from."""
    for layer in cache:
        for kind in ("self", "cross"):
            kv = layer.get(kind)
            if kv:
                kv["k"] = kv["k"][origins]
                kv["v"] = kv["v"][origins]


def beam_search(
    model: Any,
    src_ids: Any,
    bos_id: int,
    eos_id: int,
    beam_size: int = 4,
    max_len: int = 64,
    alpha: float = 0.6,
    use_cache: bool = True,
) -> list[list[int]]:
    """Beam search for each source sentence (one at a time, the beams as a batch)."""
    if beam_size < 1:
        raise ValueError(f"beam_size must be at least 1, got {beam_size}")
    src_all = _src(src_ids)
    _check(max_len, model)
    return [
        _beam_one(model, src_all[i : i + 1], bos_id, eos_id, beam_size, max_len, alpha, use_cache)
        for i in range(src_all.shape[0])
    ]


def _beam_one(model, src, bos_id, eos_id, k, max_len, alpha, use_cache) -> list[int]:
    xp = backend.array_module(src)
    with no_grad():
        memory = model.encode(src)  # (1, S, d)
        cache = model.new_cache() if use_cache else None
        ys = xp.full((1, 1), bos_id, dtype=xp.int64)
        scores = xp.zeros(1, dtype=xp.float64)  # total log-probability of each beam
        finished: list[tuple[float, list[int]]] = []
        for _ in range(max_len):
            n = ys.shape[0]
            mem = memory if n == memory.shape[0] else memory[xp.zeros(n, dtype=xp.int64)]
            src_n = xp.broadcast_to(src, (n, src.shape[1]))
            logp = _step_logits(model, ys, mem, src_n, cache, bos_id).astype(xp.float64)  # (n, V)
            v = logp.shape[1]
            total = (scores[:, None] + logp).reshape(-1)
            best = xp.argsort(-total, kind="stable")[: 2 * k]  # room for beams that finish
            new_rows, new_scores, origins = [], [], []
            for flat in backend.to_numpy(best).tolist():
                origin, word = divmod(flat, v)
                score = float(total[flat])
                if word == eos_id:
                    seq = backend.to_numpy(ys[origin, 1:]).tolist()
                    finished.append((score / length_penalty(len(seq) + 1, alpha), seq))
                else:
                    origins.append(origin)
                    new_rows.append(word)
                    new_scores.append(score)
                if len(new_rows) == k:
                    break
            if len(finished) >= k or not new_rows:
                break
            # stop when no live beam can still beat the best finished one
            if finished:
                best_done = max(f[0] for f in finished)
                best_live = (
                    max(new_scores) / length_penalty(max_len, alpha)
                    if alpha > 0
                    else max(new_scores)
                )
                if best_live < best_done:
                    break
            origins_arr = xp.asarray(origins, dtype=xp.int64)
            ys = xp.concatenate(
                [ys[origins_arr], xp.asarray(new_rows, dtype=xp.int64)[:, None]], axis=1
            )
            scores = xp.asarray(new_scores, dtype=xp.float64)
            if cache is not None:
                _reorder_cache(cache, origins_arr)
        if not finished:
            i = int(scores.argmax())
            seq = backend.to_numpy(ys[i, 1:]).tolist()
            return seq
    return max(finished, key=lambda f: f[0])[1]


def sample_decode(
    model: Any,
    src_ids: Any,
    bos_id: int,
    eos_id: int,
    max_len: int = 64,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int | None = None,
    use_cache: bool = True,
) -> list[list[int]]:
    """Sample each next token from softmax(logits / temperature), among the top_k if set.

    The draws come from ``seed`` if given, else from the generator ``mt.manual_seed`` seeds.
    """
    if temperature <= 0 or not math.isfinite(temperature):
        raise ValueError(f"temperature must be a positive number, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k}")
    src = _src(src_ids)
    _check(max_len, model)
    xp = backend.array_module(src)
    rng = backend.generator() if seed is None else backend.new_generator(seed)
    b = src.shape[0]
    with no_grad():
        memory = model.encode(src)
        cache = model.new_cache() if use_cache else None
        ys = xp.full((b, 1), bos_id, dtype=xp.int64)
        done = xp.zeros(b, dtype=bool)
        for _ in range(max_len):
            logits = (
                _step_logits(model, ys, memory, src, cache, bos_id).astype(xp.float64) / temperature
            )
            if top_k is not None and top_k < logits.shape[1]:
                kth = xp.sort(logits, axis=1)[:, -top_k]  # the k-th largest score per row
                logits = xp.where(logits >= kth[:, None], logits, -math.inf)
            p = xp.exp(logits - logits.max(axis=1, keepdims=True))
            p = backend.to_numpy(p / p.sum(axis=1, keepdims=True))
            nxt = [int(rng.choice(p.shape[1], p=row)) for row in p]
            nxt = xp.where(done, eos_id, xp.asarray(nxt, dtype=xp.int64))
            ys = xp.concatenate([ys, nxt[:, None]], axis=1)
            done |= nxt == eos_id
            if bool(done.all()):
                break
    rows = backend.to_numpy(ys[:, 1:]).tolist()
    return [_trim(r, eos_id) for r in rows]
