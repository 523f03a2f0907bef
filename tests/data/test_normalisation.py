"""The normalise stage: pixel/255 as float32, labels kept, statistics right, bad files named."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.data.idx import read_idx, write_idx
from pipeline.data.normalisation import normalise_mnist
from pipeline.plumbing.errors import PipelineError
from pipeline.plumbing.files import file_sha256
from pipeline.plumbing.schema import DataFiles, FileSpec
from tests.conftest import example_index


def pinned(directory, files: DataFiles) -> DataFiles:
    """`files` with the hashes of the files now in `directory`: as if a data set whose files
    are these had been pinned, so the IDX and label checks behind the hash check are reached."""
    return DataFiles(
        **{role: FileSpec(spec.name, file_sha256(directory / spec.name))
           for role, spec in vars(files).items()}
    )  # fmt: skip


def run_normalise(synthetic_mnist, tmp_path, repin=True):
    out, stats_path = tmp_path / "normalised", tmp_path / "reports" / "stats.json"
    files = synthetic_mnist.files
    files = pinned(synthetic_mnist.directory, files) if repin else files
    stats = normalise_mnist(
        synthetic_mnist.directory, files, out / "train.npz", out / "test.npz", stats_path
    )
    return out, stats_path, stats


def test_images_become_float32_pixels_over_255_and_labels_stay(synthetic_mnist, tmp_path):
    out, _, _ = run_normalise(synthetic_mnist, tmp_path)
    raw = read_idx(synthetic_mnist.directory / "train-images-idx3-ubyte")
    with np.load(out / "train.npz", allow_pickle=False) as train:
        images, labels = train["images"], train["labels"]
    assert images.dtype == np.float32 and images.shape == (300, 784)
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, synthetic_mnist.train_labels)
    np.testing.assert_allclose(images, raw.reshape(300, 784) / 255.0, rtol=1e-6)
    assert images.min() == 0.0 and images.max() == 1.0
    np.testing.assert_array_equal(example_index(images), np.arange(300))
    with np.load(out / "test.npz", allow_pickle=False) as test:
        assert test["images"].shape == (100, 784)
        np.testing.assert_array_equal(test["labels"], synthetic_mnist.test_labels)


def test_statistics_count_each_class_and_describe_pixels(synthetic_mnist, tmp_path):
    out, stats_path, stats = run_normalise(synthetic_mnist, tmp_path)
    assert json.loads(stats_path.read_text()) == stats
    assert stats["image_shape"] == [28, 28]
    assert stats["train"]["count"] == 300
    assert stats["train"]["per_class"] == {str(d): 30 for d in range(10)}
    assert stats["test"]["per_class"] == {str(d): 10 for d in range(10)}
    with np.load(out / "train.npz") as train:
        assert stats["train"]["pixel_mean"] == pytest.approx(train["images"].mean(), abs=1e-6)
    assert stats["train"]["pixel_min"] == 0.0 and stats["train"]["pixel_max"] == 1.0


def test_truncated_file_is_named_and_earlier_outputs_survive(synthetic_mnist, tmp_path):
    out, _, _ = run_normalise(synthetic_mnist, tmp_path)
    before = (out / "train.npz").read_bytes()
    broken = synthetic_mnist.directory / "t10k-images-idx3-ubyte"
    broken.write_bytes(broken.read_bytes()[:5000])
    with pytest.raises(PipelineError, match="t10k-images-idx3-ubyte: truncated"):
        run_normalise(synthetic_mnist, tmp_path)
    assert (out / "train.npz").read_bytes() == before
    assert list(out.glob(".*tmp")) == []


def test_images_and_labels_of_different_lengths_are_rejected(synthetic_mnist, tmp_path):
    write_idx(synthetic_mnist.directory / "train-labels-idx1-ubyte", np.zeros(299, np.uint8))
    with pytest.raises(PipelineError, match="300 images but train-labels-idx1-ubyte 299 labels"):
        run_normalise(synthetic_mnist, tmp_path)


def test_a_label_that_is_not_a_digit_is_rejected(synthetic_mnist, tmp_path):
    labels = synthetic_mnist.test_labels.copy()
    labels[3] = 12
    write_idx(synthetic_mnist.directory / "t10k-labels-idx1-ubyte", labels)
    with pytest.raises(PipelineError, match="label 12 is not a digit"):
        run_normalise(synthetic_mnist, tmp_path)


def test_labels_file_in_place_of_images_is_rejected(synthetic_mnist, tmp_path):
    labels = read_idx(synthetic_mnist.directory / "train-labels-idx1-ubyte")
    write_idx(synthetic_mnist.directory / "train-images-idx3-ubyte", labels)
    with pytest.raises(
        PipelineError, match=r"expected N×rows×cols uint8 images, got shape \(300,\)"
    ):
        run_normalise(synthetic_mnist, tmp_path)


def test_a_raw_file_changed_since_fetch_is_caught_by_its_pinned_hash(synthetic_mnist, tmp_path):
    labels = synthetic_mnist.directory / "train-labels-idx1-ubyte"
    data = bytearray(labels.read_bytes())
    data[-1] = (data[-1] + 1) % 10  # still a valid IDX file, another label
    labels.write_bytes(bytes(data))
    with pytest.raises(PipelineError, match=r"train-labels-idx1-ubyte does not match its pinned"):
        run_normalise(synthetic_mnist, tmp_path, repin=False)
