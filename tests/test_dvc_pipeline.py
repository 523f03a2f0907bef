"""Integration: the real dvc.yaml run by real `dvc` in a temporary git repository, on a local
directory of synthetic IDX files (the data group and its hashes overridden in conf/), logging to
the project's own MLflow store (mlflow.db at the root, found through $DVC_ROOT).

The pipeline is reproduced once per session (`reproduced`, in conftest); a test that changes
anything works on a copy of its own (`project`), so the tests hold in any order."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline import runs as runs_command
from pipeline.nn import model_from_arrays
from pipeline.plumbing.config import flatten
from tests.conftest import (
    REPO,
    assert_identical,
    copy_reproduced,
    dvc,
    project_client,
    ran_stages,
    run,
    run_main,
    tool_env,
)

pytestmark = pytest.mark.slow


def dev_rows(project: Path) -> np.ndarray:
    with np.load(project / "data" / "split" / "dev.npz", allow_pickle=False) as dev:
        return dev["images"]


@contextlib.contextmanager
def edited_config(project: Path, old: str, new: str):
    """conf/config.yaml with `old` replaced by `new` for the block, restored afterwards."""
    config = project / "conf" / "config.yaml"
    original = config.read_text()
    assert old in original
    config.write_text(original.replace(old, new))
    try:
        yield
    finally:
        config.write_text(original)


@pytest.fixture
def project(reproduced, tmp_path) -> Path:
    """A copy of the reproduced project (git repo, DVC cache, outputs, MLflow store and
    artifacts) of this test's own."""
    return copy_reproduced(reproduced, tmp_path)


def test_repro_produces_every_output_in_the_project(reproduced):
    project = reproduced
    raw = sorted(p.name for p in (project / "data" / "raw").iterdir())
    assert raw == [
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
    ]
    with np.load(project / "data" / "split" / "train.npz") as train:
        assert train["images"].shape == (240, 784)
    assert dev_rows(project).shape == (60, 784)
    assert (project / "reports" / "data_stats.json").is_file()
    assert (project / "dvc.lock").is_file()
    with np.load(project / "models" / "model.npz", allow_pickle=False) as model:
        assert model["W1"].shape == (32, 784) and model["W2"].shape == (10, 32)
    metrics = json.loads((project / "reports" / "train_metrics.json").read_text())
    assert metrics["epochs_run"] == 3 and metrics["final"]["dev_accuracy"] > 0.5
    history = (project / "reports" / "train_history.csv").read_text().splitlines()
    assert history[0] == "epoch,train_loss,train_accuracy,dev_loss,dev_accuracy,learning_rate"
    assert len(history) == 4


def test_second_repro_does_nothing(project):
    again = dvc(["repro"], project)
    assert ran_stages(again.stdout) == []
    assert "Data and pipelines are up to date" in again.stdout


def test_tracking_settings_retrain_nothing(project):
    tracking = project / "conf" / "tracking" / "mlflow.yaml"
    tracking.write_text(tracking.read_text().replace("mnist-from-scratch", "renamed"))
    run([sys.executable, "-m", "pipeline.params", "compose"], project)
    result = dvc(["repro"], project)
    assert ran_stages(result.stdout) == ["check_params"]


def test_bytecode_python_writes_beside_the_code_is_no_change(project):
    """A stage run without PYTHONDONTWRITEBYTECODE leaves __pycache__/ beside the code it
    imported: DVC must not take that for an edit of the stages' code (.dvcignore)."""
    for cache in [
        *project.glob("pipeline/**/__pycache__"),
        *project.glob("hydra_plugins/**/__pycache__"),
    ]:
        shutil.rmtree(cache)  # the reproduced project's stages may have left some, or none
    assert "Data and pipelines are up to date" in dvc(["status"], project).stdout
    run([sys.executable, "-m", "compileall", "-q", "pipeline", "hydra_plugins"], project)
    assert list((project / "pipeline" / "nn" / "__pycache__").glob("*.pyc"))
    assert "Data and pipelines are up to date" in dvc(["status"], project).stdout


