"""Every file a stage or command reads, damaged each way a disk or a hand damages one: cut
short, emptied, bytes changed in the middle, another format under its name. The real entry
point that reads it ends with one line naming the file, a non-zero exit, no traceback, and
the outputs it would have replaced as they were. The stages run as processes in a project
copy, as DVC runs them; `reproduce` and `promote`, which read only the store, run their
`main` in this process.

The files come from dvc.yaml (each stage's data deps and params) and from the paths module
(what the stages write): a file added to either is damaged here too, or, if no stage reads
it, must be named in OTHER_READERS, else `test_every_file_is_covered` fails.
"""

from __future__ import annotations

import io
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml

from pipeline.plumbing.paths import CHECKPOINT, EXPERIMENT_RUN, ROOT, STAGE_OUTPUTS
from tests.conftest import copy_reproduced, run, run_main, tool_env

pytestmark = pytest.mark.slow

# Files the stages write that no stage reads back, and what reads them instead.
OTHER_READERS = {
    "reports/train_metrics.json": "evaluate, when the store lost the training's run",
    "reports/data_stats.json": "DVC only (dvc metrics show)",
    "reports/test_metrics.json": "DVC only (dvc metrics show)",
    "reports/confusion.csv": "DVC only (dvc plots)",
    "reports/figures": "people",
    "reports/mlflow_run.json": "DVC only (dvc exp show)",
}
CHEAPEST_FIRST = ("split", "normalise", "evaluate", "train", "fetch")


def stage_readers() -> dict[str, list[str]]:
    """Each data file or folder dvc.yaml says a stage reads (its deps that are not code or
    conf/, and params.yaml for a stage with params) → the stages reading it, cheapest first."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    readers = defaultdict(list)
    for name, stage in stages.items():
        for dep in stage.get("deps", []):
            path = dep if isinstance(dep, str) else next(iter(dep))
            if not path.startswith(("pipeline/", "conf")):
                readers[path].append(name)
        if stage.get("params"):
            readers["params.yaml"].append(name)
    order = {name: CHEAPEST_FIRST.index(name) for name in CHEAPEST_FIRST}
    return {path: sorted(names, key=order.get) for path, names in readers.items()}


def stage_command(stage: str) -> list[str]:
    command = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]["cmd"]
    assert command.startswith("python ")
    return [sys.executable, *command.split()[1:]]


def flipped(data: bytes) -> bytes:
    middle = len(data) // 2
    return (
        data[:middle]
        + bytes(byte ^ 0xFF for byte in data[middle : middle + 16])
        + data[middle + 16 :]
    )


def other_format(path: str) -> bytes:
    """What another tool might leave under the name: JSON for a binary file, an .npz for a
    text one."""
    if path.endswith((".csv", ".json", ".yaml")):
        buffer = io.BytesIO()
        np.savez(buffer, weights=np.zeros(3))
        return buffer.getvalue()
    return b'{"model": "this is JSON, not what the name says"}\n'


DAMAGES = {
    "cut short": lambda data, path: data[: len(data) // 2],
    "emptied": lambda data, path: b"",
    "bytes changed": lambda data, path: flipped(data),
    "another format": lambda data, path: other_format(path),
}


def stage_files() -> list[tuple[str, str]]:
    """(file, the stage that reads it) for every file dvc.yaml names, a folder's files each."""
    found = []
    for path, stages in stage_readers().items():
        if path == "data/raw":  # the four IDX files fetch writes
            names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                     "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")  # fmt: skip
            found += [(f"data/raw/{name}", stages[0]) for name in names]
        else:
            found.append((path, stages[0]))
    return found


def test_every_file_is_covered():
    """What the stages write is read by a stage (and so damaged below) or named as read by
    something else; every file a stage reads is one the paths module knows."""
    read = set(stage_readers())
    written = {
        path.relative_to(ROOT).as_posix() for paths in STAGE_OUTPUTS.values() for path in paths
    } | {EXPERIMENT_RUN.relative_to(ROOT).as_posix()}
    assert written - read <= set(OTHER_READERS), "a new output: damage it, or say who reads it"
    assert read - {"params.yaml"} <= written


@pytest.fixture(scope="module")
def project(reproduced, tmp_path_factory) -> Path:
    return copy_reproduced(reproduced, tmp_path_factory.mktemp("damaged"))


def outputs_of(stage: str, project: Path) -> dict[str, bytes]:
    found = {}
    for path in STAGE_OUTPUTS.get(stage, ()):
        target = project / path.relative_to(ROOT)
        files = sorted(target.rglob("*")) if target.is_dir() else [target]
        found |= {str(f): f.read_bytes() for f in files if f.is_file()}
    return found


def assert_one_line(result, command: str, file_name: str) -> str:
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-2000:]
    assert "Traceback" not in output, output[-3000:]
    errors = [line for line in result.stderr.splitlines() if ": error:" in line]
    assert len(errors) == 1, result.stderr[-3000:]
    assert errors[0].startswith(f"{command}: error: ") and file_name in errors[0], errors[0]
    return errors[0]


