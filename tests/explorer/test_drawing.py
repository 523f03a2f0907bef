"""MNIST's recipe applied to drawings: the ink's box scaled to 20 px on its longer side,
aspect kept, anti-aliased, centred by centre of mass in 28 × 28."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.explorer.drawing import (
    DrawingError,
    centre_of_mass,
    ink_from_bytes,
    longer_side,
    mnist_like,
)


def digit_like(seed: int = 0) -> np.ndarray:
    """A 28 × 28 image as MNIST holds one: a smooth, lopsided stroke pattern 20 rows tall and
    13 columns wide, gray levels up to exactly 1, placed as the recipe places it."""
    rng = np.random.default_rng(seed)
    pattern = np.zeros((20, 13))
    pattern[0:3, :] = 1.0  # a top bar (a 7's)
    for row in range(3, 20):  # and a diagonal down to the left
        column = round(12 - 0.6 * (row - 3))
        pattern[row, max(0, column - 1) : column + 2] = 1.0
    pattern *= rng.uniform(0.55, 1.0, pattern.shape)
    pattern[0, 0] = 1.0
    rows, columns = np.indices(pattern.shape)
    mass = pattern.sum()
    top = round(14 - (pattern * rows).sum() / mass)
    left = round(14 - (pattern * columns).sum() / mass)
    image = np.zeros((28, 28))
    image[top : top + 20, left : left + 13] = pattern
    return image


def drawn_at(image: np.ndarray, factor: int, canvas: int, top: int, left: int) -> np.ndarray:
    """`image` blown up `factor` times (each pixel a factor × factor block) onto a blank
    canvas at (top, left): what a page sends when someone draws it."""
    big = np.kron(image, np.ones((factor, factor)))
    ink = np.zeros((canvas, canvas))
    ink[top : top + big.shape[0], left : left + big.shape[1]] = big
    return ink


def test_a_known_digit_drawn_ten_times_larger_comes_back_as_it_was():
    image = digit_like()
    made = mnist_like(drawn_at(image, 10, 400, 37, 81))
    np.testing.assert_allclose(made, image, atol=1e-6)


@pytest.mark.parametrize(("factor", "top", "left"), [(3, 0, 0), (7, 90, 12), (13, 5, 30)])
def test_where_and_how_large_it_is_drawn_does_not_matter(factor, top, left):
    image = digit_like(1)
    reference = mnist_like(drawn_at(image, 10, 400, 0, 0))
    np.testing.assert_allclose(mnist_like(drawn_at(image, factor, 400, top, left)), reference,
                               atol=1e-6)  # fmt: skip


def test_a_long_flat_stroke_spans_20_pixels_with_its_aspect_kept_and_its_mass_centred():
    ink = np.zeros((300, 300))
    ink[100:130, 20:280] = 1.0  # 260 × 30: scaled by 20/260, about 2.3 px tall
    made = mnist_like(ink)
    assert made.shape == (28, 28) and made.dtype == np.float32
    assert longer_side(made) == 20
    rows = np.flatnonzero(made.any(axis=1))
    assert 2 <= len(rows) <= 4  # 30 × 20/260 = 2.3 px, anti-aliased over at most a row more
    row, column = centre_of_mass(made)
    assert abs(row - 14) <= 0.5 and abs(column - 14) <= 0.5
    assert made.max() == 1.0 and made.min() == 0.0


def test_thin_strokes_are_antialiased_into_gray_levels_whose_core_is_full_ink():
    ink = np.zeros((200, 200))
    for step in range(160):  # a thin diagonal: 3 px of a 160 px box → a third of a pixel
        ink[20 + step, 20 + step : 23 + step] = 1.0
    made = mnist_like(ink)
    assert made.max() == 1.0
    levels = np.unique(made[made > 0])
    assert len(levels) >= 2 and levels.min() < 1.0  # gray edges, as MNIST's are


@pytest.mark.parametrize(
    ("ink", "message"),
    [
        (np.zeros((50, 50)), "the drawing is empty"),
        (np.full((5, 5, 5), 0.5), "2-D grid"),
        (np.full((50, 50), np.nan), "finite numbers in \\[0, 1\\]"),
        (np.full((50, 50), 2.0), "finite numbers in \\[0, 1\\]"),
    ],
)
def test_drawings_that_cannot_be_an_input_say_why(ink, message):
    with pytest.raises(DrawingError, match=message):
        mnist_like(ink)


def test_ink_bytes_must_fill_the_canvas_they_claim():
    assert ink_from_bytes(bytes([0, 255] * 50), 10, 10)[0, :2].tolist() == [0.0, 1.0]
    with pytest.raises(DrawingError, match="99 ink bytes for a 10 × 10 canvas: it needs 100"):
        ink_from_bytes(bytes(99), 10, 10)
    with pytest.raises(DrawingError, match="width must be a whole number"):
        ink_from_bytes(bytes(100), True, 100)
    with pytest.raises(DrawingError, match="height must be a whole number"):
        ink_from_bytes(bytes(100), 10, 4096)
