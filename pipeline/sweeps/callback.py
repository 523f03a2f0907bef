"""Hydra multirun sweeps as MLflow runs: one parent per sweep, one child per job.

conf/config.yaml registers `SweepRuns` as a Hydra callback. When a sweep starts, it opens the
store in this one process before any job starts (a fresh SQLite store opened by several
processes at once fails while they all migrate it), creates the parent run and hands its id to
the jobs in $PIPELINE_SWEEP_PARENT_RUN_ID (joblib's worker processes inherit it; MLflow's own
MLFLOW_RUN_ID would make the first child resume and overwrite the parent). Each job logs a
child run (job.py). When the sweep ends, the parent records the best child by dev
accuracy (test accuracy is reported, never used to choose) and ends FINISHED. Hydra skips that
hook when a job fails or the sweep is stopped: ending.py settles those ends.

    python -m pipeline.train -m optimizer=sgd,adam model.hidden=[128],[256]
    python -m pipeline.train -m sweep=grid                     # a preset grid, conf/sweep/
    python -m pipeline.train -m sweep=optuna                   # Optuna search
    python -m pipeline.train -m sweep=optuna_shared            # one study, many workers

In a shared study (shared.py) the parent belongs to the study, not to one process: the first
worker starts it, the others find it, and the worker that sees the last trial end ends it.

Hydra instantiates this callback for every run of the train stage, multirun or not, so mlflow
and the tracking package are imported inside the hooks, only when a sweep logs: importing
mlflow costs over a second.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from pipeline.plumbing.compute import PARALLEL_JOBS_ENV, pin
from pipeline.plumbing.schema import TrackingConfig

PARENT_ENV = "PIPELINE_SWEEP_PARENT_RUN_ID"
LAUNCHER_ENV = "PIPELINE_SWEEP_LAUNCHER_PID"  # the process that runs the sweep (ending.py)
STORE_ENV = "PIPELINE_SWEEP_STORE_URI"  # for a job that fails before it opened the store
SELECTION_METRIC = "model/dev_accuracy"  # dev accuracy of the weights each job saved
STUDY_ENV = "PIPELINE_SHARED_STUDY"  # in the worker of a shared study: the study's name
WORKER_ENV = "PIPELINE_SHARED_WORKER"  # and the worker, host:pid
SHARED_SWEEPER = "hydra_plugins.pipeline_shared_study.SharedOptunaSweeper"  # sweeps/shared.py
WARM_LAUNCHER = "hydra_plugins.pipeline_warm_launcher.WarmLauncher"  # sweeps/warm.py


def parent_run_id() -> str | None:
    return os.environ.get(PARENT_ENV) or None


def tracking_of(config: DictConfig) -> TrackingConfig:
    merged = OmegaConf.merge(OmegaConf.structured(TrackingConfig), config.tracking)
    return OmegaConf.to_object(merged)


def best_child(parent_id: str) -> tuple[Any | None, int]:
    """The finished child with the highest selection metric, and how many children finished."""
    import mlflow  # here, not at the top: see the module docstring

    client = mlflow.MlflowClient()
    experiment_id = client.get_run(parent_id).info.experiment_id
    children = client.search_runs(
        [experiment_id],
        f"tags.mlflow.parentRunId = '{parent_id}' and attributes.status = 'FINISHED'",
        order_by=[f"metrics.`{SELECTION_METRIC}` DESC"],
        max_results=1000,
    )
    scored = [run for run in children if SELECTION_METRIC in run.data.metrics]
    return (scored[0] if scored else None), len(children)


def sweep_params(config: DictConfig) -> str:
    """The search space a preset set in hydra.sweeper.params (grid values or Optuna ranges)."""
    params = OmegaConf.select(config, "hydra.sweeper.params")
    if not params:
        return "(none)"
    return " ".join(f"{key}={value}" for key, value in params.items())


def sweep_name(config: DictConfig, sweep_dir: Path) -> str:
    """`sweep grid 2026-12-03 13-04-33`: the preset (conf/sweep/), if any, and when."""
    preset = OmegaConf.select(config, "hydra.runtime.choices.sweep")
    return " ".join(["sweep", *([preset] if preset else []), sweep_dir.parent.name, sweep_dir.name])


class SweepRuns(Callback):
    """Opens the parent run before the jobs and summarises it after them."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Before any job: joblib's workers inherit the settings (and so compute alike).
        pin(config.compute, "sweep")  # may restart this process with them
        os.environ[LAUNCHER_ENV] = str(os.getpid())
        # Jobs running at once share the cores: each job's products get its share of lanes.
        jobs = OmegaConf.select(config, "hydra.launcher.n_jobs", default=None)
        if PARALLEL_JOBS_ENV not in os.environ:  # else set for workers beside this launcher
            os.environ[PARALLEL_JOBS_ENV] = str(jobs if isinstance(jobs, int) else 1)
            self.set_jobs = True
        tracking = tracking_of(config)
        if warm_launcher(config):  # the disk reads while the imports and the store take time
            from pipeline.sweeps.warm import read_ahead

            read_ahead(tracking.enabled)
        if not tracking.enabled:
            return
        import mlflow  # here, not at the top: see the module docstring

        from pipeline.tracking.store import open_store
        from pipeline.tracking.training_runs import mark_stale_runs

        experiment_id = open_store(tracking)
        os.environ[STORE_ENV] = mlflow.get_tracking_uri()
        # Once for the sweep, not in every job: runs left RUNNING by processes that are gone.
        mark_stale_runs(experiment_id, "sweep")
        if shared_study(config):  # its parent is the study's, found or made by shared.py
            return
        sweep_dir = Path(str(config.hydra.sweep.dir))
        tags = {
            "sweep.dir": str(sweep_dir),
            "host": socket.gethostname(),  # with pid: `make stale-runs` can tell it was killed
            "pid": str(os.getpid()),
        }
        os.environ[PARENT_ENV] = start_parent(config, sweep_name(config, sweep_dir), tags)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from pipeline.sweeps.warm import close_pools

        close_pools()  # the warm launcher's workers, idle now
        parent = parent_run_id()
        if parent is not None and not shared_study(config):  # shared: its last worker ends it
            finish_parent(parent)
        for name in (PARENT_ENV, STORE_ENV, LAUNCHER_ENV):
            os.environ.pop(name, None)
        if getattr(self, "set_jobs", False):
            os.environ.pop(PARALLEL_JOBS_ENV, None)


