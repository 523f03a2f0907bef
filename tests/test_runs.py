"""`pipeline.runs`'s commands (their `main`, in process): stale runs listed and marked, the
alias promoted."""

from __future__ import annotations

import socket
import subprocess
import sys

import mlflow
import pytest

from pipeline import runs
from pipeline.plumbing.schema import TrackingConfig
from pipeline.tracking.runs import Run
from pipeline.tracking.store import open_store
from tests.conftest import run_main

pytestmark = pytest.mark.slow


def test_stale_runs_are_listed_then_marked_killed(mlflow_store, capsys):
    tracking = TrackingConfig(True, None, "mnist-from-scratch", "mnist-mlp", "pipeline", False)
    experiment = open_store(tracking)
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    orphan = Run.start(experiment, "orphan", {"host": socket.gethostname(), "pid": str(ended.pid)})
    listed = run_main(runs.main, ["stale"], capsys)
    assert f"stale: {orphan.run_id}" in listed.stdout and "stale --mark" in listed.stdout
    marked = run_main(runs.main, ["stale", "--mark"], capsys)
    assert f"marked KILLED: {orphan.run_id}" in marked.stdout
    assert mlflow.MlflowClient().get_run(orphan.run_id).info.status == "KILLED"


def test_promoting_an_unknown_version_is_one_clear_line(mlflow_store, capsys):
    result = run_main(runs.main, ["promote", "7"], capsys, check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("runs: error: cannot promote '7' to mnist-mlp@pipeline")
    assert "Traceback" not in result.stderr
    usage = run_main(runs.main, ["promote"], capsys, check=False)
    assert usage.returncode == 2 and "usage:" in usage.stderr
