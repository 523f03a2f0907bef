"""A stopped training resumes where it was, bit for bit, through the real entry points: real
processes stopped by real signals (SIGINT, SIGTERM, SIGKILL) at a random epoch, each seed's
epoch drawn from a seeded generator, then started again as a user would, in a reproduced
project with a real MLflow store; `dvc repro` stopped with Ctrl-C to its process group.

How far a process has got is read off its progress bar (tests.conftest.Progress): a count of
epochs holds on any CPU and disk, so the trainings can be short."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from pipeline import runs as runs_command
from pipeline.plumbing.paths import CHECKPOINT
from tests.conftest import (
    Progress,
    copy_reproduced,
    dvc,
    project_client,
    ran_stages,
    run,
    run_main,
    tool_env,
)

pytestmark = pytest.mark.slow

EPOCHS = 24  # stopped at epoch 2-8, then 2-6 epochs on: at least 10 left to stop within
# Slow enough epochs (tens of ms) to stop one in the middle; dropout, input dropout, shifts,
# and affine and elastic distortions on: every random draw the training makes.
LONG = [f"train.epochs={EPOCHS}", "model.hidden=[256,256]", "train.batch_size=4",
        "train.dropout=0.3", "train.input_dropout=0.1", "train.max_shift=1",
        "train.distortion.rotation=10", "train.distortion.elastic_alpha=20"]  # fmt: skip
OUTPUTS = ("models/model.npz", "reports/train_metrics.json", "reports/train_history.csv")
TRAIN = [sys.executable, "-m", "pipeline.train"]


def outputs(project: Path) -> dict[str, bytes]:
    return {name: (project / name).read_bytes() for name in OUTPUTS}


def stopped_at_epoch(
    args: list[str], project: Path, sig: signal.Signals, epoch: int, group: bool = False
) -> subprocess.CompletedProcess:
    """Run `args`, send `sig` once its progress bar shows `epoch` epochs done (to its whole
    process group if `group`, as Ctrl-C in a terminal does), and return what it did. The
    signal lands in a later epoch, or in the middle of a checkpoint's write."""
    env = {k: v for k, v in tool_env().items() if k != "MLFLOW_TRACKING_URI"}
    with tempfile.TemporaryFile("w+") as stdout:
        process = subprocess.Popen(
            args, cwd=project, env=env, stdout=stdout, stderr=subprocess.PIPE, text=True,
            start_new_session=group,
            # A shell without job control starts its children with SIGINT ignored: not a user's.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
        try:
            progress = Progress(process, process.stderr)
            progress.wait_for({"train": epoch})
            if group:
                os.killpg(process.pid, sig)
            else:
                process.send_signal(sig)
            stderr = progress.rest()
        finally:
            if process.poll() is None:
                process.kill()
        stdout.seek(0)
        return subprocess.CompletedProcess(args, process.returncode, stdout.read(), stderr)


def stop_line(result) -> str:
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("train: stopped")]
    return line


def training_runs(project: Path) -> list:
    client = project_client(project)
    return client.search_runs(["1"], "tags.`pipeline.kind` != 'sweep-job'",
                              order_by=["attributes.start_time DESC"])  # fmt: skip


def assert_one_whole_run(project: Path, run, resumed_at: list[int]) -> None:
    """The run ended FINISHED, says where it resumed, and has each epoch's point once."""
    assert run.info.status == "FINISHED"
    assert run.data.tags["resumed_at"] == ",".join(map(str, resumed_at))
    assert "error" not in run.data.tags
    client = project_client(project)
    for metric in ("train/loss", "dev/accuracy", "train/learning_rate"):
        steps = sorted(point.step for point in client.get_metric_history(run.info.run_id, metric))
        assert steps == list(range(1, len(steps) + 1)), metric
    assert len(steps) >= resumed_at[-1] - 1  # - 1: a checkpoint of its last epoch, resumed


@pytest.fixture
def project(reproduced, tmp_path) -> Path:
    return copy_reproduced(reproduced, tmp_path)


