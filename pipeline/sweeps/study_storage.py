"""Where the workers of a shared study meet (shared.py): Optuna's RDB storage with heartbeats,
a lock one worker holds at a time, and the heartbeat thread of a worker's running trials."""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import optuna

from pipeline.plumbing.errors import PipelineError, without_password


def quiet_optuna() -> None:
    """Optuna's notes about its own API (heartbeats and retries are "experimental", meant for
    its own optimize loop) and its log of each trial: the sweep says what matters itself."""
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def engine_settings(url: str) -> dict | None:
    """SQLite: workers wait for each other's writes (the default 5 s is short when both end a
    trial at once under load)."""
    return {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None


def open_storage(
    url: Any, heartbeat_interval: int, grace_period: int, on_lost: Callable
) -> optuna.storages.RDBStorage:
    url = str(url)
    shown = without_password(url)
    if url.split(":", 1)[0].split("+")[0] not in ("postgresql", "sqlite"):
        raise PipelineError(f"the study's database {shown} is neither PostgreSQL nor SQLite")
    from sqlalchemy import create_engine

    try:
        engine = create_engine(url)
        with database_lock(engine, "tables"):  # workers starting at once would all create them
            storage = optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_settings(url),
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                heartbeat_stale_trial_callback=on_lost,
            )
        engine.dispose()
        return storage
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise PipelineError(f"cannot open the study's database {shown}: {reason}") from None


@contextlib.contextmanager
def database_lock(engine, name: str, timeout: float = -1) -> Iterator[None]:
    """One worker at a time holds `name`: a PostgreSQL advisory lock (which the server releases
    if the worker dies), or a file lock beside an SQLite database. With a `timeout` in seconds,
    TimeoutError if it is not had by then."""
    from sqlalchemy import text

    if engine.dialect.name != "postgresql":
        from filelock import FileLock

        with FileLock(f"{engine.url.database}.lock", timeout=timeout):
            yield
        return
    digest = hashlib.sha256(f"pipeline shared study: {name}".encode()).digest()
    key = int.from_bytes(digest[:8], "big", signed=True)
    deadline = time.monotonic() + timeout
    with engine.connect() as connection:
        if timeout < 0:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
        else:
            while not connection.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": key}
            ).scalar():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the lock on {name} was not had within {timeout} s")
                time.sleep(0.2)
        connection.commit()
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
            connection.commit()


@contextlib.contextmanager
def heartbeats(storage, trial_ids: list[int], interval: int) -> Iterator[None]:
    """Record a heartbeat for each trial every `interval` s while the block runs."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            for trial_id in trial_ids:
                with contextlib.suppress(Exception):  # a missed beat is retried next time
                    storage.record_heartbeat(trial_id)

    thread = threading.Thread(target=beat, name="optuna-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=interval)
