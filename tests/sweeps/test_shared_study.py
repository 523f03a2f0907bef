"""A shared Optuna study (sweep=optuna_shared, pipeline/sweeps/study.py) on one machine, with
the study in an SQLite file: the routes that need no server. The study across real workers and
PostgreSQL is tested in tests/server/test_shared_sweeps.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import QUICK, project_with_data, run, tool_env
from tests.sweeps.test_sweeps import runs_by_kind

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return project_with_data(tmp_path_factory.mktemp("shared") / "project")


def worker(project: Path, storage: str | None, *overrides: str, check: bool = True):
    args = [sys.executable, "-m", "pipeline.train", "-m", "sweep=optuna_shared", *QUICK,
            *([f"hydra.sweeper.storage={storage}"] if storage else []), *overrides]  # fmt: skip
    return run(args, project, check=check, unset=("PIPELINE_OPTUNA_STORAGE",))


def test_without_a_database_the_sweep_says_what_to_set(project, mlflow_store):
    done = worker(project, None, check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "a shared study needs its database: set PIPELINE_OPTUNA_STORAGE" in done.stderr
    parents, children = runs_by_kind(mlflow_store)
    assert parents == [] and children == []  # nothing started


def test_a_failing_job_ends_the_study_and_its_parent_failed(project, tmp_path, mlflow_store):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    # Every trial's job refuses its config (as a diverging learning rate would fail it).
    done = worker(
        project, storage, "hydra.sweeper.study_name=diverges", "train.epochs=0", check=False
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "train.epochs=0 must be ≥ 1" in done.stderr  # the job's own line
    assert "sweep: ended FAILED (trial 0 failed: train.epochs=0 must be ≥ 1" in done.stderr
    (trial,) = optuna.load_study(study_name="diverges", storage=storage).trials
    assert trial.state == TrialState.FAIL and "error" in trial.user_attrs
    (parent,), children = runs_by_kind(mlflow_store)
    assert children == []  # the job refused its config before it started a run
    assert parent.info.status == "FAILED"
    assert "train.epochs=0 must be ≥ 1" in parent.data.tags["error"]


def test_two_workers_run_each_point_of_a_grid_once_and_a_late_worker_finds_it_ended(
    project, tmp_path, mlflow_store
):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    args = [sys.executable, "-m", "pipeline.train", "-m", "sweep=grid_shared", *QUICK,
            f"hydra.sweeper.storage={storage}"]  # fmt: skip
    workers = [
        subprocess.Popen(
            args,
            cwd=project,
            env=tool_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    for worker in workers:
        output, _ = worker.communicate(timeout=600)
        assert worker.returncode == 0, output
    study = optuna.load_study(study_name="mnist-grid-shared", storage=storage)
    points = sorted((t.params["optimizer"], t.params["train.dropout"]) for t in study.trials)
    assert points == [("adam", 0.1), ("adam", 0.3), ("nesterov", 0.1), ("nesterov", 0.3)]
    assert all(trial.state == TrialState.COMPLETE for trial in study.trials)
    (parent,), children = runs_by_kind(mlflow_store)
    assert parent.info.status == "FINISHED" and len(children) == 4
    assert sorted(c.data.params["train.dropout"] for c in children) == ["0.1", "0.1", "0.3", "0.3"]
    assert sorted(c.data.tags["optuna.trial"] for c in children) == ["0", "1", "2", "3"]
    jobs = project / "multirun" / "mnist-grid-shared"
    assert sorted(p.parent.parent.name for p in jobs.glob("trial-*/models/model.npz")) == [
        f"trial-{n}" for n in range(4)
    ]  # each trial's job folder, by its number in the study
    # A worker started after the study ended runs nothing and logs nothing.
    late = run(args, project)
    assert "study mnist-grid-shared has ended FINISHED" in late.stderr
    assert len(optuna.load_study(study_name="mnist-grid-shared", storage=storage).trials) == 4
    (same_parent,), same_children = runs_by_kind(mlflow_store)
    assert same_parent.info.run_id == parent.info.run_id and len(same_children) == 4
