"""The dev split: a stratified, seeded dev set held out from the training examples.

Each class contributes to the dev set in proportion to its share of the training set (largest
remainders make the total exactly `split.dev_size`), drawn with a `numpy.random.Generator`
seeded by `split.seed`. Both outputs keep the original order of their examples, so the same seed
gives byte-identical files. The test set is never read here. The stage is pipeline/split.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.plumbing.datasets import load_dataset
from pipeline.plumbing.errors import PipelineError
from pipeline.plumbing.files import save_arrays


class SplitError(PipelineError):
    """The requested split cannot be made."""


def dev_counts(class_counts: np.ndarray, dev_size: int) -> np.ndarray:
    """How many dev examples each class gives: proportional, summing exactly to `dev_size`."""
    quotas = class_counts * dev_size / class_counts.sum()
    counts = np.floor(quotas).astype(np.int64)
    shortfall = dev_size - counts.sum()
    # Largest remainders first; ties go to the lower class index (stable sort) for determinism.
    order = np.argsort(-(quotas - counts), kind="stable")
    counts[order[:shortfall]] += 1
    return counts


def stratified_dev_mask(labels: np.ndarray, dev_size: int, seed: int) -> np.ndarray:
    """A boolean mask over `labels`, True for the examples drawn into the dev set."""
    n = len(labels)
    if not 0 < dev_size < n:
        raise SplitError(
            f"split.dev_size={dev_size} must be between 1 and {n - 1} "
            f"(the training set has {n} examples)"
        )
    if seed < 0:
        raise SplitError(f"split.seed={seed} must be ≥ 0 (numpy seeds are non-negative)")
    rng = np.random.default_rng(seed)
    classes, class_counts = np.unique(labels, return_counts=True)
    mask = np.zeros(n, dtype=bool)
    for label, take in zip(classes, dev_counts(class_counts, dev_size), strict=True):
        members = np.flatnonzero(labels == label)
        mask[rng.choice(members, size=take, replace=False)] = True
    return mask


def split_dataset(
    train_path: Path, train_out: Path, dev_out: Path, dev_size: int, seed: int
) -> dict[str, int]:
    """Split the normalised training set at `train_path` into `train_out` and `dev_out`."""
    arrays = load_dataset(train_path, made_by="normalise")
    images, labels = arrays["images"], arrays["labels"]
    dev = stratified_dev_mask(labels, dev_size, seed)
    save_arrays(train_out, images=images[~dev], labels=labels[~dev])
    save_arrays(dev_out, images=images[dev], labels=labels[dev])
    return {"train": int((~dev).sum()), "dev": int(dev.sum())}
