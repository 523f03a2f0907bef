"""MLflow runs whose status is always settled: FINISHED, FAILED or KILLED, never RUNNING.

A run ends FINISHED, FAILED (an error; its message in the `error` tag) or KILLED (Ctrl-C or
SIGTERM; in a shared Optuna study, FAILED like its trial, which the study runs again). Only
SIGKILL or a power cut can leave one RUNNING; `stale_runs` finds and marks those whose process
is gone (`python -m pipeline.runs stale [--mark]`, `make stale-runs`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import socket
import time
from collections.abc import Iterator
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow
from mlflow.entities import Metric, Param, RunTag

from pipeline.plumbing.errors import OUTPUTS_REPLACED, interrupts_deferred
from pipeline.plumbing.phases import phase
from pipeline.tracking.store import StoreError, store_calls
from pipeline.tracking.tags import TRIAL_TAG

PARAM_VALUE_LIMIT = 6000  # MLflow's maximum length of a param value
DUPLICATE_KEY = re.compile(r"UniqueViolation|duplicate key value|UNIQUE constraint failed")
UPLOADS_AT_ONCE = 4  # artifact uploads sent side by side
DRAIN_SECONDS = 15.0  # what still sends to a run ending with an error gets at most this long
DUPLICATE_TRIES = 4  # a row another run was inserting at the same moment is there by then


def as_param(value) -> str:
    return str(value)[:PARAM_VALUE_LIMIT]


def whole(write):
    """A write to the store that Ctrl-C or SIGTERM cannot cut in half (see plumbing/errors),
    and whose failure is a one-line `StoreError` naming the call."""

    @functools.wraps(write)
    def uncut(*args, **kwargs):
        with store_calls(write.__name__):
            return write(*args, **kwargs)

    return uncut


class Run:
    """A live MLflow run: log to it, then `end` it with a final status."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        self.client = mlflow.MlflowClient()
        # Called with a time limit before the run ends: what still sends to it (LiveCurves).
        self.before_end: list = []
        self.writer: ThreadPoolExecutor | None = None  # writes that overlap the training
        self.writes: list = []

    @classmethod
    @whole
    def start(cls, experiment_id, name=None, tags=None, params=None, parent_id=None) -> Run:
        tags = dict(tags or {})
        if parent_id:
            tags["mlflow.parentRunId"] = parent_id
        created = mlflow.MlflowClient().create_run(experiment_id, tags=tags, run_name=name)
        run = cls(created.info.run_id)
        run.log_params(params or {})
        return run

    @classmethod
    @whole
    def resume(cls, run_id: str) -> Run:
        run = cls(run_id)
        run.client.update_run(run_id, status="RUNNING")
        # This process holds the run open now: `stale_runs` must check it, not the trainer.
        run.client.set_tag(run_id, "pid", str(os.getpid()))
        run.client.set_tag(run_id, "host", socket.gethostname())
        return run

    @whole
    def log_params(self, params: dict) -> None:
        items = [Param(key, as_param(value)) for key, value in params.items()]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    @whole
    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, step) for key, value in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch)

    @whole
    def log_epochs(self, records, stamps: list[int] | None = None, dev: str = "dev") -> None:
        """`EpochRecord`s as the run's per-epoch curves, in as few requests as MLflow allows.
        `stamps`: each record's time (ms) when it was first sent; sending a record again with
        the same stamp adds nothing, as the store drops a metric row it already has. `dev`:
        the name of the dev scores' curves, `dev_seen` when the network trained on dev."""
        now = int(time.time() * 1000)
        stamps = stamps or [now] * len(records)
        batch = [
            Metric(key, float(value), stamp, record.epoch)
            for record, stamp in zip(records, stamps, strict=True)
            for key, value in (
                ("train/loss", record.train_loss),
                ("train/accuracy", record.train_accuracy),
                (f"{dev}/loss", record.dev_loss),
                (f"{dev}/accuracy", record.dev_accuracy),
                ("train/learning_rate", record.learning_rate),
            )
        ]
        for start in range(0, len(batch), 1000):  # MLflow takes at most 1000 metrics a batch
            self.client.log_batch(self.run_id, metrics=batch[start : start + 1000])

    @whole
    def log_datasets(self, files: dict[str, Path], digests: dict[str, str]) -> None:
        """Each data file as a dataset input (the UI's Dataset column): its role as the name,
        DVC's md5 of it as the digest."""
        from pipeline.tracking.tags import dataset_inputs

        log_inputs(self.client, self.run_id, dataset_inputs(files, digests))

    @whole
    def log_artifact(self, path: Path, directory: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), directory)

    @whole
    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    @whole
    def set_tags(self, tags: dict[str, str]) -> None:
        self.log_batch({}, tags)

    @whole
    def log_batch(self, metrics: dict[str, float], tags: dict[str, str]) -> None:
        """Metrics (at step 0) and tags in one request."""
        now = int(time.time() * 1000)
        self.client.log_batch(
            self.run_id,
            metrics=[Metric(key, float(value), now, 0) for key, value in metrics.items()],
            tags=[RunTag(key, as_param(value)) for key, value in tags.items()],
        )

    def later(self, write, *args) -> None:
        """Do `write(*args)` on the run's own thread, while the training goes on; the run
        waits for it before its end (`settle_writes`)."""
        if self.writer is None:
            self.writer = ThreadPoolExecutor(1, thread_name_prefix="run-writes")
            self.before_end.append(self.settle_writes)
        self.writes.append((self.writer.submit(as_store_call, write, args), write, args))

    def settle_writes(self, timeout: float | None = None) -> None:
        """Wait for the writes handed to `later` (at most `timeout` seconds). One that failed
        because the store did not answer is made once more, now (a store that was away while
        the run trained may be back; every such write can be made twice); one that fails
        again raises its `StoreError` (one line)."""
        if self.writer is None:
            return
        futures.wait([future for future, _, _ in self.writes], timeout)
        self.writer.shutdown(wait=False, cancel_futures=True)
        writes, self.writer, self.writes = self.writes, None, []
        for future, write, args in writes:
            if not future.done() or future.cancelled() or future.exception() is None:
                continue
            if not isinstance(future.exception(), StoreError):
                raise future.exception()
            as_store_call(write, args)

    def log_artifacts_together(self, files: list[tuple[Path, str | None]]) -> None:
        """Upload (file, folder) pairs side by side; raise the first failure once all ended."""
        if len(files) < 2:
            for path, folder in files:
                self.log_artifact(path, folder)
            return
        with ThreadPoolExecutor(min(len(files), UPLOADS_AT_ONCE)) as uploads:
            done = [uploads.submit(self.log_artifact, path, folder) for path, folder in files]
        for upload in done:
            upload.result()

    @whole
    def end(self, status: str = "FINISHED") -> None:
        for drain in self.before_end:
            with contextlib.suppress(Exception):  # ending the run matters more
                drain(DRAIN_SECONDS)
        self.client.set_terminated(self.run_id, status)


