"""The one-line reasons a shared-study worker gives (pipeline/sweeps/study.py, lost_trials.py):
how its search differs from the study's, and which service stopped answering."""

from __future__ import annotations

import json

# What these import (MLflow, Optuna's storage, SQLAlchemy) is imported in the tests, not here:
# `make test-fast` imports this module in both its workers but runs its tests in one
# (XDIST_GROUPS in tests/conftest.py).


def search(items: list[str], n_trials: int = 8) -> str:
    return json.dumps({"search": items, "n_trials": n_trials, "direction": "maximize"})


def test_differences_name_each_setting_that_differs_and_no_other():
    from pipeline.sweeps.study import differences

    started = search(["train.dropout=interval(0.0, 0.4)", "train.epochs=5"])
    mine = search(["train.dropout=interval(0.0, 0.4)", "train.epochs=3"], n_trials=16)
    assert differences(started, mine) == (
        "n_trials 8 in the study, 16 here; only the study's: train.epochs=5; "
        "only this worker's: train.epochs=3"
    )
    assert differences(started, started) == ""


def test_an_outage_names_the_service_without_its_password():
    from mlflow.exceptions import MlflowException
    from optuna.exceptions import StorageInternalError
    from sqlalchemy.exc import OperationalError

    from pipeline.sweeps.storage import outage

    url = "postgresql+psycopg2://mlflow:s3cret@127.0.0.1:5433/optuna"
    database_down = OperationalError("SELECT 1", {}, Exception("connection refused"))
    assert outage(database_down, url) == (
        "the study's database postgresql+psycopg2://mlflow:***@127.0.0.1:5433/optuna failed "
        "((builtins.Exception) connection refused)"
    )
    try:  # as Optuna's storage raises it: its own error, the database's as the cause
        raise StorageInternalError("An exception is raised during the commit.") from database_down
    except StorageInternalError as wrapped:
        assert outage(wrapped, url) == outage(database_down, url)
    assert outage(MlflowException("API request failed"), url).startswith("the MLflow store ")
    assert outage(ValueError("a bug"), url) is None  # not an outage: its traceback shows
