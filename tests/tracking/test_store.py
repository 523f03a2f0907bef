"""The store: created on first use, or one clear error naming it and the way out."""

from __future__ import annotations

import contextlib
import sqlite3

import pytest

from pipeline.plumbing.schema import TrackingConfig

# MLflow and what imports it are imported in the tests, not here: `make test-fast` imports this
# module in both its workers but runs its tests in one (XDIST_GROUPS in tests/conftest.py).


def tracking(uri=None) -> TrackingConfig:
    return TrackingConfig(True, uri, "tests", None, "pipeline", False)


def test_an_unwritable_store_location_is_a_clear_error(tmp_path):
    from pipeline.tracking.store import TrackingError, open_store

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(TrackingError, match="cannot use the MLflow store"):
        open_store(tracking(f"sqlite:///{blocker / 'mlflow.db'}"))


def test_a_new_store_is_created_with_the_experiment(tmp_path, monkeypatch):
    import mlflow

    from pipeline.tracking import store
    from pipeline.tracking.store import open_store

    uri = f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}"
    experiment_id = open_store(tracking(uri))
    assert mlflow.MlflowClient(uri).get_experiment(experiment_id).name == "tests"
    assert open_store(tracking(uri)) == experiment_id  # remembered by this process
    monkeypatch.setattr(store, "_opened", {})  # as another process, or a forked worker, finds it
    assert open_store(tracking(uri)) == experiment_id  # found, not created twice


def test_the_store_defaults_to_mlflow_db_at_the_dvc_root(tmp_path, monkeypatch):
    from pipeline.tracking.store import store_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    assert store_uri(tracking()) == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert store_uri(tracking("http://127.0.0.1:5000")) == "http://127.0.0.1:5000"


def test_a_half_migrated_store_is_one_line_naming_the_fix(mlflow_template, tmp_path):
    from pipeline.tracking.store import TrackingError, open_store

    database = tmp_path / "mlflow.db"
    database.write_bytes(mlflow_template.read_bytes())
    with contextlib.closing(sqlite3.connect(database)) as connection, connection:
        connection.execute("UPDATE alembic_version SET version_num = '0a8213491aaa'")
    uri = f"sqlite:///{database}"
    with pytest.raises(TrackingError) as error:
        open_store(tracking(uri))
    message = str(error.value)
    assert "\n" not in message and "(found version 0a8213491aaa" in message
    assert "half-migrated" in message and f"mlflow db upgrade {uri}" in message


def test_a_call_to_a_lost_server_gives_up_within_a_minute_unless_you_say_otherwise(monkeypatch):
    """MLflow's own defaults (7 retries, backoff factor 2, 120 s a request) would stall a
    training for many minutes; tests/tracking/test_lost_server.py shortens the backoff."""
    from mlflow import environment_variables as variables

    from pipeline.tracking import store

    for name in store.HTTP_BOUNDS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")  # yours win
    store.bound_http_requests()
    retries = variables.MLFLOW_HTTP_REQUEST_MAX_RETRIES.get()  # as MLflow reads them
    backoff = variables.MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.get()
    assert variables.MLFLOW_HTTP_REQUEST_TIMEOUT.get() == 5
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT")
    store.bound_http_requests()
    timeout = variables.MLFLOW_HTTP_REQUEST_TIMEOUT.get()
    worst = (retries + 1) * timeout + sum(backoff * 2**attempt for attempt in range(retries))
    assert retries > 0 and worst <= 70
