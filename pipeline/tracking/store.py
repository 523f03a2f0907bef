"""The MLflow store: which one, reached (and created) before any work, or one clear error.

The store is `tracking.uri`, else $MLFLOW_TRACKING_URI, else the SQLite database `mlflow.db` at
the project root, with artifacts in `mlruns/` beside it. The root is $DVC_ROOT when DVC sets it:
queued `dvc exp run`s execute in a copy under .dvc/tmp/exps/, and must log to the real store.

Creating a SQLite store migrates its schema, and several processes doing that at once (parallel
trainings on a fresh mlflow.db) fail and can leave it half-migrated. So a file lock beside the
database (`mlflow.db.lock`) lets one process at a time open it; a store whose schema is not
the one this MLflow expects is reported in one line with the way out.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import mlflow
from filelock import FileLock
from filelock import Timeout as LockTimeout
from mlflow.exceptions import MlflowException

from pipeline.plumbing.errors import PipelineError, interrupts_deferred
from pipeline.plumbing.paths import mlflow_artifacts, mlflow_database
from pipeline.plumbing.schema import TrackingConfig


class TrackingError(PipelineError):
    """The tracking store cannot be reached or used."""


class StoreError(TrackingError):
    """A call to the store failed midway (server gone, database locked or read-only, disk
    full); the message is one line: the call and the first line of the store's error."""


@contextlib.contextmanager
def store_calls(what: str) -> Iterator[None]:
    """Write to the store: Ctrl-C or SIGTERM meanwhile waits until the write is done (an SQLite
    transaction cut in half can leave the database locked), and any failure becomes a one-line
    `StoreError` naming `what`."""
    try:
        with interrupts_deferred(f"the MLflow store's {what} was done"):
            yield
    except PipelineError:
        raise
    except Exception as error:
        raise StoreError(
            f"the MLflow store {mlflow.get_tracking_uri()} failed in {what} ({short_reason(error)})"
        ) from error


def short_reason(error: BaseException) -> str:
    """The telling part of a store's error: the OS error or time-out an HTTP failure wraps in
    a paragraph of retries, else the first line."""
    text = str(error).strip()
    patterns = (
        r"\[Errno -?\d+\] [^'\"()]+",  # an OS error (connection refused, disk full)
        r"Read timed out\. \(read timeout=[\d.]+\)",
        r"\([\w.]+(?:Error|Exception)\) [^\n]+",  # a database error, as SQLAlchemy shows it
    )
    for pattern in patterns:
        found = re.search(pattern, text)
        if found:
            return found[0].strip()
    first = text.splitlines()[0] if text else type(error).__name__
    return first if len(first) <= 300 else first[:297] + "..."


# MLflow retries a failed HTTP request 7 times with a backoff factor of 2, and waits 120 s
# for each answer: a lost server stalls a training for minutes. These bounds (yours win if you
# set the variables) make each call give up within about a minute.
HTTP_BOUNDS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}


