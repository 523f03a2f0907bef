"""The image and label arrays the stages hand each other (`.npz`: `images`, `labels`), loaded
and checked: a damaged or edited file stops the stage that reads it, in one line naming the
file, what is wrong and the command that rebuilds it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from pipeline.plumbing.errors import PipelineError
from pipeline.plumbing.files import load_arrays

CLASSES = 10


def dataset_problem(images: np.ndarray, labels: np.ndarray) -> str | None:
    """What makes these arrays unusable as N square float32 images in [0, 1] with digit labels."""
    if images.ndim != 2 or images.dtype != np.float32:
        return f"images are {images.dtype} of shape {images.shape}, not N×pixels float32"
    if math.isqrt(images.shape[1]) ** 2 != images.shape[1]:
        return f"{images.shape[1]} pixels per row is not a square image"
    if labels.ndim != 1 or labels.dtype != np.uint8:
        return f"labels are {labels.dtype} of shape {labels.shape}, not N uint8"
    if len(images) != len(labels):
        return f"{len(images)} images but {len(labels)} labels"
    if len(labels) == 0:
        return "no examples"
    if not np.isfinite(images).all() or images.min() < 0 or images.max() > 1:
        return f"pixels must be finite and in [0, 1], found {images.min()} to {images.max()}"
    if labels.max() >= CLASSES:
        return f"label {labels.max()} is not a digit 0-{CLASSES - 1}"
    return None


def load_dataset(path: Path, made_by: str) -> dict[str, np.ndarray]:
    """`images` and `labels` of the .npz at `path`, written by stage `made_by`, checked."""
    arrays = load_arrays(path, ("images", "labels"), made_by)
    problem = dataset_problem(arrays["images"], arrays["labels"])
    if problem:
        raise PipelineError(f"{path}: {problem}: rebuild it with `dvc repro -f {made_by}`")
    return arrays
