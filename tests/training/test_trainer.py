"""Training from a config: presets composed with Hydra's compose API, outputs on disk,
determinism, and no model after divergence."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.nn import model_from_arrays
from pipeline.plumbing.errors import PipelineError
from pipeline.plumbing.files import save_arrays
from pipeline.plumbing.paths import TrainOutputs
from pipeline.training.trainer import load_split, run_training, train_model
from tests import configs
from tests.conftest import split_arrays


@pytest.fixture
def split_data(tmp_path):
    save_arrays(tmp_path / "split" / "train.npz", **split_arrays(300, 1))
    save_arrays(tmp_path / "split" / "dev.npz", **split_arrays(60, 2))
    return load_split(tmp_path / "split" / "train.npz", tmp_path / "split" / "dev.npz")


def small(overrides=()):
    return configs.config("model.hidden=[32]", "train.epochs=10", *overrides)


def test_notes_preset_is_exactly_the_notes_network():
    config = configs.config("experiment=notes")
    assert config.model.hidden == [10] and config.model.activation == "relu"
    assert config.model.init == "uniform"
    assert config.optimizer.name == "sgd" and config.optimizer.momentum == 0
    assert config.optimizer.lr == 0.1 and config.optimizer.weight_decay == 0
    assert config.schedule.name == "constant"
    assert config.train.epochs == 500 and config.train.batch_size is None
    assert config.train.dropout == 0 and config.train.max_shift == 0
    assert config.split.dev_size == 1000


def test_notes_preset_trains_by_full_batch_gradient_descent(split_data):
    config = configs.config("experiment=notes", "train.epochs=30")
    model, result = train_model(config, *split_data)
    assert model.sizes == (784, 10, 10)
    assert [w.shape for w in model.weights] == [(10, 784), (10, 10)]
    assert len(result.history) == 30  # one full-batch step per epoch
    assert all(r.learning_rate == 0.1 for r in result.history)
    losses = [r.train_loss for r in result.history]
    assert losses[-1] < losses[0]


def test_config_fields_reach_the_optimizer_and_schedule(split_data):
    config = small(["optimizer=nesterov", "schedule=step", "schedule.step_size=3",
                    "schedule.gamma=0.5", "train.epochs=7"])  # fmt: skip
    _, result = train_model(config, *split_data)
    lr = config.optimizer.lr
    assert [r.learning_rate for r in result.history] == [lr * 0.5 ** (e // 3) for e in range(7)]


def test_stage_writes_model_metrics_and_history(split_data, tmp_path):
    outputs = TrainOutputs.under(tmp_path / "out")
    metrics = run_training(small(), *split_data, outputs, progress=False)
    written = json.loads(outputs.metrics.read_text())
    # Seconds are local to a machine: returned (for MLflow), never in the committed file.
    assert metrics.pop("train_seconds") > 0 and "train_seconds" not in written
    assert metrics.pop("halted_at") is None and "halted_at" not in written  # nothing stopped it
    assert written == metrics
    assert metrics["epochs_run"] == 10 and metrics["best"]["epoch"] in range(1, 11)
    assert metrics["final"]["dev_accuracy"] >= 0.9
    assert set(metrics["final"]) == {"train_loss", "train_accuracy", "dev_loss", "dev_accuracy"}
    rows = outputs.history.read_text().splitlines()
    assert rows[0] == "epoch,train_loss,train_accuracy,dev_loss,dev_accuracy,learning_rate"
    assert [row.split(",")[0] for row in rows[1:]] == [str(e) for e in range(1, 11)]
    final = rows[-1].split(",")
    assert float(final[1]) == pytest.approx(metrics["final"]["train_loss"], rel=1e-5)
    assert float(final[4]) == pytest.approx(metrics["final"]["dev_accuracy"], rel=1e-5)
    with np.load(outputs.model, allow_pickle=False) as arrays:
        model = model_from_arrays(arrays)
    assert model.sizes == (784, 32, 10)


def test_same_config_gives_bit_identical_weights_and_metrics(split_data, tmp_path):
    runs = []
    for name in ("a", "b"):
        outputs = TrainOutputs.under(tmp_path / name)
        metrics = run_training(small(["train.dropout=0.3"]), *split_data, outputs, progress=False)
        metrics.pop("train_seconds")
        runs.append((outputs.model.read_bytes(), metrics))
    assert runs[0] == runs[1]
    other = TrainOutputs.under(tmp_path / "c")
    run_training(small(["train.seed=1"]), *split_data, other, progress=False)
    assert other.model.read_bytes() != runs[0][0]


def test_include_dev_fits_the_dev_images_too_and_says_its_dev_scores_are_seen(tmp_path):
    # Digits 0-4 to train on, 5-9 in dev: only a network that also fits dev can name a 5-9.
    train, dev = split_arrays(300, 1), split_arrays(100, 2)
    low, high = train["labels"] < 5, dev["labels"] >= 5
    train = {name: array[low] for name, array in train.items()}
    dev = {name: array[high] for name, array in dev.items()}
    held_out, fitted = (
        run_training(
            small(["train.epochs=40", *extra]), train, dev, TrainOutputs.under(where), False
        )
        for extra, where in (([], tmp_path / "a"), (["train.include_dev=true"], tmp_path / "b"))
    )
    assert held_out["final"]["dev_accuracy"] == 0.0 and held_out["dev_held_out"] is True
    assert fitted["final"]["dev_accuracy"] >= 0.9 and fitted["dev_held_out"] is False
    assert (
        json.loads(TrainOutputs.under(tmp_path / "b").metrics.read_text())["dev_held_out"] is False
    )


def test_missing_input_names_the_stage_to_run(tmp_path):
    with pytest.raises(PipelineError, match=r"run `dvc repro split` first"):
        load_split(tmp_path / "train.npz", tmp_path / "dev.npz")


def test_divergence_is_one_line_with_the_fix_and_writes_no_model(split_data, tmp_path):
    outputs = TrainOutputs.under(tmp_path / "out")
    config = small(["optimizer=gd", "optimizer.lr=1e20", "train.batch_size=null"])
    with pytest.raises(PipelineError, match=r"diverged at epoch .* lower optimizer\.lr"):
        run_training(config, *split_data, outputs, progress=False)
    assert not outputs.model.exists() and not outputs.metrics.exists()


def test_a_training_halted_by_its_callback_is_replayed_bit_for_bit_by_stop_after(
    split_data, tmp_path
):
    """What a sweep's pruner does (on_epoch answers True) and what `reproduce` of the pruned
    trial does (train.stop_after): the same epochs, learning rates and weights."""
    config = small(["train.epochs=6", "schedule=cosine"])
    halted = run_training(
        config, *split_data, TrainOutputs.under(tmp_path / "halted"), progress=False,
        on_epoch=lambda record: record.epoch == 3,
    )  # fmt: skip
    assert halted["halted_at"] == 3 and halted["epochs_run"] == 3
    replayed = run_training(
        small(["train.epochs=6", "schedule=cosine", "train.stop_after=3"]), *split_data,
        TrainOutputs.under(tmp_path / "replayed"), progress=False,
    )  # fmt: skip
    assert replayed["halted_at"] is None and replayed["epochs_run"] == 3
    for name in ("model.npz", "train_metrics.json", "train_history.csv"):
        found = list((tmp_path / "halted").rglob(name))
        assert (
            found
            and found[0].read_bytes() == next((tmp_path / "replayed").rglob(name)).read_bytes()
        )
    # The schedule was set for 6 epochs, not 3: the third epoch's rate is cosine's at 2/6.
    full = run_training(config, *split_data, TrainOutputs.under(tmp_path / "full"), progress=False)
    rates = [
        line.split(",")[-1]
        for line in (tmp_path / "full")
        .rglob("train_history.csv")
        .__next__()
        .read_text()
        .splitlines()[1:4]
    ]
    replayed_rates = [
        line.split(",")[-1]
        for line in next((tmp_path / "replayed").rglob("train_history.csv"))
        .read_text()
        .splitlines()[1:]
    ]
    assert replayed_rates == rates and full["epochs_run"] == 6