def test_a_change_to_the_forward_pass_reruns_train_and_evaluate(project):
    model = project / "pipeline" / "nn" / "model.py"
    model.write_text(model.read_text() + "\n# an edit\n")
    result = dvc(["repro", "--dry"], project)
    assert ran_stages(result.stdout) == ["train", "evaluate"]
    reporting = project / "pipeline" / "evaluation" / "figures.py"
    run(["git", "checkout", "--", "pipeline/nn/model.py"], project)
    reporting.write_text(reporting.read_text() + "\n# an edit\n")
    assert ran_stages(dvc(["repro", "--dry"], project).stdout) == ["evaluate"]


def test_stale_params_fail_repro_and_name_the_fix(project):
    before = dev_rows(project)
    with edited_config(project, "dev_size: 60", "dev_size: 50"):
        result = dvc(["repro"], project, check=False)
    assert result.returncode != 0
    assert "params.yaml is stale against conf/ at split.dev_size" in result.stderr
    assert "make params" in result.stderr
    np.testing.assert_array_equal(dev_rows(project), before)


def test_exp_run_with_an_override_runs_on_the_composed_params(project, monkeypatch, capsys):
    client = project_client(project)
    aliased = client.get_model_version_by_alias("mnist-mlp", "pipeline")
    result = dvc(["exp", "run", "-S", "split.dev_size=40", "-n", "dev40"], project)
    # A split param changed: split and what follows it run again, fetch and normalise do not.
    assert ran_stages(result.stdout) == ["split", "train", "evaluate"], result.stdout
    assert "split: 260 train and 40 dev examples" in result.stdout
    assert dev_rows(project).shape == (40, 784)
    runs = client.search_runs(["1"], "tags.`dvc.exp_name` = 'dev40'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].data.params["split.dev_size"] == "40"
    assert "test/accuracy" in runs[0].data.metrics  # evaluate logged into the same run
    # An experiment logs its model but neither registers it nor moves the alias.
    assert client.search_model_versions(f"run_id = '{runs[0].info.run_id}'") == []
    assert client.get_model_version_by_alias("mnist-mlp", "pipeline").version == aliased.version
    shown = dvc(["exp", "show", "--no-pager", "--csv"], project).stdout
    assert "split.dev_size" in shown and ",40," in shown
    # Each tool points at the other: the run names the experiment and its baseline commit,
    # and `dvc exp show` has the experiment's run id (reports/mlflow_run.json).
    baseline = run(["git", "rev-parse", "HEAD"], project).stdout.strip()
    assert runs[0].data.tags["dvc.baseline_rev"] == baseline
    assert runs[0].info.run_name == "dev40"
    assert "run_id" in shown.splitlines()[0] and runs[0].info.run_id in shown
    # One command makes the experiment's model the one the alias names (its main, in process,
    # on the project's store: `pipeline.runs` runs as a process in tests/server).
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'mlflow.db'}")
    promoted = run_main(runs_command.main, ["promote", runs[0].info.run_id], capsys)
    assert "models:/mnist-mlp@pipeline is now version" in promoted.stdout
    now = client.get_model_version_by_alias("mnist-mlp", "pipeline")
    assert now.run_id == runs[0].info.run_id
    # And the experiment's run is made again bit for bit (`python -m pipeline.reproduce`).
    assert_identical(project, runs[0].info.run_id)


# Queued experiments (`dvc exp run --queue`, then the queue) logging to the real root store:
# tests/test_ladder.py runs them, as `make ladder` does.


