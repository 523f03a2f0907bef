"""Range checks of every field a training reads, in one place, run once before any work.

Each problem is reported with its dotted key and the allowed range, all at once, so a bad
override is fixed in one go rather than one error per run.
"""

from __future__ import annotations

import math

from pipeline.nn import ACTIVATIONS, INITS, OPTIMIZERS, SCHEDULES
from pipeline.plumbing.config import ConfigError
from pipeline.plumbing.schema import Config

MAX_SHIFT = 4  # pixels; MNIST digits sit in a 20×20 box centred in 28×28, so 4 keeps them whole
DTYPES = ("float32", "float64")


def one_of(key: str, value: str, choices) -> tuple[bool, str]:
    return value in choices, f"{key}={value!r} is not one of {', '.join(choices)}"


def hyperparameter_problems(config: Config) -> list[str]:
    """Every value of model, optimizer, schedule, train and seed that would make training fail
    or mean nothing, each named with its dotted key."""
    model, opt, sched, train = config.model, config.optimizer, config.schedule, config.train
    finite = all(
        math.isfinite(value)
        for value in (opt.lr, opt.momentum, opt.beta1, opt.beta2, opt.eps, opt.weight_decay,
                      sched.gamma, sched.min_lr, train.dropout)
    )  # fmt: skip
    checks = [
        (finite, "optimizer and schedule values and train.dropout must be finite numbers"),
        (config.seed >= 0, f"seed={config.seed} must be ≥ 0"),
        (all(h >= 1 for h in model.hidden), f"model.hidden={model.hidden}: sizes must be ≥ 1"),
        one_of("model.activation", model.activation, ACTIVATIONS),
        one_of("model.init", model.init, INITS),
        one_of("optimizer.name", opt.name, OPTIMIZERS),
        (opt.lr > 0, f"optimizer.lr={opt.lr} must be > 0"),
        (0 <= opt.momentum < 1, f"optimizer.momentum={opt.momentum} must be in [0, 1)"),
        (
            not (opt.name == "sgd" and opt.nesterov and opt.momentum == 0),
            "optimizer.nesterov=true needs optimizer.momentum > 0",
        ),
        (0 <= opt.beta1 < 1, f"optimizer.beta1={opt.beta1} must be in [0, 1)"),
        (0 <= opt.beta2 < 1, f"optimizer.beta2={opt.beta2} must be in [0, 1)"),
        (opt.eps > 0, f"optimizer.eps={opt.eps} must be > 0"),
        (opt.weight_decay >= 0, f"optimizer.weight_decay={opt.weight_decay} must be ≥ 0"),
        one_of("schedule.name", sched.name, SCHEDULES),
        (sched.step_size >= 1, f"schedule.step_size={sched.step_size} must be ≥ 1"),
        (0 < sched.gamma <= 1, f"schedule.gamma={sched.gamma} must be in (0, 1]"),
        (
            0 <= sched.min_lr <= opt.lr,
            f"schedule.min_lr={sched.min_lr} must be in [0, optimizer.lr={opt.lr}]",
        ),
        (train.epochs >= 1, f"train.epochs={train.epochs} must be ≥ 1"),
        (
            train.batch_size is None or train.batch_size >= 1,
            f"train.batch_size={train.batch_size} must be ≥ 1 (or null for full batch)",
        ),
        (0 <= train.dropout < 1, f"train.dropout={train.dropout} must be in [0, 1)"),
        (
            0 <= train.input_dropout < 1,
            f"train.input_dropout={train.input_dropout} must be in [0, 1)",
        ),
        (
            0 <= train.distortion.rotation <= 180 and 0 <= train.distortion.shear < 90,
            f"train.distortion.rotation={train.distortion.rotation} must be in [0, 180] and "
            f"train.distortion.shear={train.distortion.shear} in [0, 90) degrees",
        ),
        (
            0 <= train.distortion.scale < 1 and 0 <= train.distortion.translation <= 14,
            f"train.distortion.scale={train.distortion.scale} must be in [0, 1) and "
            f"train.distortion.translation={train.distortion.translation} in [0, 14] pixels",
        ),
        (
            train.distortion.elastic_alpha >= 0 and train.distortion.elastic_sigma > 0,
            f"train.distortion.elastic_alpha={train.distortion.elastic_alpha} must be ≥ 0 and "
            f"train.distortion.elastic_sigma={train.distortion.elastic_sigma} > 0",
        ),
        (
            train.max_norm is None or train.max_norm > 0,
            f"train.max_norm={train.max_norm} must be > 0 (or null for no cap)",
        ),
        (
            0 <= train.max_shift <= MAX_SHIFT,
            f"train.max_shift={train.max_shift} must be in [0, {MAX_SHIFT}] pixels",
        ),
        (
            train.stop_after is None or 1 <= train.stop_after <= train.epochs,
            f"train.stop_after={train.stop_after} must be in [1, train.epochs] (or null)",
        ),
        (
            train.patience is None or train.patience >= 1,
            f"train.patience={train.patience} must be ≥ 1 (or null for no early stopping)",
        ),
        (
            not (train.include_dev and train.patience is not None),
            f"train.patience={train.patience} stops on dev accuracy, which "
            "train.include_dev=true scores on images it trained on: set train.patience=null",
        ),
        one_of("train.dtype", train.dtype, DTYPES),
        (train.seed >= 0, f"train.seed={train.seed} must be ≥ 0"),
    ]
    return [message for ok, message in checks if not ok]


def check_hyperparameters(config: Config) -> None:
    """Raise `ConfigError` listing every problem `hyperparameter_problems` finds."""
    problems = hyperparameter_problems(config)
    if problems:
        raise ConfigError("; ".join(problems) + " (fix the override or conf/)")


def run_summary(config: Config) -> str:
    """The few values that tell runs apart at a glance, for a run's name: the hidden layers,
    optimizer, learning rate, schedule, epochs and seed, e.g. `512-512 adam lr=0.001 cosine
    20ep seed 0`."""
    hidden = "-".join(str(units) for units in config.model.hidden)
    optimizer, train = config.optimizer, config.train
    return (
        f"{hidden} {optimizer.name} lr={optimizer.lr:g} {config.schedule.name} "
        f"{train.epochs}ep seed {train.seed}"
    )
