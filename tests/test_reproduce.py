"""`python -m pipeline.reproduce RUN_ID` on real runs: a real git worktree of the run's commit,
the real DVC cache of a reproduced project, real SQLite stores. A run from a dirty tree (its
patch applied) and a sweep child each come out identical; a run whose data can no longer be
had, or whose recorded weights were tampered with, does not. (A DVC experiment's run is made
again in test_dvc_pipeline, a resumed pipeline run in test_resume, a server's trial in
tests/server.)"""

from __future__ import annotations

import hashlib
import re
import shutil
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from pipeline import reproduce as reproduce_command
from tests.conftest import (
    REPO,
    assert_identical,
    copy_reproduced,
    dvc,
    project_client,
    run,
    run_main,
    run_reproduce,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def project(reproduced, tmp_path) -> Path:
    return copy_reproduced(reproduced, tmp_path)


def pipeline_run(project: Path):
    """The run that trained the project's models/model.npz."""
    weights = hashlib.sha256((project / "models" / "model.npz").read_bytes()).hexdigest()
    (found,) = project_client(project).search_runs(["1"], f"tags.`model.sha256` = '{weights}'")
    return found


def lose_local_data(project: Path) -> None:
    """Neither the DVC cache nor the workspace has the runs' data any more."""
    shutil.rmtree(project / ".dvc" / "cache")
    for path in ("data/split/train.npz", "data/split/dev.npz", "data/normalised/test.npz"):
        (project / path).unlink()


def test_a_run_from_a_dirty_tree_reproduces_with_its_patch_and_its_data_from_the_remote(
    project, tmp_path
):
    """A run made with an uncommitted change comes out identical from its logged patch, with
    its data pulled from the DVC remote: neither the cache nor the workspace has it then."""
    trainer = project / "pipeline" / "training" / "trainer.py"
    text = trainer.read_text()
    assert "default_rng(config.train.seed)" in text
    # An uncommitted change that moves every weight: without its patch no re-run matches.
    trainer.write_text(text.replace("default_rng(config.train.seed)", "default_rng(7)"))
    dvc(["repro"], project)
    dirty = pipeline_run(project)
    assert dirty.data.tags["git.dirty"] == "true"
    patch = project_client(project).download_artifacts(
        dirty.info.run_id, "code/uncommitted.patch", str(project.parent)
    )
    added = [line for line in Path(patch).read_text().splitlines() if line.startswith("+ ")]
    assert any("default_rng(7)" in line for line in added)
    trainer.write_text(text)  # the tree is clean again: only the logged patch brings it back
    dvc(["remote", "add", "-d", "shared", str(tmp_path / "remote")], project)
    dvc(["push"], project)
    lose_local_data(project)
    result = assert_identical(project, dirty.info.run_id)
    assert "data: train from the DVC remote; dev from the DVC remote; test from the DVC" in (
        result.stdout
    )


def test_a_pruned_sweep_trial_is_a_finished_run_that_reproduces_identically(project):
    """A pruner that must prune (dev accuracy below 1.01 after epoch 2 of 3) stops both trials
    after epoch 2: PRUNED in Optuna; in MLflow a FINISHED run tagged `pruned`, with its curves
    to there and its weights; and `reproduce` trains to the same epoch, bit for bit."""
    sweep_dir = project.parent / "sweep"
    args = [sys.executable, "-m", "pipeline.train", "-m", "optimizer.lr=0.002,0.003",
            "hydra.sweeper.pruner._target_=optuna.pruners.ThresholdPruner",
            "+hydra.sweeper.pruner.lower=1.01", "+hydra.sweeper.pruner.n_warmup_steps=2",
            f"hydra.sweep.dir={sweep_dir}"]  # fmt: skip
    result = run(args, project, unset=("MLFLOW_TRACKING_URI",))
    assert "study sweep ended FINISHED: 0 complete, 2 pruned, 0 failed" in result.stderr
    study = optuna.load_study(study_name="sweep", storage=f"sqlite:///{sweep_dir / 'optuna.db'}")
    assert [t.state for t in study.trials] == [TrialState.PRUNED] * 2
    assert all(sorted(t.intermediate_values) == [1, 2] for t in study.trials)
    client = project_client(project)
    children = client.search_runs(["1"], "tags.`pipeline.kind` = 'sweep-job'")
    assert len(children) == 2
    for child in children:
        assert child.info.status == "FINISHED" and child.data.tags["pruned"] == "2"
        curve = client.get_metric_history(child.info.run_id, "dev/accuracy")
        assert [point.step for point in curve] == [1, 2]
        assert child.data.tags["model.logged"] == "weights"
    (parent,) = client.search_runs(["1"], "tags.`pipeline.kind` = 'sweep'")
    assert parent.data.metrics["study/pruned"] == 2 and parent.data.tags["sweep.pruner"] == (
        "ThresholdPruner"
    )
    assert_identical(project, children[0].info.run_id)


def test_a_run_whose_data_is_gone_says_so_and_logs_nothing(project):
    original = pipeline_run(project)
    client = project_client(project)
    client.set_tag(original.info.run_id, "data.train.md5", "0" * 32)  # no file has this hash
    result = run_reproduce(project, original.info.run_id)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"the run's train data (data.train.md5={'0' * 32}) is in no DVC cache" in result.stderr
    assert "it cannot be re-run" in result.stderr
    assert client.search_runs(["1"], f"tags.reproduces = '{original.info.run_id}'") == []


def test_data_no_store_has_is_rebuilt_and_tampered_weights_make_the_verdict_differs(project):
    """No cache, workspace or remote has the run's data: fetch, normalise and split rebuild it,
    verified by md5. The run's recorded weights hash was tampered with: that row, and only
    that row, differs, and the command exits 1."""
    lose_local_data(project)
    original = pipeline_run(project)
    client = project_client(project)
    client.set_tag(original.info.run_id, "model.sha256", "f" * 64)
    result = run_reproduce(project, original.info.run_id)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "data: rebuilt by fetch, normalise and split (train, dev, test)" in result.stdout
    (row,) = [line for line in result.stdout.splitlines() if "weights sha256" in line]
    assert row.split()[-1] == "differs" and "f" * 24 in row
    assert "differs by" not in result.stdout  # every metric, test/accuracy too, identical
    (verdict,) = re.findall(r"reproduce: differs: 1 of (\d+) values", result.stdout)
    assert int(verdict) > 1 and "test/accuracy" in result.stdout
    assert client.get_run(original.info.run_id).data.tags["reproduce.verdict"] == "differs"


def test_an_unknown_run_or_a_missing_commit_is_one_line_and_exit_2(project, monkeypatch, capsys):
    """`reproduce`'s main, in process, on the project copy's store: both stop before any
    worktree or data (the other tests here run it as a process)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'mlflow.db'}")
    unknown = run_main(reproduce_command.main, ["0" * 32], capsys, check=False)
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    assert f"reproduce: error: no run {'0' * 32} in sqlite:///" in unknown.stderr
    original = pipeline_run(project)
    client = project_client(project)
    client.set_tag(original.info.run_id, "mlflow.source.git.commit", "f" * 40)  # not in git
    result = run_main(reproduce_command.main, [original.info.run_id], capsys, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"commit {'f' * 12} is not in this repository" in result.stderr
    assert "git fetch" in result.stderr  # the way out is named
    worktrees = run(["git", "worktree", "list"], REPO).stdout.splitlines()
    assert not [line for line in worktrees if "reproduce-" in line]  # none left behind