def test_the_pipeline_run_is_one_complete_mlflow_run(project, tmp_path):
    import mlflow
    import yaml

    # A copy: MLflow's client may write to the store it opens, and the other worker copies
    # `reproduced` meanwhile.
    client = project_client(project)
    weights = hashlib.sha256((project / "models" / "model.npz").read_bytes()).hexdigest()
    (logged,) = client.search_runs(["1"], f"tags.`model.sha256` = '{weights}'")
    run_id = logged.info.run_id
    assert logged.info.status == "FINISHED"
    assert logged.info.run_name == "32 adam lr=0.001 cosine 3ep seed 0"  # not random words
    # Every key of the resolved config, flattened, in every run.
    params = flatten(yaml.safe_load((project / "params.yaml").read_text()))
    assert set(logged.data.params) == set(params)
    assert logged.data.params["model.hidden"] == "[32]"
    tags = logged.data.tags
    commit = run(["git", "rev-parse", "HEAD~1"], project).stdout.strip()  # before "reproduced"
    assert tags["pipeline.kind"] == "pipeline" and tags["mlflow.source.git.commit"] == commit
    # The UI's Source column, as MLflow's own runs fill it: the entry point, local.
    assert (tags["mlflow.source.name"], tags["mlflow.source.type"]) == (
        "pipeline/train.py",
        "LOCAL",
    )
    assert tags["mlflow.user"]
    # Clean: what `dvc repro` itself rewrote (dvc.lock, reports/) is a result, not a change.
    assert tags["git.dirty"] == "false" and "git.patch_sha256" not in tags
    # The data by DVC's own hashes (their keys in the cache), and as the UI's datasets.
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    locked = {out["path"]: out["md5"] for stage in lock.values() for out in stage.get("outs", [])}
    digests = {"train": "data/split/train.npz", "dev": "data/split/dev.npz",
               "test": "data/normalised/test.npz"}  # fmt: skip
    for role, path in digests.items():
        assert tags[f"data.{role}.md5"] == locked[path]
    inputs = {d.dataset.name: d.dataset.digest for d in logged.inputs.dataset_inputs}
    assert inputs == {role: locked[path] for role, path in digests.items()}
    # How it computed, read back from the libraries; what was installed; the weights.
    assert (tags["compute.preset"], tags["compute.blas_kernel"]) == ("portable_bits", "Haswell")
    assert (tags["compute.blas_threads"], tags["compute.numpy_simd"]) == ("1", "X86_V3")
    assert tags["compute.numpy"] == np.__version__
    packages = client.download_artifacts(run_id, "environment/packages.txt", str(tmp_path))
    listed = Path(packages).read_text()
    assert f"numpy=={np.__version__}\n" in listed
    assert tags["env.packages_sha256"] == hashlib.sha256(listed.encode()).hexdigest()
    assert tags["model.sha256"] == weights
    assert tags["seed"] == "0"
    # Per-epoch curves equal the history the train stage wrote.
    history = np.genfromtxt(project / "reports" / "train_history.csv", delimiter=",", names=True)
    curve = client.get_metric_history(run_id, "dev/accuracy")
    assert [m.step for m in curve] == [1, 2, 3]
    np.testing.assert_allclose([m.value for m in curve], history["dev_accuracy"], rtol=1e-5)
    test_metrics = json.loads((project / "reports" / "test_metrics.json").read_text())
    assert logged.data.metrics["test/accuracy"] == test_metrics["accuracy"]
    assert logged.data.metrics["test/macro_f1"] == test_metrics["macro_f1"]
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    artifacts |= {a.path for a in client.list_artifacts(run_id, "figures")}
    assert {"config.yaml", "figures/confusion_matrix.png", "figures/misclassified.png"} <= artifacts
    # The registered pyfunc model predicts what the numpy model predicts.
    (version,) = client.search_model_versions(f"run_id = '{run_id}'")
    newest = max(int(v.version) for v in client.search_model_versions("name = 'mnist-mlp'"))
    alias = client.get_model_version_by_alias("mnist-mlp", "pipeline")
    assert int(alias.version) == newest == int(version.version)  # `dvc repro` moved it
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    model_uri = f"models:/mnist-mlp/{version.version}"
    model = mlflow.pyfunc.load_model(model_uri)
    # The model carries its code, so it loads where `pipeline` is not importable.
    files = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(tmp_path)))
    assert (files / "code" / "pipeline" / "serving" / "pyfunc.py").is_file()
    with np.load(project / "data" / "normalised" / "test.npz") as test:
        images = test["images"]
    with np.load(project / "models" / "model.npz", allow_pickle=False) as arrays:
        network = model_from_arrays(arrays)
    predicted = model.predict(images)
    np.testing.assert_array_equal(predicted["digit"].to_numpy(), network.predict(images))
    np.testing.assert_allclose(
        predicted[[f"p{d}" for d in range(10)]].to_numpy(), network.probabilities(images), rtol=1e-6
    )


# A clean clone reproducing the commit byte for byte, its outputs on mounted volumes:
# tests/test_mounted_volumes.py.


