"""The logged model ships only the core and the serving code and declares what that code needs;
a version or a run's model is promoted to the alias with one command."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from pipeline.nn import MLP, model_to_arrays
from pipeline.plumbing.files import save_arrays
from pipeline.plumbing.schema import TrackingConfig

# MLflow, and pipeline.tracking which imports it, are imported in the helpers and the tests, not
# here: `make test-fast` imports this module in both its workers but runs its tests in one
# (XDIST_GROUPS in tests/conftest.py), and the other need not spend a second importing MLflow.
if TYPE_CHECKING:
    from pipeline.tracking.runs import Run

NAME, ALIAS = "digits", "pipeline"


def logged_run(tmp_path: Path, register: str | None, seed: int = 0) -> tuple[Run, MLP]:
    """A finished run holding a pyfunc model of a small random network."""
    from pipeline.tracking.registry import log_pyfunc_model
    from pipeline.tracking.runs import Run
    from pipeline.tracking.store import open_store

    experiment = open_store(TrackingConfig(True, None, "tests", NAME, ALIAS, True))
    network = MLP.create((784, 8, 10), rng=np.random.default_rng(seed))
    weights = tmp_path / f"model-{seed}.npz"
    save_arrays(weights, **model_to_arrays(network))
    run = Run.start(experiment, f"model {seed}")
    example = np.random.default_rng(1).random((2, 784), dtype=np.float32)
    log_pyfunc_model(run, weights, example, register, ALIAS)
    run.end()
    return run, network


@pytest.fixture
def model_dir(mlflow_store, tmp_path) -> tuple[Path, MLP]:
    import mlflow

    run, network = logged_run(tmp_path, register=None)
    local = mlflow.artifacts.download_artifacts(f"runs:/{run.run_id}/model", dst_path=tmp_path)
    return Path(local), network


def test_the_model_ships_only_the_core_and_the_serving_code(model_dir):
    local, _ = model_dir
    shipped = sorted(
        p.relative_to(local / "code").as_posix() for p in (local / "code").rglob("*.py")
    )
    top = {path.split("/")[1] for path in shipped if path.count("/") > 1}
    assert top == {"nn", "serving"}
    assert "pipeline/__init__.py" in shipped and "pipeline/nn/model.py" in shipped
    requirements = (local / "requirements.txt").read_text().split()
    assert {line.split("==")[0] for line in requirements} == {"mlflow", "numpy", "pandas"}


def imported_names(source: str) -> set[str]:
    """The dotted names a module imports (absolute imports)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module)
    return names


def test_the_shipped_code_imports_only_its_requirements_the_core_and_itself(model_dir):
    local, _ = model_dir
    requirements = (local / "requirements.txt").read_text().split()
    allowed = {line.split("==")[0] for line in requirements} | set(sys.stdlib_module_names)
    for path in (local / "code").rglob("*.py"):
        for name in imported_names(path.read_text()):
            top = name.split(".")[0]
            if top == "pipeline":
                assert name.startswith(("pipeline.nn", "pipeline.serving")), (path, name)
            else:
                assert top in allowed, f"{path.name} imports {name}, not in {requirements}"


# Loads the model in an interpreter whose path holds site-packages but not this project: no
# .pth file is read, so the editable install of `pipeline` is invisible.
CLEAN_LOAD = r"""
import json, sys
sys.path[:0] = [SITE]
import numpy as np
import mlflow.pyfunc

model = mlflow.pyfunc.load_model(MODEL)
digits = model.predict(np.eye(784, dtype=np.float32)[:3])["digit"].tolist()
print(json.dumps({
    "digits": digits,
    "pipeline_from": sys.modules["pipeline"].__file__,
    "project_modules": sorted(
        name for name in sys.modules
        if name.startswith("pipeline.") and not name.startswith(("pipeline.nn", "pipeline.serving"))
    ),
    "config_tools": sorted({"omegaconf", "hydra", "dvc"} & set(sys.modules)),
}))
"""


@pytest.mark.slow
def test_the_model_loads_in_a_clean_interpreter_with_only_its_requirements(model_dir, tmp_path):
    local, network = model_dir
    site = sysconfig.get_paths()["purelib"]
    script = f"SITE = {site!r}\nMODEL = {str(local)!r}\n" + CLEAN_LOAD
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["digits"] == network.predict(np.eye(784, dtype=np.float32)[:3]).tolist()
    assert report["pipeline_from"].startswith(str(local / "code"))
    assert report["project_modules"] == []
    assert report["config_tools"] == []


def test_promote_moves_the_alias_to_a_version_or_a_runs_model(mlflow_store, tmp_path):
    import mlflow

    from pipeline.tracking.registry import RegistryError, promote

    first, _ = logged_run(tmp_path, register=NAME, seed=0)
    second, _ = logged_run(tmp_path, register=NAME, seed=1)
    client = mlflow.MlflowClient()
    assert int(client.get_model_version_by_alias(NAME, ALIAS).version) == 2  # logging moved it
    assert promote(NAME, ALIAS, "1") == "1"
    assert client.get_model_version_by_alias(NAME, ALIAS).run_id == first.run_id
    unregistered, _ = logged_run(tmp_path, register=None, seed=2)
    assert int(client.get_model_version_by_alias(NAME, ALIAS).version) == 1  # not moved
    assert promote(NAME, ALIAS, unregistered.run_id) == "3"
    assert client.get_model_version_by_alias(NAME, ALIAS).run_id == unregistered.run_id
    with pytest.raises(RegistryError, match="cannot promote '9' to digits@pipeline"):
        promote(NAME, ALIAS, "9")
    with pytest.raises(RegistryError, match="cannot promote 'no-such-run'"):
        promote(NAME, ALIAS, "no-such-run")
    assert second.run_id != first.run_id


def test_promote_makes_a_pyfunc_of_a_sweep_jobs_weights(mlflow_store, tmp_path):
    import mlflow

    from pipeline.tracking.registry import MODEL_KIND_TAG, promote
    from pipeline.tracking.runs import Run
    from pipeline.tracking.store import open_store

    experiment = open_store(TrackingConfig(True, None, "tests", NAME, ALIAS, True))
    network = MLP.create((784, 8, 10), rng=np.random.default_rng(3))
    weights = tmp_path / "model.npz"
    save_arrays(weights, **model_to_arrays(network))
    run = Run.start(experiment, "sweep job")
    run.log_artifact(weights, "weights")  # what a sweep job logs (training_runs.log_evaluation)
    run.set_tags({MODEL_KIND_TAG: "weights"})
    run.end()
    version = promote(NAME, ALIAS, run.run_id)
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias(NAME, ALIAS).version) == version
    finished = client.get_run(run.run_id)
    assert finished.info.status == "FINISHED"  # logging the pyfunc left the run as it was
    assert finished.data.tags[MODEL_KIND_TAG] == "pyfunc"
    served = mlflow.pyfunc.load_model(f"models:/{NAME}@{ALIAS}")
    images = np.random.default_rng(4).random((5, 784), dtype=np.float32)
    assert served.predict(images)["digit"].tolist() == network.predict(images).tolist()