def test_a_training_stopped_twice_with_ctrl_c_and_sigterm_resumes_to_the_same_bits(project):
    # How many epochs each session trains before it is stopped.
    first, more = (int(n) for n in np.random.default_rng(30).integers([2, 2], [9, 7]))
    run([*TRAIN, *LONG, "tracking.enabled=false"], project)
    uninterrupted = outputs(project)
    runs_before = len(training_runs(project))
    (project / "models" / "model.npz").unlink()  # not left from the reference run

    stopped = stopped_at_epoch([*TRAIN, *LONG], project, signal.SIGINT, first)
    assert stopped.returncode == 130, stopped.stderr[-2000:]
    line = stop_line(stopped)
    reached = int(line.split(" at epoch ")[1].split()[0])
    # It goes on after the last checkpoint written: epoch 1's always is, the next ones as the
    # disk allows (checkpoints.COST_SHARE), the epoch it was in at the latest.
    assert 2 <= reached <= first + 2
    # A signal during a checkpoint's write waits for it, and says so.
    line = line.replace(", held until the checkpoint was written", "")
    assert line == (
        f"train: stopped at epoch {reached} of {EPOCHS} (received SIGINT); epochs "
        f"1-{reached - 1} are kept in {CHECKPOINT}: `python -m pipeline.train "
        f"{' '.join(repr(a) if '[' in a else a for a in LONG)}` goes on from epoch {reached}; "
        "its earlier outputs are as they were"
    )
    assert training_runs(project)[0].info.status == "KILLED"

    again = stopped_at_epoch([*TRAIN, *LONG], project, signal.SIGTERM, reached + more)
    assert again.returncode == 130 and f"going on from epoch {reached}" in again.stdout
    reached_again = int(stop_line(again).split(" at epoch ")[1].split()[0])
    assert "(received SIGTERM" in stop_line(again) and reached_again > reached

    finished = run([*TRAIN, *LONG], project, unset=("MLFLOW_TRACKING_URI",))
    assert f"going on from epoch {reached_again}" in finished.stdout
    assert outputs(project) == uninterrupted  # the model, its metrics and history, bit for bit
    assert not (project / CHECKPOINT).exists()
    runs = training_runs(project)
    assert len(runs) == runs_before + 1  # one run for the three sessions
    assert_one_whole_run(project, runs[0], [reached, reached_again])


def test_a_killed_native_speed_training_with_patience_resumes_to_the_same_bits(
    project, monkeypatch, capsys
):
    # Patience may stop it early, but not before epoch 13: after it is killed (epochs 2-6).
    args = [*TRAIN, *LONG, "compute=native_speed", "train.patience=12"]
    run([*args, "tracking.enabled=false"], project)
    uninterrupted = outputs(project)
    epoch = int(np.random.default_rng(31).integers(2, 7))
    killed = stopped_at_epoch(args, project, signal.SIGKILL, epoch)
    assert killed.returncode == -signal.SIGKILL
    lost = training_runs(project)[0]
    assert lost.info.status == "RUNNING"  # SIGKILL leaves it so: the resumed process takes it
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'mlflow.db'}")
    stale = run_main(runs_command.main, ["stale"], capsys)  # `python -m pipeline.runs stale`'s main
    assert lost.info.run_id in stale.stdout

    finished = run(args, project, unset=("MLFLOW_TRACKING_URI",))
    resumed = int(finished.stdout.split("going on from epoch ")[1].split(",")[0])
    # From the last checkpoint written: epoch 1's always is (checkpoints.COST_SHARE).
    assert 2 <= resumed <= epoch + 2
    assert outputs(project) == uninterrupted
    (whole,) = [r for r in training_runs(project) if r.info.run_id == lost.info.run_id]
    assert_one_whole_run(project, whole, [resumed])
    assert whole.data.tags["pid"] != lost.data.tags["pid"]


def edit(project: Path, old: str, new: str) -> None:
    config = project / "conf" / "config.yaml"
    text = config.read_text()
    assert old in text
    config.write_text(text.replace(old, new))


def test_dvc_repro_stopped_with_ctrl_c_goes_on_and_reproduces_identically(project):
    edit(project, "epochs: 3", f"epochs: {EPOCHS}")
    edit(project, "batch_size: 128", "batch_size: 4")
    edit(project, "elastic_alpha: 0.0", "elastic_alpha: 20.0")
    model = project / "conf" / "model" / "mlp.yaml"
    model.write_text(model.read_text().replace("hidden: [32]", "hidden: [256, 256]"))
    run([sys.executable, "-m", "pipeline.params", "compose"], project)
    run(["git", "commit", "-qam", "a longer training"], project)

    epoch = int(np.random.default_rng(32).integers(2, 9))
    stopped = stopped_at_epoch(["dvc", "repro"], project, signal.SIGINT, epoch, group=True)
    assert stopped.returncode != 0
    assert "`dvc repro` goes on from epoch" in stop_line(stopped)
    resumed = dvc(["repro"], project)
    assert ran_stages(resumed.stdout)[-2:] == ["train", "evaluate"]
    assert "going on from epoch" in resumed.stdout
    assert ran_stages(dvc(["repro"], project).stdout) == []
    run(["git", "commit", "-qam", "the longer training's results"], project)
    assert run(["git", "status", "--porcelain"], project).stdout == ""  # no checkpoint shows

    (resumed_run,) = [r for r in training_runs(project) if "resumed_at" in r.data.tags]
    assert "test/accuracy" in resumed_run.data.metrics  # evaluate logged into it
    # The training that was never stopped: `reproduce` trains the run's commit again from
    # epoch 1 in a worktree, and finds its weights and every metric the same bits.
    reproduced = run([sys.executable, "-m", "pipeline.reproduce", resumed_run.info.run_id],
                     project, check=False, unset=("MLFLOW_TRACKING_URI",))  # fmt: skip
    assert "reproduce: identical: all" in reproduced.stdout, reproduced.stdout[-3000:]
