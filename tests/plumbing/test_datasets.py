"""Image and label arrays checked on load: each problem one line with the stage to re-run."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.plumbing.datasets import load_dataset
from pipeline.plumbing.errors import PipelineError
from pipeline.plumbing.files import save_arrays
from tests.conftest import split_arrays


def edited(**changes):
    arrays = split_arrays(20, 1)
    for name, change in changes.items():
        arrays[name] = change(arrays[name])
    return arrays


@pytest.mark.parametrize(
    ("arrays", "said"),
    [
        (edited(images=lambda a: a[:, :783]), "783 pixels per row is not a square image"),
        (edited(images=lambda a: a.astype(np.float64)), "images are float64"),
        (
            edited(images=lambda a: a * 255),
            "pixels must be finite and in [0, 1], found 0.0 to 255.0",
        ),
        (edited(images=lambda a: np.where(a > 0.9, np.nan, a)), "pixels must be finite"),
        (
            edited(labels=lambda a: np.where(a == 3, 12, a).astype(np.uint8)),
            "label 12 is not a digit",
        ),
        (edited(labels=lambda a: a[:-1]), "20 images but 19 labels"),
        (edited(images=lambda a: a[:0], labels=lambda a: a[:0]), "no examples"),
        (edited(labels=lambda a: a.astype(np.int64)), "labels are int64"),
    ],
)
def test_each_problem_is_named_with_the_file_and_the_fix(tmp_path, arrays, said):
    path = tmp_path / "dev.npz"
    save_arrays(path, **arrays)
    with pytest.raises(PipelineError) as error:
        load_dataset(path, made_by="split")
    message = str(error.value)
    assert message.startswith(f"{path}: ") and said in message
    assert message.endswith(": rebuild it with `dvc repro -f split`") and "\n" not in message


def test_good_arrays_load_unchanged(tmp_path):
    arrays = split_arrays(20, 1)
    save_arrays(tmp_path / "dev.npz", **arrays)
    loaded = load_dataset(tmp_path / "dev.npz", made_by="split")
    np.testing.assert_array_equal(loaded["images"], arrays["images"])
