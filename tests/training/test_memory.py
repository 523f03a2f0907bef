"""The memory estimate: a training too big for the machine stops at once, naming what to lower;
the estimate covers what a real training allocates."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from pipeline.plumbing.config import ConfigError
from pipeline.plumbing.paths import TrainOutputs
from pipeline.training.memory import available_bytes, check_memory, estimate_bytes
from pipeline.training.trainer import run_training
from tests import configs
from tests.conftest import split_arrays


def test_a_network_too_wide_for_the_machine_stops_at_once_naming_the_knobs(tmp_path):
    config = configs.config("model.hidden=[10000000]")
    started = time.perf_counter()
    with pytest.raises(ConfigError) as error:
        run_training(config, split_arrays(50, 1), split_arrays(20, 2), TrainOutputs.under(tmp_path))
    assert time.perf_counter() - started < 1
    message = str(error.value)
    assert "model.hidden=[10000000] with train.batch_size=128 needs about" in message
    assert "GB is available: lower model.hidden or train.batch_size" in message
    assert not TrainOutputs.under(tmp_path).model.exists()


def test_the_default_training_fits_and_full_batch_counts_every_row():
    assert check_memory(configs.config(), 50_000, 10_000, 784) < available_bytes()
    mini = estimate_bytes(configs.config(), 50_000, 10_000, 784)["batch activations"]
    full = estimate_bytes(configs.config("train.batch_size=null"), 50_000, 10_000, 784)
    assert full["batch activations"] == mini * 50_000 // 128


def test_the_estimate_covers_what_training_allocates(tmp_path):
    config = configs.config("model.hidden=[256,128]", "train.epochs=1", "train.patience=1")
    train, dev = split_arrays(600, 1), split_arrays(100, 2)
    tracemalloc.start()
    run_training(config, train, dev, TrainOutputs.under(tmp_path), progress=False)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    estimate = estimate_bytes(config, 600, 100, 784)
    training = sum(estimate.values()) - estimate["data"]  # the arrays existed before tracing
    assert peak <= training <= 3 * peak
