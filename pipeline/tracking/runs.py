"""MLflow runs whose status is always settled: FINISHED, FAILED or KILLED, never RUNNING.

A run ends FINISHED, FAILED (an error; its message in the `error` tag) or KILLED (Ctrl-C or
SIGTERM). Only SIGKILL or a power cut can leave one RUNNING; `stale_runs` finds and marks those
whose process is gone (`python -m pipeline.runs stale [--mark]`, `make stale-runs`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException

PARAM_VALUE_LIMIT = 6000  # MLflow's maximum length of a param value


def as_param(value) -> str:
    return str(value)[:PARAM_VALUE_LIMIT]


class Run:
    """A live MLflow run: log to it, then `end` it with a final status."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        self.client = mlflow.MlflowClient()

    @classmethod
    def start(cls, experiment_id, name=None, tags=None, params=None, parent_id=None) -> Run:
        tags = dict(tags or {})
        if parent_id:
            tags["mlflow.parentRunId"] = parent_id
        created = mlflow.MlflowClient().create_run(experiment_id, tags=tags, run_name=name)
        run = cls(created.info.run_id)
        run.log_params(params or {})
        return run

    @classmethod
    def resume(cls, run_id: str) -> Run:
        run = cls(run_id)
        run.client.update_run(run_id, status="RUNNING")
        return run

    def exists(self) -> bool:
        try:
            self.client.get_run(self.run_id)
            return True
        except MlflowException:
            return False

    def log_params(self, params: dict) -> None:
        items = [Param(key, as_param(value)) for key, value in params.items()]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, step) for key, value in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch)

    def log_epoch(self, record) -> None:
        """One `EpochRecord` as the run's per-epoch curves, in one request."""
        self.log_metrics(
            {
                "train/loss": record.train_loss,
                "train/accuracy": record.train_accuracy,
                "dev/loss": record.dev_loss,
                "dev/accuracy": record.dev_accuracy,
                "train/learning_rate": record.learning_rate,
            },
            step=record.epoch,
        )

    def log_artifact(self, path: Path, directory: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), directory)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def set_tags(self, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, as_param(value))

    def end(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status)


def failure_status(error: BaseException) -> tuple[str, str]:
    """The final status a run gets for `error`, and the message for its `error` tag."""
    if isinstance(error, KeyboardInterrupt):
        return "KILLED", f"interrupted ({error or 'Ctrl-C'})"
    return "FAILED", f"{type(error).__name__}: {error}"


@contextlib.contextmanager
def settled(run: Run | None) -> Iterator[Run | None]:
    """End `run` FINISHED, FAILED (error in the `error` tag) or KILLED as the block ends."""
    if run is None:
        yield None
        return
    try:
        yield run
    except (Exception, KeyboardInterrupt) as error:
        status, message = failure_status(error)
        with contextlib.suppress(Exception):  # the original error matters more
            run.set_tags({"error": message})
            run.end(status)
        raise
    run.end("FINISHED")


def stale_runs(mark: bool = False) -> list[str]:
    """Runs RUNNING in the store whose process, on this host, no longer exists."""
    client = mlflow.MlflowClient()
    host = socket.gethostname()
    found = []
    for experiment in client.search_experiments():
        for run in client.search_runs(
            [experiment.experiment_id], "attributes.status = 'RUNNING'", max_results=1000
        ):
            tags = run.data.tags
            if tags.get("host") != host or not tags.get("pid", "").isdigit():
                continue
            if pid_alive(int(tags["pid"])):
                continue
            found.append(f"{run.info.run_id} {run.info.run_name} (pid {tags['pid']} is gone)")
            if mark:
                client.set_tag(run.info.run_id, "error", "process ended without closing the run")
                client.set_terminated(run.info.run_id, "KILLED")
    return found


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
