"""Data augmentation for square images stored as rows: random translations.

A digit moved a pixel or two is still the same digit, so training on randomly shifted copies
teaches the network that, which a dense layer cannot learn from the fixed-position images
alone. Each image in a batch gets its own shift, drawn from the training `rng`.
"""

from __future__ import annotations

import math

import numpy as np


def random_shift(images: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """A copy of `images` (N × side², rows of square images) each moved by up to `max_shift`
    pixels along each axis, with zeros (background) moved in at the edges."""
    if max_shift == 0:
        return images
    count, pixels = images.shape
    side = math.isqrt(pixels)
    if side * side != pixels:
        raise ValueError(f"random shifts need square images; {pixels} pixels per row is not")
    padded = np.zeros((count, side + 2 * max_shift, side + 2 * max_shift), images.dtype)
    padded[:, max_shift:-max_shift, max_shift:-max_shift] = images.reshape(count, side, side)
    offsets = rng.integers(0, 2 * max_shift + 1, size=(2, count))
    grid = np.arange(side)
    rows = (offsets[0][:, None] + grid)[:, :, None]  # count × side × 1
    columns = (offsets[1][:, None] + grid)[:, None, :]  # count × 1 × side
    return padded[np.arange(count)[:, None, None], rows, columns].reshape(count, pixels)
