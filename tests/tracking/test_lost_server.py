"""A real `mlflow server` that goes away while a training logs to it: the training finishes,
the previous outputs stay unless the run could be completed, nothing is lost, no run stays
RUNNING for good, and every message is one line."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest

from tests.conftest import QUICK, free_port, project_with_data, run, tool_env, wait_for_http

pytestmark = pytest.mark.slow

# Epochs of 50-200 ms (tiny batches of a wide network), a few seconds in all: time to see an
# epoch in the store, cut the server off and see the training warn, with few curve points.
EPOCHS = 50
WIDE = ["model.hidden=[256,256]", "train.batch_size=4", "train.max_shift=0"]
OUTPUTS = ["models/model.npz", "reports/train_metrics.json", "reports/train_history.csv"]


class Server:
    """`mlflow server` on 127.0.0.1, its store and artifacts in `folder`; stopped by PID."""

    def __init__(self, folder: Path, port: int):
        self.folder, self.port, self.process = folder, port, None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["mlflow", "server", "--backend-store-uri", f"sqlite:///{self.folder / 'mlflow.db'}",
             "--artifacts-destination", str(self.folder / "artifacts"),
             "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
            # Without MLflow 3's GenAI job runner: four processes fewer to start each time.
            env={**tool_env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,  # its workers share its process group, stopped with it
        )  # fmt: skip
        wait_for_http(f"{self.uri}/health", "mlflow server", timeout=90)

    def kill(self) -> None:
        """Gone at once, as a crashed server or a lost network would be."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture(scope="module")
def module_server(tmp_path_factory, mlflow_template):
    started = Server(tmp_path_factory.mktemp("server"), free_port())
    # A migrated store: the server starts without seconds of schema migrations.
    shutil.copy(mlflow_template, started.folder / "mlflow.db")
    started.start()
    yield started
    started.kill()


@pytest.fixture
def server(module_server):
    """The module's server (one start-up for both tests), started again if a test left it
    killed; each test finds its own run by its training's PID."""
    if module_server.process.poll() is not None:
        module_server.start()
    return module_server


@pytest.fixture
def project(tmp_path) -> Path:
    """A project whose train outputs exist already, from a training with tracking off."""
    project = project_with_data(tmp_path / "project")
    run([sys.executable, "-m", "pipeline.train", *QUICK, "tracking.enabled=false"], project)
    return project


class Gate:
    """A TCP relay on a port of its own in front of a server. Shut, it refuses connections and
    cuts the open ones, as a dead server or a lost network does; opened again, the same port
    reaches the same server, which never stopped (no restart: seconds of start-up saved)."""

    def __init__(self, target_port: int):
        self.port, self.target_port = free_port(), target_port
        self.listener: socket.socket | None = None
        self.connections: list[socket.socket] = []
        self.lock = threading.Lock()

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def open(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.listener = listener
        threading.Thread(target=self.accept, args=(listener,), daemon=True).start()

    def accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:  # shut (or the server is gone: the client sees its connection cut)
                return
            with self.lock:
                self.connections += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=relay, args=(source, sink), daemon=True).start()

    def shut(self) -> None:
        if self.listener is None:
            return
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() waiting on it
        self.listener.close()
        self.listener = None
        with self.lock:
            for connection in self.connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
                connection.close()
            self.connections = []


