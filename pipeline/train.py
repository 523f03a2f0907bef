"""Stage `train`: train the from-scratch network on the split data.

Reads `data/split/{train,dev}.npz`, checks every hyperparameter before any work, trains with a
progress bar over the epochs, and writes, each atomically:

    models/model.npz               weights and architecture (loads with allow_pickle=False)
    reports/train_metrics.json     final and best train/dev loss and accuracy, epochs
    reports/train_history.csv      one row per epoch (DVC plots)

and, inside `dvc exp run` only, reports/mlflow_run.json: the experiment's MLflow run, which
`dvc exp show` lists. What is local to one machine (seconds, run ids) goes to MLflow, not into
the committed outputs, so a clean clone's `dvc repro` leaves `git status` clean.

With tracking on, the training is one MLflow run with its curves logged live; the outputs
replace the previous ones only once that run has ended FINISHED. A diverging loss, Ctrl-C or
SIGTERM stops with one line and the previous outputs in place. A tracking store that stops
answering costs a warning while training; if it still does not answer at the end, the new
model is kept in models/unpublished/<run id>/ and the previous outputs stay.

Run by Hydra multirun (`-m`), each job is a trial of the sweep's Optuna study instead
(pipeline/sweeps/): it writes into its own folder under multirun/, never into the DVC outputs,
scores its model on the test set too, and reports each epoch's dev accuracy to its trial,
which the sweep's pruner may stop there.

    python -m pipeline.train                               # the default network
    python -m pipeline.train experiment=notes              # the handwritten notes' network
    python -m pipeline.train -m optimizer=sgd,adam model.hidden=[128],[256]
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import astuple
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from pipeline.evaluation.reports import evaluate_model, load_model
from pipeline.plumbing.compute import check_in_force, pin
from pipeline.plumbing.config import ConfigError, params_readable, run_by_dvc, stage_config
from pipeline.plumbing.errors import PipelineError, stage_errors
from pipeline.plumbing.files import read_columns, write_json
from pipeline.plumbing.paths import (
    CHECKPOINT,
    EXPERIMENT_RUN,
    NORMALISED_TEST,
    ROOT,
    SPLIT_DEV,
    SPLIT_TRAIN,
    TRAIN,
    UNPUBLISHED,
    EvaluateOutputs,
    TrainOutputs,
)
from pipeline.plumbing.phases import phase, start_job, write_phases
from pipeline.plumbing.process import skip_last_collection
from pipeline.plumbing.publish import shown, staged_outputs
from pipeline.plumbing.schema import Config
from pipeline.sweeps.trial import SweepTrial
from pipeline.tracking.tags import PRUNED_TAG, run_name
from pipeline.training.checkpoints import Checkpoints, fingerprint
from pipeline.training.hyperparameters import check_hyperparameters, run_summary
from pipeline.training.trainer import load_split, run_training, sweep_data


def train_in_project(
    config: Config,
    resolved_yaml: str,
    root: Path = ROOT,
    name: str | None = None,
    trial: SweepTrial | None = None,
) -> dict:
    """Train on the project's split data, as one MLflow run if tracking is on, and replace the
    outputs under `root` together once the run has ended FINISHED; a failure anywhere leaves
    the previous outputs and the run they name. Returns the training metrics.

    As a sweep's job (`trial`), the outputs go to the job's folder, the model is scored on the
    test set too, the run is a child of the sweep's, and each epoch's dev accuracy is reported
    to the trial, which the pruner may stop."""
    check_hyperparameters(config)
    if trial is not None and config.train.include_dev:
        raise ConfigError(
            "train.include_dev=true trains on the dev set this sweep selects on: sweep with "
            "train.include_dev=false, then train the chosen settings with it true"
        )
    with phase("data"):
        train, dev, test = sweep_data() if trial else (*load_split(SPLIT_TRAIN, SPLIT_DEV), None)
    data = {"train": SPLIT_TRAIN, "dev": SPLIT_DEV}
    where = trial.checkpoint if trial else root / CHECKPOINT
    keeper = Checkpoints(where, fingerprint(config, data), config.train.checkpoint)
    if keeper.load(config.train.resume):
        print(f"train: going on from epoch {keeper.epoch + 1}, the checkpoint's next")
    tags = {}
    if trial is not None:
        data["test"] = NORMALISED_TEST  # read by this job too
        tags = trial.tags(keeper.epoch)
    paths = astuple(TrainOutputs.under(root))
    evaluated = EvaluateOutputs.under(root)
    if trial is not None:  # the figures only if asked: a job spends its time learning
        paths += (evaluated.confusion, evaluated.metrics)
        paths += (evaluated.figures,) if config.tracking.sweep_figures else ()
    # Staged first: an output folder that cannot be written fails before a run is started.
    with staged_outputs(paths) as outputs:
        run, settled, failed_after = None, contextlib.nullcontext, contextlib.nullcontext
        if config.tracking.enabled:
            # Imported only when tracking is on: mlflow costs over a second to import.
            from pipeline.tracking import continued, training_runs
            from pipeline.tracking.runs import failed_after, settled
            from pipeline.tracking.store import TrackingError

            kind = "sweep-job" if trial else "pipeline" if run_by_dvc() else "direct"
            parent = trial.parent_run_id if trial else None
            run = continued.training_run(
                config, resolved_yaml, kind, name, data, keeper, parent, tags or None
            )
        staged = TrainOutputs(*outputs.paths[:3])
        with settled(run):
            curves = None
            if run is not None:
                dev_name = training_runs.dev_curves(config)
                curves = training_runs.LiveCurves(run, dev_name, keeper.stamps, keeper.sendable)
            label = f"trial {trial.trial.number}" if trial else "train"
            metrics = run_training(config, train, dev, staged, on_epoch=each_epoch(curves, trial),
                                   keeper=keeper, label=label)  # fmt: skip
            test_metrics = None
            if trial is not None:
                staged_paths = dict(zip(paths, outputs.paths, strict=True))
                evaluated = EvaluateOutputs(
                    *(staged_paths.get(path, path) for path in astuple(evaluated))
                )
                with phase("data"):
                    history = read_columns(staged.history, made_by="train")
                network = load_model(staged.model)
                test_metrics = evaluate_model(
                    network, test, history, evaluated, config.tracking.sweep_figures
                )
                metrics["test"] = test_metrics
            if run is not None:
                try:
                    if trial is None:
                        training_runs.log_training(run, metrics, staged, curves)
                    else:
                        training_runs.log_sweep_job(
                            run, config, metrics, test_metrics, staged, evaluated, curves
                        )
                except TrackingError as error:
                    raise keep_aside(staged, root, run.run_id, error) from None
                if metrics["halted_at"] is not None:  # a filter in the UI: tags.pruned
                    run.set_tags({PRUNED_TAG: str(metrics["halted_at"])})
        # Only once the run ended FINISHED (or with tracking off) do the new outputs go in
        # place; if they cannot, the run ends FAILED after all, saying why.
        with failed_after(run):
            outputs.publish()
    keeper.remove()  # the training is whole, in its outputs
    if trial is not None and metrics["halted_at"] is not None:
        trial.prune()
    if os.environ.get("DVC_EXP_NAME") and root == ROOT:
        write_json(EXPERIMENT_RUN, {"run_id": run.run_id if run is not None else None})
    return metrics


def each_epoch(curves, trial: SweepTrial | None):
    """What runs after each epoch: the run's live curves, then the trial's report, whose
    answer (the pruner's) stops the training."""

    def after(record) -> bool:
        if curves is not None:
            curves(record)
        return trial.report(record) if trial is not None else False

    return after


def keep_aside(staged: TrainOutputs, root: Path, run_id: str, error: Exception) -> PipelineError:
    """Move a trained model whose run could not be completed to models/unpublished/<run id>/
    (the DVC outputs keep the previous set); return the one-line error that says so."""
    kept = root / UNPUBLISHED / run_id
    kept.mkdir(parents=True, exist_ok=True)
    for path in astuple(staged):
        if path.exists():  # the reports may be on another filesystem than models/
            shutil.move(path, kept / path.name)
    return PipelineError(
        f"{error} at the end of the run; the trained model and its reports are kept in "
        f"{kept.relative_to(root)}/, and {TRAIN.model.relative_to(ROOT)} and the reports are the "
        "previous ones; train again once the store answers (or with tracking.enabled=false); "
        "if the store could not be told, the next training on this host (or `make stale-runs`) "
        "ends the run KILLED"
    )


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    """Train (in a sweep: train and evaluate); return the saved model's dev accuracy, the
    objective a sweep maximises."""
    start_job()
    trial = SweepTrial.of_job()
    with stage_errors("train", exit_on_error=trial is None):
        if trial is None and HydraConfig.get().mode == RunMode.MULTIRUN:  # another sweeper's job
            raise ConfigError(
                "a multirun job without a trial would write the project's own outputs: sweep "
                "with the project's sweeper (hydra/sweeper=study, the default)"
            )
        config = stage_config(cfg)
        if trial is not None:  # the sweeper pinned it for every job (sweeps/study.py)
            check_in_force(config.compute, "train")
        else:
            pin(config.compute, "train")  # may restart this process: before any work
        resolved_yaml = OmegaConf.to_yaml(cfg, resolve=True)
        if trial is not None:
            job = HydraConfig.get()
            root, name = trial.job_dir, job.job.override_dirname or None
        else:
            choices = HydraConfig.get().runtime.choices
            root, name = ROOT, run_name(run_summary(config), choices.get("experiment"))
        metrics = train_in_project(config, resolved_yaml, root, name, trial)
        best, epochs = metrics["best"], metrics["epochs_run"]
        if config.train.include_dev:
            seen_accuracy = metrics["model"]["dev_accuracy"]
            scored = f"dev accuracy {seen_accuracy:.4f} (trained on) after {epochs} epochs"
        else:
            best_accuracy = best["dev_accuracy"]
            scored = f"best dev accuracy {best_accuracy:.4f} at epoch {best['epoch']} of {epochs}"
        if metrics["halted_at"] is not None:
            scored += f", pruned after epoch {metrics['halted_at']}"
        model = TrainOutputs.under(root).model
        print(f"train: {scored}, {metrics['train_seconds']:.1f} s; model in {shown(model)}")
        if "test" in metrics:
            accuracy = metrics["test"]["accuracy"]
            print(f"train: test accuracy {accuracy:.4f} (reported, not selected on)")
        write_phases("sweep-job" if trial else "training")
        return metrics["model"]["dev_accuracy"]


if __name__ == "__main__":
    skip_last_collection()
    params_readable("train")
    main()
