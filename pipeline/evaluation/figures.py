"""The evaluation's pictures (matplotlib, PNG): what a person would rather look at than read.

    confusion_heatmap     test confusion matrix, counts in each cell, diagonal = correct
    training_curves       loss and accuracy per epoch, train and dev
    misclassified_grid    test digits the model got wrong, with true and predicted labels

Each function writes its PNG atomically and returns nothing; nothing here computes a score.
"""

from __future__ import annotations

import os

import numpy as np
from matplotlib.figure import Figure  # no pyplot: no display, no global figure state

from pipeline.plumbing.publish import atomic_path


def _save(figure: Figure, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def confusion_heatmap(confusion: np.ndarray, path: str | os.PathLike) -> None:
    classes = len(confusion)
    figure = Figure(figsize=(6.4, 5.6))
    axes = figure.subplots()
    # Log colour scale: the diagonal (~1,000) would otherwise wash out the mistakes (~1-20).
    image = axes.imshow(np.log1p(confusion), cmap="Blues")
    for actual in range(classes):
        for predicted in range(classes):
            count = confusion[actual, predicted]
            if count:
                dark = image.norm(np.log1p(count)) > 0.6
                axes.text(predicted, actual, str(count), ha="center", va="center", fontsize=7,
                          color="white" if dark else "black")  # fmt: skip
    axes.set(xticks=range(classes), yticks=range(classes), xlabel="predicted digit",
             ylabel="true digit", title="Test confusion matrix")  # fmt: skip
    figure.colorbar(image, ax=axes, label="log(1 + count)")
    _save(figure, path)


def training_curves(
    history: dict[str, np.ndarray], path: str | os.PathLike, dev_label: str = "dev"
) -> None:
    """`history` holds equal-length columns epoch, train_loss, dev_loss, train/dev_accuracy."""
    figure = Figure(figsize=(10, 4))
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    epoch = history["epoch"]
    for split, style, label in (("train", "-", "train"), ("dev", "--", dev_label)):
        loss_axes.plot(epoch, history[f"{split}_loss"], style, label=label)
        accuracy_axes.plot(epoch, history[f"{split}_accuracy"], style, label=label)
    loss_axes.set(xlabel="epoch", ylabel="cross-entropy", title="Loss", yscale="log")
    accuracy_axes.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    for axes in (loss_axes, accuracy_axes):
        axes.grid(alpha=0.3)
        axes.legend()
    _save(figure, path)


def misclassified_grid(
    images: np.ndarray,
    labels: np.ndarray,
    predicted: np.ndarray,
    path: str | os.PathLike,
    limit: int = 36,
) -> None:
    """Up to `limit` wrongly classified images (rows of side² pixels), in test-set order."""
    wrong = np.flatnonzero(labels != predicted)[:limit]
    columns = 6
    rows = max(1, -(-len(wrong) // columns))
    figure = Figure(figsize=(columns * 1.4, rows * 1.6))
    grid = figure.subplots(rows, columns, squeeze=False)
    side = int(np.sqrt(images.shape[1]))
    for cell, axes in enumerate(grid.flat):
        axes.axis("off")
        if cell < len(wrong):
            index = wrong[cell]
            axes.imshow(images[index].reshape(side, side), cmap="gray_r", vmin=0, vmax=1)
            axes.set_title(f"true {labels[index]}, said {predicted[index]}", fontsize=7)
    figure.suptitle(f"Misclassified test digits (first {len(wrong)})")
    _save(figure, path)
