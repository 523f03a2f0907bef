"""Classification scores from true and predicted labels: pure numpy, no I/O.

    confusion[i, j]   how many examples of digit i were predicted as j
    precision_c       of the examples predicted c, the share that are c
    recall_c          of the examples that are c, the share predicted c
    F1_c              harmonic mean of the two; macro F1 is their unweighted mean over classes

A class never predicted has precision 0 (scikit-learn's `zero_division=0`), so a model that
ignores a digit is penalised rather than skipped.
"""

from __future__ import annotations

import numpy as np


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """classes × classes counts, rows the true label and columns the prediction."""
    counts = np.bincount(
        labels.astype(np.int64) * classes + predicted.astype(np.int64), minlength=classes**2
    )
    return counts.reshape(classes, classes)


def per_class_scores(confusion: np.ndarray) -> dict[str, list[float]]:
    """Precision, recall, F1 and support of each class from a confusion matrix."""
    hits = np.diag(confusion).astype(np.float64)
    predicted = confusion.sum(axis=0)
    actual = confusion.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, hits / predicted, 0.0)
        recall = np.where(actual > 0, hits / actual, 0.0)
        total = precision + recall
        f1 = np.where(total > 0, 2 * precision * recall / total, 0.0)
    return {
        "precision": precision.tolist(),
        "recall": recall.tolist(),
        "f1": f1.tolist(),
        "support": actual.tolist(),
    }


def classification_report(labels: np.ndarray, predicted: np.ndarray, classes: int) -> dict:
    """Accuracy, macro F1 and per-class scores, as JSON-ready plain types."""
    confusion = confusion_matrix(labels, predicted, classes)
    scores = per_class_scores(confusion)
    return {
        "accuracy": float(np.trace(confusion) / max(len(labels), 1)),
        "macro_f1": float(np.mean(scores["f1"])),
        "per_class": {
            str(digit): {name: values[digit] for name, values in scores.items()}
            for digit in range(classes)
        },
    }
