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
