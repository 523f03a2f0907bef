"""Scoring a trained network on the test set and writing what a person reads about it.

    reports/test_metrics.json     test accuracy and loss, macro F1, per-class precision/recall/F1
    reports/confusion.csv         one `actual,predicted` row per test image (DVC confusion plot)
    reports/figures/*.png         confusion heatmap, training curves, misclassified digits

Each file is written atomically. The stage is pipeline/evaluate.py; sweep jobs call
`evaluate_model` on their own folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.evaluation import figures
from pipeline.evaluation.scoring import classification_report, confusion_matrix
from pipeline.nn import MLP
from pipeline.nn.fitting import predict_and_score
from pipeline.plumbing.errors import PipelineError
from pipeline.plumbing.files import write_json, write_text
from pipeline.plumbing.paths import EvaluateOutputs
from pipeline.plumbing.phases import phase
from pipeline.serving.weights import WeightsError, load_network

NUM_CLASSES = 10


def load_model(path: Path) -> MLP:
    """The network `train` saved at `path`; a one-line error naming the fix if it is unusable."""
    if not path.is_file():
        raise PipelineError(f"{path} is missing: run `dvc repro train` first")
    try:
        return load_network(path, fix="rebuild it with `dvc repro -f train`")
    except WeightsError as error:
        raise PipelineError(str(error)) from None


def confusion_csv(labels: np.ndarray, predicted: np.ndarray) -> str:
    lines = ["actual,predicted"]
    lines += [f"{actual},{guess}" for actual, guess in zip(labels, predicted, strict=True)]
    return "\n".join(lines) + "\n"


def evaluate_model(
    network: MLP,
    test: dict[str, np.ndarray],
    history: dict[str, np.ndarray],
    outputs: EvaluateOutputs,
    draw_figures: bool = True,
    dev_seen: bool = False,
) -> dict:
    """Score `network` on `test`, write metrics, confusion rows and (if `draw_figures`) the
    figures; return the metrics. `dev_seen`: the network trained on the dev set too."""
    if test["images"].shape[1] != network.sizes[0]:
        raise PipelineError(
            f"the test images have {test['images'].shape[1]} pixels but the model takes "
            f"{network.sizes[0]}: rebuild them with `dvc repro -f normalise split train`"
        )
    images, labels = test["images"].astype(network.dtype, copy=False), test["labels"]
    with phase("scoring"):
        predicted, loss = predict_and_score(network, images, labels)
        report = classification_report(labels, predicted, NUM_CLASSES)
    metrics = {"accuracy": report["accuracy"], "loss": loss, **report, "examples": len(labels)}
    write_json(outputs.metrics, metrics)
    write_text(outputs.confusion, confusion_csv(labels, predicted))
    if not draw_figures:
        return metrics
    with phase("figures"):
        figures.confusion_heatmap(
            confusion_matrix(labels, predicted, NUM_CLASSES), outputs.figure("confusion_matrix")
        )
        dev_label = "dev (trained on)" if dev_seen else "dev"
        figures.training_curves(history, outputs.figure("training_curves"), dev_label)
        figures.misclassified_grid(images, labels, predicted, outputs.figure("misclassified"))
    return metrics
