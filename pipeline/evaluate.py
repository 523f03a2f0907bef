"""Stage `evaluate`: score the trained network on the untouched test set.

Reads `models/model.npz`, `data/normalised/test.npz` and the training history, and writes,
each atomically:

    reports/test_metrics.json     test accuracy and loss, macro F1, per-class precision/recall/F1
    reports/confusion.csv         one `actual,predicted` row per test image (DVC confusion plot)
    reports/figures/*.png         confusion heatmap, training curves, misclassified digits

and logs all of it, with the model as an MLflow pyfunc, into the MLflow run that `train` opened
(its id is in reports/mlflow_run.json), then registers the model and moves the alias.

    python -m pipeline.evaluate
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig

from pipeline import figures
from pipeline.config import ROOT, stage_config
from pipeline.errors import PipelineError, stage_errors
from pipeline.io import load_arrays, write_json, write_text
from pipeline.nn import MLP, ModelFormatError
from pipeline.nn.train import predict_and_score
from pipeline.normalise import NORMALISED_DIR
from pipeline.scoring import classification_report, confusion_matrix
from pipeline.train import NUM_CLASSES, TrainOutputs, log_training


@dataclass
class EvaluateOutputs:
    metrics: Path
    confusion: Path
    figures: Path  # a folder

    @classmethod
    def under(cls, root: Path) -> EvaluateOutputs:
        reports = root / "reports"
        return cls(reports / "test_metrics.json", reports / "confusion.csv", reports / "figures")

    def figure(self, name: str) -> Path:
        return self.figures / f"{name}.png"


FIGURES = ("confusion_matrix", "training_curves", "misclassified")


def load_model(path: Path) -> MLP:
    if not path.is_file():
        raise PipelineError(f"{path} is missing: run `dvc repro train` first")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return MLP.from_arrays(arrays, source=str(path))
    except (OSError, ValueError) as error:
        raise ModelFormatError(
            f"{path} is unreadable ({error}): re-run `dvc repro train`"
        ) from None


def read_history(path: Path) -> dict[str, np.ndarray]:
    """The per-epoch history CSV that `train` wrote, as one float array per column."""
    if not path.is_file():
        raise PipelineError(f"{path} is missing: run `dvc repro train` first")
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    return {column: np.array([float(row[column]) for row in rows]) for column in rows[0]}


def confusion_csv(labels: np.ndarray, predicted: np.ndarray) -> str:
    lines = ["actual,predicted"]
    lines += [f"{actual},{guess}" for actual, guess in zip(labels, predicted, strict=True)]
    return "\n".join(lines) + "\n"


def evaluate_model(
    network: MLP, test: dict[str, np.ndarray], history: dict[str, np.ndarray], outputs
) -> dict:
    """Score `network` on `test`, write metrics, confusion rows and figures; return metrics."""
    images, labels = test["images"].astype(network.dtype, copy=False), test["labels"]
    predicted, loss = predict_and_score(network, images, labels)
    report = classification_report(labels, predicted, NUM_CLASSES)
    metrics = {"accuracy": report["accuracy"], "loss": loss, **report, "examples": len(labels)}
    write_json(outputs.metrics, metrics)
    write_text(outputs.confusion, confusion_csv(labels, predicted))
    figures.confusion_heatmap(
        confusion_matrix(labels, predicted, NUM_CLASSES), outputs.figure("confusion_matrix")
    )
    figures.training_curves(history, outputs.figure("training_curves"))
    figures.misclassified_grid(images, labels, predicted, outputs.figure("misclassified"))
    return metrics


def test_metric_values(metrics: dict) -> dict[str, float]:
    """The flat `test/...` metrics an MLflow run records."""
    values = {
        "test/accuracy": metrics["accuracy"],
        "test/loss": metrics["loss"],
        "test/macro_f1": metrics["macro_f1"],
    }
    for digit, scores in metrics["per_class"].items():
        values[f"test/f1_digit_{digit}"] = scores["f1"]
    return values


def log_evaluation(run, config, metrics, outputs, weights: Path, example, register) -> None:
    """Test metrics, figures and reports into `run`; the model too if tracking.log_model."""
    from pipeline.serving import log_pyfunc_model

    run.log_metrics(test_metric_values(metrics))
    run.log_artifact(outputs.metrics, "reports")
    for name in FIGURES:
        run.log_artifact(outputs.figure(name), "figures")
    if config.tracking.log_model:
        log_pyfunc_model(run, weights, example, register, config.tracking.alias)


def open_pipeline_run(config, train_outputs: TrainOutputs, test_path: Path):
    """The run `train` opened, reopened; a new one (params and curves from the files) if the
    store no longer has it, e.g. after mlflow.db was deleted."""
    from pipeline.config import flatten
    from pipeline.nn.train import EpochRecord
    from pipeline.split import SPLIT_DIR
    from pipeline.tracking import Run, file_sha256, open_store, run_tags

    experiment_id = open_store(config.tracking)
    record = json.loads(train_outputs.run.read_text()) if train_outputs.run.is_file() else {}
    if record.get("run_id") and Run(record["run_id"]).exists():
        run = Run.resume(record["run_id"])
    else:
        print("evaluate: the training's MLflow run is not in the store; logging a new one")
        data = {"train": SPLIT_DIR / "train.npz", "dev": SPLIT_DIR / "dev.npz"}
        data = {name: path for name, path in data.items() if path.is_file()}
        tags = run_tags("pipeline", config.seed, data)
        run = Run.start(experiment_id, tags=tags, params=flatten(asdict(config)))
        history = read_history(train_outputs.history)
        columns = ("train_loss", "train_accuracy", "dev_loss", "dev_accuracy", "learning_rate")
        for row, epoch in enumerate(history["epoch"]):
            values = [float(history[column][row]) for column in columns]
            run.log_epoch(EpochRecord(int(epoch), *values, seconds=0.0))
        if train_outputs.metrics.is_file():
            log_training(run, json.loads(train_outputs.metrics.read_text()), train_outputs)
    run.set_tags({"data.test.sha256": file_sha256(test_path)})
    return run


def evaluate_sweep_job(run, config, outputs: TrainOutputs) -> None:
    """A sweep job scores its own model on the test set, in its own folder, and logs it."""
    test = load_arrays(NORMALISED_DIR / "test.npz", ("images", "labels"), made_by="normalise")
    evaluation = EvaluateOutputs.under(outputs.model.parent.parent)
    network = load_model(outputs.model)
    metrics = evaluate_model(network, test, read_history(outputs.history), evaluation)
    if run is not None:
        log_evaluation(run, config, metrics, evaluation, outputs.model, test["images"][:2], None)
    print(f"train: test accuracy {metrics['accuracy']:.4f} (reported, not used to select)")


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from pipeline.tracking import settled

    with stage_errors("evaluate"):
        config = stage_config(cfg)
        train_outputs, outputs = TrainOutputs.under(ROOT), EvaluateOutputs.under(ROOT)
        test_path = NORMALISED_DIR / "test.npz"
        network = load_model(train_outputs.model)
        test = load_arrays(test_path, ("images", "labels"), made_by="normalise")
        history = read_history(train_outputs.history)
        run = (
            open_pipeline_run(config, train_outputs, test_path) if config.tracking.enabled else None
        )
        with settled(run):
            metrics = evaluate_model(network, test, history, outputs)
            if run is not None:
                example = test["images"][:2]
                register = config.tracking.registered_model
                log_evaluation(
                    run, config, metrics, outputs, train_outputs.model, example, register
                )
        print(
            f"evaluate: test accuracy {metrics['accuracy']:.4f}, loss {metrics['loss']:.4f}, "
            f"macro F1 {metrics['macro_f1']:.4f}; figures in {outputs.figures}"
        )


if __name__ == "__main__":
    main()
