"""Every kind of MODEL the explorer takes, from a real reproduced project's MLflow store:
the same network whichever way it is named, with the run that made it; and one line for
a model that cannot be had."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.explorer.models import explore_model
from pipeline.plumbing.config import compose_conf, validate
from tests.conftest import copy_reproduced, project_client

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(reproduced, tmp_path_factory):
    return copy_reproduced(reproduced, tmp_path_factory.mktemp("explore"))


@pytest.fixture(scope="module")
def tracking(project):
    return validate(compose_conf([f"tracking.uri=sqlite:///{project / 'mlflow.db'}"])).tracking


def same_network(a, b) -> bool:
    return a.sizes == b.sizes and all(
        np.array_equal(x, y) for x, y in zip(a.params(), b.params(), strict=True)
    )


def test_a_file_an_alias_a_version_and_a_run_id_name_the_same_network_and_run(project, tracking):
    client = project_client(project)
    version = client.get_model_version_by_alias("mnist-mlp", "pipeline")
    from_file = explore_model(str(project / "models" / "model.npz"), tracking, None)
    assert from_file.error is None and from_file.run["id"] == version.run_id
    run = client.get_run(version.run_id)
    assert from_file.run["test_accuracy"] == run.data.metrics["test/accuracy"]
    assert from_file.run["name"] == run.info.run_name
    assert from_file.run["summary"].startswith("784-32-10 relu; adam lr 0.001, cosine; 3 epochs")
    assert from_file.run["link"] is None  # no UI asked for, and a SQLite store has none
    for asked in ("@pipeline", str(version.version), f"models:/mnist-mlp/{version.version}",
                  version.run_id):  # fmt: skip
        other = explore_model(asked, tracking, None)
        assert other.error is None, other.error
        assert same_network(other.network, from_file.network) and other.run == from_file.run


@pytest.mark.parametrize(
    ("asked", "says"),
    [
        ("seven", "MODEL 'seven' is none of the kinds there are: give another MODEL"),
        ("@nope", "@nope: Registered model alias nope not found"),
        ("999", "999: "),
        ("0" * 32, "00000000000000000000000000000000: Run"),
        ("missing.npz", "missing.npz is missing: make it with `make repro`"),
    ],
)
def test_a_model_that_cannot_be_had_is_one_line_saying_why(project, tracking, asked, says):
    found = explore_model(asked, tracking, None)
    assert found.network is None and says in found.error and "\n" not in found.error


def test_a_damaged_file_is_named_with_what_is_wrong(project, tracking, tmp_path):
    damaged = tmp_path / "model.npz"
    damaged.write_bytes((project / "models" / "model.npz").read_bytes()[:500])
    found = explore_model(str(damaged), tracking, None)
    assert found.error.startswith(f"{damaged} is damaged (")


def test_the_mistakes_listed_are_the_runs_confusion_rows(project, tracking):
    import csv

    from pipeline.explorer.app import create_app
    from pipeline.plumbing.files import load_arrays

    explored = explore_model(str(project / "models" / "model.npz"), tracking, None)
    test = load_arrays(project / "data" / "normalised" / "test.npz", ("images", "labels"), "x")
    found = create_app([explored], test).test_client().get("/api/models/0/misclassified")
    with open(project / "reports" / "confusion.csv", newline="") as rows:
        confusion = list(csv.DictReader(rows))
    wrong = [(i, int(row["actual"]), int(row["predicted"]))
             for i, row in enumerate(confusion) if row["actual"] != row["predicted"]]  # fmt: skip
    listed = [(item["index"], item["label"], item["predicted"]) for item in found.json["items"]]
    assert listed == wrong[: len(listed)] and found.json["total"] == len(wrong)


def test_a_run_links_to_the_mlflow_ui_only_when_one_answers(project, tracking):
    import http.server
    import threading

    from pipeline.explorer.models import ui_link

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    up = f"http://127.0.0.1:{server.server_port}"
    try:
        # The run's page in the model-training view (MLflow 3 opens GenAI otherwise).
        assert ui_link("sqlite:///x.db", up, "1", "abc") == (
            f"{up}/#/experiments/1/runs/abc?workflowType=machine_learning"
        )
    finally:
        server.shutdown()
        server.server_close()
    assert ui_link("sqlite:///x.db", up, "1", "abc") is None  # nothing answers there now
    served = "http://team.example.invalid:5050"  # a tracking server links to itself, unasked
    assert ui_link(served, None, "2", "def") == (
        f"{served}/#/experiments/2/runs/def?workflowType=machine_learning"
    )
