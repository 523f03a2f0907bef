"""Outputs on mounted volumes: real tmpfs filesystems mounted into the project, as a Docker `-v`
or a cluster's scratch mount puts them, under real `dvc repro` and the stage scripts.

A rename cannot cross filesystems, so every output is staged on its own destination's
filesystem (pipeline/plumbing/publish.py). These tests mount (root, or passwordless sudo: CI
runs as root) and unmount what they mounted when they end.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.plumbing.errors import PipelineError
from pipeline.plumbing.publish import atomic_path, replaced_together
from tests.conftest import ALL_STAGES, copy_reproduced, dvc, project_client, ran_stages, run

pytestmark = pytest.mark.slow  # they mount filesystems, start `dvc` and stages

MOUNTED = ("data/raw", "data/split", "models", "reports")  # every output folder but normalised/


def privileged(args: list[str]) -> list[str]:
    return args if os.geteuid() == 0 else ["sudo", "-n", *args]


@pytest.fixture
def mount():
    """`mount(folder)` mounts a fresh tmpfs at `folder`, keeping what the folder held (copied
    onto the new filesystem); everything mounted is unmounted when the test ends."""
    mounted: list[Path] = []

    def mount_tmpfs(folder: Path, size: str = "256m") -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        held = folder.parent / f"held-{folder.name}"
        shutil.copytree(folder, held, symlinks=True)
        done = subprocess.run(
            privileged(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)]),
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            shutil.rmtree(held)
            pytest.fail(
                f"these tests mount a tmpfs, as root or through passwordless sudo: {done.stderr}"
            )
        mounted.append(folder)
        shutil.copytree(held, folder, symlinks=True, dirs_exist_ok=True)
        shutil.rmtree(held)
        assert os.path.ismount(folder)
        return folder

    yield mount_tmpfs
    for folder in reversed(mounted):
        subprocess.run(privileged(["umount", "-l", str(folder)]), check=True)


def remount(folder: Path, options: str) -> None:
    subprocess.run(privileged(["mount", "-o", f"remount,{options}", str(folder)]), check=True)


def project_runs(project: Path) -> list:
    """The runs of the project's store, the newest first."""
    client = project_client(project)
    experiment = client.get_experiment_by_name("mnist-from-scratch")
    return client.search_runs([experiment.experiment_id], order_by=["start_time DESC"])


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def outputs(project: Path) -> dict[str, str]:
    """Every file under the mounted output folders (DVC's own .gitignore files and a
    training's checkpoint aside), by md5."""
    found = {}
    for folder in MOUNTED:
        for path in sorted((project / folder).rglob("*")):
            if path.is_file() and path.name != ".gitignore" and "checkpoints" not in path.parts:
                found[path.relative_to(project).as_posix()] = md5(path)
    return found


def test_a_clean_clone_with_its_outputs_on_mounted_volumes_reproduces_the_commit_bytes(
    reproduced, tmp_path, mount
):
    """A fresh clone (no data, no cache, no store), every output folder a volume of its own and
    DVC's cache on the project's filesystem: all but check_params run, and every output is the
    committed project's, bit for bit (figures too), each mount still a mount."""
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(reproduced), str(clone)], tmp_path)
    for folder in MOUNTED:
        mount(clone / folder)
    result = dvc(["repro"], clone)
    assert ran_stages(result.stdout) == ALL_STAGES[1:]
    # Each stage that computes read its settings back from the BLAS library it loaded.
    for stage in ("normalise", "train", "evaluate"):
        (line,) = [line for line in result.stdout.splitlines() if f"{stage}: compute=" in line]
        assert line.startswith(f"{stage}: compute=portable_bits: openblas 0.3.")
        assert line.endswith("Haswell kernels on 1 thread(s); numpy SIMD up to X86_V3")
    # dvc.lock and every committed report are as committed: no seconds, no local run id.
    assert run(["git", "status", "--porcelain"], clone).stdout == ""
    assert outputs(clone) == outputs(reproduced)
    assert "train_seconds" not in (clone / "reports" / "train_metrics.json").read_text()
    for folder in MOUNTED:
        assert os.path.ismount(clone / folder)
        assert not list((clone / folder).glob(".staging.*"))
    shown = json.loads(dvc(["metrics", "show", "--json"], clone).stdout)
    metrics = shown[""]["data"]  # `dvc metrics show` still lists the scores
    assert "accuracy" in metrics["reports/test_metrics.json"]["data"]
    assert "best" in metrics["reports/train_metrics.json"]["data"]
    assert ran_stages(dvc(["repro"], clone).stdout) == []


