"""Hydra multirun sweeps as Optuna studies and MLflow parent and child runs, run for real
(`python -m pipeline.train -m`) in a project copy: grids, one worker or two, TPE."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import mlflow
import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import QUICK, copy_project, project_with_data, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return project_with_data(tmp_path_factory.mktemp("sweeps") / "project")


def sweep(project: Path, sweep_dir: Path, *overrides: str, check: bool = True):
    args = [sys.executable, "-m", "pipeline.train", "-m", *QUICK, *overrides]
    return run([*args, f"hydra.sweep.dir={sweep_dir}"], project, check=check)


def runs_by_kind(uri: str):
    import mlflow

    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("mnist-from-scratch")
    if experiment is None:  # nothing was logged
        return [], []
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("pipeline.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("pipeline.kind") == "sweep-job"]
    return parents, children


def artifact_names(run, uri: str) -> set[str]:
    import mlflow

    listed = mlflow.MlflowClient(uri).list_artifacts(run.info.run_id)
    return {Path(info.path).name for info in listed}


def assert_parent_summarises(parent, children) -> None:
    assert parent.info.status == "FINISHED"
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)
    best = max(children, key=lambda c: c.data.metrics["model/dev_accuracy"])
    assert parent.data.tags["best_run_id"] == best.info.run_id
    assert parent.data.metrics["best/dev_accuracy"] == best.data.metrics["model/dev_accuracy"]
    assert parent.data.metrics["sweep/children"] == len(children)


def weights_md5(sweep_dir: Path) -> set[str]:
    return {hashlib.md5(p.read_bytes()).hexdigest() for p in sweep_dir.glob("*/models/model.npz")}


def test_a_two_worker_sweep_on_a_fresh_store_is_one_parent_its_children_and_the_same_bits(
    project, tmp_path, monkeypatch
):
    # No store exists yet: the sweeper creates it once, before its two workers start.
    uri = f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    grid = ["optimizer=nesterov,adam", "seed=1,2"]
    result = sweep(project, tmp_path / "two", "hydra.sweeper.n_jobs=2", *grid)
    (parent,), children = runs_by_kind(uri)
    assert len(children) == 4 and all(c.info.status == "FINISHED" for c in children)
    assert_parent_summarises(parent, children)
    assert parent.data.metrics["study/complete"] == 4
    # Each grid point once: the two workers asked the one study for their trials.
    points = {(c.data.params["optimizer.name"], c.data.params["seed"]) for c in children}
    assert points == {("sgd", "1"), ("sgd", "2"), ("adam", "1"), ("adam", "2")}
    workers = {c.data.tags["pid"] for c in children}
    assert len(workers) == 2 and parent.data.tags["pid"] not in workers  # forked workers
    # The sweeper pinned the compute settings before it forked, and each worker read them
    # back from its BLAS library (compute=portable_bits: Haswell kernels, 1 thread).
    assert {c.data.tags["compute.blas_threads"] for c in children} == {"1"}
    assert {c.data.tags["compute.blas_kernel"] for c in children} == {"Haswell"}
    assert {c.data.tags["compute.numpy_simd"] for c in children} == {"X86_V3"}
    assert "Traceback" not in result.stderr
    assert parent.data.params["sweep.overrides"].endswith("optimizer=nesterov,adam seed=1,2")
    for child in children:  # each job trained, then scored its model on dev and test
        assert {"dev/accuracy", "test/accuracy", "test/macro_f1"} <= set(child.data.metrics)
    # Job outputs stay in the sweep folder, never in the DVC-tracked paths.
    assert (tmp_path / "two" / "0" / "models" / "model.npz").is_file()
    assert (tmp_path / "two" / "1" / "reports" / "test_metrics.json").is_file()
    # Figures are drawn only when asked (tracking.sweep_figures): a job spends its time learning.
    assert not (tmp_path / "two" / "1" / "reports" / "figures").exists()
    # A job logs its weights, one file; `promote` makes the pyfunc (tests/tracking/).
    assert artifact_names(children[0], uri) == {"config.yaml", "environment", "reports", "weights"}
    assert {c.data.tags["model.logged"] for c in children} == {"weights"}
    # Two parameters searched: the parent has the importances chart beside the other two.
    figures = mlflow.MlflowClient(uri).list_artifacts(parent.info.run_id, "figures")
    assert {Path(f.path).name for f in figures} == {
        "optimization_history.png", "intermediate_values.png", "param_importances.png"
    }  # fmt: skip
    # Scores, test metrics and the weights' hash arrive in one batch at the job's end.
    saved = {
        hashlib.sha256(p.read_bytes()).hexdigest()
        for p in (tmp_path / "two").glob("*/models/model.npz")
    }
    assert {c.data.tags["model.sha256"] for c in children} == saved
    scores = {"best/dev_accuracy", "model/dev_accuracy", "test/f1_digit_9"}
    assert all(scores <= set(c.data.metrics) for c in children)
    assert all(c.data.tags["data.test.md5"] for c in children)  # with the run's start
    assert not (project / "models").exists()
    assert [p.name for p in (project / "reports").iterdir()] == ["mlflow_run.json"]  # untouched
    # The same settings give the same weights, whichever worker (or how many) trained them.
    sweep(project, tmp_path / "one", "tracking.enabled=false", *grid)
    assert len(weights_md5(tmp_path / "two")) == 4
    assert weights_md5(tmp_path / "two") == weights_md5(tmp_path / "one")


def test_a_diverging_trial_fails_alone_and_the_study_goes_on(project, tmp_path, mlflow_store):
    result = sweep(
        project, tmp_path / "sweep", "optimizer=gd", "train.batch_size=null",
        "optimizer.lr=0.1,1e20,0.2",
    )  # fmt: skip
    assert "train: error: training diverged at epoch" in result.stderr
    assert "study sweep ended FINISHED: 2 complete, 0 pruned, 1 failed" in result.stderr
    (parent,), children = runs_by_kind(mlflow_store)
    status = {c.data.params["optimizer.lr"]: c.info.status for c in children}
    assert status == {"0.1": "FINISHED", "1e+20": "FAILED", "0.2": "FINISHED"}
    failed = next(c for c in children if c.info.status == "FAILED")
    assert "diverged" in failed.data.tags["error"]
    assert parent.info.status == "FINISHED" and parent.data.metrics["study/failed"] == 1
    study = optuna.load_study(
        study_name="sweep", storage=f"sqlite:///{tmp_path / 'sweep' / 'optuna.db'}"
    )
    (diverged,) = [t for t in study.trials if t.state == TrialState.FAIL]
    assert diverged.params["optimizer.lr"] == 1e20 and "diverged" in diverged.user_attrs["error"]
    # One parameter searched: no importances chart (it would say 100%), the other two are there.
    figures = mlflow.MlflowClient(mlflow_store).list_artifacts(parent.info.run_id, "figures")
    assert {Path(f.path).name for f in figures} == {
        "optimization_history.png", "intermediate_values.png"
    }  # fmt: skip


def test_optuna_sweeper_runs_trials_as_child_runs(project, tmp_path, mlflow_store):
    result = sweep(
        project, tmp_path / "sweep", "sweep=optuna", "hydra.sweeper.n_trials=2",
        "hydra.sweeper.n_jobs=2",  # both trials at once, in the preset's two workers
        "tracking.sweep_figures=true",  # and each draws and logs the three figures
    )  # fmt: skip
    (parent,), children = runs_by_kind(mlflow_store)
    assert len(children) == 2 and all(c.info.status == "FINISHED" for c in children)
    learning_rates = {float(c.data.params["optimizer.lr"]) for c in children}
    assert len(learning_rates) == 2 and all(1e-4 <= lr <= 3e-3 for lr in learning_rates)
    assert_parent_summarises(parent, children)
    assert parent.info.run_name.startswith("sweep optuna ")  # named by its preset
    sources = {run.data.tags["mlflow.source.name"] for run in [parent, *children]}
    assert sources == {"pipeline/train.py"}  # the UI's Source column, for parent and children
    # Children are named by the overrides they ran with, the values tried among them.
    for child in children:
        assert f"optimizer.lr={child.data.params['optimizer.lr']}" in child.info.run_name
        assert "figures" in artifact_names(child, mlflow_store)
    assert (tmp_path / "sweep" / "1" / "reports" / "figures" / "misclassified.png").is_file()
    # The parent: the study's counts and figures, and a link that opens the runs, not MLflow
    # 3's GenAI overview.
    assert parent.data.metrics["study/complete"] == 2 and parent.data.metrics["study/pruned"] == 0
    figures = mlflow.MlflowClient(mlflow_store).list_artifacts(parent.info.run_id, "figures")
    assert {Path(f.path).name for f in figures} == {
        "optimization_history.png", "intermediate_values.png", "param_importances.png"
    }  # fmt: skip
    experiment = parent.info.experiment_id
    assert f"/#/experiments/{experiment}?workflowType=machine_learning" in result.stdout


def test_a_sweep_job_refuses_to_train_on_the_dev_set_it_is_selected_on(tmp_path):
    from pipeline.plumbing.config import ConfigError, compose_conf, validate
    from pipeline.sweeps.trial import SweepTrial
    from pipeline.train import train_in_project

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    trial = SweepTrial(study.ask(), study, tmp_path / "job", None)
    config = validate(compose_conf([*QUICK, "train.include_dev=true"]))
    with pytest.raises(ConfigError, match=r"trains on the dev set this sweep selects on"):
        train_in_project(config, "", tmp_path / "job", None, trial)
    assert not (tmp_path / "job").exists()  # refused before any work


def test_a_job_rejected_before_training_still_fails_the_parent(project, tmp_path, mlflow_store):
    # An error every trial would hit (here a config the job refuses) ends the study at once.
    result = sweep(project, tmp_path / "sweep", "optimizer.lr=0.001,0", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "train: error: optimizer.lr=0.0 must be > 0" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("sweep: ended FAILED (")
    (parent,), children = runs_by_kind(mlflow_store)
    assert {c.data.params["optimizer.lr"] for c in children} <= {"0.001"}  # no run for lr=0
    assert parent.info.status == "FAILED"
    assert "optimizer.lr=0.0 must be > 0" in parent.data.tags["error"]
    study = optuna.load_study(
        study_name="sweep", storage=f"sqlite:///{tmp_path / 'sweep' / 'optuna.db'}"
    )
    assert study.user_attrs["ended"].startswith("FAILED")
    assert TrialState.RUNNING not in {t.state for t in study.trials}


def test_a_sweep_without_data_is_one_line_and_starts_no_run(tmp_path, mlflow_store):
    bare = copy_project(tmp_path / "bare")  # the code, no data: `dvc repro` never ran here
    result = sweep(bare, tmp_path / "sweep", "optimizer=nesterov,adam", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("sweep: error: ") and "data/split/train.npz" in last
    assert runs_by_kind(mlflow_store) == ([], [])  # no parent left RUNNING, no child
    workers = sweep(bare, tmp_path / "none", "hydra.sweeper.n_jobs=0", check=False)
    assert "sweep: error: hydra.sweeper.n_jobs=0 must be ≥ 1" in workers.stderr
    # Hydra's own sweeper would run jobs that write into the project: refused, in one line.
    basic = sweep(bare, tmp_path / "basic", "hydra/sweeper=basic", "seed=1,2", check=False)
    assert basic.returncode == 1 and "Traceback" not in basic.stderr
    assert "train: error: a multirun job without a trial would write" in basic.stderr
    assert not (bare / "models").exists()
