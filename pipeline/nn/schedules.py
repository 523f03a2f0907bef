"""Learning-rate schedules: the learning rate of each epoch (0-based).

constant  base_lr
step      base_lr·gamma^(epoch // step_size)
cosine    from base_lr down to min_lr over the epochs along half a cosine wave
          (Loshchilov & Hutter, without restarts)
"""

from __future__ import annotations

import math
from collections.abc import Callable

SCHEDULES = ("constant", "step", "cosine")


def make_schedule(
    *,
    name: str,
    base_lr: float,
    epochs: int,
    step_size: int = 10,
    gamma: float = 0.1,
    min_lr: float = 0.0,
) -> Callable[[int], float]:
    """The schedule `name` from the fields of a schedule config (each uses its own)."""
    if name == "constant":
        return lambda epoch: base_lr
    if name == "step":
        return lambda epoch: base_lr * gamma ** (epoch // step_size)
    if name == "cosine":
        return lambda epoch: (
            min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * epoch / max(epochs, 1)))
        )
    raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
