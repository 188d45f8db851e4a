"""Learning-rate schedules: the Transformer paper's (Noam) and linear warmup + decay.

A schedule is a function lr(s) of the step number s. It counts its own ``step()``
calls, s = 0, 1, 2, ..., and after each one writes lr(s) into every parameter group
of the optimizer (at construction it writes lr(0)). Call it once before each update:

    for batch in batches:
        schedule.step()            # s = i for the i-th update (i = 1, 2, ...)
        loss = ...; loss.backward()
        optimizer.step(); optimizer.zero_grad()

so the i-th update uses lr(i), counted from 1 as in the paper. (This is
``torch.optim.lr_scheduler.LambdaLR``'s bookkeeping: after s calls the lr is lr(s).
Calling it after ``optimizer.step()`` instead, as PyTorch code does, shifts every
update by one: the first then uses lr(0) = 0.)

Noam (Vaswani et al. 2017, eq. 3), warmup w, model width d:

    lr(s) = factor * d^-0.5 * min(s^-0.5, s * w^-1.5)      (lr(0) = 0)

rises linearly for s <= w, peaks at lr(w) = factor * (d * w)^-0.5, then decays as 1/sqrt(s).

Linear warmup then linear decay (Hugging Face's ``get_linear_schedule_with_warmup``
with the peak written out), warmup w, total T, peak P, final F:

    lr(s) = P * (s / w)                                          for s < w
    lr(s) = F + (P - F) * max(0, (T - s) / max(1, T - w))        for s >= w

rises from 0 to P over w steps, falls to F at s = T, and stays at F after.
Both set the same lr in every group.
"""

from __future__ import annotations

from typing import Any

from .optimizer import non_negative, positive

__all__ = ["NoamSchedule", "LinearWarmupDecay"]


class _Schedule:
    """Bookkeeping shared by the schedules: the step counter and writing lr into groups."""

    # Constructor arguments that state_dict saves, besides the step counter.
    _config: tuple[str, ...] = ()

    def __init__(self, optimizer: Any) -> None:
        if not hasattr(optimizer, "param_groups"):
            raise TypeError(
                f"a schedule needs an optimizer (with param_groups), got {type(optimizer).__name__}"
            )
        self.optimizer = optimizer
        self.step_count = 0
        self._apply()

    def get_lr(self, step: int) -> float:
        """lr(step), without changing anything (e.g. for plotting)."""
        raise NotImplementedError

    @property
    def lr(self) -> float:
        """The lr currently written into the optimizer, lr(step_count)."""
        return self.get_lr(self.step_count)

    def step(self) -> None:
        """Advance the step counter and write the new lr into every parameter group."""
        self.step_count += 1
        self._apply()

    def _apply(self) -> None:
        lr = self.get_lr(self.step_count)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def state_dict(self) -> dict[str, Any]:
        """``{"step_count": int, <constructor arguments>}``, all JSON-ready numbers."""
        return {"step_count": self.step_count, **{k: getattr(self, k) for k in self._config}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the counter and settings, and write the matching lr into the optimizer."""
        missing = sorted({"step_count", *self._config} - set(state_dict))
        if missing:
            raise ValueError(f"{type(self).__name__} state dict lacks {missing}")
        step = state_dict["step_count"]
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"step_count must be an integer >= 0, got {step!r}")
        self._configure(**{k: state_dict[k] for k in self._config})
        self.step_count = step
        self._apply()

    def _configure(self, **config: Any) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._config)
        return f"{type(self).__name__}({args}; step_count={self.step_count})"


class NoamSchedule(_Schedule):
    """``NoamSchedule(optimizer, d_model, warmup_steps, factor=1.0)``:
    lr(s) = factor * d_model^-0.5 * min(s^-0.5, s * warmup_steps^-1.5)."""

    _config = ("d_model", "warmup_steps", "factor")

    def __init__(
        self, optimizer: Any, d_model: int, warmup_steps: int, factor: float = 1.0
    ) -> None:
        self._configure(d_model=d_model, warmup_steps=warmup_steps, factor=factor)
        super().__init__(optimizer)

    def _configure(self, d_model: int, warmup_steps: int, factor: float) -> None:
        self.d_model = _int_at_least("d_model", d_model, 1)
        self.warmup_steps = _int_at_least("warmup_steps", warmup_steps, 1)
        self.factor = positive("factor", factor)

    def get_lr(self, step: int) -> float:
        step = _step_number(step)
        if step == 0:
            # Before any update: the warmup branch s * w^-1.5 is 0 (and 0^-0.5 would divide by 0).
            return 0.0
        return self.factor * self.d_model**-0.5 * min(step**-0.5, step * self.warmup_steps**-1.5)


class LinearWarmupDecay(_Schedule):
    """``LinearWarmupDecay(optimizer, peak_lr, warmup_steps, total_steps, final_lr=0.0)``:
    linear from 0 to peak_lr over warmup_steps, then linear to final_lr at total_steps."""

    _config = ("peak_lr", "warmup_steps", "total_steps", "final_lr")

    def __init__(
        self,
        optimizer: Any,
        peak_lr: float,
        warmup_steps: int,
        total_steps: int,
        final_lr: float = 0.0,
    ) -> None:
        self._configure(
            peak_lr=peak_lr, warmup_steps=warmup_steps, total_steps=total_steps, final_lr=final_lr
        )
        super().__init__(optimizer)

    def _configure(
        self, peak_lr: float, warmup_steps: int, total_steps: int, final_lr: float
    ) -> None:
        self.peak_lr = non_negative("peak_lr", peak_lr)
        self.final_lr = non_negative("final_lr", final_lr)
        if self.final_lr > self.peak_lr:
            raise ValueError(f"final_lr ({final_lr!r}) must not exceed peak_lr ({peak_lr!r})")
        self.warmup_steps = _int_at_least("warmup_steps", warmup_steps, 0)
        self.total_steps = _int_at_least("total_steps", total_steps, 1)
        if self.warmup_steps > self.total_steps:
            raise ValueError(
                f"warmup_steps ({warmup_steps}) must not exceed total_steps ({total_steps})"
            )

    def get_lr(self, step: int) -> float:
        step = _step_number(step)
        w, t = self.warmup_steps, self.total_steps
        if step < w:
            return self.peak_lr * (step / w)
        remaining = max(0.0, (t - step) / max(1, t - w))
        return self.final_lr + (self.peak_lr - self.final_lr) * remaining


def _int_at_least(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def _step_number(step: Any) -> int:
    return _int_at_least("step", step, 0)
