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
import numpy as np
import optuna
import psutil
import pytest
from optuna.trial import TrialState

from tests.conftest import Progress, project_with_data, run, tool_env

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
            time.sleep(0.1)
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
    states = [t.state for t in optuna.load_study(study_name="sweep", storage=storage).trials]
    assert states.count(TrialState.FAIL) == 2 and TrialState.RUNNING not in states
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


def test_a_stopped_sweep_started_again_goes_on_from_its_checkpoints_to_the_same_bits(
    project, tmp_path, mlflow_store
):
    """Ctrl-C at a random epoch of trial 0, once trial 1 trains too; the same command again
    goes on with the stopped trials, each from its checkpoint in its own run, and ends with
    the weights of a sweep that was never stopped."""
    grid = ["hydra.sweeper.n_jobs=2", "optimizer=nesterov,adam", "model.hidden=[256,256]",
            "train.batch_size=4", "train.epochs=24", "train.max_shift=0"]  # fmt: skip
    args = [
        sys.executable,
        "-m",
        "pipeline.train",
        "-m",
        *grid,
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    ]
    first = subprocess.Popen(args, cwd=project, env=tool_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    progress = Progress(first, first.stderr)  # the two jobs' bars: "trial 0", "trial 1"
    try:
        progress.wait_for({"trial 0": int(np.random.default_rng(31).integers(2, 9)), "trial 1": 1})
        os.killpg(first.pid, signal.SIGINT)
        stderr = progress.rest()
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert first.returncode == 130 and "Traceback" not in stderr
    assert "goes on from epoch" in stderr and f"hydra.sweep.dir={tmp_path / 'sweep'}" in stderr
    again = run(args, project)
    assert "study sweep goes on, 2 stopped trial(s) first" in again.stderr
    assert "train: trial 2 goes on from trial " in again.stdout  # each from its checkpoint
    assert "train: trial 3 goes on from trial " in again.stdout
    storage = f"sqlite:///{tmp_path / 'sweep' / 'optuna.db'}"
    trials = optuna.load_study(study_name="sweep", storage=storage).trials
    assert [t.state for t in trials] == [TrialState.FAIL] * 2 + [TrialState.COMPLETE] * 2
    runs = mlflow.MlflowClient(mlflow_store).search_runs(
        ["1"], "tags.`pipeline.kind` = 'sweep-job'"
    )
    assert len(runs) == 2 and all(r.info.status == "FINISHED" and "resumed_at" in r.data.tags
                                  for r in runs)  # fmt: skip
    never_stopped = tmp_path / "never-stopped"
    run([*args[:-1], f"hydra.sweep.dir={never_stopped}", "tracking.enabled=false"], project)

    def weights(folder: Path) -> list[bytes]:
        return sorted(path.read_bytes() for path in folder.glob("*/models/model.npz"))

    assert len(weights(never_stopped)) == 2 and weights(tmp_path / "sweep") == weights(
        never_stopped
    )
