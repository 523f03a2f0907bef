"""The team's tracking server for real (pipeline/server.py): a PostgreSQL cluster in a temporary
folder, `mlflow server` with MLflow's basic-auth app on it, both started by the command and
stopped by the PIDs they recorded. Logins are checked against the real server: no credentials
401, a READ user sees runs but is refused writes (403), an EDIT user trains through the pipeline.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import mlflow
import psutil
import pytest
from mlflow.exceptions import MlflowException

from tests.conftest import QUICK, REPO, free_port, project_with_data, tool_env

pytestmark = pytest.mark.slow


class Server:
    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.env = {
            **tool_env(),
            "PIPELINE_SERVER_DIR": str(folder),
            "PIPELINE_SERVER_PORT": str(self.port),
            "PIPELINE_SERVER_PG_PORT": str(free_port()),
        }

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self, *args: str, env: dict | None = None, check: bool = True):
        done = subprocess.run(
            [sys.executable, "-m", "pipeline.server", *args], cwd=REPO,
            env={**self.env, **(env or {})}, capture_output=True, text=True,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise AssertionError(f"server {args} exited {done.returncode}\n{done.stderr}")
        return done

    def secret(self, name: str) -> str:
        lines = (self.folder / "secrets.env").read_text().splitlines()
        return dict(line.split("=", 1) for line in lines)[name]

    def pids(self) -> list[int]:
        found = []
        for path in (self.folder / "mlflow.pid", self.folder / "postgres/data/postmaster.pid"):
            if path.is_file():
                found.append(int(path.read_text().split()[0]))
        return found


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture(scope="module")
def server():
    # Not under pytest's own temp folder (mode 700): PostgreSQL runs as its own user there.
    folder = Path(tempfile.mkdtemp(prefix="pipeline-server-"))
    folder.chmod(0o755)
    started = Server(folder)
    started.started = started.command("start").stdout
    pids = started.pids()
    assert len(pids) == 2 and all(alive(pid) for pid in pids)
    yield started
    started.command("stop")
    assert not any(alive(pid) for pid in pids)  # both stopped, by the PIDs they recorded
    shutil.rmtree(folder, ignore_errors=True)


def client_as(server: Server, user: str, password: str, monkeypatch) -> mlflow.MlflowClient:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    return mlflow.MlflowClient(server.uri)


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
    for name, permission in (("trainer", "EDIT"), ("viewer", "READ")):
        server.command(
            "add-user", name, "--permission", permission,
            env={"NEW_USER_PASSWORD": f"{name}-password-1"},
        )  # fmt: skip
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
    (trained,) = admin.search_runs([experiment.experiment_id])
    assert trained.info.status == "FINISHED" and "test/accuracy" in trained.data.metrics
    assert {a.path for a in admin.list_artifacts(trained.info.run_id)} >= {"config.yaml", "figures"}
    (model,) = admin.search_logged_models([experiment.experiment_id])  # the pyfunc, served
    admin.create_registered_model("mnist-mlp")
    version = admin.create_model_version(
        "mnist-mlp", model.artifact_location, trained.info.run_id, model_id=model.model_id
    )
    viewer = client_as(server, "viewer", "viewer-password-1", monkeypatch)
    assert [r.info.run_id for r in viewer.search_runs([experiment.experiment_id])] == [
        trained.info.run_id
    ]  # READ: sees the run
    refused = []
    for what, call in (
        ("create a run", lambda: viewer.create_run(experiment.experiment_id)),
        ("log a metric", lambda: viewer.log_metric(trained.info.run_id, "x", 1.0)),
        ("move the alias", lambda: viewer.set_registered_model_alias(
            "mnist-mlp", "pipeline", version.version)),
    ):  # fmt: skip
        with pytest.raises(MlflowException, match="403") as error:
            call()
        refused.append((what, str(error.value).splitlines()[0][:80]))
    assert len(refused) == 3
