"""Stage `evaluate`: score the trained network on the untouched test set.

Reads `models/model.npz`, `data/normalised/test.npz` and the training history, and writes,
each atomically (pipeline/evaluation/reports.py):

    reports/test_metrics.json     test accuracy and loss, macro F1, per-class precision/recall/F1
    reports/confusion.csv         one `actual,predicted` row per test image (DVC confusion plot)
    reports/figures/*.png         confusion heatmap, training curves, misclassified digits

With tracking on, all of it and the model (an MLflow pyfunc) go into the run that trained
models/model.npz (found by the SHA-256 of the weights it saved). Run by `dvc repro`, and only
then, the model is registered and the registry alias moved to it; see
pipeline/tracking/registry.py for promoting another one.

    python -m pipeline.evaluate
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import astuple

import hydra
from omegaconf import DictConfig, OmegaConf

from pipeline.evaluation.reports import evaluate_model, load_model
from pipeline.nn import set_lanes
from pipeline.plumbing.compute import lanes_for, pin
from pipeline.plumbing.config import params_readable, run_by_dvc, stage_config
from pipeline.plumbing.datasets import load_dataset
from pipeline.plumbing.errors import stage_errors
from pipeline.plumbing.files import read_columns
from pipeline.plumbing.paths import (
    EVALUATE,
    NORMALISED_TEST,
    SPLIT_DEV,
    SPLIT_TRAIN,
    TRAIN,
    EvaluateOutputs,
)
from pipeline.plumbing.process import skip_last_collection
from pipeline.plumbing.publish import staged_outputs
from pipeline.plumbing.schema import Config


def evaluate_in_project(config: Config, resolved_yaml: str = "") -> dict:
    """Score the project's trained model on the test set, write the reports and, with
    tracking on, log them into the training's run; return the test metrics."""
    network = load_model(TRAIN.model)
    test = load_dataset(NORMALISED_TEST, made_by="normalise")
    history = read_columns(TRAIN.history, made_by="train")
    # Staged first: an output folder that cannot be written fails before the run is reopened.
    with staged_outputs(astuple(EVALUATE)) as outputs:
        run, settled, failed_after = None, contextlib.nullcontext, contextlib.nullcontext
        if config.tracking.enabled:
            # Imported only when tracking is on: mlflow costs over a second to import.
            from pipeline.tracking import training_runs
            from pipeline.tracking.runs import failed_after, settled

            data = {"train": SPLIT_TRAIN, "dev": SPLIT_DEV}
            run = training_runs.reopen_training_run(config, resolved_yaml, TRAIN, data)
            training_runs.tag_test_data(run, NORMALISED_TEST)
        staged = EvaluateOutputs(*outputs.paths)
        with settled(run):
            metrics = evaluate_model(
                network, test, history, staged, dev_seen=config.train.include_dev
            )
            if run is not None:
                # Only the workspace pipeline (`dvc repro`) moves the alias; experiments do not.
                register = run_by_dvc() and not os.environ.get("DVC_EXP_NAME")
                training_runs.log_evaluation(
                    run, config, metrics, staged, TRAIN.model, test["images"][:2], register
                )
        with failed_after(run):  # the run says so if its reports cannot be put in place
            outputs.publish()
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    with stage_errors("evaluate"):
        config = stage_config(cfg)
        pin(config.compute, "evaluate")  # may restart this process: before any work
        set_lanes(lanes_for(config.compute))  # scoring shares its products over the cores
        metrics = evaluate_in_project(config, OmegaConf.to_yaml(cfg, resolve=True))
        print(
            f"evaluate: test accuracy {metrics['accuracy']:.4f}, loss {metrics['loss']:.4f}, "
            f"macro F1 {metrics['macro_f1']:.4f}; figures in {EVALUATE.figures}"
        )


if __name__ == "__main__":
    skip_last_collection()
    params_readable("evaluate")
    main()