@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.parametrize("path,stage", stage_files())
def test_a_damaged_input_stops_its_stage_in_one_line(project, path, stage, damage):
    target = project / path
    original = target.read_bytes()
    before = outputs_of(stage, project)
    target.write_bytes(DAMAGES[damage](original, path))
    try:
        result = run(stage_command(stage), project, check=False)
    finally:
        target.write_bytes(original)
    line = assert_one_line(result, stage, Path(path).name)
    print(f"{path} {damage}: {line}")  # the closing note's table: pytest -s shows it
    assert outputs_of(stage, project) == before  # nothing replaced


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_train_metrics_stop_evaluate_rebuilding_a_lost_run(project, damage, mlflow_store):
    """With no run in the store for the model, evaluate logs one from the train outputs."""
    target = project / "reports" / "train_metrics.json"
    original = target.read_bytes()
    before = outputs_of("evaluate", project)
    target.write_bytes(DAMAGES[damage](original, str(target)))
    env = {**tool_env(), "MLFLOW_TRACKING_URI": mlflow_store}  # an empty store of its own
    try:
        result = subprocess.run(
            stage_command("evaluate"), cwd=project, env=env, capture_output=True, text=True
        )
    finally:
        target.write_bytes(original)
    line = assert_one_line(result, "evaluate", "train_metrics.json")
    print(f"reports/train_metrics.json {damage}: {line}")
    assert outputs_of("evaluate", project) == before
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    left = client.search_runs(["1"], "attributes.status = 'RUNNING'")
    assert left == []  # read before a run was started: none is left open


def store_file(project: Path, run_id: str, artifact: str) -> Path:
    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    root = client.get_run(run_id).info.artifact_uri.removeprefix("file://")
    return Path(root) / artifact


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_run_record_stops_reproduce_in_one_line(project, damage, monkeypatch, capsys):
    """`reproduce`'s main, in process, on the project copy's store (what it reads first is the
    record, before any worktree or data of this repository)."""
    from pipeline import reproduce

    uri = f"sqlite:///{project / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = mlflow.MlflowClient(uri)
    (logged,) = client.search_runs(["1"], "tags.`pipeline.kind` = 'pipeline'", max_results=1)
    target = store_file(project, logged.info.run_id, "config.yaml")
    original = target.read_bytes()
    target.write_bytes(DAMAGES[damage](original, "config.yaml"))
    try:
        result = run_main(reproduce.main, [logged.info.run_id], capsys, check=False)
    finally:
        target.write_bytes(original)
    print(f"run record config.yaml {damage}: {assert_one_line(result, 'reproduce', 'config.yaml')}")


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_logged_weights_stop_promote_in_one_line(project, damage, monkeypatch, capsys):
    """A sweep job's model is its weights in the store; `promote` (its main, in process, on
    the project copy's store) reads them."""
    from pipeline import runs

    uri = f"sqlite:///{project / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = mlflow.MlflowClient(uri)
    child = client.create_run("1", tags={"model.logged": "weights"})
    client.log_artifact(child.info.run_id, str(project / "models" / "model.npz"), "weights")
    client.set_terminated(child.info.run_id)
    target = store_file(project, child.info.run_id, "weights/model.npz")
    target.write_bytes(DAMAGES[damage](target.read_bytes(), "model.npz"))
    result = run_main(runs.main, ["promote", child.info.run_id], capsys, check=False)
    line = assert_one_line(result, "runs", "model.npz")
    print(f"logged weights {damage}: {line}")
    assert f"run {child.info.run_id}'s weights/model.npz is damaged" in line  # not a temp copy
    assert client.get_run(child.info.run_id).data.tags["model.logged"] == "weights"


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_checkpoint_is_one_line_and_a_fresh_start(project, damage):
    """A checkpoint (made here by training in-process under the project's own fingerprint)
    damaged: train says so in one line, removes it, starts from epoch 1 and ends with the
    model an uninterrupted training makes."""
    from pipeline.plumbing.config import load_params, validate
    from pipeline.training.checkpoints import Checkpoints, fingerprint
    from pipeline.training.trainer import load_split, train_model

    config = validate(load_params(project / "params.yaml"))
    data = {"train": project / "data/split/train.npz", "dev": project / "data/split/dev.npz"}
    checkpoint = project / CHECKPOINT
    train_model(config, *load_split(data["train"], data["dev"]),
                keeper=Checkpoints(checkpoint, fingerprint(config, data, project)))  # fmt: skip
    checkpoint.write_bytes(DAMAGES[damage](checkpoint.read_bytes(), str(checkpoint)))
    before = outputs_of("train", project)
    # The project's conf/ (params.yaml's source) untracked: the point is the checkpoint, and a
    # process that tracks spends seconds importing MLflow first.
    command = [sys.executable, "-m", "pipeline.train", "tracking.enabled=false"]
    result = subprocess.run(command, cwd=project, env=tool_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "checkpoint" in line]
    assert line.startswith(f"train: the checkpoint {CHECKPOINT} is damaged (")
    assert line.endswith("): starting from epoch 1")
    print(f"{CHECKPOINT} {damage}: {line}")
    assert outputs_of("train", project) == before  # the same training, the same bits
    assert not checkpoint.exists()
