"""The team's tracking server for real (pipeline/server.py): a PostgreSQL cluster in a temporary
folder, `mlflow server` with MLflow's basic-auth app on it, both started by the command and
stopped by the PIDs they recorded. Logins are checked against the real server: no credentials
401, a READ user sees runs but is refused writes (403), an EDIT user trains through the pipeline.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from pathlib import Path

import mlflow
import pytest
from mlflow.exceptions import MlflowException

from pipeline import runs as runs_command
from tests.conftest import QUICK, REPO, project_with_data, run_main, tool_env
from tests.server.conftest import client_as

pytestmark = pytest.mark.slow


def test_without_credentials_the_server_answers_401(server, monkeypatch):
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{server.uri}/api/2.0/mlflow/experiments/search?max_results=1")
    assert refused.value.code == 401
    # The runs go to the local PostgreSQL cluster the command created, not to an SQLite file.
    pg_port = server.env["PIPELINE_SERVER_PG_PORT"]
    assert f"runs in postgresql+psycopg2://mlflow:***@127.0.0.1:{pg_port}/mlflow" in server.started
    assert (server.folder / "postgres" / "data" / "PG_VERSION").read_text().strip() == "15"
    assert oct((server.folder / "secrets.env").stat().st_mode)[-3:] == "600"


def test_pipeline_runs_as_an_edit_user_and_a_read_user_is_refused_writes(
    server, tmp_path, monkeypatch
):
    server.add_user("trainer", "EDIT")
    server.add_user("viewer", "READ")
    project = project_with_data(tmp_path / "project")
    env = {**tool_env(), "MLFLOW_TRACKING_USERNAME": "trainer",
           "MLFLOW_TRACKING_PASSWORD": "trainer-password-1"}  # fmt: skip
    env.pop("MLFLOW_TRACKING_URI", None)
    for stage in ("train", "evaluate"):
        done = subprocess.run(
            [sys.executable, "-m", f"pipeline.{stage}", *QUICK, f"tracking.uri={server.uri}"],
            cwd=project, env=env, capture_output=True, text=True,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    admin = client_as(server, "admin", server.secret("MLFLOW_AUTH_ADMIN_PASSWORD"), monkeypatch)
    experiment = admin.get_experiment_by_name("mnist-from-scratch")
    (trained,) = admin.search_runs(  # the training above (another test may add copied runs)
        [experiment.experiment_id], "tags.`pipeline.kind` = 'direct'"
    )
    assert trained.info.status == "FINISHED" and "test/accuracy" in trained.data.metrics
    assert {a.path for a in admin.list_artifacts(trained.info.run_id)} >= {"config.yaml", "figures"}
    (model,) = admin.search_logged_models([experiment.experiment_id])  # the pyfunc, served
    admin.create_registered_model("mnist-mlp")
    version = admin.create_model_version(
        "mnist-mlp", model.artifact_location, trained.info.run_id, model_id=model.model_id
    )
    viewer = client_as(server, "viewer", "viewer-password-1", monkeypatch)
    seen = viewer.search_runs([experiment.experiment_id], "tags.`pipeline.kind` = 'direct'")
    assert [r.info.run_id for r in seen] == [trained.info.run_id]  # READ: sees the run
    refused = []
    for what, call in (
        ("create a run", lambda: viewer.create_run(experiment.experiment_id)),
        ("log a metric", lambda: viewer.log_metric(trained.info.run_id, "x", 1.0)),
        ("tag a run", lambda: viewer.set_tag(trained.info.run_id, "x", "y")),
        ("end a run", lambda: viewer.set_terminated(trained.info.run_id, "KILLED")),
        ("delete a run", lambda: viewer.delete_run(trained.info.run_id)),
        ("move the alias", lambda: viewer.set_registered_model_alias(
            "mnist-mlp", "pipeline", version.version)),
    ):  # fmt: skip
        with pytest.raises(MlflowException, match="403") as error:
            call()
        refused.append((what, str(error.value).splitlines()[0][:80]))
    assert len(refused) == 6
    seen = admin.get_run(trained.info.run_id)  # and the run is as it was
    assert seen.info.status == "FINISHED" and "x" not in seen.data.tags


def test_local_runs_are_copied_whole_into_the_server_once(
    server, tmp_path, monkeypatch, mlflow_template, capsys
):
    shutil.copy(mlflow_template, tmp_path / "local.db")  # migrated already: seconds saved
    local = f"sqlite:///{tmp_path / 'local.db'}"
    source = mlflow.MlflowClient(local)
    experiment = source.create_experiment("mnist-from-scratch")
    parent = source.create_run(experiment, run_name="sweep grid", tags={"pipeline.kind": "sweep"})
    children = []
    for lr in ("0.001", "0.002"):
        child = source.create_run(
            experiment,
            run_name=f"optimizer.lr={lr}",
            tags={"mlflow.parentRunId": parent.info.run_id},
        )
        source.log_param(child.info.run_id, "optimizer.lr", lr)
        for step, value in ((1, 0.81), (2, 0.82), (3, 0.83)):
            source.log_metric(child.info.run_id, "dev/accuracy", value, step=step)
        source.log_text(child.info.run_id, f"lr: {lr}\n", "config.yaml")
        source.set_terminated(child.info.run_id, "FINISHED")
        children.append(child.info.run_id)
    source.set_terminated(parent.info.run_id, "KILLED")
    env = {**server.env, "MLFLOW_TRACKING_URI": local, "MLFLOW_TRACKING_USERNAME": "admin",
           "MLFLOW_TRACKING_PASSWORD": server.secret("MLFLOW_AUTH_ADMIN_PASSWORD")}  # fmt: skip
    args = [sys.executable, "-m", "pipeline.runs", "copy-to", server.uri]
    first = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert "3 run(s) of mnist-from-scratch copied" in first.stdout
    # Nothing twice: the same command's main again, in this process (no second MLflow import).
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.setenv(name, env[name])
    again = run_main(runs_command.main, ["copy-to", server.uri], capsys)
    assert "0 run(s) of mnist-from-scratch copied" in again.stdout
    admin = client_as(server, "admin", server.secret("MLFLOW_AUTH_ADMIN_PASSWORD"), monkeypatch)
    target = admin.get_experiment_by_name("mnist-from-scratch").experiment_id
    copies = {
        run.data.tags["copied_from"]: run
        for run in admin.search_runs([target], "tags.copied_from != ''")
    }
    assert set(copies) == {parent.info.run_id, *children}
    assert copies[parent.info.run_id].info.status == "KILLED"
    for child in children:
        copy = copies[child]
        assert copy.info.status == "FINISHED"
        assert copy.data.tags["mlflow.parentRunId"] == copies[parent.info.run_id].info.run_id
        history = admin.get_metric_history(copy.info.run_id, "dev/accuracy")
        assert sorted((p.step, p.value) for p in history) == [(1, 0.81), (2, 0.82), (3, 0.83)]
        config = admin.download_artifacts(copy.info.run_id, "config.yaml", str(tmp_path))
        assert Path(config).read_text() == f"lr: {copy.data.params['optimizer.lr']}\n"
    # A READ user cannot copy into the server: one line, exit 1.
    viewer_env = {**env, "MLFLOW_TRACKING_USERNAME": "reader",
                  "MLFLOW_TRACKING_PASSWORD": "reader-password-1"}  # fmt: skip
    # The command as a user runs it, a process of its own (the other logins are added in process).
    server.command("add-user", "reader", env={"NEW_USER_PASSWORD": "reader-password-1"})
    source.create_run(experiment, run_name="new")
    refused = subprocess.run(args, cwd=REPO, env=viewer_env, capture_output=True, text=True)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "runs: error: copying to" in refused.stderr and "403" in refused.stderr


def test_runs_logging_one_new_dataset_at_once_each_get_it(server, tmp_path, monkeypatch):
    """Workers of one sweep log the same new dataset at the same moment; the server's database
    refuses all but one insert as a duplicate key, and each loser must still get its input."""
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.plumbing.schema import TrackingConfig
    from pipeline.tracking.runs import Run
    from pipeline.tracking.store import open_store

    client_as(server, "admin", server.secret("MLFLOW_AUTH_ADMIN_PASSWORD"), monkeypatch)
    before = mlflow.get_tracking_uri()
    try:
        experiment_id = open_store(TrackingConfig(uri=server.uri, experiment="dataset-race"))
        # Created by a client, its artifacts still go through the server, not to this disk.
        location = mlflow.MlflowClient().get_experiment(experiment_id).artifact_location
        assert location.startswith("mlflow-artifacts:"), location
        data = tmp_path / "train.npz"
        data.write_bytes(b"the same file for every run")
        runs = [Run.start(experiment_id, name=f"run {n}") for n in range(8)]
        together = threading.Barrier(len(runs))

        def log(run: Run) -> None:
            together.wait()
            run.log_datasets({"train": data}, {"train": "d" * 32})

        with ThreadPoolExecutor(len(runs)) as pool:
            list(pool.map(log, runs))  # re-raises a run's error, if any
        for run in runs:
            inputs = mlflow.MlflowClient().get_run(run.run_id).inputs.dataset_inputs
            assert [(i.dataset.name, i.dataset.digest) for i in inputs] == [("train", "d" * 32)]
    finally:
        mlflow.set_tracking_uri(before)
