"""The evaluation's pictures (matplotlib, PNG): what a person would rather look at than read.

    confusion_heatmap     test confusion matrix, counts in each cell, diagonal = correct
    training_curves       loss and accuracy per epoch, train and dev
    misclassified_grid    test digits the model got wrong, with true and predicted labels

Each function writes its PNG atomically and returns nothing; nothing here computes a score.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from pipeline.plumbing.publish import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def new_figure(**settings) -> Figure:
    """A figure of its own, not pyplot's (no display, no global state); matplotlib is imported
    here, on first use: a training that draws nothing does not pay its half second."""
    from matplotlib.figure import Figure

    return Figure(**settings)


def _save(figure: Figure, path: str | os.PathLike) -> None:
    # Margins set by each figure, not bbox_inches="tight": that draws the figure twice (once to
    # measure it), about a third of a second more a figure.
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)


def confusion_heatmap(confusion: np.ndarray, path: str | os.PathLike) -> None:
    classes = len(confusion)
    figure = new_figure(figsize=(6.4, 5.6))
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
    figure.colorbar(image, ax=axes, label="log(1 + count)", fraction=0.05, pad=0.03)
    figure.subplots_adjust(left=0.1, right=0.97, bottom=0.09, top=0.94)
    _save(figure, path)


def training_curves(
    history: dict[str, np.ndarray], path: str | os.PathLike, dev_label: str = "dev"
) -> None:
    """`history` holds equal-length columns epoch, train_loss, dev_loss, train/dev_accuracy."""
    figure = new_figure(figsize=(10, 4))
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
    figure.subplots_adjust(left=0.07, right=0.98, bottom=0.12, top=0.92, wspace=0.2)
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
    side = int(np.sqrt(images.shape[1]))
    cell = side + 12  # each digit with room for its caption below it
    # One picture of all the digits on one axes: a grid of 36 axes took half a second to draw.
    mosaic = np.zeros((rows * cell, columns * cell), dtype=np.float32)
    height = rows * 1.4 + 0.4  # square cells, and the title above them
    figure = new_figure(figsize=(columns * 1.4, height))
    axes = figure.subplots()
    figure.subplots_adjust(left=0, right=1, bottom=0, top=1 - 0.4 / height)
    for n, index in enumerate(wrong):
        top, left = (n // columns) * cell, (n % columns) * cell + 6
        mosaic[top : top + side, left : left + side] = images[index].reshape(side, side)
        axes.text(left + side / 2, top + side + 1, f"true {labels[index]}, said {predicted[index]}",
                  ha="center", va="top", fontsize=7)  # fmt: skip
    axes.imshow(mosaic, cmap="gray_r", vmin=0, vmax=1)
    axes.axis("off")
    figure.suptitle(f"Misclassified test digits (first {len(wrong)})")
    _save(figure, path)
