"""The training loop: repeated gradient steps, as in the notes, over shuffled mini-batches.

One epoch is one pass over the training rows in batches of `batch_size` (None: one batch of
all of them, which makes each epoch one step of the notes' full-batch gradient descent). After
each epoch the dev set is scored; with `patience` set, training stops once dev accuracy has
not improved for that many epochs and the best weights are restored. A NaN or infinite loss
raises `TrainingDiverged` at once, naming the epoch and learning rate.

All randomness (shuffling, shifts, dropout masks) comes from the one `rng` passed in.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pipeline.nn.augment import random_shift
from pipeline.nn.distortions import Distortion, distort
from pipeline.nn.loss import softmax_cross_entropy
from pipeline.nn.model import MLP
from pipeline.nn.optimizers import Optimizer


class TrainingDiverged(ArithmeticError):
    """The loss became NaN or infinite."""


@dataclass
class EpochRecord:
    epoch: int  # 1-based
    train_loss: float  # mean over the epoch's batches, as trained (dropout on)
    train_accuracy: float
    dev_loss: float
    dev_accuracy: float
    learning_rate: float
    seconds: float  # wall time of the epoch's training steps


@dataclass
class FitResult:
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0  # 1-based epoch with the highest dev accuracy
    stopped_early: bool = False
    restored_best: bool = False  # the model holds the best epoch's weights, not the last's
    best_params: list[np.ndarray] | None = None  # under patience: the best epoch's weights
    halted: bool = False  # on_epoch asked to stop here (a sweep's pruner)

    @property
    def best(self) -> EpochRecord:
        return self.history[self.best_epoch - 1]

    @property
    def kept(self) -> EpochRecord:
        """The epoch whose weights the trained model holds."""
        return self.best if self.restored_best else self.history[-1]


def predict_and_score(model: MLP, x: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float]:
    """The predicted digit of each row of `x` and the mean cross-entropy, in one forward pass."""
    logits = model.logits(x).T.astype(np.float64)  # classes × N, as the loss expects
    predicted = logits.argmax(axis=0)
    loss, _ = softmax_cross_entropy(logits, labels)
    return predicted, loss


def loss_and_accuracy(model: MLP, x: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of `model` on rows `x`."""
    predicted, loss = predict_and_score(model, x, labels)
    return loss, float(np.mean(predicted == labels))


def check_finite(loss: float, what: str, epoch: int, lr: float) -> None:
    if not math.isfinite(loss):
        raise TrainingDiverged(
            f"training diverged at epoch {epoch} ({what} {loss}) with learning rate {lr:g}"
        )


def fit(
    model: MLP,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_dev: np.ndarray,
    y_dev: np.ndarray,
    *,
    optimizer: Optimizer,
    schedule: Callable[[int], float],
    epochs: int,
    batch_size: int | None,
    rng: np.random.Generator,
    dropout: float = 0.0,
    input_dropout: float = 0.0,
    max_norm: float | None = None,
    max_shift: int = 0,
    distortion: Distortion | None = None,
    patience: int | None = None,
    on_epoch: Callable[[EpochRecord], bool | None] | None = None,
    result: FitResult | None = None,
    on_checkpoint: Callable[[FitResult], None] | None = None,
    stop_after: int | None = None,
) -> FitResult:
    """Train `model` in place; return the per-epoch history and the best epoch. The
    optimizer's learning rate is set from `schedule` at the start of each epoch; with
    `max_norm`, every step ends by capping each unit's incoming weight norm.

    `result`: the fit so far, to go on from its next epoch (model, optimizer and rng restored
    to where it stopped: state.py). `on_checkpoint(result)` is called at each epoch's end,
    once the epoch's state is complete, before `on_epoch(record)`; an `on_epoch` that returns
    True stops the training there (`halted`). `stop_after` ends it after that epoch, the
    schedule still set for `epochs`: what a halted training did, again."""
    n = len(x_train)
    batch = n if batch_size is None else min(batch_size, n)
    result = result if result is not None else FitResult()
    first = len(result.history) + 1
    last = epochs if stop_after is None else min(epochs, stop_after)
    for epoch in range(first, last + 1):
        if result.stopped_early or result.halted:
            break
        lr = optimizer.lr = schedule(epoch - 1)
        started = time.perf_counter()
        order = rng.permutation(n) if batch < n else None
        loss_sum, correct = 0.0, 0
        for start in range(0, n, batch):
            if order is None:
                x_batch, y_batch = x_train, y_train
            else:
                rows = order[start : start + batch]
                x_batch, y_batch = x_train[rows], y_train[rows]
            x_batch = random_shift(x_batch, max_shift, rng)
            if distortion is not None:
                x_batch = distort(x_batch, distortion, rng)
            # Overflow on the way to a NaN loss is reported as divergence, not warned.
            with np.errstate(over="ignore", invalid="ignore"):
                loss, batch_correct, grads = model.loss_and_grads(
                    x_batch, y_batch, dropout, rng, input_dropout
                )
                check_finite(loss, "loss", epoch, lr)
                optimizer.step(grads)
                if max_norm is not None:
                    model.cap_unit_norms(max_norm)
            loss_sum += loss * len(y_batch)
            correct += batch_correct
        seconds = time.perf_counter() - started
        with np.errstate(over="ignore", invalid="ignore"):
            dev_loss, dev_accuracy = loss_and_accuracy(model, x_dev, y_dev)
        check_finite(dev_loss, "dev loss", epoch, lr)
        record = EpochRecord(epoch, loss_sum / n, correct / n, dev_loss, dev_accuracy, lr, seconds)
        result.history.append(record)
        if result.best_epoch == 0 or dev_accuracy > result.best.dev_accuracy:
            result.best_epoch = epoch
            if patience is not None:
                result.best_params = [p.copy() for p in model.params()]
        elif patience is not None and epoch - result.best_epoch >= patience:
            result.stopped_early = True
        if on_checkpoint is not None:
            on_checkpoint(result)
        if on_epoch is not None and on_epoch(record):
            result.halted = True
            break
    if result.best_params is not None:
        for param, best in zip(model.params(), result.best_params, strict=True):
            param[...] = best
        result.restored_best = True
    return result
