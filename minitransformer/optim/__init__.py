"""Optimizers, learning-rate schedules and gradient clipping.

    opt = optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.01)
    schedule = optim.NoamSchedule(opt, d_model=512, warmup_steps=4000)
    schedule.step(); loss.backward(); optim.clip_grad_norm(model.parameters(), 1.0)
    opt.step(); opt.zero_grad()

Files: ``optimizer.py`` (parameter groups, state, checkpoints), ``sgd.py``, ``adam.py``,
``adamw.py`` (the update rules, each PyTorch's), ``schedules.py``, ``clip.py``, and
``state.py`` (flattening a state dict for safetensors + JSON).
"""

from .adam import Adam
from .adamw import AdamW
from .clip import clip_grad_norm
from .optimizer import Optimizer
from .schedules import LinearWarmupDecay, NoamSchedule
from .sgd import SGD
from .state import flatten_state, unflatten_state

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "LinearWarmupDecay",
    "NoamSchedule",
    "Optimizer",
    "clip_grad_norm",
    "flatten_state",
    "unflatten_state",
]
