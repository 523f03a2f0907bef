"""Random shifts of training images."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.nn.augment import random_shift


def test_random_shift_moves_each_image_within_bounds_and_keeps_its_pixels():
    images = np.zeros((50, 36), dtype=np.float32)  # 6×6 images, one lit pixel in the middle
    images[:, 2 * 6 + 3] = 1.0
    shifted = random_shift(images, 1, np.random.default_rng(0))
    assert shifted.shape == images.shape and shifted.dtype == images.dtype
    assert np.all(shifted.sum(axis=1) == 1.0)  # no pixel lost or invented
    lit_row, lit_col = np.divmod(shifted.argmax(axis=1), 6)
    assert set(lit_row) == {1, 2, 3} and set(lit_col) == {2, 3, 4}  # every shift in ±1 drawn
    again = random_shift(images, 1, np.random.default_rng(0))
    np.testing.assert_array_equal(shifted, again)
    assert random_shift(images, 0, np.random.default_rng(0)) is images


def test_random_shift_fills_the_edge_with_background():
    images = np.ones((20, 16), dtype=np.float32)  # 4×4 all lit
    shifted = random_shift(images, 2, np.random.default_rng(1)).reshape(20, 4, 4)
    moved = shifted.sum(axis=(1, 2)) < 16
    assert moved.any() and np.all(np.isin(shifted, [0.0, 1.0]))
    with pytest.raises(ValueError, match="square images"):
        random_shift(np.ones((2, 10)), 1, np.random.default_rng(0))
