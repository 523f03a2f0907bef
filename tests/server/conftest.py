"""The team's server for the tests in this folder: a PostgreSQL cluster in a temporary folder
and `mlflow server` with MLflow's basic-auth app on it, started by `python -m pipeline.server
start` and stopped by the PIDs it recorded, once for the whole session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import pytest

from pipeline import server as server_command
from tests.conftest import REPO, environment_kept, free_port, session_folder, tool_env

if TYPE_CHECKING:  # `make test-fast` loads this file and runs no server test: no MLflow import
    import mlflow


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

    def add_user(self, name: str, permission: str, experiment: str = "mnist-from-scratch"):
        """`python -m pipeline.server add-user`'s main in this process, without a second
        interpreter importing MLflow (seconds); the admin login it takes from the server's
        secrets and the tracking URI it sets are put back after. (test_server.py runs the
        command itself as a process once.)"""
        with environment_kept():
            os.environ.update({key: value for key, value in self.env.items()
                               if key.startswith("PIPELINE_SERVER_")})  # fmt: skip
            os.environ["NEW_USER_PASSWORD"] = f"{name}-password-1"
            code = server_command.main(
                ["add-user", name, "--permission", permission, "--experiment", experiment]
            )
        assert code == 0, f"add-user {name} returned {code}"
        return name, f"{name}-password-1"

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


def started_once(tmp_path_factory) -> None:
    """Fail if another xdist worker of this session started a server already: the tests of
    this folder are one xdist group (tests/conftest.py), so one worker runs them all."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    try:
        (session_folder(tmp_path_factory) / "server-started").open("x").close()
        return
    except FileExistsError:
        pass
    pytest.fail(
        "a second xdist worker is starting the server: `--dist loadgroup` did not group "
        "the server's tests (see XDIST_GROUPS in tests/conftest.py)"
    )


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    started_once(tmp_path_factory)
    # Not under pytest's own temp folder (mode 700): PostgreSQL runs as its own user there.
    folder = Path(tempfile.mkdtemp(prefix="pipeline-server-"))
    folder.chmod(0o755)
    started = Server(folder)
    started.started = started.command("start").stdout
    pids = started.pids()
    assert len(pids) == 2 and all(alive(pid) for pid in pids)
    yield started
    started.command("stop")
    deadline = time.monotonic() + 10  # a loaded machine's kernel may take a moment to end them
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in pids)  # both stopped, by the PIDs they recorded
    shutil.rmtree(folder, ignore_errors=True)


def client_as(server: Server, user: str, password: str, monkeypatch) -> mlflow.MlflowClient:
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    return mlflow.MlflowClient(server.uri)
