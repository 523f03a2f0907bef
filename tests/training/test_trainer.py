"""The train stage: presets composed with Hydra's compose API, validation before any work,
outputs on disk, determinism, and no partial model after an error or SIGTERM."""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import pytest

from pipeline.config import ConfigError, compose_conf, validate
from pipeline.errors import PipelineError
from pipeline.io import save_arrays
from pipeline.nn import MLP
from pipeline.train import TrainOutputs, run_training, train_model
from tests.conftest import REPO, sigterm_after, split_arrays


@pytest.fixture
def split_dir(tmp_path):
    directory = tmp_path / "split"
    save_arrays(directory / "train.npz", **split_arrays(300, 1))
    save_arrays(directory / "dev.npz", **split_arrays(60, 2))
    return directory


def small(overrides=()):
    return validate(compose_conf(["model.hidden=[32]", "train.epochs=10", *overrides]))


def test_notes_preset_is_exactly_the_notes_network():
    config = validate(compose_conf(["experiment=notes"]))
    assert config.model.hidden == [10] and config.model.activation == "relu"
    assert config.model.init == "uniform"
    assert config.optimizer.name == "sgd" and config.optimizer.momentum == 0
    assert config.optimizer.lr == 0.1 and config.optimizer.weight_decay == 0
    assert config.schedule.name == "constant"
    assert config.train.epochs == 500 and config.train.batch_size is None
    assert config.train.dropout == 0 and config.train.max_shift == 0
    assert config.split.dev_size == 1000


def test_notes_preset_trains_by_full_batch_gradient_descent(split_dir):
    config = validate(compose_conf(["experiment=notes", "train.epochs=30"]))
    train = dict(np.load(split_dir / "train.npz"))
    dev = dict(np.load(split_dir / "dev.npz"))
    model, result = train_model(config, train, dev)
    assert model.sizes == (784, 10, 10)
    assert [w.shape for w in model.weights] == [(10, 784), (10, 10)]
    assert len(result.history) == 30  # one full-batch step per epoch
    assert all(r.learning_rate == 0.1 for r in result.history)
    losses = [r.train_loss for r in result.history]
    assert losses[-1] < losses[0]


def test_stage_writes_model_metrics_and_history(split_dir, tmp_path):
    outputs = TrainOutputs.under(tmp_path / "out")
    metrics = run_training(small(), split_dir, outputs, progress=False)
    assert json.loads(outputs.metrics.read_text()) == metrics
    assert metrics["epochs_run"] == 10 and metrics["best"]["epoch"] in range(1, 11)
    assert metrics["final"]["dev_accuracy"] >= 0.9
    assert set(metrics["final"]) == {"train_loss", "train_accuracy", "dev_loss", "dev_accuracy"}
    rows = outputs.history.read_text().splitlines()
    assert rows[0] == "epoch,train_loss,train_accuracy,dev_loss,dev_accuracy,learning_rate"
    assert [row.split(",")[0] for row in rows[1:]] == [str(e) for e in range(1, 11)]
    with np.load(outputs.model, allow_pickle=False) as arrays:
        model = MLP.from_arrays(arrays)
    assert model.sizes == (784, 32, 10)


def test_same_config_gives_bit_identical_weights_and_metrics(split_dir, tmp_path):
    runs = []
    for name in ("a", "b"):
        outputs = TrainOutputs.under(tmp_path / name)
        metrics = run_training(small(["train.dropout=0.3"]), split_dir, outputs, progress=False)
        metrics.pop("train_seconds")
        runs.append((outputs.model.read_bytes(), metrics))
    assert runs[0] == runs[1]
    other = TrainOutputs.under(tmp_path / "c")
    run_training(small(["train.seed=1"]), split_dir, other, progress=False)
    assert other.model.read_bytes() != runs[0][0]


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("optimizer.lr=0", "optimizer.lr=0.0 must be > 0"),
        ("optimizer.lr=-1", "optimizer.lr=-1.0 must be > 0"),
        ("train.batch_size=0", "train.batch_size=0 must be ≥ 1"),
        ("model.hidden=[32,0]", "model.hidden=[32, 0]: sizes must be ≥ 1"),
        ("train.dropout=1.0", "train.dropout=1.0 must be in [0, 1)"),
        ("train.dropout=-0.1", "train.dropout=-0.1 must be in [0, 1)"),
        ("train.max_shift=5", "train.max_shift=5 must be in [0, 4] pixels"),
        ("model.activation=swish", "model.activation='swish' is not one of"),
        ("optimizer.name=rmsprop", "optimizer.name='rmsprop' is not one of"),
    ],
)
def test_bad_hyperparameters_are_rejected_before_any_work(tmp_path, override, named):
    outputs = TrainOutputs.under(tmp_path)
    # No data exists: the hyperparameter error must come first.
    with pytest.raises(ConfigError, match=re.escape(named)):
        run_training(small([override]), tmp_path / "no-data", outputs, progress=False)


def test_missing_input_names_the_stage_to_run(tmp_path):
    with pytest.raises(PipelineError, match=r"run `dvc repro split` first"):
        run_training(small(), tmp_path / "no-data", TrainOutputs.under(tmp_path), progress=False)


def test_divergence_writes_no_model(split_dir, tmp_path):
    outputs = TrainOutputs.under(tmp_path / "out")
    config = small(["optimizer=gd", "optimizer.lr=1e20", "train.batch_size=null"])
    with pytest.raises(PipelineError, match="diverged at epoch"):
        run_training(config, split_dir, outputs, progress=False)
    assert not outputs.model.exists() and not outputs.metrics.exists()


def test_sigterm_mid_training_leaves_no_model(split_dir, tmp_path):
    outputs = TrainOutputs.under(tmp_path / "out")
    script = (
        "from pathlib import Path\n"
        "from pipeline.config import compose_conf, validate\n"
        "from pipeline.errors import stage_errors\n"
        "from pipeline.train import TrainOutputs, run_training\n"
        "config = validate(compose_conf(['model.hidden=[256]', 'train.epochs=100000']))\n"
        "with stage_errors('train'):\n"
        f"    run_training(config, Path({str(split_dir)!r}), "
        f"TrainOutputs.under(Path({str(tmp_path / 'out')!r})))\n"
    )
    # Terminated once the progress bar is up.
    status, stderr = sigterm_after([sys.executable, "-c", script], REPO, "epoch")
    assert status == 130, stderr
    assert "train: stopped (received SIGTERM)" in stderr
    assert not outputs.model.exists()
    assert not outputs.model.parent.exists() or list(outputs.model.parent.iterdir()) == []
