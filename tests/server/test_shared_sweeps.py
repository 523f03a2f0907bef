"""Sweeps over many machines (pipeline/sweeps/shared.py), for real: worker processes, each in its
own project copy as if on its own machine, join one Optuna study in the server's PostgreSQL and
log to the server as a user with EDIT. The study runs exactly the trials asked, under one parent
run; a worker killed mid-trial loses that trial, which ends FAILED and runs again once a worker
is started again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import QUICK, copy_reproduced, project_with_data, tool_env
from tests.server.conftest import Server, client_as

pytestmark = pytest.mark.slow

EXPERIMENT = "shared-sweeps"  # not the login test's: that one counts its experiment's models
LOGIN = ("sweeper", "sweeper-password-1")


@pytest.fixture(scope="module")
def sweeper_env(server: Server) -> dict[str, str]:
    user, password = LOGIN
    server.command(
        "add-user", user, "--permission", "EDIT", "--experiment", EXPERIMENT,
        env={"NEW_USER_PASSWORD": password},
    )  # fmt: skip
    env = {**tool_env(), "MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": password,
           "PIPELINE_OPTUNA_STORAGE": server.command("optuna-url").stdout.strip()}  # fmt: skip
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def start_worker(project: Path, server: Server, env: dict, study: str, *overrides: str):
    args = [
        sys.executable, "-m", "pipeline.train", "-m", "sweep=optuna_shared", *QUICK,
        f"tracking.uri={server.uri}", f"tracking.experiment={EXPERIMENT}",
        f"hydra.sweeper.study_name={study}", "hydra.sweeper.heartbeat_interval=1",
        "hydra.sweeper.grace_period=4", *overrides,
    ]  # fmt: skip
    return subprocess.Popen(
        args, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip


def finish(worker: subprocess.Popen) -> str:
    output, _ = worker.communicate(timeout=900)
    return output


def study_runs(server: Server, study: str, monkeypatch):
    """The study's parent runs and its trials' runs, as the admin sees them in the server."""
    admin = client_as(server, "admin", server.secret("MLFLOW_AUTH_ADMIN_PASSWORD"), monkeypatch)
    experiment = admin.get_experiment_by_name(EXPERIMENT).experiment_id
    runs = admin.search_runs([experiment], f"tags.`optuna.study` = '{study}'", max_results=100)
    parents = [run for run in runs if run.data.tags["pipeline.kind"] == "sweep"]
    trials = [run for run in runs if run.data.tags["pipeline.kind"] == "sweep-job"]
    return parents, trials


def test_two_workers_run_one_study_of_exactly_the_trials_asked(
    server, sweeper_env, tmp_path, monkeypatch
):
    machines = [project_with_data(tmp_path / f"machine-{n}") for n in (1, 2)]
    workers = [
        start_worker(project, server, sweeper_env, "two-workers", "hydra.sweeper.n_trials=4")
        for project in machines
    ]
    for worker, output in [(worker, finish(worker)) for worker in workers]:
        assert worker.returncode == 0, output
    study = optuna.load_study(
        study_name="two-workers", storage=sweeper_env["PIPELINE_OPTUNA_STORAGE"]
    )
    assert sorted(trial.number for trial in study.trials) == [0, 1, 2, 3]
    assert all(trial.state == TrialState.COMPLETE for trial in study.trials)
    assert len({tuple(sorted(trial.params.items())) for trial in study.trials}) == 4  # no repeat
    (parent,), trials = study_runs(server, "two-workers", monkeypatch)
    assert parent.info.status == "FINISHED" and parent.data.metrics["sweep/children"] == 4
    assert study.user_attrs["mlflow_parent_run_id"] == parent.info.run_id
    assert sorted(int(run.data.tags["optuna.trial"]) for run in trials) == [0, 1, 2, 3]
    assert all(run.info.status == "FINISHED" for run in trials)
    assert all(run.data.tags["mlflow.parentRunId"] == parent.info.run_id for run in trials)
    assert len({run.data.tags["optuna.worker"] for run in trials}) == 2  # both did a share
    for run in trials:  # each run is its trial: same parameters, and its value is the objective
        trial = study.trials[int(run.data.tags["optuna.trial"])]
        assert float(run.data.params["optimizer.lr"]) == trial.params["optimizer.lr"]
        assert run.data.metrics["model/dev_accuracy"] == trial.value
    best = max(trials, key=lambda run: run.data.metrics["model/dev_accuracy"])
    assert parent.data.tags["best_run_id"] == best.info.run_id
    # A worker that would run another search in the same study is refused, in one line.
    other = start_worker(
        machines[0], server, sweeper_env, "two-workers", "hydra.sweeper.n_trials=5"
    )
    output = finish(other)
    assert other.returncode == 1 and "Traceback" not in output
    assert (
        "study two-workers was started with another search (n_trials 4 in the study, 5 here)"
        in output
    )
    assert len(optuna.load_study(study_name="two-workers", storage=study._storage).trials) == 4


def test_a_killed_workers_trial_ends_failed_and_runs_again_when_a_worker_starts(
    server, sweeper_env, tmp_path, monkeypatch
):
    project = project_with_data(tmp_path / "machine")
    settings = ("hydra.sweeper.n_trials=2", "train.epochs=40")  # epochs: time to kill it
    first = start_worker(project, server, sweeper_env, "resumed", *settings)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # until trial 1's run is under way
        _, trials = study_runs(server, "resumed", monkeypatch)
        if any(run.data.tags["optuna.trial"] == "1" for run in trials):
            break
        assert first.poll() is None, first.communicate()[0]
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)  # the worker and its job: nothing can tidy up
    first.wait()
    again = start_worker(project, server, sweeper_env, "resumed", *settings)
    output = finish(again)
    assert again.returncode == 0, output
    assert "Traceback" not in output and "trial 1 was lost with its worker; queued again" in output
    study = optuna.load_study(study_name="resumed", storage=sweeper_env["PIPELINE_OPTUNA_STORAGE"])
    states = {trial.number: trial.state for trial in study.trials}
    assert states[1] == TrialState.FAIL
    assert list(states.values()).count(TrialState.COMPLETE) == 2 and len(states) == 3
    (retry,) = [trial for trial in study.trials if trial.system_attrs.get("failed_trial") == 1]
    assert retry.state == TrialState.COMPLETE and retry.params == study.trials[1].params
    (parent,), trials = study_runs(server, "resumed", monkeypatch)
    assert parent.info.status == "FINISHED" and parent.data.metrics["sweep/children"] == 2
    status = {int(run.data.tags["optuna.trial"]): run.info.status for run in trials}
    assert status == {n: "FAILED" if n == 1 else "FINISHED" for n in states}


def test_a_trial_logged_to_the_server_reproduces_identically(
    server, sweeper_env, reproduced, tmp_path, monkeypatch
):
    project = copy_reproduced(reproduced, tmp_path)  # a committed DVC project: reproducible
    worker = start_worker(project, server, sweeper_env, "reproduced", "hydra.sweeper.n_trials=1")
    output = finish(worker)
    assert worker.returncode == 0, output
    (_parent,), (trial,) = study_runs(server, "reproduced", monkeypatch)
    env = {**sweeper_env, "MLFLOW_TRACKING_URI": server.uri}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.reproduce", trial.info.run_id],
        cwd=project, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "reproduce: identical: all" in done.stdout
    admin = client_as(server, "admin", server.secret("MLFLOW_AUTH_ADMIN_PASSWORD"), monkeypatch)
    (rerun,) = admin.search_runs(
        [trial.info.experiment_id], f"tags.reproduces = '{trial.info.run_id}'"
    )
    assert rerun.info.status == "FINISHED"
    assert admin.get_run(trial.info.run_id).data.tags["reproduce.verdict"] == "identical"
