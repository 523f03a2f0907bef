"""The MLflow store: which one, reached (and created) before any work, or one clear error.

The store is `tracking.uri`, else $MLFLOW_TRACKING_URI, else the SQLite database `mlflow.db` at
the project root, with artifacts in `mlruns/` beside it. The root is $DVC_ROOT when DVC sets it:
queued `dvc exp run`s execute in a copy under .dvc/tmp/exps/, and must log to the real store.
"""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from pipeline.plumbing.errors import PipelineError
from pipeline.plumbing.paths import mlflow_artifacts, mlflow_database
from pipeline.plumbing.schema import TrackingConfig


class TrackingError(PipelineError):
    """The tracking store cannot be reached or used."""


def store_uri(tracking: TrackingConfig) -> str:
    if tracking.uri:
        return tracking.uri
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{mlflow_database()}"


def open_store(tracking: TrackingConfig) -> str:
    """Reach the store (creating and migrating a new SQLite one), make sure the experiment
    exists, and return its id; raise `TrackingError` naming the store if that fails."""
    uri = store_uri(tracking)
    mlflow.set_tracking_uri(uri)
    # A server that is down should fail in seconds, not after minutes of retries.
    limits = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
    saved = {name: os.environ.get(name) for name in limits}
    os.environ.update(limits)
    try:
        if uri.startswith("sqlite:///"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        client = mlflow.MlflowClient(uri)
        experiment = client.get_experiment_by_name(tracking.experiment)
        if experiment is None:
            location = mlflow_artifacts().as_uri()
            try:
                return client.create_experiment(tracking.experiment, artifact_location=location)
            except MlflowException:  # created meanwhile by a parallel job
                experiment = client.get_experiment_by_name(tracking.experiment)
                if experiment is None:
                    raise
        return experiment.experiment_id
    except Exception as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
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
