"""Training from a config: build the network, optimizer and schedule, train, write the outputs.

    check_hyperparameters(config)                  # hyperparameters.py: once, before any work
    train, dev = load_split(train_path, dev_path)
    run_training(config, train, dev, TrainOutputs.under(root))    # writes the outputs
    train_model(config, train, dev)                                # arrays in, network out

`run_training` shows a progress bar over the epochs and writes the model, the metrics and the
per-epoch history, each atomically. Nothing here logs to MLflow: callers pass `on_epoch`.
"""

from __future__ import annotations

import csv
import io
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline.nn import (
    MLP,
    Distortion,
    EpochRecord,
    FitResult,
    TrainingDiverged,
    fit,
    make_optimizer,
    make_schedule,
    model_to_arrays,
    set_lanes,
)
from pipeline.plumbing.compute import keep_freed_memory, lanes_for
from pipeline.plumbing.config import resume_command
from pipeline.plumbing.datasets import load_dataset
from pipeline.plumbing.errors import PipelineError
from pipeline.plumbing.files import save_arrays, write_json, write_text
from pipeline.plumbing.paths import NORMALISED_TEST, SPLIT_DEV, SPLIT_TRAIN, TrainOutputs
from pipeline.plumbing.phases import move_time, phase
from pipeline.plumbing.publish import shown
from pipeline.plumbing.schema import Config
from pipeline.training.checkpoints import Checkpoints
from pipeline.training.memory import check_memory

NUM_CLASSES = 10
HISTORY_COLUMNS = ("epoch", "train_loss", "train_accuracy", "dev_loss", "dev_accuracy")


class TrainingFailed(PipelineError):
    """Training stopped without a usable model."""


class TrainingStopped(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a training whose last epochs are kept in its checkpoint:
    `at` says how far it got, `then` how to go on (printed by errors.stage_errors)."""

    def __init__(self, reason: str, at: str, then: str):
        super().__init__(reason)
        self.at, self.then = at, then


def train_model(
    config: Config,
    train_data: dict[str, np.ndarray],
    dev_data: dict[str, np.ndarray],
    on_epoch: Callable[[EpochRecord], bool | None] | None = None,
    keeper: Checkpoints | None = None,
) -> tuple[MLP, FitResult]:
    """Build the network, optimizer and schedule `config` describes (already checked) and train
    it on the arrays; no files touched but `keeper`'s checkpoint, which it goes on from (if
    loaded) and saves after every epoch."""
    started = time.perf_counter()
    dtype = np.dtype(config.train.dtype)
    x_train = train_data["images"].astype(dtype, copy=False)
    y_train = train_data["labels"]
    x_dev = dev_data["images"].astype(dtype, copy=False)
    if config.train.include_dev:  # the final fit on every labelled image; dev is then seen
        x_train = np.concatenate([x_train, x_dev])
        y_train = np.concatenate([y_train, dev_data["labels"]])
    rng = np.random.default_rng(config.train.seed)
    set_lanes(lanes_for(config.compute))  # the speed only: any count gives the same bits
    keep_freed_memory()
    sizes = (x_train.shape[1], *config.model.hidden, NUM_CLASSES)
    model = MLP.create(sizes, config.model.activation, config.model.init, rng, dtype)
    optimizer = make_optimizer(model.params(), **asdict(config.optimizer))
    schedule = make_schedule(
        base_lr=config.optimizer.lr, epochs=config.train.epochs, **asdict(config.schedule)
    )
    so_far, on_checkpoint = None, None
    if keeper is not None:
        so_far = keeper.restore(model, optimizer, rng)
        on_checkpoint = keeper.saver(model, optimizer, rng, started, config.train.epochs)
    try:
        result = fit(
            model, x_train, y_train, x_dev, dev_data["labels"],
            optimizer=optimizer, schedule=schedule, epochs=config.train.epochs,
            batch_size=config.train.batch_size, rng=rng, dropout=config.train.dropout,
            input_dropout=config.train.input_dropout, max_norm=config.train.max_norm,
            distortion=Distortion(**asdict(config.train.distortion)),
            max_shift=config.train.max_shift, patience=config.train.patience, on_epoch=on_epoch,
            result=so_far, on_checkpoint=on_checkpoint, stop_after=config.train.stop_after,
        )  # fmt: skip
    except TrainingDiverged as error:
        raise TrainingFailed(
            f"{error}: lower optimizer.lr or pick another schedule; no model was written"
        ) from None
    except KeyboardInterrupt as interrupt:
        if keeper is None or not keeper.saving or not keeper.epoch:
            raise
        reached, kept = keeper.epoch + 1, shown(keeper.path)
        raise TrainingStopped(
            str(interrupt) or "interrupted",
            f" at epoch {reached} of {config.train.epochs}",
            f"; epochs 1-{keeper.epoch} are kept in {kept}: `{resume_command()}` goes on from "
            f"epoch {reached}",
        ) from None
    return model, result


def train_metrics(result: FitResult, dev_held_out: bool = True) -> dict:
    """What reports/train_metrics.json holds: scores only, the same bits on every machine that
    computes alike (the seconds a training took go to MLflow, never into a committed file).
    `dev_held_out` false: the dev scores are on images the network trained on."""

    def scores(record: EpochRecord) -> dict[str, float]:
        return {name: getattr(record, name) for name in HISTORY_COLUMNS[1:]}

    return {
        "final": scores(result.history[-1]),
        "best": {"epoch": result.best_epoch, **scores(result.best)},
        "model": {"epoch": result.kept.epoch, "dev_accuracy": result.kept.dev_accuracy},
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
        "dev_held_out": dev_held_out,
    }


def history_csv(result: FitResult) -> str:
    """One row per epoch: the scores, then the learning rate, at 6 significant digits."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*HISTORY_COLUMNS, "learning_rate"])
    for record in result.history:
        writer.writerow(
            [f"{getattr(record, name):.6g}" for name in (*HISTORY_COLUMNS, "learning_rate")]
        )
    return buffer.getvalue()


