"""The pyfunc wrapper: input checks and the prediction frame."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.nn import MLP
from pipeline.serving.pyfunc import as_images, predictions_frame


def test_pyfunc_input_is_checked_and_probabilities_sum_to_one():
    network = MLP.create((784, 8, 10), rng=np.random.default_rng(1))
    frame = predictions_frame(network, as_images(np.zeros(784), 784))  # one flat image
    assert list(frame.columns) == ["digit"] + [f"p{d}" for d in range(10)]
    assert frame.iloc[0, 1:].sum() == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match=r"rows of 784 pixel values \(N×784\), got shape \(2, 28"):
        as_images(np.zeros((2, 28, 28)), 784)
    frame = predictions_frame(network, as_images(np.eye(784)[:3].tolist(), 784))
    np.testing.assert_array_equal(frame["digit"], network.predict(np.eye(784)[:3]))