def warm_launcher(config: DictConfig) -> bool:
    """Whether this sweep's jobs run in the warm launcher's forked workers (sweeps/warm.py)."""
    return OmegaConf.select(config, "hydra.launcher._target_") == WARM_LAUNCHER


def shared_study(config: DictConfig) -> bool:
    """Whether this sweep's workers share one Optuna study (sweep=optuna_shared)."""
    return OmegaConf.select(config, "hydra.sweeper._target_") == SHARED_SWEEPER


def start_parent(config: DictConfig, name: str, tags: dict[str, str]) -> str:
    """Start the sweep's parent run in the store the callback opened; return its id."""
    from pipeline.tracking.runs import Run  # here, not at the top: see the module docstring
    from pipeline.tracking.store import open_store
    from pipeline.tracking.tags import KIND_TAG, code_tags, source_tags

    tracking = tracking_of(config)
    overrides = " ".join(config.hydra.overrides.task)
    tags = {
        **source_tags(),
        "mlflow.source.git.commit": code_tags()[0].get("mlflow.source.git.commit", ""),
        KIND_TAG: "sweep",
        "sweep.sweeper": str(config.hydra.sweeper._target_),
        "sweep.launcher": str(config.hydra.launcher._target_),
        **tags,
    }
    run = Run.start(
        open_store(tracking),
        name=name,
        tags=tags,
        params={"sweep.overrides": overrides or "(none)", "sweep.params": sweep_params(config)},
    )
    print(f"sweep: MLflow parent run {run.run_id} in {tracking.experiment}")
    return run.run_id


def finish_parent(parent: str, status: str = "FINISHED", reason: str | None = None) -> None:
    """Record the best finished child on the parent run and end it with `status` (if it is
    still RUNNING: in a shared study, two workers may both see the last trial end)."""
    from pipeline.tracking.runs import Run  # here, not at the top: see the module docstring

    run = Run(parent)
    if run.client.get_run(parent).info.status != "RUNNING":
        return
    best, children = best_child(parent)
    summary = {"sweep/children": children}
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