def test_plots_show_curves_confusion_and_figures(project):
    # A copy: dvc writes its lock and temporary files, and `reproduced` is read by the other
    # worker (copied, while this runs) too.
    plots = json.loads(dvc(["plots", "show", "--json"], project).stdout)["data"]
    assert {"loss", "accuracy", "confusion"} <= set(plots)
    assert all(plots[name][0]["type"] == "vega" for name in ("loss", "accuracy", "confusion"))
    images = {name for name in plots if name.startswith("reports/figures/")}
    assert images == {
        f"reports/figures/{name}.png"
        for name in ("confusion_matrix", "training_curves", "misclassified")
    }


def snapshot(project: Path) -> dict[str, bytes]:
    """Every output of train and evaluate, byte for byte."""
    files = [project / "models" / "model.npz", *sorted((project / "reports").rglob("*.*"))]
    return {str(path.relative_to(project)): path.read_bytes() for path in files}


def test_a_value_train_rejects_leaves_every_output_and_the_run_link(project):
    before = snapshot(project)
    adam = project / "conf" / "optimizer" / "adam.yaml"
    adam.write_text(adam.read_text().replace("lr: 0.001", "lr: -1.0"))
    run([sys.executable, "-m", "pipeline.params", "compose"], project)
    result = dvc(["repro"], project, check=False)
    assert result.returncode != 0
    assert "train: error: optimizer.lr=-1.0 must be > 0" in result.stderr
    assert snapshot(project) == before  # DVC deleted nothing, train replaced nothing


def test_ctrl_c_mid_training_leaves_the_previous_outputs(project):
    before = snapshot(project)
    with edited_config(project, "epochs: 3", "epochs: 100000"):
        run([sys.executable, "-m", "pipeline.params", "compose"], project)
        log = project.parent / "repro.stderr"  # a file: the test waits for dvc, not a pipe
        with open(log, "w") as stderr:
            process = subprocess.Popen(
                ["dvc", "repro", "-s", "-f", "train"], cwd=project, start_new_session=True,
                env={k: v for k, v in tool_env().items() if k != "MLFLOW_TRACKING_URI"},
                stdout=subprocess.DEVNULL, stderr=stderr,
            )  # fmt: skip
        deadline = time.monotonic() + 120
        while "dev_acc" not in log.read_text():  # an epoch has ended: training is under way
            assert process.poll() is None, f"dvc ended before training: {log.read_text()}"
            assert time.monotonic() < deadline, "no epoch ended within 120 s"
            time.sleep(0.1)
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise AssertionError(f"dvc did not stop: {log.read_text()[-2000:]}") from None
        seen, rest = log.read_text(), ""
    assert process.returncode != 0
    assert "train: stopped" in seen + rest
    assert snapshot(project) == before
    client = project_client(project)
    killed = client.search_runs(["1"], "attributes.status = 'KILLED'")
    assert len(killed) == 1  # the interrupted training's run, settled


def test_a_missing_params_file_deletes_nothing(project):
    data = {p: p.read_bytes() for p in sorted((project / "data").rglob("*")) if p.is_file()}
    before = snapshot(project)
    (project / "params.yaml").unlink()
    result = dvc(["repro"], project, check=False)
    assert result.returncode != 0
    assert "are missing from 'params.yaml'" in result.stderr
    assert {p: p.read_bytes() for p in data} == data  # data/raw above all: it was deleted
    assert snapshot(project) == before


def make(target: str, project: Path, remote: Path) -> str:
    """`make <target>` with this project's Makefile and this venv's tools."""
    shutil.copy(REPO / "Makefile", project / "Makefile")
    bin_dir = Path(sys.executable).parent
    args = ["make", target, f"DVC_REMOTE={remote}", f"BIN={bin_dir}", "RUNTIME_STAMP="]
    return run(args, project, unset=("MLFLOW_TRACKING_URI",)).stdout


def test_a_second_clone_pulls_the_exact_model_and_has_nothing_to_do(project, tmp_path):
    remote = tmp_path / "team-mount"
    pushed = make("push", project, remote)
    assert f"DVC remote 'shared' is {remote}" in pushed
    assert "shared" in (project / ".dvc" / "config.local").read_text()  # per clone, not in git
    second = tmp_path / "second"
    run(["git", "clone", "-q", str(project), str(second)], tmp_path)
    make("pull", second, remote)
    model = "models/model.npz"
    assert (second / model).read_bytes() == (project / model).read_bytes()
    assert "Data and pipelines are up to date" in dvc(["status"], second).stdout
    assert ran_stages(dvc(["repro"], second).stdout) == []
