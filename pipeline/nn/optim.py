"""Optimizers and learning-rate schedules.

Every update is done in place and the gradient buffers double as scratch space (the training
loop recomputes them each step): at small widths the update, not the matrix products,
dominates a step, and every pass over a weight-sized array costs as much as a small matmul.

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


class Optimizer:
    """Updates `params` (the model's [W¹, b¹, W², b², …]) in place from their gradients."""

    def __init__(self, params: list[np.ndarray], weight_decay: float = 0.0):
        self.params = params
        self.weight_decay = weight_decay
        self.steps = 0

    def decays(self, index: int) -> bool:
        return self.weight_decay > 0 and index % 2 == 0  # even indices are the weights

    def add_l2(self, index: int, grad: np.ndarray) -> None:
        """g ← g + λ·p, the gradient of (λ/2)·‖W‖²."""
        if self.decays(index):
            grad += self.weight_decay * self.params[index]

    def step(self, grads: list[np.ndarray], lr: float) -> None:
        """Apply one update; `grads` are overwritten (used as scratch)."""
        self.steps += 1
        self.prepare(lr)
        for index, (param, grad) in enumerate(zip(self.params, grads, strict=True)):
            self.update(index, param, grad, lr)

    def prepare(self, lr: float) -> None:
        """Per-step quantities shared by all parameters."""

    def update(self, index: int, param: np.ndarray, grad: np.ndarray, lr: float) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    def __init__(self, params, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(params, weight_decay)
        self.momentum, self.nesterov = momentum, nesterov
        self.velocity = [np.zeros_like(p) for p in params] if momentum else None

    def update(self, index, param, grad, lr):
        self.add_l2(index, grad)
        if self.velocity is None:
            grad *= lr
            param -= grad
            return
        velocity = self.velocity[index]
        velocity *= self.momentum
        velocity += grad
        if self.nesterov:  # step along g + μ·v
            grad += self.momentum * velocity
            grad *= lr
        else:  # step along v
            np.multiply(velocity, lr, out=grad)
        param -= grad


class Adam(Optimizer):
    def __init__(self, params, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False):
        super().__init__(params, weight_decay)
        self.beta1, self.beta2, self.eps, self.decoupled = beta1, beta2, eps, decoupled
        self.first = [np.zeros_like(p) for p in params]
        self.second = [np.zeros_like(p) for p in params]
        self.scratch = [np.empty_like(p) for p in params]

    def prepare(self, lr):
        # Bias correction folded into the step size and epsilon (Kingma & Ba, section 2).
        correction2 = math.sqrt(1 - self.beta2**self.steps)
        self.step_size = lr * correction2 / (1 - self.beta1**self.steps)
        self.eps_hat = self.eps * correction2

    def update(self, index, param, grad, lr):
        if self.decoupled:
            if self.decays(index):
                param *= 1 - lr * self.weight_decay
        else:
            self.add_l2(index, grad)
        first, second, tmp = self.first[index], self.second[index], self.scratch[index]
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
