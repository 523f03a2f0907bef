"""What a training and its evaluation log: one MLflow run for `train` and `evaluate` together.

    start_training_run   params (the whole config, flattened), what re-creates the run (tags.py:
                         code, patch, data, compute, packages), the resolved config.yaml
    log_training         kept-model and best-epoch scores, the weights' SHA-256, the metrics and
                         history files
    log_evaluation       test scores, the figures, and the model as a pyfunc (registry.py)
    reopen_training_run  the run that trained models/model.npz (found by the weights' SHA-256),
                         for `evaluate`; rebuilt from the files if the store lost it
    LiveCurves           per-epoch curves, logged as each epoch ends (the trainer's `on_epoch`);
                         a store that stops answering costs a warning, not the training

Starting a run also ends, KILLED, the runs of this experiment left RUNNING by processes on
this host that are gone (SIGKILL, or a store that was unreachable when the run should end).
"""

from __future__ import annotations

import functools
import json
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline.nn import EpochRecord
from pipeline.plumbing.config import flatten
from pipeline.plumbing.files import file_md5, file_sha256, read_columns
from pipeline.plumbing.paths import EvaluateOutputs, TrainOutputs
from pipeline.plumbing.phases import phase
from pipeline.plumbing.schema import Config
from pipeline.tracking.registry import MODEL_KIND_TAG, WEIGHTS_ARTIFACT, log_pyfunc_model
from pipeline.tracking.runs import Run, stale_runs
from pipeline.tracking.store import StoreError, open_store, store_calls
from pipeline.tracking.tags import (
    KIND_TAG,
    PACKAGES_ARTIFACT,
    PATCH_ARTIFACT,
    code_tags,
    installed_packages,
    run_tags,
)

MODEL_TAG = "model.sha256"  # the saved weights' SHA-256: how evaluate and reproduce find a run
# Runs that wrote the project's own models/model.npz: the ones evaluate may log into.
PROJECT_KINDS = ("pipeline", "direct")


def start_training_run(
    config: Config,
    resolved_yaml: str,
    kind: str,
    name: str | None,
    data_files: dict[str, Path],
    parent_id: str | None = None,
    extra_tags: dict[str, str] | None = None,
) -> Run:
    """Open the store (failing now, before training, if it cannot be used) and start a run
    that records all `python -m pipeline.reproduce` needs to make it again. A sweep job (with
    `parent_id`) leaves stale runs to its launcher, and takes the code's state as its worker
    process first read it: the code it runs is the code it imported then."""
    with phase("log: store"):
        experiment_id = open_store(config.tracking)
        if parent_id is None:  # a sweep's launcher marks them once for all its jobs
            mark_stale_runs(experiment_id, "train")
    with phase("log: datasets+tags"):
        packages = installed_packages()
        digests = {role: file_md5(path) for role, path in data_files.items()}
        tags = run_tags(kind, config.seed, digests, config.compute.name, packages)
        code, patch = code_tags_once() if parent_id else code_tags()
    with phase("log: params+curves"):
        tags = {**tags, **code, **(extra_tags or {})}
        run = Run.start(experiment_id, name, tags, flatten(asdict(config)), parent_id)
    with phase("log: artifacts"):
        run.log_text(resolved_yaml, "config.yaml")
        run.log_text(packages, PACKAGES_ARTIFACT)
        if patch:
            run.log_text(patch, PATCH_ARTIFACT)
    with phase("log: datasets+tags"):
        run.log_datasets(data_files, digests)
    return run


def mark_stale_runs(experiment_id: str, who: str) -> None:
    for status, abandoned in stale_runs(mark=True, experiment_ids=[experiment_id]):
        print(f"{who}: marked {status}, its process having ended: {abandoned}", file=sys.stderr)


@functools.cache
def code_tags_once() -> tuple[dict[str, str], str | None]:
    return code_tags()


