"""A network saved as plain arrays and loaded back; foreign or edited files named."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.nn import MLP, ModelFormatError, model_from_arrays, model_to_arrays
from pipeline.plumbing.files import save_arrays


def test_saved_arrays_round_trip_and_bad_files_are_named(tmp_path):
    x = np.random.default_rng(0).random((5, 784), dtype=np.float32)
    model = MLP.create((784, 12, 7, 10), "tanh", "xavier", np.random.default_rng(0))
    save_arrays(tmp_path / "m.npz", **model_to_arrays(model))
    with np.load(tmp_path / "m.npz", allow_pickle=False) as arrays:
        loaded = model_from_arrays(arrays, "m.npz")
    assert loaded.sizes == (784, 12, 7, 10) and loaded.activation == "tanh"
    np.testing.assert_array_equal(loaded.logits(x), model.logits(x))
    with pytest.raises(ModelFormatError, match=r"data\.npz is not a model saved by this project"):
        model_from_arrays({"images": x}, "data.npz")
    arrays = model_to_arrays(model)
    arrays["W2"] = arrays["W2"][:, :3]
    with pytest.raises(
        ModelFormatError, match=r"W2 has shape \(7, 3\) but sizes .* need \(7, 12\)"
    ):
        model_from_arrays(arrays, "m.npz")
    del arrays["b3"]
    with pytest.raises(ModelFormatError, match="lacks"):
        model_from_arrays({**arrays, "W2": model.weights[1]}, "m.npz")
