"""The train stage as a user runs it (`python -m pipeline.train`), in a project copy: tracking
on, off, unreachable, and interrupted."""

from __future__ import annotations

import json
import resource
import socket
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from tests.conftest import QUICK, project_with_data, run, sigterm_after, tool_env

pytestmark = pytest.mark.slow


@pytest.fixture
def project(tmp_path) -> Path:
    """A project copy of this test's own, with split and test data."""
    return project_with_data(tmp_path / "project")


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
    # The committed null link is left alone: train names its run there in `dvc exp run` only.
    assert json.loads((project / "reports" / "mlflow_run.json").read_text()) == {"run_id": None}


def test_sigterm_mid_training_ends_the_run_killed(project, mlflow_store):
    args = [sys.executable, "-m", "pipeline.train", "model.hidden=[256]", "train.epochs=100000"]
    status, stderr = sigterm_after(args, project, "dev_acc")  # once an epoch was logged
    assert status == 130, stderr
    (killed,) = mlflow.MlflowClient(mlflow_store).search_runs(["1"])
    assert killed.info.status == "KILLED"
    assert "SIGTERM" in killed.data.tags["error"]
    assert len(mlflow.MlflowClient(mlflow_store).get_metric_history(killed.info.run_id, "dev/loss"))


def test_four_trainings_started_at_once_on_a_fresh_store_all_finish(project, tmp_path):
    uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"  # does not exist yet
    env = {**tool_env(), "MLFLOW_TRACKING_URI": uri}
    args = [sys.executable, "-m", "pipeline.train", *QUICK, "model.hidden=[4]", "train.epochs=1"]
    processes = [
        subprocess.Popen([*args, f"train.seed={seed}"], cwd=project, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for seed in range(4)  # twice the cores of a small machine: they race to create it
    ]  # fmt: skip
    errors = [process.communicate(timeout=300)[1] for process in processes]
    assert [process.returncode for process in processes] == [0] * 4, errors
    runs = mlflow.MlflowClient(uri).search_runs(["1"])
    assert len(runs) == 4 and {run.info.status for run in runs} == {"FINISHED"}
    assert {run.data.params["train.seed"] for run in runs} == {str(seed) for seed in range(4)}


OUTPUTS = ["models/model.npz", "reports/train_metrics.json", "reports/train_history.csv"]


def test_a_full_disk_while_writing_the_model_loses_nothing(project):
    run([sys.executable, "-m", "pipeline.train", *QUICK, "tracking.enabled=false"], project)
    before = {name: (project / name).read_bytes() for name in OUTPUTS}
    limit = 1_000_000  # bytes a file may grow to: the 784-512-10 model needs 1.6 MB

    def small_files():  # the kernel answers EFBIG past the limit, as it answers ENOSPC
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    args = [sys.executable, "-m", "pipeline.train", "model.hidden=[512]", "train.epochs=1",
            "train.max_shift=0", "tracking.enabled=false"]  # fmt: skip
    result = subprocess.run(
        args, cwd=project, env=tool_env(), capture_output=True, text=True, preexec_fn=small_files
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (error,) = [line for line in result.stderr.splitlines() if "error" in line]
    assert error.startswith("train: error: cannot write models/model.npz: File too large (free")
    assert {name: (project / name).read_bytes() for name in OUTPUTS} == before
    assert not list(project.rglob(".staging.*")) and not list(project.rglob("*.tmp"))


def test_a_read_only_store_is_one_line_and_trains_nothing(project, mlflow_store):
    mlflow.MlflowClient(mlflow_store).create_experiment("mnist-from-scratch")
    database = mlflow_store.removeprefix("sqlite:///")
    uri = f"sqlite:///file:{database}?mode=ro&uri=true"  # read-only, whoever runs the test
    result = run([sys.executable, "-m", "pipeline.train", *QUICK, f"tracking.uri='{uri}'"],
                 project, check=False)  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (error,) = [line for line in result.stderr.splitlines() if "error" in line]
    assert error == (
        f"train: error: the MLflow store {uri} failed in start "
        "((sqlite3.OperationalError) attempt to write a readonly database)"
    )
    assert "epoch" not in result.stderr  # refused before training
    assert not (project / "models").exists()