def as_store_call(write, args: tuple) -> None:
    """`write(*args)`, any failure of the store in it a one-line `StoreError`."""
    with store_calls(getattr(write, "__name__", "a write")):
        write(*args)


def log_inputs(client, run_id: str, inputs: list) -> None:
    """`client.log_inputs`, safe for runs that log the same new dataset at once: MLflow's
    store refuses all but one insert of its row as a duplicate key, and a loser that tries
    again finds the row."""
    from mlflow.exceptions import MlflowException

    for attempt in range(DUPLICATE_TRIES):
        try:
            client.log_inputs(run_id, datasets=inputs)
            return
        except MlflowException as error:
            if attempt + 1 == DUPLICATE_TRIES or not DUPLICATE_KEY.search(str(error)):
                raise
            time.sleep(0.2 * (attempt + 1))


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
        with phase("log: store"):
            run.settle_writes()  # a write that failed fails the run
    except (Exception, KeyboardInterrupt) as error:
        status, message = failure_status(error)
        end_quietly(run, status, message)
        raise
    with phase("log: store"):
        run.end("FINISHED")


@contextlib.contextmanager
def failed_after(run: Run | None) -> Iterator[None]:
    """A step after `run` ended FINISHED that its stage still needs (putting the outputs in
    place): if it fails, the run ends again FAILED (KILLED for Ctrl-C), the reason in its
    `error` tag, so that no stage that exits non-zero leaves its run FINISHED. An interrupt
    held until the outputs were in place leaves the run as it is: the stage did its work."""
    try:
        yield
    except (Exception, KeyboardInterrupt) as error:
        if run is not None and getattr(error, "step", None) != OUTPUTS_REPLACED:
            status, message = failure_status(error)
            end_quietly(run, status, f"its outputs were not put in place: {message}")
        raise


def end_quietly(run: Run, status: str, message: str) -> None:
    """End `run` with `status`, whatever happens meanwhile: the error that ended it matters
    more than one from the store, and a second Ctrl-C waits until the run has ended."""
    with (
        contextlib.suppress(KeyboardInterrupt),
        interrupts_deferred("the run had ended"),
        contextlib.suppress(Exception),
    ):
        run.set_tags({"error": message})
        run.end(status)


def stale_runs(
    mark: bool = False, experiment_ids: list[str] | None = None
) -> list[tuple[str, str]]:
    """Runs RUNNING in the store (in `experiment_ids`, else in all) whose process, on this
    host, no longer exists, each as (the status it gets, a line naming it); with `mark`, end
    them so: KILLED, or FAILED for a shared study's trial, as its Optuna trial ends."""
    client = mlflow.MlflowClient()
    host = socket.gethostname()
    found = []
    if experiment_ids is None:
        experiment_ids = [experiment.experiment_id for experiment in client.search_experiments()]
    for experiment_id in experiment_ids:
        for run in client.search_runs(
            [experiment_id], "attributes.status = 'RUNNING'", max_results=1000
        ):
            tags = run.data.tags
            if tags.get("host") != host or not tags.get("pid", "").isdigit():
                continue
            if pid_alive(int(tags["pid"])):
                continue
            lost = "FAILED" if TRIAL_TAG in tags else "KILLED"
            found.append(
                (lost, f"{run.info.run_id} {run.info.run_name} (pid {tags['pid']} is gone)")
            )
            if mark:
                client.set_tag(run.info.run_id, "error", "process ended without closing the run")
                client.set_terminated(run.info.run_id, lost)
    return found


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
