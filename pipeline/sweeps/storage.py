"""The study's database: Optuna's RDB storage (SQLite on one machine, PostgreSQL for many) with
heartbeats, a lock that one worker holds at a time, and what becomes of a lost trial.

A trial whose worker goes silent for `grace_period` s (killed, its machine gone) is failed by
the next worker that asks (Optuna's fail_stale_trials), its MLflow run ends FAILED, and it is
queued again with the same parameters (Optuna's RetryHeartbeatStaleTrialCallback). A database
or tracking store that stops answering ends the sweeper with one line naming it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.plumbing.errors import PipelineError, without_password

if TYPE_CHECKING:  # optuna is imported only in a sweep: a plain training does without it
    import optuna

# One storage call at a time in a worker process: its heartbeat thread and its job both write
# to the study, and two SQLite connections of one process, each waiting for the other's lock,
# deadlock (seen: a report and a heartbeat, stuck until the busy timeout).
STORAGE_CALLS = threading.Lock()


class Attr:  # the user attributes the sweeps keep in the study's database
    PARENT, ENDED, SHARED = "mlflow_parent_run_id", "ended", "shared"  # a study's: parent run,
    WORKERS, SEARCH = "workers_joined", "search"  # how it ended, whether shared, workers, search
    ERROR, WORKER = "error", "worker"  # a trial's: why it failed, which worker ran it


def storage_url(sweeper, sweep_dir: str | Path) -> str:
    """The study's database: `hydra.sweeper.storage`, or an SQLite file in the sweep's folder."""
    return str(sweeper.storage or f"sqlite:///{Path(sweep_dir).resolve() / 'optuna.db'}")


def quiet_optuna() -> None:
    """Optuna's notes on its own API (heartbeats and retries are "experimental", meant for its
    own optimize loop) and its log line per trial: the sweep says what matters itself."""
    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
    optuna.logging.set_verbosity(optuna.logging.WARNING)


@functools.cache  # one per process: a worker's jobs use its sweeper's, inherited by the fork
def open_storage(url: str, heartbeat_interval: int, grace_period: int, max_retry: int):
    shown = without_password(url)
    if url.split(":", 1)[0].split("+")[0] not in ("postgresql", "sqlite"):
        raise PipelineError(f"the study's database {shown} is neither PostgreSQL nor SQLite")
    import optuna
    from sqlalchemy import create_engine

    # SQLite: workers wait for each other's writes (its 5 s default is short under load).
    settings = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    try:
        engine = create_engine(url)
        with database_lock(engine, "tables"):  # workers starting at once would all create them
            storage = optuna.storages.RDBStorage(
                url, engine_kwargs=settings, heartbeat_interval=heartbeat_interval,
                grace_period=grace_period, heartbeat_stale_trial_callback=LostTrial(max_retry),
            )  # fmt: skip
        engine.dispose()
        return storage
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise PipelineError(f"cannot open the study's database {shown}: {reason}") from None


@contextlib.contextmanager
def database_lock(engine, name: str) -> Iterator[None]:
    """One worker at a time holds `name`: a PostgreSQL advisory lock (which the server releases
    if the worker dies), or a file lock beside an SQLite database."""
    from sqlalchemy import text

    if engine.dialect.name != "postgresql":
        from filelock import FileLock

        with FileLock(f"{engine.url.database}.lock"):
            yield
        return
    digest = hashlib.sha256(f"pipeline shared study: {name}".encode()).digest()
    key = {"key": int.from_bytes(digest[:8], "big", signed=True)}
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), key)
        connection.commit()
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), key)
            connection.commit()


@contextlib.contextmanager
def heartbeats(storage, trial_id: int, interval: int) -> Iterator[None]:
    """Record a heartbeat for the trial every `interval` s while the block runs."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            with contextlib.suppress(Exception), STORAGE_CALLS:  # a missed beat: next time
                storage.record_heartbeat(trial_id)

    thread = threading.Thread(target=beat, name="optuna-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=interval)


class LostTrial:
    """For a trial whose worker stopped or is gone: queue it again (a stopped study goes on
    with it) and end its MLflow run FAILED if it is still RUNNING."""

    def __init__(self, max_retry: int):
        import optuna

        self.retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry)

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.retry(study, trial)
        print(f"sweep: trial {trial.number} stopped with its worker; queued again", file=sys.stderr)
        if study.user_attrs.get(Attr.PARENT):
            from pipeline.sweeps.parent import end_unfinished

            reason = "its worker stopped or was lost; the study runs it again"
            end_unfinished(study.user_attrs[Attr.PARENT], "FAILED", reason, {str(trial.number)})


def outage(error: Exception, url: str | None) -> str | None:
    """`<what> failed (<why>)`, if `error` is the study's database or the MLflow store not
    answering; None for any other error."""
    import optuna
    from mlflow.exceptions import MlflowException
    from requests.exceptions import RequestException
    from sqlalchemy.exc import SQLAlchemyError

    if isinstance(error, optuna.exceptions.StorageInternalError) and error.__cause__:
        error = error.__cause__  # Optuna's wrapper says less than the database's own error
    if isinstance(error, SQLAlchemyError):
        what = f"the study's database {without_password(str(url))}"
    elif isinstance(error, (MlflowException, RequestException)):
        import mlflow

        what = f"the MLflow store {mlflow.get_tracking_uri()}"
    else:
        return None
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"{what} failed ({reason})"
