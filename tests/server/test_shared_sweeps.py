"""Sweeps over many machines (pipeline/sweeps/study.py), for real: worker processes, each in its
own project copy as if on its own machine, join one Optuna study in the server's PostgreSQL and
log to the server as a user with EDIT. The study runs exactly the trials asked, under one parent
run, and a trial logged to the server reproduces identically; a worker killed mid-trial loses
that trial, which ends FAILED and runs again once a worker is started again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import QUICK, Progress, copy_reproduced, project_with_data, tool_env
from tests.server.conftest import Server, client_as

pytestmark = pytest.mark.slow

EXPERIMENT = "shared-sweeps"  # not the login test's: that one counts its experiment's models


@pytest.fixture(scope="module")
def sweeper_env(server: Server) -> dict[str, str]:
    user, password = server.add_user("sweeper", "EDIT", EXPERIMENT)
    env = {**tool_env(), "MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": password,
           "PIPELINE_OPTUNA_STORAGE": server.command("optuna-url").stdout.strip()}  # fmt: skip
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def start_worker(
    project: Path, server: Server, env: dict, study: str, *overrides: str, grace: int = 4
):
    """A sweeper and its worker in `project`, joining `study`. A trial silent for `grace` s is
    lost: 4 while two workers train (a loaded machine may hold a live one's heartbeat back for
    seconds), 2 where the one worker killed is the only one that could fall silent."""
    args = [
        sys.executable, "-m", "pipeline.train", "-m", "sweep=optuna_shared", *QUICK,
        f"tracking.uri={server.uri}", f"tracking.experiment={EXPERIMENT}",
        f"hydra.sweeper.study_name={study}", "hydra.sweeper.heartbeat_interval=1",
        f"hydra.sweeper.grace_period={grace}", *overrides,
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


def test_two_workers_run_one_study_of_exactly_the_trials_asked_and_its_best_reproduces(
    server, sweeper_env, reproduced, tmp_path, monkeypatch
):
    """Each machine a copy of one committed DVC project (so a trial can be made again); then a
    trial logged to the server reproduces identically from the first machine."""
    machines = [copy_reproduced(reproduced, tmp_path / f"machine-{n}") for n in (1, 2)]
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
    env = {**sweeper_env, "MLFLOW_TRACKING_URI": server.uri}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.reproduce", best.info.run_id],
        cwd=machines[0], env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "reproduce: identical: all" in done.stdout
    admin = client_as(server, "admin", server.secret("MLFLOW_AUTH_ADMIN_PASSWORD"), monkeypatch)
    (rerun,) = admin.search_runs(
        [best.info.experiment_id], f"tags.reproduces = '{best.info.run_id}'"
    )
    assert rerun.info.status == "FINISHED"
    assert admin.get_run(best.info.run_id).data.tags["reproduce.verdict"] == "identical"
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


@pytest.mark.parametrize("where", ["this machine", "another machine"])
def test_a_killed_workers_trial_runs_again_from_its_checkpoint_on_its_own_machine(
    server, sweeper_env, tmp_path, monkeypatch, where
):
    """Trial 1's worker is SIGKILLed at a random epoch; it ends FAILED and is queued again
    (trial 2). Started again on the same machine, the retry goes on from trial 1's checkpoint
    in trial 1's run and ends with the bits of an uninterrupted training; on another machine
    it trains from epoch 1 in a run of its own that says why."""
    project = project_with_data(tmp_path / "machine")
    study = f"resumed-{where.split()[0]}"
    # Epochs of tens of ms, to stop one in the middle.
    settings = ("hydra.sweeper.n_trials=2", "train.epochs=24", "model.hidden=[256,256]",
                "train.batch_size=4")  # fmt: skip
    first = start_worker(project, server, sweeper_env, study, *settings, grace=2)
    checkpoint = project / "multirun" / study / "checkpoints" / "trial-1.npz"
    try:
        epoch = int(np.random.default_rng(33).integers(2, 9))
        Progress(first, first.stdout).wait_for({"trial 1": epoch})
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the worker and its job: nothing can tidy up
    first.wait()
    machine = project if where == "this machine" else project_with_data(tmp_path / "other")
    again = start_worker(machine, server, sweeper_env, study, *settings, grace=2)
    output = finish(again)
    assert again.returncode == 0, output
    assert "Traceback" not in output and "trial 1 stopped with its worker; queued again" in output
    optuna_study = optuna.load_study(
        study_name=study, storage=sweeper_env["PIPELINE_OPTUNA_STORAGE"]
    )
    states = {trial.number: trial.state for trial in optuna_study.trials}
    assert states == {0: TrialState.COMPLETE, 1: TrialState.FAIL, 2: TrialState.COMPLETE}
    lost = optuna_study.trials[1]
    assert optuna_study.trials[2].params == lost.params
    (parent,), runs = study_runs(server, study, monkeypatch)
    assert parent.info.status == "FINISHED" and parent.data.metrics["sweep/children"] == 2
    (retry,) = [run for run in runs if run.data.tags.get("optuna.retried_trial") == "1"]
    assert retry.info.status == "FINISHED" and retry.data.tags["optuna.trial"] == "2"
    if where == "this machine":
        resumed = int(retry.data.tags["resumed_at"])
        assert 2 <= resumed <= epoch + 2  # after the last checkpoint written; epoch 1's always is
        assert f"trial 2 goes on from trial 1's epoch {resumed}" in output
        assert len(runs) == 2  # trial 1's run went on as trial 2's
        params = [f"{name}={value!r}" for name, value in lost.params.items()]
        reference = subprocess.run(
            [sys.executable, "-m", "pipeline.train", *QUICK, *settings[1:], *params,
             "tracking.enabled=false"], cwd=project, env=tool_env(), capture_output=True,
        )  # fmt: skip
        assert reference.returncode == 0, reference.stderr[-2000:]
        trained = project / "multirun" / study / "trial-2" / "models" / "model.npz"
        assert trained.read_bytes() == (project / "models" / "model.npz").read_bytes()
        assert not checkpoint.exists()
    else:
        assert "resumed_at" not in retry.data.tags
        assert retry.data.tags["restarted"].startswith("no checkpoint of trial 1 on ")
        status = {int(run.data.tags["optuna.trial"]): run.info.status for run in runs}
        assert status == {0: "FINISHED", 1: "FAILED", 2: "FINISHED"}
