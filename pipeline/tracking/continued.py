"""The run a training logs to when it goes on from a checkpoint (training/checkpoints.py): the
run it was logging to when it stopped, RUNNING again, or a new one if the store lacks it.

    run = training_run(config, resolved_yaml, kind, name, data_files, keeper)

Either way the checkpoint's epochs are in the run's curves once each (sent again with the
stamps the checkpoint chose, which the store keeps one copy of), and the run's `resumed_at`
tag lists the epochs the training went on from.
"""

from __future__ import annotations

import time

import mlflow

from pipeline.plumbing.phases import phase
from pipeline.plumbing.schema import Config
from pipeline.tracking.curves import dev_curves
from pipeline.tracking.runs import Run
from pipeline.tracking.store import open_store, store_calls
from pipeline.tracking.training_runs import mark_stale_runs, start_training_run

RESUMED_TAG = "resumed_at"  # the epochs a training went on from after stopping: "41,97"


def training_run(
    config: Config,
    resolved_yaml: str,
    kind: str,
    name: str | None,
    data_files,
    keeper,
    parent_id: str | None = None,
    extra_tags: dict[str, str] | None = None,
) -> Run:
    """The run a training logs to: if it goes on from a checkpoint, the run it was logging
    to (RUNNING again, its `resumed_at` tag extended, `extra_tags` set); else, or if this
    store lacks that run, a new one. Either way the checkpoint's epochs are in its curves,
    each step once."""
    resumed_at = keeper.epoch + 1
    earlier = keeper.context.get("run_id") if keeper.epoch else None
    run = None
    if earlier:
        run = continued_run(config, earlier, resumed_at, extra_tags, mark_stale=not parent_id)
    if run is None:
        tags = {**(extra_tags or {}), **({RESUMED_TAG: str(resumed_at)} if keeper.epoch else {})}
        run = start_training_run(
            config, resolved_yaml, kind, name, data_files, parent_id, tags or None
        )
        if earlier:
            print(f"train: run {earlier} of the checkpoint is not in this store; run "
                  f"{run.run_id} records the whole training")  # fmt: skip
    if keeper.records:  # the store may lack those sent after the checkpoint was written
        dev = dev_curves(config)
        now = int(time.time() * 1000)
        stamps = [keeper.stamps.get(record.epoch) or now for record in keeper.records]
        run.later(run.log_epochs, keeper.records, stamps, dev)
    keeper.context["run_id"] = run.run_id
    return run


def continued_run(
    config: Config,
    run_id: str,
    resumed_at: int,
    extra_tags: dict[str, str] | None = None,
    mark_stale: bool = True,
) -> Run | None:
    """Run `run_id` of this store, RUNNING again in this process, its interruption's error
    tag gone; None if the store has no such live run."""
    from mlflow.exceptions import MlflowException

    with phase("log: store"):
        experiment_id = open_store(config.tracking)
    client = mlflow.MlflowClient()
    with store_calls("get_run"):
        try:
            found = client.get_run(run_id)
        except MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            return None
    if found.info.lifecycle_stage != "active" or found.info.experiment_id != experiment_id:
        return None
    run = Run.resume(run_id)
    earlier = found.data.tags.get(RESUMED_TAG)
    resumed = f"{earlier},{resumed_at}" if earlier else str(resumed_at)
    run.set_tags({**(extra_tags or {}), RESUMED_TAG: resumed})
    if "error" in found.data.tags:  # what stopped it: the run goes on
        with store_calls("delete_tag"):
            client.delete_tag(run_id, "error")
    if mark_stale:  # a sweep's launcher marks them once for all its jobs
        run.later(mark_stale_runs, experiment_id, "train")
    return run