def test_the_pipeline_runs_with_its_outputs_and_a_symlinked_cache_on_mounted_volumes(
    reproduced, tmp_path, mount
):
    """Every output folder and DVC's cache a volume of its own, the outputs symlinks into the
    cache; then a stage that fails there (no room, a read-only volume) keeps what was."""
    project = copy_reproduced(reproduced, tmp_path)
    on_one_filesystem = outputs(project)
    cache_dir = mount(tmp_path / "cache-volume")
    dvc(["cache", "dir", str(cache_dir)], project)
    dvc(["config", "cache.type", "symlink"], project)
    for folder in MOUNTED:
        mount(project / folder)

    first = dvc(["repro", "-f"], project)
    assert ran_stages(first.stdout) == ["check_params", "fetch", "normalise", "split", "train",
                                        "evaluate"]  # fmt: skip
    # The same bits as on one filesystem (figures aside: matplotlib stamps nothing, but the
    # PNGs are compared too), and each mount is still a mount, holding no staging folder.
    assert outputs(project) == on_one_filesystem
    for folder in MOUNTED:
        assert os.path.ismount(project / folder)
        assert not list((project / folder).glob(".staging.*"))
    assert (project / "models" / "model.npz").resolve().is_relative_to(cache_dir)
    again = dvc(["repro"], project)
    assert ran_stages(again.stdout) == [] and "up to date" in again.stdout

    # A stage that fails in that setup keeps the previous outputs and ends its run FAILED:
    # the volume holding models/ has no room for a second model beside the first (DVC first
    # copies a symlinked persistent output out of its cache: room for that one).
    volume = os.statvfs(project / "models")
    used = (volume.f_blocks - volume.f_bfree) * volume.f_frsize
    model = project / "models" / "model.npz"
    unprotected = model.stat().st_size if model.is_symlink() else 0
    remount(project / "models", f"size={used + unprotected + 8192}")
    failed = dvc(["repro", "-f", "-s", "train"], project, check=False)
    assert failed.returncode != 0
    assert (
        "train: error: cannot write models/model.npz: No space left on device (free disk space "
        "on that filesystem, and run it again); the previous outputs are as they were"
    ) in failed.stderr.splitlines()
    assert outputs(project) == on_one_filesystem
    assert project_runs(project)[0].info.status == "FAILED"

    # A read-only volume: the stage says so before it starts a run.
    runs_before = len(project_runs(project))
    remount(project / "models", "ro,size=64m")
    failed = run(
        [sys.executable, "-m", "pipeline.train", "--config-name", "from_params"],
        project, check=False, unset=("MLFLOW_TRACKING_URI",),
    )  # fmt: skip
    assert failed.returncode == 1
    assert failed.stderr.splitlines()[-1] == (
        "train: error: cannot write models/model.npz: Read-only file system (the filesystem "
        "is mounted read-only: mount it read-write, or point that output at a writable place); "
        "the previous outputs are as they were"
    )
    assert outputs(project) == on_one_filesystem
    assert len(project_runs(project)) == runs_before


def test_a_training_whose_outputs_cannot_be_put_in_place_ends_its_run_failed(
    reproduced, tmp_path, mount
):
    project = copy_reproduced(reproduced, tmp_path)
    for folder in ("models", "reports"):
        mount(project / folder)
    before = outputs(project)
    # A folder in the way of the last output: the model and the history are renamed into
    # place first, then must be put back.
    metrics = project / "reports" / "train_metrics.json"
    metrics.unlink()
    metrics.mkdir()
    (metrics / "notes.txt").write_text("a user's file")
    trained = run(
        [sys.executable, "-m", "pipeline.train", "train.epochs=2"],  # another model
        project, check=False, unset=("MLFLOW_TRACKING_URI",),
    )  # fmt: skip
    assert trained.returncode == 1, trained.stderr
    line = (
        "train: error: cannot write reports/train_metrics.json: Is a directory (a folder is in "
        "the way: move it elsewhere); the previous outputs are as they were"
    )
    assert line in trained.stderr.splitlines()
    assert (metrics / "notes.txt").read_text() == "a user's file"
    # The whole training is kept in its checkpoint: run again, once the folder is moved, it
    # puts the outputs in place without training again.
    assert (project / "models" / "checkpoints" / "train.npz").is_file()
    del before["reports/train_metrics.json"]
    assert {k: v for k, v in outputs(project).items() if "train_metrics" not in k} == before
    latest = project_runs(project)[0]
    assert latest.info.status == "FAILED"
    assert "train_metrics.json: Is a directory" in latest.data.tags["error"]
    assert latest.data.metrics["dev/accuracy"] >= 0  # it trained: the failure came after


def test_a_mount_point_output_folder_has_its_contents_swapped(tmp_path, mount):
    figures = mount(tmp_path / "reports" / "figures", size="1m")
    model = mount(tmp_path / "models", size="1m") / "model.npz"
    (figures / "old.png").write_text("old figure")
    model.write_text("old model")
    with pytest.raises(RuntimeError), replaced_together([model, figures]) as (new_model, _):
        new_model.write_text("new model")
        raise RuntimeError("the evaluation failed")
    assert model.read_text() == "old model" and [p.name for p in figures.iterdir()] == ["old.png"]
    (figures / ".staging.left-by-a-killed-stage").mkdir()
    with replaced_together([model, figures]) as (new_model, new_figures):
        new_model.write_text("new model")
        new_figures.mkdir()
        (new_figures / "new.png").write_text("new figure")
    assert model.read_text() == "new model" and os.path.ismount(figures)
    assert [p.name for p in figures.iterdir()] == ["new.png"]
    assert sorted(p.name for p in model.parent.iterdir()) == ["model.npz"]


def test_a_full_volume_is_named_with_its_fix_and_keeps_the_previous_file(tmp_path, mount):
    volume = mount(tmp_path / "models", size="64k")
    model = volume / "model.npz"
    model.write_bytes(b"old" * 1000)
    with pytest.raises(PipelineError) as error, atomic_path(model) as tmp:
        tmp.write_bytes(os.urandom(200_000))
    assert "cannot write" in str(error.value) and "No space left on device (free disk space" in (
        str(error.value)
    )
    assert model.read_bytes() == b"old" * 1000
    assert [p.name for p in volume.iterdir()] == ["model.npz"]