def load_split(train_path: Path, dev_path: Path) -> tuple[dict, dict]:
    """The train and dev arrays `split` wrote, checked, with images of one width."""
    train, dev = load_dataset(train_path, "split"), load_dataset(dev_path, "split")
    if train["images"].shape[1] != dev["images"].shape[1]:
        raise PipelineError(
            f"{train_path} has {train['images'].shape[1]} pixels per image but {dev_path} "
            f"{dev['images'].shape[1]}: rebuild both with `dvc repro -f split`"
        )
    return train, dev


DATA_FILES = (SPLIT_TRAIN, SPLIT_DEV, NORMALISED_TEST)  # what every job reads
_loaded: dict[tuple, tuple[dict, dict, dict]] = {}  # the data this process holds, one entry


def sweep_data() -> tuple[dict, dict, dict]:
    """The train, dev and test arrays of a sweep's jobs, read once per sweep (the sweeper reads
    them before it forks its workers, which share them) and kept, read-only, while the files
    stay the same."""
    try:
        key = tuple((s.st_ino, s.st_size, s.st_mtime_ns) for s in map(os.stat, DATA_FILES))
    except OSError:  # a file is missing: the loaders say which, and how to make it
        key = None
    if key is None or key not in _loaded:
        train, dev = load_split(SPLIT_TRAIN, SPLIT_DEV)
        test = load_dataset(NORMALISED_TEST, made_by="normalise")
        for array in (*train.values(), *dev.values(), *test.values()):
            array.flags.writeable = False  # a job that wrote into them would change the next
        _loaded.clear()
        _loaded.update({key: (train, dev, test)} if key else {})
        return train, dev, test
    return _loaded[key]


def run_training(
    config: Config,
    train_data: dict[str, np.ndarray],
    dev_data: dict[str, np.ndarray],
    outputs: TrainOutputs,
    progress: bool = True,
    on_epoch: Callable[[EpochRecord], bool | None] | None = None,
    keeper: Checkpoints | None = None,
    label: str = "train",
) -> dict:
    """Train on the arrays of a checked `config` and write model, metrics and history; return
    the metrics and the seconds training took (all its sessions'). `on_epoch(record)` is
    called after each epoch; `keeper` resumes and saves the training (checkpoints.py); `label`
    names the progress bar (a sweep's jobs: their trial, as their bars share a terminal).
    A training that would not fit in memory stops before it starts."""
    rows, features = train_data["images"].shape
    dev_rows = len(dev_data["images"])
    fitted_rows = rows + dev_rows if config.train.include_dev else rows
    check_memory(config, fitted_rows, dev_rows, features)
    dev_label = "dev_seen_acc" if config.train.include_dev else "dev_acc"  # as MLflow names it
    done = keeper.epoch if keeper is not None else 0  # epochs a checkpoint already holds
    seconds_before = float(keeper.context.get("seconds", 0.0)) if keeper is not None else 0.0
    with tqdm(
        total=config.train.epochs, initial=done, desc=label, unit="epoch", disable=not progress
    ) as bar:

        def after_epoch(record: EpochRecord) -> bool:
            stop = bool(on_epoch(record)) if on_epoch is not None else False
            dev = {dev_label: f"{record.dev_accuracy:.4f}"}
            bar.set_postfix(loss=f"{record.train_loss:.4f}", **dev)
            bar.update(1)
            return stop

        started = time.perf_counter()
        with phase("epochs"):
            model, result = train_model(config, train_data, dev_data, after_epoch, keeper)
        seconds = time.perf_counter() - started
    # Each epoch's record times its training steps; the rest of the loop scored the dev set.
    steps = sum(record.seconds for record in result.history[done:])
    move_time("epochs", "scoring", seconds - steps)
    metrics = train_metrics(result, dev_held_out=not config.train.include_dev)
    save_arrays(outputs.model, **model_to_arrays(model))
    write_json(outputs.metrics, metrics)
    write_text(outputs.history, history_csv(result))
    halted_at = len(result.history) if result.halted else None  # the epoch on_epoch stopped at
    return {**metrics, "train_seconds": round(seconds_before + seconds, 3), "halted_at": halted_at}