class LiveCurves:
    """Logs each epoch's record as the epoch ends, from a thread of its own: the next epoch
    does not wait for the store (a request to a server takes about 0.1 s), and the epochs
    that ended while a request was out go together in the next one. If the store stops
    answering, training goes on: one warning, a new try at most once every RETRY_AFTER
    seconds, and the epochs missed are sent when it answers again, at the latest by `flush`
    at the end of the run. However the run ends, the epochs waiting are tried before it does
    (for at most runs.DRAIN_SECONDS when it ends with an error)."""

    RETRY_AFTER = 60.0

    def __init__(self, run: Run):
        self.run = run
        self.unsent: list[EpochRecord] = []
        # When each unsent epoch ended: a request the store took but whose answer was lost is
        # sent again with the same stamps, and the store keeps one copy.
        self.stamps: list[int] = []
        self.failing_since: float | None = None
        self.waiting: list[tuple[EpochRecord, int]] = []  # handed over, not yet taken
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.closing = False
        self.error: BaseException | None = None  # what the thread met other than the store
        # A daemon: a request hung on a dead server must not keep the process alive.
        self.sender = threading.Thread(target=self.send_waiting, name="curves", daemon=True)
        self.sender.start()
        run.before_end.append(self.drain)

    def __call__(self, record: EpochRecord) -> None:
        with phase("log: params+curves"), self.lock:
            self.waiting.append((record, int(time.time() * 1000)))
            self.wake.set()

    def send_waiting(self) -> None:
        while True:
            self.wake.wait()
            with self.lock:
                taken, self.waiting = self.waiting, []
                self.wake.clear()
                last = self.closing
            try:
                if taken:
                    self.log(taken)
            except BaseException as error:  # a bug, not the store: flush raises it
                self.error = error
                return
            if last:
                return

    def log(self, taken: list[tuple[EpochRecord, int]]) -> None:
        self.unsent += [record for record, _ in taken]
        self.stamps += [stamp for _, stamp in taken]
        if self.failing_since and time.monotonic() - self.failing_since < self.RETRY_AFTER:
            return
        try:
            self.send()
        except StoreError as error:
            if self.failing_since is None:
                tqdm.write(  # on a line of its own, above the progress bar
                    f"train: warning: {error}, at epoch {taken[-1][0].epoch}; training goes "
                    "on, and the curves are sent once the store answers again",
                    file=sys.stderr,
                )
            self.failing_since = time.monotonic()

    def drain(self, timeout: float | None = None) -> None:
        """Let the thread try what is waiting (for at most `timeout` seconds), then end it."""
        with self.lock:
            self.closing = True
            self.wake.set()
        self.sender.join(timeout)

    def flush(self) -> None:
        """Send every epoch; raise `StoreError` if the store still does not answer."""
        with phase("log: params+curves"):
            self.drain()
            if self.error is not None:
                raise self.error
            self.send()

    def send(self) -> None:
        if self.unsent:
            self.run.log_epochs(self.unsent, self.stamps)
            if self.failing_since is not None:
                tqdm.write(f"train: the MLflow store answers again; {len(self.unsent)} epochs sent")
            self.unsent, self.stamps = [], []
        self.failing_since = None


def log_training(
    run: Run, metrics: dict, outputs: TrainOutputs, curves: LiveCurves | None = None
) -> None:
    with phase("log: params+curves"):
        if curves is not None:  # epochs the store missed while training go first
            curves.flush()
        log_scores(run, metrics)
    with phase("log: datasets+tags"):
        run.set_tags({MODEL_TAG: file_sha256(outputs.model)})
    with phase("log: artifacts"):
        run.log_artifact(outputs.metrics, "reports")
        run.log_artifact(outputs.history, "reports")


def log_scores(run: Run, metrics: dict) -> None:
    scores = {
        "best/dev_accuracy": metrics["best"]["dev_accuracy"],
        "best/epoch": metrics["best"]["epoch"],
        "model/dev_accuracy": metrics["model"]["dev_accuracy"],
    }
    if "train_seconds" in metrics:  # not when a run is rebuilt from the files
        scores["train/seconds"] = metrics["train_seconds"]
    run.log_metrics(scores)