def relay(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def snapshot(project: Path) -> dict[str, bytes]:
    return {name: (project / name).read_bytes() for name in OUTPUTS}


def train_against(project: Path, uri: str, **env: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "pipeline.train", *WIDE, f"train.epochs={EPOCHS}",
            f"tracking.uri={uri}"]  # fmt: skip
    return subprocess.Popen(
        args, cwd=project, env={**tool_env(), **env}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_for_epochs(server: Server, training: subprocess.Popen) -> str:
    """The id of the training's run, once it has logged an epoch."""
    client = mlflow.MlflowClient(server.uri)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert training.poll() is None, training.communicate()
        experiment = client.get_experiment_by_name("mnist-from-scratch")
        mine = f"tags.pid = '{training.pid}'"
        runs = client.search_runs([experiment.experiment_id], mine) if experiment else []
        if runs and "train/loss" in runs[0].data.metrics:
            return runs[0].info.run_id
        time.sleep(0.3)
    raise AssertionError("the training logged no epoch")


def one_line_errors(stderr: str) -> list[str]:
    assert "Traceback" not in stderr
    return [line for line in stderr.replace("\r", "\n").splitlines() if "error" in line]


def test_a_server_lost_for_good_keeps_the_model_aside_and_the_outputs(project, server):
    before = snapshot(project)
    # The product's two retries a request, without its seconds of backoff between them
    # (test_store holds the bounds themselves to giving up within a minute).
    training = train_against(project, server.uri, MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="0")
    run_id = wait_for_epochs(server, training)
    server.kill()
    started = time.monotonic()
    _, stderr = training.communicate(timeout=300)
    assert training.returncode == 1
    assert time.monotonic() - started < 120  # bounded retries, not minutes of them
    assert "train: warning: the MLflow store" in stderr  # while training: a warning
    (error,) = one_line_errors(stderr)
    kept = project / "models" / "unpublished" / run_id
    assert error.startswith("train: error: the MLflow store")
    assert f"kept in models/unpublished/{run_id}/" in error
    # Nothing lost: the previous outputs as they were, the new model whole beside them.
    assert snapshot(project) == before
    with np.load(kept / "model.npz") as weights:
        assert len(weights.files) > 0
    assert (kept / "train_history.csv").read_text().count("\n") == EPOCHS + 1
    # The run could not be ended while the server was gone; the next training on this host
    # ends it KILLED, and runs normally.
    server.start()
    assert mlflow.MlflowClient(server.uri).get_run(run_id).info.status == "RUNNING"
    rerun = run(
        [sys.executable, "-m", "pipeline.train", *QUICK, f"tracking.uri={server.uri}"], project
    )
    assert f"marked KILLED, its process having ended: {run_id}" in rerun.stderr
    assert mlflow.MlflowClient(server.uri).get_run(run_id).info.status == "KILLED"
    # Published: the outputs are the new run's (the same bits as before: the same config).
    weights = hashlib.sha256((project / "models" / "model.npz").read_bytes()).hexdigest()
    published = mlflow.MlflowClient(server.uri).search_runs(
        ["1"], f"tags.`model.sha256` = '{weights}' and attributes.status = 'FINISHED'"
    )
    assert len(published) == 1 and published[0].info.run_id != run_id


def test_a_server_back_before_the_end_gets_the_whole_run(project, server):
    """The way to the server is cut while it trains (refused, as from a dead server; here a
    gate in front of it) and is back before the end: every epoch's point reaches the run."""
    gate = Gate(server.port)
    gate.open()
    try:
        # No retries within a request: the first epoch refused warns, in milliseconds.
        training = train_against(project, gate.uri, MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")
        run_id = wait_for_epochs(server, training)
        gate.shut()
        warned = ""
        while "train: warning: the MLflow store" not in warned:
            line = training.stderr.readline()
            assert line, "the training ended without warning"
            warned += line
        gate.open()
        stdout, stderr = training.communicate(timeout=300)
    finally:
        gate.shut()
    assert training.returncode == 0, stderr
    assert "train: the MLflow store answers again; " in stdout  # the epochs held back, sent
    finished = mlflow.MlflowClient(server.uri).get_run(run_id)
    assert finished.info.status == "FINISHED"
    # Every epoch's curve point is in the run, those logged while it was gone included.
    history = mlflow.MlflowClient(server.uri).get_metric_history(run_id, "train/loss")
    assert sorted(point.step for point in history) == list(range(1, EPOCHS + 1))
    weights = hashlib.sha256((project / "models" / "model.npz").read_bytes()).hexdigest()
    assert finished.data.tags["model.sha256"] == weights  # how evaluate finds this run
