"""Optimizers and learning-rate schedules.

Every update is done in place and the gradient buffers double as scratch space (the training
loop recomputes them each step): at small widths the update, not the matrix products,
dominates a step, and every pass over a weight-sized array costs as much as a small matmul.
Each parameter is updated in blocks of rows that fit in the CPU's cache, so the several
element-wise passes of one update read the arrays from memory once, not once per pass (at
width 800 this halves the time of an SGD-with-momentum update).

`step` takes the gradients multiplied by `gradient_scale(lr)`: SGD asks for lr·∇, which the
model folds into its small output-layer dZ for free, saving one pass over every weight. Its
velocity is kept as lr·v for the same reason, rescaled when the schedule changes lr.

    sgd    p ← p - lr·g; with momentum μ: v ← μ·v + g, p ← p - lr·v; Nesterov: p ← p - lr·(g + μ·v)
           (momentum 0 and one batch of all examples is the notes' gradient descent)
    adam   Kingma & Ba, with bias correction; L2 weight decay added to the gradient
    adamw  Adam with decoupled weight decay: p ← p - lr·λ·p, then the Adam step

Weight decay applies to the weights W only, never the biases b.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine")
BLOCK_ELEMENTS = 1 << 16  # per array and block: 256 KiB of float32, a few arrays fit in L2
FLUSH_EVERY = 16  # steps between flushes of subnormal optimizer state to zero


def flush_subnormals(array: np.ndarray) -> None:
    """Set values too small for a normal float (|x| < tiny) to 0, in place.

    Under a zero gradient (a border pixel that is always 0, a dead ReLU unit) momentum decays
    geometrically and spends ~150 steps among the subnormal numbers, on which every CPU
    operation is ~100× slower: unflushed, they made epochs 30% slower by the fifth epoch.
    """
    np.copyto(array, 0, where=np.abs(array) < np.finfo(array.dtype).tiny)


def block_rows(param: np.ndarray) -> int:
    """Rows per block of `param` so one block holds about BLOCK_ELEMENTS values."""
    return max(1, BLOCK_ELEMENTS // max(1, param[0].size))


class Optimizer:
    """Updates `params` (the model's [W¹, b¹, W², b², …]) in place from their gradients."""

    state_buffers = 0  # arrays of per-parameter state (velocity, moments)

    def __init__(self, params: list[np.ndarray], weight_decay: float = 0.0):
        self.params = params
        self.weight_decay = weight_decay
        self.steps = 0
        self.state = [[np.zeros_like(p) for _ in range(self.state_buffers)] for p in params]

    def gradient_scale(self, lr: float) -> float:
        """The factor the gradients passed to `step` must already carry."""
        return 1.0

    def step(self, grads: list[np.ndarray], lr: float) -> None:
        """Apply one update from `grads` = gradient_scale(lr)·∇; `grads` are overwritten."""
        self.steps += 1
        self.prepare(lr)
        flush = self.steps % FLUSH_EVERY == 0
        for index, (param, grad) in enumerate(zip(self.params, grads, strict=True)):
            decay = self.weight_decay if index % 2 == 0 else 0.0  # even indices: weights
            state = self.state[index]
            rows = block_rows(param)
            for start in range(0, len(param), rows):
                block = slice(start, start + rows)
                state_block = [s[block] for s in state]
                self.update(param[block], grad[block], state_block, lr, decay)
                if flush:
                    for array in state_block:
                        flush_subnormals(array)

    def prepare(self, lr: float) -> None:
        """Per-step quantities shared by all parameters."""

    def update(self, param, grad, state: list[np.ndarray], lr: float, decay: float) -> None:
        """Update one block of rows of one parameter; `decay` is 0 for biases."""
        raise NotImplementedError


class SGD(Optimizer):
    """Gradients arrive as g' = lr·g and the velocity is kept as u = lr·v (PyTorch's v)."""

    def __init__(self, params, momentum=0.0, nesterov=False, weight_decay=0.0):
        self.state_buffers = 1 if momentum else 0
        super().__init__(params, weight_decay)
        self.momentum, self.nesterov = momentum, nesterov
        self.last_lr = None

    def gradient_scale(self, lr):
        return lr

    def prepare(self, lr):
        # u ← μ·(lr/lr_prev)·u + lr·g equals lr·(μ·v + g) when lr changes between steps.
        self.carry = self.momentum * (lr / self.last_lr if self.last_lr else 1.0)
        self.last_lr = lr

    def update(self, param, grad, state, lr, decay):
        if decay:  # g ← g + λ·p, the gradient of (λ/2)·‖W‖²
            grad += (lr * decay) * param
        if state:
            (velocity,) = state
            velocity *= self.carry
            velocity += grad
            if not self.nesterov:  # p ← p - lr·v
                param -= velocity
                return
            grad += self.momentum * velocity  # Nesterov: p ← p - lr·(g + μ·v)
        param -= grad


class Adam(Optimizer):
    state_buffers = 2  # first moment m, second moment v

    def __init__(self, params, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False):
        super().__init__(params, weight_decay)
        self.beta1, self.beta2, self.eps, self.decoupled = beta1, beta2, eps, decoupled
        # One block's worth of scratch, shared by every block: it stays in cache.
        largest = max((block_rows(p) * p[0].size for p in params), default=0)
        self.scratch = np.empty(largest, dtype=params[0].dtype if params else np.float32)

    def prepare(self, lr):
        # Bias correction folded into the step size and epsilon (Kingma & Ba, section 2).
        correction2 = math.sqrt(1 - self.beta2**self.steps)
        self.step_size = lr * correction2 / (1 - self.beta1**self.steps)
        self.eps_hat = self.eps * correction2

    def update(self, param, grad, state, lr, decay):
        if decay and self.decoupled:
            param *= 1 - lr * decay
        elif decay:
            grad += decay * param
        first, second = state
        tmp = self.scratch[: grad.size].reshape(grad.shape)
        np.multiply(grad, grad, out=tmp)  # v ← β₂·v + (1-β₂)·g²
        tmp *= 1 - self.beta2
        second *= self.beta2
        second += tmp
        grad *= 1 - self.beta1  # m ← β₁·m + (1-β₁)·g
        first *= self.beta1
        first += grad
        np.sqrt(second, out=tmp)  # p ← p - lr_t·m / (√v + ε̂)
        tmp += self.eps_hat
        np.divide(first, tmp, out=tmp)
        tmp *= self.step_size
        param -= tmp


def make_optimizer(
    name: str,
    params: list[np.ndarray],
    momentum: float = 0.0,
    nesterov: bool = False,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> Optimizer:
    if name == "sgd":
        return SGD(params, momentum, nesterov, weight_decay)
    if name in ("adam", "adamw"):
        return Adam(params, beta1, beta2, eps, weight_decay, decoupled=name == "adamw")
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


def make_schedule(
    name: str,
    base_lr: float,
    epochs: int,
    step_size: int = 10,
    gamma: float = 0.1,
    min_lr: float = 0.0,
) -> Callable[[int], float]:
    """The learning rate of each epoch (0-based).

    constant: base_lr. step: base_lr·gamma^(epoch // step_size). cosine: from base_lr down to
    min_lr over the epochs along half a cosine wave (Loshchilov & Hutter, without restarts).
    """
    if name == "constant":
        return lambda epoch: base_lr
    if name == "step":
        return lambda epoch: base_lr * gamma ** (epoch // step_size)
    if name == "cosine":
        return lambda epoch: (
            min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * epoch / max(epochs, 1)))
        )
    raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
