"""A trial whose worker is gone, and a worker whose database or store is gone (shared.py).

A lost trial (its worker killed, its machine gone, its heartbeat silent) ends FAIL in Optuna
and FAILED in MLflow, and is queued again with the same parameters. A database or tracking
store that stops answering ends the worker with one line; started again, it resumes the study.
"""

from __future__ import annotations

import sys
import warnings

import optuna
from optuna.trial import FrozenTrial

from pipeline.plumbing.errors import without_password
from pipeline.sweeps.trial import PARENT_ATTR
from pipeline.tracking.tags import STUDY_TAG, TRIAL_TAG


class LostTrial:
    """For a trial whose worker is gone: queue it again (Optuna's retry callback) and end its
    MLflow run FAILED, as the trial is."""

    def __init__(self, max_retry: int):
        self.retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.retry(study, trial)
        end_trial_run(
            study, trial.number, "its worker stopped or was lost; the study runs it again"
        )
        print(
            f"sweep: trial {trial.number} was lost with its worker; queued again", file=sys.stderr
        )


def end_trial_run(study: optuna.Study, number: int, reason: str) -> None:
    parent = study.user_attrs.get(PARENT_ATTR)
    if parent is None:
        return
    import mlflow

    client = mlflow.MlflowClient()
    experiment_id = client.get_run(parent).info.experiment_id
    runs = client.search_runs(
        [experiment_id],
        f"tags.mlflow.parentRunId = '{parent}' and tags.`{TRIAL_TAG}` = '{number}' "
        f"and tags.`{STUDY_TAG}` = '{study.study_name}' and attributes.status = 'RUNNING'",
    )
    for run in runs:
        client.set_tag(run.info.run_id, "error", reason)
        client.set_terminated(run.info.run_id, "FAILED")


def outage(error: Exception, storage) -> str | None:
    """`<what> failed (<why>)`, if `error` is the study's database or the MLflow store not
    answering; None for any other error."""
    from mlflow.exceptions import MlflowException
    from requests.exceptions import RequestException
    from sqlalchemy.exc import SQLAlchemyError

    if isinstance(error, optuna.exceptions.StorageInternalError) and error.__cause__:
        error = error.__cause__  # Optuna's wrapper says less than the database's own error
    if isinstance(error, SQLAlchemyError):
        what = f"the study's database {without_password(str(getattr(storage, 'url', storage)))}"
    elif isinstance(error, (MlflowException, RequestException)):
        import mlflow

        what = f"the MLflow store {mlflow.get_tracking_uri()}"
    else:
        return None
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"{what} failed ({reason})"
