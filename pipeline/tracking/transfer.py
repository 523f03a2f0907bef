"""Copy an experiment's runs from one MLflow store to another: the local mlflow.db into the
team's server (`python -m pipeline.runs copy-to URI`).

Each run arrives whole: its name, start and end times, status, params, every metric's full
history, tags, dataset inputs and artifacts. A sweep's children point at their copied parent.
Each copy is tagged `copied_from=<source run id>`, so running the command again copies only the
runs not copied yet. Logged models (the pyfunc) stay behind: log them again with `dvc repro -f
evaluate` against the server, or register them there.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable

import mlflow
from mlflow.entities import Metric, Param

from pipeline.tracking.runs import log_inputs

COPIED_FROM = "copied_from"
PARENT_TAG = "mlflow.parentRunId"
BATCH = 1000  # metrics per request (MLflow's limit); params go by 100


def copy_experiment(
    source_uri: str, target_uri: str, experiment: str, say: Callable[[str], None] = print
) -> list[str]:
    """Copy the runs of `experiment` not copied yet; return the new run ids."""
    source = mlflow.MlflowClient(source_uri)
    target = mlflow.MlflowClient(target_uri)
    found = source.get_experiment_by_name(experiment)
    if found is None:
        return []
    made = target.get_experiment_by_name(experiment)
    target_id = made.experiment_id if made else target.create_experiment(experiment)
    runs = source.search_runs([found.experiment_id], max_results=50_000)
    copied = {
        run.data.tags[COPIED_FROM]: run.info.run_id
        for run in target.search_runs([target_id], max_results=50_000)
        if COPIED_FROM in run.data.tags
    }
    # Parents before their children, so each child can name its parent's copy.
    runs.sort(key=lambda run: PARENT_TAG in run.data.tags)
    new_ids = []
    for run in runs:
        if run.info.run_id in copied:
            continue
        copied[run.info.run_id] = copy_run(
            source, target, run, target_id, copied_tags(run, copied), run.info.run_name
        )
        new_ids.append(copied[run.info.run_id])
        say(f"copied {run.info.run_id} ({run.info.run_name}) as {copied[run.info.run_id]}")
    return new_ids


def copied_tags(run, copied: dict[str, str]) -> dict[str, str]:
    """The run's tags for its copy: `copied_from`, and its parent's copy as its parent."""
    tags = {key: value for key, value in run.data.tags.items() if key != PARENT_TAG}
    tags[COPIED_FROM] = run.info.run_id
    parent = run.data.tags.get(PARENT_TAG)
    if parent in copied:
        tags[PARENT_TAG] = copied[parent]
    return tags


def copy_run(source, target, run, experiment_id: str, tags: dict[str, str], name: str) -> str:
    """Log `run` (of the store `source` reads) whole into `experiment_id` of `target`, with
    these tags and name; return the copy's id."""
    created = target.create_run(
        experiment_id, start_time=run.info.start_time, tags=tags, run_name=name
    )
    run_id = created.info.run_id
    params = [Param(key, value) for key, value in run.data.params.items()]
    for start in range(0, len(params), 100):
        target.log_batch(run_id, params=params[start : start + 100])
    history = [
        Metric(key, point.value, point.timestamp, point.step)
        for key in run.data.metrics
        for point in source.get_metric_history(run.info.run_id, key)
    ]
    for start in range(0, len(history), BATCH):
        target.log_batch(run_id, metrics=history[start : start + BATCH])
    if run.inputs and run.inputs.dataset_inputs:
        log_inputs(target, run_id, list(run.inputs.dataset_inputs))
    with tempfile.TemporaryDirectory() as scratch:
        if source.list_artifacts(run.info.run_id):
            local = source.download_artifacts(run.info.run_id, "", scratch)
            target.log_artifacts(run_id, local)
    if run.info.status != "RUNNING":
        target.set_terminated(run_id, run.info.status, end_time=run.info.end_time)
    return run_id
