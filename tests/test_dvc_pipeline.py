"""Integration: the real dvc.yaml run by real `dvc` in a temporary git repository, on a local
directory of synthetic IDX files (the data group and its hashes overridden in conf/)."""

from __future__ import annotations

import contextlib
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import copy_project, run, write_synthetic_mnist


def ran_stages(output: str) -> list[str]:
    return re.findall(r"Running stage '([a-z_]+)'", output)


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


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the project whose data group points at synthetic files, reproduced once."""
    root = tmp_path_factory.mktemp("dvc")
    source = write_synthetic_mnist(root / "source")
    project = copy_project(root / "project")
    files = "\n".join(
        f"  {role}:\n    name: {spec.name}\n    sha256: {spec.sha256}"
        for role, spec in vars(source.files).items()
    )
    (project / "conf" / "data" / "synthetic.yaml").write_text(
        f"name: synthetic\nsources:\n  - dir:{source.directory}\nfiles:\n{files}\n"
    )
    config = project / "conf" / "config.yaml"
    text = config.read_text().replace("- data: mnist", "- data: synthetic")
    text = text.replace("dev_size: 10000", "dev_size: 60").replace("epochs: 20", "epochs: 3")
    # The synthetic classes differ by a bar's row, which a one-pixel shift would blur.
    text = text.replace("max_shift: 1", "max_shift: 0")
    config.write_text(text)
    model = project / "conf" / "model" / "mlp.yaml"
    model.write_text(model.read_text().replace("hidden: [512, 512]", "hidden: [32]"))
    run([sys.executable, "-m", "pipeline.config", "compose"], project)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "synthetic project"], project)
    first = run(["dvc", "repro"], project)
    assert ran_stages(first.stdout) == ["check_params", "fetch", "normalise", "split", "train"]
    return project


def test_repro_produces_every_output_in_the_project(project):
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
    again = run(["dvc", "repro"], project)
    assert ran_stages(again.stdout) == []
    assert "Data and pipelines are up to date" in again.stdout


def test_changing_the_split_seed_reruns_only_split(project):
    before = dev_rows(project)
    with edited_config(project, "seed: ${seed}", "seed: 3"):
        run([sys.executable, "-m", "pipeline.config", "compose"], project)
        result = run(["dvc", "repro"], project)
        assert ran_stages(result.stdout) == ["check_params", "split", "train"]
        assert not np.array_equal(dev_rows(project), before)
    run([sys.executable, "-m", "pipeline.config", "compose"], project)
    run(["dvc", "repro"], project)


def test_stale_params_fail_repro_and_name_the_fix(project):
    before = dev_rows(project)
    with edited_config(project, "dev_size: 60", "dev_size: 50"):
        result = run(["dvc", "repro"], project, check=False)
    assert result.returncode != 0
    assert "params.yaml is stale against conf/ at split.dev_size" in result.stderr
    assert "make params" in result.stderr
    np.testing.assert_array_equal(dev_rows(project), before)


def test_exp_run_with_an_override_runs_on_the_composed_params(project):
    result = run(["dvc", "exp", "run", "-S", "split.dev_size=40"], project)
    assert "split: 260 train and 40 dev examples" in result.stdout
    assert dev_rows(project).shape == (40, 784)
    shown = run(["dvc", "exp", "show", "--no-pager", "--csv"], project).stdout
    assert "split.dev_size" in shown and ",40," in shown
