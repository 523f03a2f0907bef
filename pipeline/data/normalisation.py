"""Normalisation: the raw IDX files as float32 pixels in [0, 1] and uint8 labels.

Reads the four files `fetch` wrote (validated by pipeline/data/idx.py), checks that images and
labels agree, and writes `data/normalised/{train,test}.npz` (arrays `images`, N×784 float32 =
pixel/255, and `labels`, N uint8; load with `np.load(path)`, no pickle) and
`reports/data_stats.json` (counts per class and pixel min, max, mean and std), kept in git.
The stage is pipeline/normalise.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.data.idx import read_idx
from pipeline.plumbing.errors import PipelineError
from pipeline.plumbing.files import file_sha256, save_arrays, write_json
from pipeline.plumbing.schema import DataFiles

NUM_CLASSES = 10
FIX = "re-fetch the data (`dvc repro -f fetch`) or check data.sources"


class DataError(PipelineError):
    """The IDX files are valid IDX but not a usable image/label data set."""


def load_split(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one images/labels pair of IDX files and check that they belong together."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(
            f"{images_path}: expected N×rows×cols uint8 images, got shape {images.shape} "
            f"of {images.dtype}; {FIX}"
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DataError(
            f"{labels_path}: expected N uint8 labels, got shape {labels.shape} "
            f"of {labels.dtype}; {FIX}"
        )
    if len(images) != len(labels):
        raise DataError(
            f"{images_path.name} holds {len(images)} images but {labels_path.name} "
            f"{len(labels)} labels; {FIX}"
        )
    if len(labels) and labels.max() >= NUM_CLASSES:
        raise DataError(f"{labels_path}: label {labels.max()} is not a digit 0-9; {FIX}")
    return images, labels


def to_unit_range(images: np.ndarray) -> np.ndarray:
    """Flatten N×rows×cols uint8 images to N×(rows·cols) float32 pixel/255 in [0, 1]."""
    flat = images.reshape(len(images), -1)
    return np.multiply(flat, np.float32(1 / 255), dtype=np.float32)


def describe(images: np.ndarray, labels: np.ndarray) -> dict:
    """Counts per class and pixel statistics of one normalised split."""
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    return {
        "count": len(labels),
        "per_class": {str(digit): int(n) for digit, n in enumerate(counts)},
        "pixel_min": float(images.min()),
        "pixel_max": float(images.max()),
        "pixel_mean": round(float(images.mean(dtype=np.float64)), 6),
        "pixel_std": round(float(images.std(dtype=np.float64)), 6),
    }


def normalise_mnist(
    raw_dir: Path, files: DataFiles, train_out: Path, test_out: Path, stats_path: Path
) -> dict:
    """Normalise the train and test IDX files in `raw_dir`; return the statistics written."""
    for spec in vars(files).values():  # fetch verified them; a file edited since is caught here
        path = raw_dir / spec.name
        if path.is_file() and file_sha256(path) != spec.sha256:
            raise DataError(
                f"{path} does not match its pinned SHA-256 {spec.sha256[:12]}… (changed since "
                "fetch verified it): re-fetch it with `dvc repro -f fetch`"
            )
    train_images, train_labels = load_split(
        raw_dir / files.train_images.name, raw_dir / files.train_labels.name
    )
    test_images, test_labels = load_split(
        raw_dir / files.test_images.name, raw_dir / files.test_labels.name
    )
    if train_images.shape[1:] != test_images.shape[1:]:
        raise DataError(
            f"train images are {train_images.shape[1:]} pixels but test images "
            f"{test_images.shape[1:]}; {FIX}"
        )
    stats = {"image_shape": list(train_images.shape[1:])}
    for name, images, labels, out in [
        ("train", train_images, train_labels, train_out),
        ("test", test_images, test_labels, test_out),
    ]:
        unit = to_unit_range(images)
        save_arrays(out, images=unit, labels=labels)
        stats[name] = describe(unit, labels)
    write_json(stats_path, stats)
    return stats
