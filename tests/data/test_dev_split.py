"""The split stage: stratified, exact in size, seeded, and strict about dev_size."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data.dev_split import dev_counts, split_dataset, stratified_dev_mask
from pipeline.plumbing.errors import PipelineError
from pipeline.plumbing.files import save_arrays
from tests.conftest import example_index, synthetic_images


@pytest.fixture
def normalised_train(tmp_path):
    # Unbalanced classes, so proportional allocation is really exercised.
    labels = np.repeat(np.arange(10, dtype=np.uint8), [50, 10, 30, 30, 20, 20, 40, 40, 30, 30])
    images = synthetic_images(labels, seed=3).reshape(len(labels), -1) / np.float32(255)
    path = tmp_path / "normalised" / "train.npz"
    save_arrays(path, images=images.astype(np.float32), labels=labels)
    return path, labels


def split_into(path, directory, dev_size, seed):
    return split_dataset(path, directory / "train.npz", directory / "dev.npz", dev_size, seed)


def load(path):
    with np.load(path, allow_pickle=False) as archive:
        return archive["images"], archive["labels"]


def test_split_is_a_stratified_partition_of_the_exact_size(normalised_train, tmp_path):
    path, labels = normalised_train
    sizes = split_into(path, tmp_path / "split", dev_size=60, seed=0)
    assert sizes == {"train": 240, "dev": 60}
    train_images, train_labels = load(tmp_path / "split" / "train.npz")
    dev_images, dev_labels = load(tmp_path / "split" / "dev.npz")
    train_ids, dev_ids = example_index(train_images), example_index(dev_images)
    assert set(train_ids).isdisjoint(dev_ids)
    assert sorted([*train_ids, *dev_ids]) == list(range(len(labels)))
    np.testing.assert_array_equal(train_labels, labels[train_ids])
    np.testing.assert_array_equal(dev_labels, labels[dev_ids])
    # 60 of 300 is a fifth of every class.
    assert np.bincount(dev_labels, minlength=10).tolist() == [10, 2, 6, 6, 4, 4, 8, 8, 6, 6]


def test_same_seed_gives_byte_identical_files_and_another_seed_another_split(
    normalised_train, tmp_path
):
    path, _ = normalised_train
    for name, seed in [("a", 7), ("b", 7), ("c", 8)]:
        split_into(path, tmp_path / name, dev_size=60, seed=seed)
    for part in ("train.npz", "dev.npz"):
        assert (tmp_path / "a" / part).read_bytes() == (tmp_path / "b" / part).read_bytes()
    dev_a = set(example_index(load(tmp_path / "a" / "dev.npz")[0]))
    dev_c = set(example_index(load(tmp_path / "c" / "dev.npz")[0]))
    assert dev_a != dev_c


def test_dev_counts_are_proportional_and_sum_exactly():
    counts = dev_counts(
        np.array([5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]), 1000
    )
    # MNIST's class counts. Floors of the quotas sum to 996; the 4 largest remainders are
    # classes 0 (.717), 6 (.633), 8 (.517) and 7 (.417).
    assert counts.sum() == 1000
    assert counts.tolist() == [99, 112, 99, 102, 97, 90, 99, 105, 98, 99]


@pytest.mark.parametrize("dev_size", [0, -5, 300, 301])
def test_dev_size_outside_the_training_set_is_rejected(dev_size):
    labels = (np.arange(300) % 10).astype(np.uint8)
    with pytest.raises(PipelineError) as error:
        stratified_dev_mask(labels, dev_size, seed=0)
    assert str(error.value) == (
        f"split.dev_size={dev_size} must be between 1 and 299 (the training set has 300 examples)"
    )


def test_bad_dev_size_leaves_earlier_split_untouched(normalised_train, tmp_path):
    path, _ = normalised_train
    split_into(path, tmp_path / "split", dev_size=60, seed=0)
    before = (tmp_path / "split" / "dev.npz").read_bytes()
    with pytest.raises(PipelineError):
        split_into(path, tmp_path / "split", dev_size=0, seed=0)
    assert (tmp_path / "split" / "dev.npz").read_bytes() == before


def test_missing_input_names_the_stage_to_run(tmp_path):
    with pytest.raises(PipelineError, match="run `dvc repro normalise` first"):
        split_into(tmp_path / "absent.npz", tmp_path / "split", dev_size=10, seed=0)


def test_a_negative_seed_is_named():
    with pytest.raises(PipelineError, match=r"split.seed=-1 must be ≥ 0"):
        stratified_dev_mask(np.zeros(10, dtype=np.uint8), 2, -1)
