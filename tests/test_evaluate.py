"""The evaluate stage as a user runs it (`python -m pipeline.evaluate`), in a project copy."""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import mlflow
import pytest

from tests.conftest import QUICK, project_with_data, run

pytestmark = pytest.mark.slow


@pytest.fixture
def project(tmp_path) -> Path:
    """A project copy of this test's own, with split and test data."""
    return project_with_data(tmp_path / "project")


def test_evaluate_logs_a_complete_new_run_when_the_training_run_is_gone(
    project, tmp_path, monkeypatch, mlflow_template
):
    # Untracked: whatever the training logged would be gone with the store anyway.
    run([sys.executable, "-m", "pipeline.train", *QUICK, "tracking.enabled=false"], project)
    # Another empty store, as if mlflow.db had been deleted (and made again: migrated, it
    # spares seconds of migrations; creating one is tests/tracking/test_store.py's).
    shutil.copy(mlflow_template, tmp_path / "fresh.db")
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", fresh)
    result = run([sys.executable, "-m", "pipeline.evaluate", *QUICK], project)
    assert "no MLflow run in the store saved models/model.npz; logging a new one" in result.stdout
    client = mlflow.MlflowClient(fresh)
    (logged,) = client.search_runs(["1"])
    assert logged.info.status == "FINISHED" and logged.data.params["model.hidden"] == "[16]"
    curve = client.get_metric_history(logged.info.run_id, "dev/accuracy")
    assert [m.step for m in curve] == [1, 2]
    assert {"test/accuracy", "model/dev_accuracy"} <= set(logged.data.metrics)
    weights = hashlib.sha256((project / "models" / "model.npz").read_bytes()).hexdigest()
    assert logged.data.tags["model.sha256"] == weights  # a later evaluate finds it again


def test_a_final_fit_on_train_and_dev_logs_its_dev_scores_as_seen_ones(project, mlflow_store):
    args = [*QUICK, "train.include_dev=true"]
    trained = run([sys.executable, "-m", "pipeline.train", *args], project)
    assert "(trained on)" in trained.stdout and "best dev accuracy" not in trained.stdout
    run([sys.executable, "-m", "pipeline.evaluate", *args], project)
    client = mlflow.MlflowClient(mlflow_store)
    experiment = client.get_experiment_by_name("mnist-from-scratch")
    (logged,) = client.search_runs([experiment.experiment_id])
    assert logged.info.status == "FINISHED" and logged.data.params["train.include_dev"] == "True"
    curve = client.get_metric_history(logged.info.run_id, "dev_seen/accuracy")
    assert [m.step for m in curve] == [1, 2]
    # No dev score of this run may sit in the columns where held-out ones are compared.
    assert not {"dev/accuracy", "model/dev_accuracy", "best/dev_accuracy"} & set(
        logged.data.metrics
    )
    assert "test/accuracy" in logged.data.metrics