def quiet_progress_bars() -> None:
    """MLflow draws a progress bar for each artifact it copies, even a local one: noise in a
    stage's log, and in a sweep's a bar per job."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def bound_http_requests() -> None:
    for name, value in HTTP_BOUNDS.items():
        os.environ.setdefault(name, value)


def store_uri(tracking: TrackingConfig) -> str:
    if tracking.uri:
        return tracking.uri
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{mlflow_database()}"


LOCK_TIMEOUT = 300  # seconds to wait for another process creating the store (that takes 2-7 s)
STALE_SCHEMA = "out-of-date database schema"  # MLflow's words for a schema it does not expect


def sqlite_database(uri: str) -> Path | None:
    """The file of a plain `sqlite:///path` store; None for others (a server, a `file:` URI
    with options such as mode=ro, which SQLite opens as it is told)."""
    path = uri.removeprefix("sqlite:///")
    if path == uri or path.startswith("file:") or "?" in path:
        return None
    return Path(path)


_opened: dict[tuple[str, str], str] = {}  # (store, experiment) → id, reached in this process


def open_store(tracking: TrackingConfig) -> str:
    """Reach the store (creating and migrating a new SQLite one), make sure the experiment
    exists, and return its id; raise `TrackingError` naming the store if that fails. Once a
    process (or the launcher a sweep worker was forked from) has reached a store, it is not
    asked again: a store that fails later does so in the call that uses it (`store_calls`)."""
    # MLflow logs each failed database call with its whole trace before raising it; the one
    # line `store_calls` makes of it says what matters.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    quiet_progress_bars()
    uri = store_uri(tracking)
    if (uri, tracking.experiment) in _opened:
        mlflow.set_tracking_uri(uri)
        return _opened[uri, tracking.experiment]
    _opened[uri, tracking.experiment] = experiment_id = reach_or_create(uri, tracking.experiment)
    return experiment_id


def reach_or_create(uri: str, experiment: str) -> str:
    database = sqlite_database(uri)
    if database is None:
        bound_http_requests()
        return reach_store(uri, experiment)
    if database.is_file() and not os.access(database, os.W_OK):
        raise TrackingError(
            f"the MLflow store {database} is read-only: make it writable (chmod u+w), point "
            "tracking.uri at another store, or turn tracking off with tracking.enabled=false"
        )
    if not os.access(database.parent, os.W_OK | os.X_OK) and database.parent.is_dir():
        raise TrackingError(
            f"the folder of the MLflow store, {database.parent}, is read-only (SQLite writes "
            "its journal there): make it writable or point tracking.uri elsewhere"
        )
    try:
        database.parent.mkdir(parents=True, exist_ok=True)
        # A second to import: paid before the lock, not while other processes wait for it.
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401

        lock = FileLock(f"{database}.lock", timeout=LOCK_TIMEOUT)
        with lock:
            return reach_store(uri, experiment)
    except LockTimeout:
        raise TrackingError(
            f"waited {LOCK_TIMEOUT} s for {database}.lock: another running process holds the "
            "MLflow store's creation lock; stop it or wait for it"
        ) from None
    except OSError as error:
        raise TrackingError(
            f"cannot use the MLflow store {uri} ({error}): fix tracking.uri or "
            "MLFLOW_TRACKING_URI, or turn tracking off with tracking.enabled=false"
        ) from None


def reach_store(uri: str, experiment_name: str) -> str:
    """Open the store at `uri` and return the id of `experiment_name`, creating either."""
    mlflow.set_tracking_uri(uri)
    # A server that is down should fail in seconds, not after minutes of retries.
    limits = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
    saved = {name: os.environ.get(name) for name in limits}
    os.environ.update(limits)
    try:
        client = mlflow.MlflowClient(uri)
        experiment = client.get_experiment_by_name(experiment_name)
        if experiment is None:
            # A local store keeps artifacts beside it; a server chooses (it serves them to all).
            location = (
                None if uri.startswith(("http://", "https://")) else mlflow_artifacts().as_uri()
            )
            try:
                return client.create_experiment(experiment_name, artifact_location=location)
            except MlflowException:  # created meanwhile by a parallel job
                experiment = client.get_experiment_by_name(experiment_name)
                if experiment is None:
                    raise
        return experiment.experiment_id
    except Exception as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        if STALE_SCHEMA in reason:
            found = reason[reason.index("(") : reason.index(")") + 1]
            raise TrackingError(
                f"the MLflow store {uri} has a schema this MLflow does not expect {found}: it "
                "is half-migrated (a process died creating it) or from another MLflow version; "
                f"move it aside so the next run creates a fresh one, or run `mlflow db upgrade "
                f"{uri}` after a backup"
            ) from None
        raise TrackingError(
            f"cannot use the MLflow store {uri} ({reason[:300]}): start the server, fix "
            "tracking.uri or MLFLOW_TRACKING_URI, or turn tracking off with tracking.enabled=false"
        ) from None
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


LOCAL_UI = "http://127.0.0.1:5000"  # where `make ui` serves a local store
# MLflow 3 opens an experiment on its GenAI overview; this opens its model-training runs.
RUNS_VIEW = "workflowType=machine_learning"


def runs_link(experiment_id: str, run_id: str | None = None, base: str | None = None) -> str:
    """The MLflow UI's page of an experiment's runs (or one run): the tracking server's own,
    or `make ui`'s for a local store."""
    uri = mlflow.get_tracking_uri()
    base = base or (uri if uri.startswith(("http://", "https://")) else LOCAL_UI)
    page = f"experiments/{experiment_id}" + (f"/runs/{run_id}" if run_id else "")
    return f"{base.rstrip('/')}/#/{page}?{RUNS_VIEW}"
