"""MLflow runs against real SQLite stores: they end FINISHED, FAILED or KILLED, never RUNNING;
runs left RUNNING by dead processes are found and marked."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from pipeline.plumbing.schema import TrackingConfig

# MLflow, and pipeline.tracking which imports it, are imported in the fixture and the tests, not
# here: `make test-fast` imports this module in both its workers but runs its tests in one
# (XDIST_GROUPS in tests/conftest.py), and the other need not spend a second importing MLflow.


@pytest.fixture
def start(mlflow_store):
    """Start a run (name, tags) in the tests' experiment, in a fresh store of this test's own."""
    from pipeline.tracking.runs import Run
    from pipeline.tracking.store import open_store

    experiment = open_store(TrackingConfig(True, None, "tests", None, "pipeline", False))
    return lambda name, tags=None: Run.start(experiment, name, tags)


def mlflow_client():
    import mlflow

    return mlflow.MlflowClient()


def test_settled_runs_end_finished_failed_or_killed(start):
    from pipeline.tracking.runs import settled

    runs = [start(name) for name in ("ok", "error", "interrupt")]
    with settled(runs[0]):
        pass
    with pytest.raises(ValueError), settled(runs[1]):
        raise ValueError("bad value")
    with pytest.raises(KeyboardInterrupt), settled(runs[2]):
        raise KeyboardInterrupt("received SIGTERM")
    client = mlflow_client()
    ended = [client.get_run(r.run_id) for r in runs]
    assert [r.info.status for r in ended] == ["FINISHED", "FAILED", "KILLED"]
    assert ended[1].data.tags["error"] == "ValueError: bad value"
    assert ended[2].data.tags["error"] == "interrupted (received SIGTERM)"


def test_stale_runs_of_dead_processes_are_found_and_marked(start):
    from pipeline.tracking.runs import stale_runs

    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()  # its pid now names no process
    host = socket.gethostname()
    orphan = start("orphan", {"host": host, "pid": str(ended.pid)})
    alive = start("alive", {"host": host, "pid": "1"})
    elsewhere = start("other host", {"host": "elsewhere", "pid": str(ended.pid)})
    trial = start(
        "a shared study's trial",
        {"host": host, "pid": str(ended.pid), "optuna.trial": "3"},
    )  # fmt: skip
    listed = dict((line.split()[0], (status, line)) for status, line in stale_runs(mark=False))
    assert set(listed) == {orphan.run_id, trial.run_id}
    assert (
        listed[orphan.run_id][0] == "KILLED"
        and f"pid {ended.pid} is gone" in listed[orphan.run_id][1]
    )
    assert listed[trial.run_id][0] == "FAILED"  # as its Optuna trial ends
    client = mlflow_client()
    assert client.get_run(orphan.run_id).info.status == "RUNNING"  # listing changes nothing
    stale_runs(mark=True)
    assert client.get_run(orphan.run_id).info.status == "KILLED"
    assert client.get_run(trial.run_id).info.status == "FAILED"
    assert client.get_run(alive.run_id).info.status == "RUNNING"  # pid 1 is alive
    assert client.get_run(elsewhere.run_id).info.status == "RUNNING"  # not ours to judge


def test_epochs_sent_again_with_their_stamps_are_kept_once(start):
    from pipeline.nn import EpochRecord
    from pipeline.tracking.curves import LiveCurves

    run = start("curves")
    curves = LiveCurves(run)
    records = [EpochRecord(epoch, 0.5 / epoch, 0.9, 0.4, 0.91, 1e-3, 1.0) for epoch in (1, 2)]
    for record in records:
        curves.unsent.append(record)  # as if the store took them but its answer was lost
        curves.stamps.append(1_000 * record.epoch)
    curves.flush()
    curves.unsent, curves.stamps = list(records), [1_000, 2_000]  # … and they are sent again
    curves.flush()
    history = mlflow_client().get_metric_history(run.run_id, "train/loss")
    assert sorted((point.step, point.value) for point in history) == [(1, 0.5), (2, 0.25)]


def slowed(log_epochs, seconds: float):
    def slow(*args, **kwargs):
        time.sleep(seconds)  # a store far away: the epochs wait on the sender's thread
        return log_epochs(*args, **kwargs)

    return slow


def test_epochs_waiting_to_be_sent_reach_a_run_that_ends_with_an_error(start):
    from pipeline.nn import EpochRecord
    from pipeline.tracking.curves import LiveCurves
    from pipeline.tracking.runs import end_quietly

    run = start("curves")
    run.log_epochs = slowed(run.log_epochs, 0.3)
    curves = LiveCurves(run)
    started = time.monotonic()
    for epoch in range(1, 6):
        curves(EpochRecord(epoch, 1.0 / epoch, 0.9, 0.4, 0.91, 1e-3, 1.0))
    assert time.monotonic() - started < 0.2  # training did not wait for the store
    end_quietly(run, "FAILED", "training diverged")  # as `settled` ends it on an error
    client = mlflow_client()
    assert client.get_run(run.run_id).info.status == "FAILED"
    history = client.get_metric_history(run.run_id, "train/loss")
    assert sorted(point.step for point in history) == [1, 2, 3, 4, 5]


def test_a_bug_on_the_senders_thread_is_raised_by_flush(start):
    from pipeline.nn import EpochRecord
    from pipeline.tracking.curves import LiveCurves

    run = start("curves")

    def broken(*args, **kwargs):
        raise ValueError("a bug in logging, not the store")

    run.log_epochs = broken
    curves = LiveCurves(run)
    curves(EpochRecord(1, 0.5, 0.9, 0.4, 0.91, 1e-3, 1.0))
    with pytest.raises(ValueError, match="a bug in logging"):
        curves.flush()


def test_files_uploaded_together_all_arrive_and_a_failure_is_one_store_error(start, tmp_path):
    from pipeline.tracking.store import StoreError

    run = start("uploads")
    files = []
    for name in ("a.json", "b.csv", "c.txt"):
        (tmp_path / name).write_text(name)
        files.append((tmp_path / name, "reports" if name != "c.txt" else None))
    run.log_artifacts_together(files)
    client = mlflow_client()
    assert {info.path for info in client.list_artifacts(run.run_id, "reports")} == {
        "reports/a.json", "reports/b.csv"
    }  # fmt: skip
    assert "c.txt" in {info.path for info in client.list_artifacts(run.run_id)}
    with pytest.raises(StoreError, match="log_artifact"):
        run.log_artifacts_together([(tmp_path / "a.json", "again"), (tmp_path / "gone", "again")])
    assert [info.path for info in client.list_artifacts(run.run_id, "again")] == ["again/a.json"]


def test_tags_and_metrics_go_in_one_batch(start):
    run = start("batch")
    calls = []
    log_batch = run.client.log_batch
    run.client.log_batch = lambda *args, **kwargs: calls.append(1) or log_batch(*args, **kwargs)
    run.log_batch({"test/accuracy": 0.5, "best/epoch": 3}, {"model.sha256": "ab", "k": "v"})
    run.set_tags({"x": "1", "y": "2"})
    assert len(calls) == 2  # one request each, not one per tag
    logged = mlflow_client().get_run(run.run_id).data
    assert logged.metrics == {"test/accuracy": 0.5, "best/epoch": 3.0}
    assert {key: logged.tags[key] for key in ("model.sha256", "k", "x", "y")} == {
        "model.sha256": "ab", "k": "v", "x": "1", "y": "2"
    }  # fmt: skip


def test_a_write_done_later_that_fails_fails_the_run_in_one_line(start):
    from pipeline.tracking.runs import settled
    from pipeline.tracking.store import StoreError

    run = start("later")
    overlapped = []

    def store_gone():
        raise StoreError("the MLflow store x failed in log_inputs (connection refused)")

    run.later(overlapped.append, "the start's files")  # runs while the block goes on
    run.later(store_gone)  # fails on the run's thread, and again when the run settles
    with pytest.raises(StoreError, match="failed in log_inputs"), settled(run):
        pass
    assert overlapped == ["the start's files"]
    ended = mlflow_client().get_run(run.run_id)
    assert ended.info.status == "FAILED"
    assert "failed in log_inputs" in ended.data.tags["error"]


def test_a_write_that_failed_while_the_store_was_away_is_made_again(start):
    from pipeline.tracking.runs import settled
    from pipeline.tracking.store import StoreError

    run = start("later")
    tries = []

    def away_then_back():
        tries.append(1)
        if len(tries) == 1:
            raise StoreError("the MLflow store x failed in log_artifact (connection refused)")

    run.later(away_then_back)
    with settled(run):
        pass
    assert len(tries) == 2
    assert mlflow_client().get_run(run.run_id).info.status == "FINISHED"


def test_a_store_failure_in_a_write_done_later_is_one_store_error(start):
    from mlflow.exceptions import MlflowException

    from pipeline.tracking.runs import settled
    from pipeline.tracking.store import StoreError

    run = start("later")

    def search_runs():  # as marking stale runs fails with the server gone
        raise MlflowException(
            "API request to http://127.0.0.1:1/api/2.0/mlflow/runs/search\nfailed"
        )

    run.later(search_runs)
    with pytest.raises(StoreError) as raised, settled(run):
        pass
    assert "failed in search_runs (API request to" in str(raised.value)
    assert "\n" not in str(raised.value)
