"""One job of a Hydra sweep: train, then score the model on dev and test, in the job's folder.

Each job writes the train and evaluate outputs under its own folder in multirun/ (never the
DVC-tracked paths) and, with tracking on, logs one child run under the sweep's parent run
(callback.py). The saved model's dev accuracy is what Optuna maximises; test accuracy is
reported, never used to select.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

from pipeline.evaluation.reports import evaluate_model, load_model
from pipeline.plumbing.config import ConfigError
from pipeline.plumbing.datasets import load_dataset
from pipeline.plumbing.files import read_columns
from pipeline.plumbing.paths import (
    NORMALISED_TEST,
    SPLIT_DEV,
    SPLIT_TRAIN,
    EvaluateOutputs,
    TrainOutputs,
)
from pipeline.plumbing.phases import phase
from pipeline.plumbing.schema import Config
from pipeline.sweeps.callback import STUDY_ENV, WORKER_ENV, parent_run_id
from pipeline.tracking.tags import (
    RETRIED_TAG,
    RETRIED_TRIAL_ENV,
    SHARED_TRIAL_ENV,
    STUDY_TAG,
    TRIAL_TAG,
    WORKER_TAG,
)
from pipeline.training.checkpoints import Checkpoints, fingerprint
from pipeline.training.hyperparameters import check_hyperparameters
from pipeline.training.trainer import load_split, run_training


def run_sweep_job(
    config: Config, resolved_yaml: str, job_dir: Path, job_name: str | None
) -> tuple[dict, dict]:
    """Train and evaluate into `job_dir`; return the train and the test metrics."""
    train_outputs, evaluate_outputs = TrainOutputs.under(job_dir), EvaluateOutputs.under(job_dir)
    check_hyperparameters(config)
    if config.train.include_dev:
        raise ConfigError(
            "train.include_dev=true trains on the dev set this sweep selects on: sweep with "
            "train.include_dev=false, then train the chosen settings with it true"
        )
    with phase("data"):
        train, dev, test = job_data()
    keeper = trial_keeper(config, job_dir)
    run, settled = None, contextlib.nullcontext
    if config.tracking.enabled:
        # Imported only when tracking is on: mlflow costs over a second to import.
        from pipeline.tracking import continued, training_runs
        from pipeline.tracking.runs import settled

        # MLflow prints each run's link, after asking a server for the run: one request a job
        # for a line the sweep's parent run (and its best child) already gives.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

        # The test set is read by this job too: its md5 and dataset go in with the others.
        data = {"train": SPLIT_TRAIN, "dev": SPLIT_DEV, "test": NORMALISED_TEST}
        tags = {**trial_tags(), **restart_tags(keeper)}
        if keeper is not None:  # a trial of a shared study: it may go on from a checkpoint
            run = continued.training_run(
                config, resolved_yaml, "sweep-job", job_name, data, keeper, parent_run_id(), tags
            )
        else:
            run = training_runs.start_training_run(
                config, resolved_yaml, "sweep-job", job_name, data, parent_run_id(), tags
            )
    with settled(run):
        curves = None
        if run is not None:
            held = (keeper.stamps, keeper.sendable) if keeper is not None else (None, None)
            curves = training_runs.LiveCurves(run, "dev", *held)
        metrics = run_training(config, train, dev, train_outputs, on_epoch=curves, keeper=keeper)
        with phase("data"):
            history = read_columns(train_outputs.history, made_by="train")
            network = load_model(train_outputs.model)
        test_metrics = evaluate_model(
            network, test, history, evaluate_outputs, config.tracking.sweep_figures
        )
        if run is not None:
            training_runs.log_sweep_job(
                run, config, metrics, test_metrics, train_outputs, evaluate_outputs, curves
            )
    if keeper is not None:
        keeper.remove()  # the trial is whole, in its job folder and its run
    return metrics, test_metrics


def trial_keeper(config: Config, job_dir: Path) -> Checkpoints | None:
    """In a shared study, the checkpoint of this job's trial, kept in the study's folder on
    this machine under the number of the trial it retries (a trial queued again after its
    worker was lost goes on from there, if it runs here); None in other sweeps, whose folders
    are new on every run."""
    trial = os.environ.get(SHARED_TRIAL_ENV)
    if trial is None:
        return None
    origin = os.environ.get(RETRIED_TRIAL_ENV) or trial
    path = job_dir.parent / "checkpoints" / f"trial-{origin}.npz"
    keeper = Checkpoints(path, fingerprint(config, {"train": SPLIT_TRAIN, "dev": SPLIT_DEV}),
                         config.train.checkpoint)  # fmt: skip
    if keeper.load(config.train.resume):
        print(f"train: trial {trial} goes on from trial {origin}'s epoch {keeper.epoch + 1}")
    return keeper


def restart_tags(keeper: Checkpoints | None) -> dict[str, str]:
    """For a trial queued again that found no checkpoint of the trial it retries here: say so
    (its checkpoint, if any, is on the machine whose worker was lost)."""
    origin = os.environ.get(RETRIED_TRIAL_ENV) or None
    if keeper is None or origin is None or keeper.epoch:
        return {}
    # (trial_tags names the trial it retries)
    return {
        "restarted": f"no checkpoint of trial {origin} on {socket.gethostname()}: trained "
        "from epoch 1"
    }


DATA_FILES = (SPLIT_TRAIN, SPLIT_DEV, NORMALISED_TEST)  # what every job reads
_loaded: dict[tuple, tuple[dict, dict, dict]] = {}  # one entry: the data this worker holds


def job_data() -> tuple[dict, dict, dict]:
    """The train, dev and test arrays, read once per worker process (or once per sweep, by the
    warm launcher before it forks its workers) and kept, read-only, for the next jobs while
    the files stay the same (inode, size, modification time)."""
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
        if key is not None:
            _loaded[key] = (train, dev, test)
        return train, dev, test
    return _loaded[key]


def trial_tags() -> dict[str, str]:
    """In a shared study (sweeps/shared.py): the trial, study and worker this job runs for."""
    trial = os.environ.get(SHARED_TRIAL_ENV)
    if trial is None:
        return {}
    tags = {TRIAL_TAG: trial, STUDY_TAG: os.environ[STUDY_ENV], WORKER_TAG: os.environ[WORKER_ENV]}
    if os.environ.get(RETRIED_TRIAL_ENV):
        tags[RETRIED_TAG] = os.environ[RETRIED_TRIAL_ENV]
    return tags