def test_metric_values(metrics: dict) -> dict[str, float]:
    """The flat `test/...` metrics an MLflow run records."""
    values = {
        "test/accuracy": metrics["accuracy"],
        "test/loss": metrics["loss"],
        "test/macro_f1": metrics["macro_f1"],
    }
    for digit, scores in metrics["per_class"].items():
        values[f"test/f1_digit_{digit}"] = scores["f1"]
    return values


def log_evaluation(
    run: Run,
    config: Config,
    metrics: dict,
    outputs: EvaluateOutputs,
    weights: Path,
    example: np.ndarray,
    register: bool,
    weights_only: bool = False,
) -> None:
    """Test metrics, figures and reports into `run`; the model too if tracking.log_model, and
    registered (moving the alias) if `register` and tracking.registered_model is set. A sweep
    job logs its weights only (`weights_only`): one file, where a pyfunc is some twenty
    (seconds through a server); `promote RUN_ID` makes the pyfunc from them (registry.py)."""
    with phase("log: params+curves"):
        run.log_metrics(test_metric_values(metrics))
    with phase("log: artifacts"):
        run.log_artifact(outputs.metrics, "reports")
    with phase("figures"):
        for figure in outputs.figure_files():
            if figure.is_file():  # a sweep job draws them only if asked (sweep_figures)
                run.log_artifact(figure, "figures")
    if config.tracking.log_model:
        name = config.tracking.registered_model if register else None
        with phase("log: model"), store_calls("log_model"):
            if weights_only:
                run.log_artifact(weights, str(Path(WEIGHTS_ARTIFACT).parent))
                run.set_tags({MODEL_KIND_TAG: "weights"})
            else:
                log_pyfunc_model(run, weights, example, name, config.tracking.alias)
                run.set_tags({MODEL_KIND_TAG: "pyfunc"})


def training_run_of(experiment_id: str, weights: Path) -> str | None:
    """The newest run of the project's pipeline (not a sweep job, not a re-run) that saved
    exactly these weights: the run `evaluate` logs into."""
    import mlflow

    digest = file_sha256(weights)
    with store_calls("search_runs"):
        found = mlflow.MlflowClient().search_runs(
            [experiment_id], f"tags.`{MODEL_TAG}` = '{digest}'",
            order_by=["attributes.start_time DESC"], max_results=50,
        )  # fmt: skip
    kinds = [(run.info.run_id, run.data.tags.get(KIND_TAG)) for run in found]
    return next((run_id for run_id, kind in kinds if kind in PROJECT_KINDS), None)


def reopen_training_run(
    config: Config, resolved_yaml: str, train_outputs: TrainOutputs, data_files
) -> Run:
    """The run that trained models/model.npz, reopened; a new one (params and curves from the
    files) if the store has none, e.g. after mlflow.db was deleted or with tracking off in
    train."""
    experiment_id = open_store(config.tracking)
    run_id = training_run_of(experiment_id, train_outputs.model)
    if run_id is not None:
        return Run.resume(run_id)
    print("evaluate: no MLflow run in the store saved models/model.npz; logging a new one")
    present = {name: path for name, path in data_files.items() if path.is_file()}
    run = start_training_run(config, resolved_yaml, "pipeline", None, present)
    history = read_columns(train_outputs.history, made_by="train")
    columns = ("train_loss", "train_accuracy", "dev_loss", "dev_accuracy", "learning_rate")
    records = [
        EpochRecord(int(epoch), *(float(history[column][row]) for column in columns), seconds=0.0)
        for row, epoch in enumerate(history["epoch"])
    ]
    run.log_epochs(records)
    if train_outputs.metrics.is_file():
        log_training(run, json.loads(train_outputs.metrics.read_text()), train_outputs)
    return run


def tag_test_data(run: Run, test_path: Path) -> None:
    digest = file_md5(test_path)
    run.set_tags({"data.test.md5": digest})
    run.log_datasets({"test": test_path}, {"test": digest})
