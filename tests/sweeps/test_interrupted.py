"""Sweeps that do not finish: Ctrl-C, SIGTERM to the sweeper, a killed worker, a killed
sweeper. Real sweeps (the sweeper and its two forked workers) in their own session;
afterwards no trial of the study and no run of the sweep is RUNNING, and no process of the
session is left (found by session id, never by name)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import optuna
import psutil
import pytest
from optuna.trial import TrialState

from tests.conftest import project_with_data, tool_env

pytestmark = pytest.mark.slow

# Two jobs in two workers, long enough to be stopped mid-training.
LONG_SWEEP = [
    "hydra.sweeper.n_jobs=2", "optimizer=nesterov,adam",
    "model.hidden=[16]", "train.epochs=100000", "train.max_shift=0",
]  # fmt: skip


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return project_with_data(tmp_path_factory.mktemp("interrupted") / "project")


def session_processes(session: int) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == session:
                found.append(process)
        except (ProcessLookupError, PermissionError, psutil.NoSuchProcess):
            continue
    return found


class Sweep:
    """A sweep started in a new session (its sweeper's PID is the session id)."""

    def __init__(self, project: Path, sweep_dir: Path, uri: str):
        args = [sys.executable, "-m", "pipeline.train", "-m", *LONG_SWEEP]
        self.sweep_dir = sweep_dir
        # stderr goes to a file, not a pipe: the sweeper's exit is what the test waits for,
        # and anything it left behind is found by session below, not by a pipe held open.
        self.stderr = sweep_dir.parent / "sweep.stderr"
        with open(self.stderr, "w") as stderr:
            self.process = subprocess.Popen(
                [*args, f"hydra.sweep.dir={sweep_dir}"], cwd=project, env=tool_env(),
                stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
            )  # fmt: skip
        self.client = mlflow.MlflowClient(uri)

    def runs(self):
        experiment = self.client.get_experiment_by_name("mnist-from-scratch")
        if experiment is None:
            return []
        return self.client.search_runs([experiment.experiment_id], max_results=100)

    def children(self):
        return [r for r in self.runs() if r.data.tags.get("pipeline.kind") == "sweep-job"]

    def wait_for_training(self, timeout: float = 120) -> list[int]:
        """Wait until both jobs log epochs; return the PIDs of the two workers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            training = [c for c in self.children() if "train/loss" in c.data.metrics]
            if len(training) == 2:
                return [int(c.data.tags["pid"]) for c in training]
            assert self.process.poll() is None, self.stderr.read_text()[-3000:]
            time.sleep(0.5)
        raise AssertionError("the sweep's jobs did not start training")

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        """The sweeper's exit status and stderr, once it and every process of its session
        have ended; any left behind fails the test (and is killed, by PID)."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            alive = [" ".join(p.cmdline()) for p in session_processes(self.process.pid)]
            raise AssertionError(f"the sweeper did not end; alive: {alive}") from None
        stderr = self.stderr.read_text()
        deadline = time.monotonic() + 20
        while session_processes(self.process.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = session_processes(self.process.pid)
        for process in left:
            process.kill()
        assert not left, f"processes left behind: {[p.cmdline() for p in left]}"
        return self.process.returncode, stderr

    def kill(self):
        for process in [self.process, *session_processes(self.process.pid)]:
            process.kill()


@pytest.fixture
def sweep(project, tmp_path, mlflow_store):
    started = Sweep(project, tmp_path / "sweep", mlflow_store)
    yield started
    started.kill()


def statuses(sweep: Sweep) -> tuple[str, list[str]]:
    runs = sweep.runs()
    (parent,) = [r for r in runs if r.data.tags.get("pipeline.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("pipeline.kind") == "sweep-job"]
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)
    storage = f"sqlite:///{sweep.sweep_dir / 'optuna.db'}"
    trials = optuna.load_study(study_name="sweep", storage=storage).trials
    assert len(trials) == 2 and {t.state for t in trials} == {TrialState.FAIL}  # none RUNNING
    return parent.info.status, sorted(c.info.status for c in children)


def last_line(stderr: str) -> str:
    return stderr.replace("\r", "\n").strip().splitlines()[-1]


def test_ctrl_c_ends_the_sweep_killed_with_no_process_left(sweep):
    sweep.wait_for_training()
    os.killpg(sweep.process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    status, stderr = sweep.finish()
    assert status == 130
    assert last_line(stderr).startswith("sweep: ended KILLED (interrupted")
    assert "Traceback" not in stderr
    assert statuses(sweep) == ("KILLED", ["KILLED", "KILLED"])


def test_sigterm_to_the_sweeper_ends_the_sweep_killed(sweep):
    workers = sweep.wait_for_training()
    sweep.process.send_signal(signal.SIGTERM)
    status, stderr = sweep.finish()
    assert status == 130
    assert last_line(stderr).startswith("sweep: ended KILLED (interrupted (received SIGTERM))")
    assert "Traceback" not in stderr
    assert statuses(sweep) == ("KILLED", ["KILLED", "KILLED"])
    assert not any(psutil.pid_exists(pid) for pid in workers)


def test_a_killed_worker_ends_the_sweep_failed_in_one_line(sweep):
    workers = sweep.wait_for_training()
    os.kill(workers[0], signal.SIGKILL)
    status, stderr = sweep.finish()
    assert status == 1
    assert last_line(stderr).startswith(
        "sweep: ended FAILED (a worker process died (exit SIGKILL(-9)))"
    )
    assert "Traceback" not in stderr
    # The dead worker's run FAILED with the sweep; the other, stopped, KILLED.
    assert statuses(sweep) == ("FAILED", ["FAILED", "KILLED"])


def test_workers_of_a_killed_sweeper_end_their_runs_and_exit(sweep):
    workers = sweep.wait_for_training()
    sweep.process.kill()  # SIGKILL: the sweeper can do nothing, its workers must notice
    status, _ = sweep.finish()
    assert status == -signal.SIGKILL
    assert not any(psutil.pid_exists(pid) for pid in workers)
    assert statuses(sweep) == ("KILLED", ["KILLED", "KILLED"])
