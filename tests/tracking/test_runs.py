"""MLflow run status and store handling against real SQLite stores: runs end FINISHED, FAILED
or KILLED, never RUNNING; an unusable store stops training before it starts; runs left RUNNING
by dead processes are found and marked."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from pipeline.schema import TrackingConfig
from pipeline.tracking import Run, TrackingError, open_store, settled
from tests.conftest import QUICK, project_with_data, run, sigterm_after


def tracking(uri=None) -> TrackingConfig:
    return TrackingConfig(True, uri, "tests", None, "pipeline", False)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return project_with_data(tmp_path_factory.mktemp("tracking") / "project")


def test_settled_runs_end_finished_failed_or_killed(mlflow_store):
    experiment = open_store(tracking())
    runs = [Run.start(experiment, name) for name in ("ok", "error", "interrupt")]
    with settled(runs[0]):
        pass
    with pytest.raises(ValueError), settled(runs[1]):
        raise ValueError("bad value")
    with pytest.raises(KeyboardInterrupt), settled(runs[2]):
        raise KeyboardInterrupt("received SIGTERM")
    client = mlflow.MlflowClient()
    ended = [client.get_run(r.run_id) for r in runs]
    assert [r.info.status for r in ended] == ["FINISHED", "FAILED", "KILLED"]
    assert ended[1].data.tags["error"] == "ValueError: bad value"
    assert ended[2].data.tags["error"] == "interrupted (received SIGTERM)"


def test_an_unreachable_server_stops_train_before_training(project):
    with socket.socket() as probe:  # a local port with nothing listening on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    args = [sys.executable, "-m", "pipeline.train", *QUICK, f"tracking.uri={uri}"]
    result = run(args, project, check=False)
    assert result.returncode == 1
    assert f"train: error: cannot use the MLflow store {uri}" in result.stderr
    assert "tracking.enabled=false" in result.stderr  # the way out is named
    assert "epoch" not in result.stderr  # no training started
    assert not (project / "models" / "model.npz").exists()


def test_tracking_off_imports_and_logs_nothing(project, mlflow_store):
    args = [sys.executable, "-m", "pipeline.train", *QUICK, "tracking.enabled=false"]
    run(args, project)
    experiments = mlflow.MlflowClient(mlflow_store).search_experiments()
    assert [e.name for e in experiments] == ["Default"]  # the empty store, untouched
    assert (project / "reports" / "mlflow_run.json").read_text().strip() == '{\n  "run_id": null\n}'


def test_sigterm_mid_training_ends_the_run_killed(project, mlflow_store):
    args = [sys.executable, "-m", "pipeline.train", "model.hidden=[256]", "train.epochs=100000"]
    status, stderr = sigterm_after(args, project, "dev_acc")  # once an epoch was logged
    assert status == 130, stderr
    (killed,) = mlflow.MlflowClient(mlflow_store).search_runs(["1"])
    assert killed.info.status == "KILLED"
    assert "SIGTERM" in killed.data.tags["error"]
    assert len(mlflow.MlflowClient(mlflow_store).get_metric_history(killed.info.run_id, "dev/loss"))


def test_stale_runs_of_dead_processes_are_listed_and_marked(project, mlflow_store):
    experiment = open_store(tracking())
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()  # its pid now names no process
    host = socket.gethostname()
    orphan = Run.start(experiment, "orphan", {"host": host, "pid": str(ended.pid)})
    alive = Run.start(experiment, "alive", {"host": host, "pid": "1"})
    listed = run([sys.executable, "-m", "pipeline.tracking", "stale"], project)
    assert orphan.run_id in listed.stdout and alive.run_id not in listed.stdout
    client = mlflow.MlflowClient(mlflow_store)
    assert client.get_run(orphan.run_id).info.status == "RUNNING"  # listing changes nothing
    run([sys.executable, "-m", "pipeline.tracking", "stale", "--mark"], project)
    assert client.get_run(orphan.run_id).info.status == "KILLED"
    assert client.get_run(alive.run_id).info.status == "RUNNING"  # pid 1 is alive


def test_an_unwritable_store_location_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(TrackingError, match="cannot use the MLflow store"):
        open_store(tracking(f"sqlite:///{blocker / 'mlflow.db'}"))


def test_evaluate_logs_a_complete_new_run_when_the_training_run_is_gone(
    project, tmp_path, monkeypatch
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'trained.db'}")
    run([sys.executable, "-m", "pipeline.train", *QUICK], project)
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"  # as if mlflow.db had been deleted
    monkeypatch.setenv("MLFLOW_TRACKING_URI", fresh)
    result = run([sys.executable, "-m", "pipeline.evaluate", *QUICK], project)
    assert "not in the store; logging a new one" in result.stdout
    client = mlflow.MlflowClient(fresh)
    (logged,) = client.search_runs(["1"])
    assert logged.info.status == "FINISHED" and logged.data.params["model.hidden"] == "[16]"
    curve = client.get_metric_history(logged.info.run_id, "dev/accuracy")
    assert [m.step for m in curve] == [1, 2]
    assert {"test/accuracy", "model/dev_accuracy", "train/seconds"} <= set(logged.data.metrics)
