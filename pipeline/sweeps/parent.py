"""A sweep's MLflow parent run: started before its first trial, ended with the study.

    parent = start_parent(config, name, tags)      # the trials' runs are its children
    finish_parent(parent, study)                   # best child, the study's counts, its figures
    end_unfinished(parent, "KILLED", reason)       # a sweep stopped: no run left RUNNING

The parent records the best finished child by the dev accuracy of its saved model (test
accuracy is reported, never used to choose), how many trials completed, were pruned or failed,
and three figures drawn by `optuna.visualization.matplotlib`: the optimisation history, every
trial's dev-accuracy curve (pruned ones marked where they stopped) and the importances.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import mlflow
import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from pipeline.plumbing.schema import TrackingConfig
from pipeline.tracking.runs import Run
from pipeline.tracking.store import open_store, runs_link
from pipeline.tracking.tags import KIND_TAG, code_tags, source_tags

SELECTION_METRIC = "model/dev_accuracy"  # dev accuracy of the weights each job saved


def tracking_of(config: DictConfig) -> TrackingConfig:
    merged = OmegaConf.merge(OmegaConf.structured(TrackingConfig), config.tracking)
    return OmegaConf.to_object(merged)


def start_parent(config: DictConfig, name: str, tags: dict[str, str]) -> str:
    """Start the sweep's parent run; return its id."""
    tracking = tracking_of(config)
    space = OmegaConf.select(config, "hydra.sweeper.params") or {}
    tags = {
        **source_tags(),
        "mlflow.source.git.commit": code_tags()[0].get("mlflow.source.git.commit", ""),
        KIND_TAG: "sweep",
        "sweep.sampler": str(config.hydra.sweeper.sampler._target_).rsplit(".", 1)[-1],
        "sweep.pruner": str(config.hydra.sweeper.pruner._target_).rsplit(".", 1)[-1],
        **tags,
    }
    params = {
        "sweep.overrides": " ".join(config.hydra.overrides.task) or "(none)",
        "sweep.params": " ".join(f"{key}={value}" for key, value in space.items()) or "(none)",
    }
    experiment_id = open_store(tracking)
    run = Run.start(experiment_id, name=name, tags=tags, params=params)
    print(f"sweep: MLflow parent run {run.run_id}: {runs_link(experiment_id)}")
    return run.run_id


def best_child(parent_id: str) -> tuple[Any | None, int]:
    """The finished child with the highest selection metric, and how many children finished."""
    client = mlflow.MlflowClient()
    experiment_id = client.get_run(parent_id).info.experiment_id
    children = client.search_runs(
        [experiment_id],
        f"tags.mlflow.parentRunId = '{parent_id}' and attributes.status = 'FINISHED'",
        order_by=[f"metrics.`{SELECTION_METRIC}` DESC"],
        max_results=10000,
    )
    scored = [run for run in children if SELECTION_METRIC in run.data.metrics]
    return (scored[0] if scored else None), len(children)


def study_counts(study: optuna.Study) -> dict[str, int]:
    trials = study.get_trials(deepcopy=False)
    states = {
        "complete": TrialState.COMPLETE,
        "pruned": TrialState.PRUNED,
        "failed": TrialState.FAIL,
    }
    return {name: sum(t.state == state for t in trials) for name, state in states.items()}


def finish_parent(
    parent: str, study: optuna.Study | None, status: str = "FINISHED", reason: str | None = None
) -> None:
    """Record the best finished child, the study's counts and figures on the parent run and
    end it with `status`, if it is still RUNNING (in a shared study, two workers may both see
    the last trial end)."""
    run = Run(parent)
    if run.client.get_run(parent).info.status != "RUNNING":
        return
    best, children = best_child(parent)
    summary = {"sweep/children": children}
    if study is not None:
        summary.update({f"study/{name}": count for name, count in study_counts(study).items()})
        with contextlib.suppress(Exception):  # a figure is a bonus, never the sweep's end
            log_figures(run, study)
    if best is not None:
        summary["best/dev_accuracy"] = best.data.metrics[SELECTION_METRIC]
        if "test/accuracy" in best.data.metrics:
            summary["best/test_accuracy"] = best.data.metrics["test/accuracy"]
        run.set_tags({"best_run_id": best.info.run_id, "best_run_name": best.info.run_name})
    run.log_metrics(summary)
    if reason is not None:
        run.set_tags({"error": reason})
    run.end(status)
    if best is not None:
        print(
            f"sweep: best dev accuracy {summary['best/dev_accuracy']:.4f} in run "
            f"{best.info.run_name} ({best.info.run_id}) of {children}"
        )


def log_figures(run: Run, study: optuna.Study) -> None:
    """The study's three figures, as PNGs in the parent's `figures/` artifacts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    pruned = study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
    drawers = {"optimization_history": plots.plot_optimization_history}
    drawers["intermediate_values"] = plots.plot_intermediate_values
    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) >= 2:
        drawers["param_importances"] = plots.plot_param_importances
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib figures experimental
        files = []
        for name, draw in drawers.items():
            axes = draw(study)
            if name == "intermediate_values" and pruned:
                ends = [max(t.intermediate_values.items()) for t in pruned if t.intermediate_values]
                axes.scatter(*zip(*ends, strict=True), marker="x", color="red", zorder=3,
                             label="pruned")  # fmt: skip
                axes.legend(loc="lower right", fontsize="small")
            path = Path(folder) / f"{name}.png"
            axes.figure.savefig(path, dpi=100, bbox_inches="tight")
            plt.close(axes.figure)
            files.append((path, "figures"))
        run.log_artifacts_together(files)


def end_unfinished(parent: str, status: str, reason: str, only_trials=None) -> str:
    """End `parent`'s children still RUNNING (those of `only_trials`, if given, and then not
    the parent) with `status`, the reason in their `error` tag; say what was done."""
    client = mlflow.MlflowClient()
    experiment_id = client.get_run(parent).info.experiment_id
    children = client.search_runs(
        [experiment_id], f"tags.mlflow.parentRunId = '{parent}'", max_results=10000
    )
    unfinished = [
        run for run in children if run.info.status == "RUNNING"
        and (only_trials is None or run.data.tags.get("optuna.trial") in only_trials)
    ]  # fmt: skip
    for run in unfinished:
        end_if_running(client, run.info.run_id, status, f"the sweep ended before it: {reason}")
    if only_trials is not None:
        return f"{len(unfinished)} run(s) of its trials {status}"
    end_if_running(client, parent, status, reason)
    kept = sum(run.info.status == "FINISHED" for run in children)
    return (
        f"parent run {parent} {client.get_run(parent).info.status}, {len(unfinished)} unfinished "
        f"trial run(s) {status}, {kept} finished trial run(s) kept"
    )


def end_if_running(client, run_id: str, status: str, reason: str) -> None:
    """End a run still RUNNING with `status`, `reason` in its `error` tag; leave an ended one."""
    if client.get_run(run_id).info.status == "RUNNING":
        client.set_tag(run_id, "error", reason)
        client.set_terminated(run_id, status)


def say(line: str) -> None:
    print(f"sweep: {line}", file=sys.stderr, flush=True)
