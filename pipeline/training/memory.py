"""How much memory a training will take, checked against what the machine has before any work.

A network too wide for the machine would otherwise grow until it thrashes or dies with a numpy
allocation traceback. The estimate adds up what training holds at its peak:

    parameters, their gradients, the optimizer's state (momentum: 1 copy, Adam: 2) and the
    best weights kept for early stopping;
    one batch's activations (Z, A, dropout masks, dA per hidden layer) and its shifted copy;
    the evaluation of the dev set, in chunks of up to 8,192 rows;
    the training and dev arrays in the training dtype.
"""

from __future__ import annotations

import os
from itertools import pairwise

import numpy as np

from pipeline.plumbing.config import ConfigError
from pipeline.plumbing.schema import Config

NUM_CLASSES = 10
EVALUATION_CHUNK = 8192  # rows per chunk of MLP.logits
USABLE = 0.9  # share of the available memory a training may plan to take
STATE_COPIES = {"sgd": 1, "adam": 2, "adamw": 2}  # optimizer state per parameter


def available_bytes() -> int:
    """Memory available to a new allocation without swapping (Linux: MemAvailable)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def estimate_bytes(config: Config, train_rows: int, dev_rows: int, features: int) -> dict:
    """The bytes each part of a training holds at its peak."""
    itemsize = np.dtype(config.train.dtype).itemsize
    sizes = (features, *config.model.hidden, NUM_CLASSES)
    parameters = sum(fan_in * fan_out + fan_out for fan_in, fan_out in pairwise(sizes))
    copies = STATE_COPIES[config.optimizer.name]
    if config.optimizer.name == "sgd" and not config.optimizer.momentum:
        copies = 0  # plain gradient descent keeps no state
    kept = 1 if config.train.patience is not None else 0
    batch = min(config.train.batch_size or train_rows, train_rows)
    hidden = sum(config.model.hidden)
    chunk = min(dev_rows, EVALUATION_CHUNK)
    return {
        "parameters": parameters * itemsize,
        "gradients": parameters * itemsize,
        "optimizer state": (copies + kept) * parameters * itemsize,
        "batch activations": (4 * hidden + 2 * NUM_CLASSES + 2 * features) * batch * itemsize,
        "evaluation": (hidden + 2 * NUM_CLASSES) * chunk * itemsize,
        "data": (train_rows + dev_rows) * features * itemsize,
    }


def check_memory(config: Config, train_rows: int, dev_rows: int, features: int) -> int:
    """Raise `ConfigError` if the training would not fit in memory; return its estimate."""
    parts = estimate_bytes(config, train_rows, dev_rows, features)
    needed, available = sum(parts.values()), available_bytes()
    if needed > USABLE * available:
        largest = ", ".join(
            f"{name} {gigabytes(size)}"
            for name, size in sorted(parts.items(), key=lambda item: -item[1])[:3]
        )
        raise ConfigError(
            f"model.hidden={config.model.hidden} with train.batch_size={config.train.batch_size} "
            f"needs about {gigabytes(needed)} ({largest}) but {gigabytes(available)} is "
            "available: lower model.hidden or train.batch_size"
        )
    return needed


def gigabytes(size: int) -> str:
    return f"{size / 1e9:.1f} GB" if size >= 1e8 else f"{size / 1e6:.0f} MB"
