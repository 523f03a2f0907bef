"""The logged model served for real (`mlflow models serve`): good rows are scored, bad JSON is
answered HTTP 400 naming the row and the fix, never 200 with a made-up digit."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from tests.conftest import environment_kept, free_port, tool_env, wait_for_http
from tests.tracking.test_registry import logged_run

pytestmark = pytest.mark.slow  # one xdist worker runs it: XDIST_GROUPS in tests/conftest.py


def post(port: int, payload, content_type: str = "application/json") -> tuple[int, dict]:
    """POST to the scoring server: `payload` as JSON, or as is if it is text (CSV)."""
    body = payload if isinstance(payload, str) else json.dumps(payload)
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations", data=body.encode(),
        headers={"Content-Type": content_type},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def served(mlflow_template, tmp_path_factory):
    """One scoring server for this module's tests, which only send it requests: a model logged
    to a store of the module's own, downloaded and served as a user would."""
    folder = tmp_path_factory.mktemp("served")
    shutil.copy(mlflow_template, folder / "mlflow.db")
    with environment_kept():
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder / 'mlflow.db'}"
        run, network = logged_run(folder, register=None)
        local = mlflow.artifacts.download_artifacts(f"runs:/{run.run_id}/model", dst_path=folder)
    port = free_port()
    server = subprocess.Popen(
        ["mlflow", "models", "serve", "-m", str(Path(local)), "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port)],
        env=tool_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,  # its workers share its process group, stopped with it below
    )  # fmt: skip
    try:
        wait_for_http(f"http://127.0.0.1:{port}/ping", "mlflow models serve", timeout=60)
        yield port, network
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_bad_pixels_are_refused_with_400_and_good_rows_scored(served):
    port, network = served
    rows = np.eye(784, dtype=np.float32)[:2]
    status, answer = post(port, {"inputs": rows.tolist()})
    assert status == 200
    assert [p["digit"] for p in answer["predictions"]] == network.predict(rows).tolist()
    for value, said in ((None, "a missing, NaN or infinite pixel"), (255, "outside [0, 1]")):
        bad = rows.tolist()
        bad[1][5] = value
        status, answer = post(port, {"inputs": bad})
        assert status == 400, answer
        assert answer["error_code"] == "INVALID_PARAMETER_VALUE"
        assert "row 1 (of 2) has" in answer["message"] and said in answer["message"]


def test_csv_with_a_header_is_scored_and_without_one_refused(served):
    port, network = served
    rows = np.eye(784, dtype=np.float32)[:3]
    status, answer = post(port, pd.DataFrame(rows).to_csv(index=False), "text/csv")
    assert status == 200, answer
    assert [p["digit"] for p in answer["predictions"]] == network.predict(rows).tolist()
    # Without the header line the first image would be read as column names and lost.
    status, answer = post(port, pd.DataFrame(rows).to_csv(index=False, header=False), "text/csv")
    assert status == 400, answer
    assert "the first CSV line holds pixel values" in answer["message"]
    assert "header line" in answer["message"]
    bad = rows.copy()
    bad[2, 7] = 255
    status, answer = post(port, pd.DataFrame(bad).to_csv(index=False), "text/csv")
    assert status == 400 and "row 2 (of 3) has a pixel outside [0, 1]" in answer["message"]
