"""Stage `split`: hold out a stratified, seeded dev set from the training examples.

Each class contributes to the dev set in proportion to its share of the training set (largest
remainders make the total exactly `split.dev_size`), drawn with a `numpy.random.Generator`
seeded by `split.seed`. Both outputs keep the original order of their examples, so the same seed
gives byte-identical files. The test set is never read here.

    python -m pipeline.split split.dev_size=1000 split.seed=1
"""

from __future__ import annotations

from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig

from pipeline.config import ROOT, stage_config
from pipeline.errors import PipelineError, stage_errors
from pipeline.io import load_arrays, save_arrays
from pipeline.normalise import NORMALISED_DIR

SPLIT_DIR = ROOT / "data" / "split"


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
    rng = np.random.default_rng(seed)
    classes, class_counts = np.unique(labels, return_counts=True)
    mask = np.zeros(n, dtype=bool)
    for label, take in zip(classes, dev_counts(class_counts, dev_size), strict=True):
        members = np.flatnonzero(labels == label)
        mask[rng.choice(members, size=take, replace=False)] = True
    return mask


def split_dataset(train_path: Path, out_dir: Path, dev_size: int, seed: int) -> dict[str, int]:
    """Split the normalised training set into `train.npz` and `dev.npz` in `out_dir`."""
    arrays = load_arrays(train_path, ("images", "labels"), made_by="normalise")
    images, labels = arrays["images"], arrays["labels"]
    dev = stratified_dev_mask(labels, dev_size, seed)
    save_arrays(out_dir / "train.npz", images=images[~dev], labels=labels[~dev])
    save_arrays(out_dir / "dev.npz", images=images[dev], labels=labels[dev])
    return {"train": int((~dev).sum()), "dev": int(dev.sum())}


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    with stage_errors("split"):
        config = stage_config(cfg)
        sizes = split_dataset(
            NORMALISED_DIR / "train.npz", SPLIT_DIR, config.split.dev_size, config.split.seed
        )
        print(f"split: {sizes['train']} train and {sizes['dev']} dev examples into {SPLIT_DIR}")


if __name__ == "__main__":
    main()
