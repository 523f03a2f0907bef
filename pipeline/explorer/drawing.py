"""A drawing made MNIST-like, the way MNIST itself was made (LeCun et al. 1998): the ink's
bounding box scaled, aspect kept, to fit a 20 × 20 box with anti-aliasing (each new pixel
the area-weighted mean of the ones it covers), then placed in a 28 × 28 field so that its
centre of mass falls on the field's centre, gray levels in [0, 1]. Measured on MNIST's own
test set here: the centre of mass sits at row 14.0 ± 0.3, column 14.0 ± 0.3, and 99.97% of the
digits span exactly 20 pixels along their longer side.

    image = mnist_like(ink)   # ink: H × W, 0 (paper) … 1 (full ink); image: 28 × 28 float32
"""

from __future__ import annotations

import numpy as np

FIELD = 28  # the input's side
BOX = 20  # the longer side of the digit inside it
CENTRE = 14.0  # where MNIST's centres of mass fall, in pixel indices (rows and columns)
MIN_SIDE, MAX_SIDE = 8, 2048  # a canvas's width and height, in pixels


class DrawingError(ValueError):
    """A drawing that cannot be made an input; the message says what is wrong with it."""


def area_weights(size: int, new_size: int) -> np.ndarray:
    """R (new_size × size): R @ v resamples v to new_size cells, each the mean of what it
    covers, the covered fraction of a pixel weighing as much as it covers."""
    edges = np.linspace(0.0, size, new_size + 1)
    starts, ends = edges[:-1, None], edges[1:, None]
    pixels = np.arange(size)[None, :]
    overlap = np.clip(np.minimum(ends, pixels + 1) - np.maximum(starts, pixels), 0.0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def ink_box(ink: np.ndarray) -> tuple[slice, slice]:
    rows, columns = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(columns[0], columns[-1] + 1)


def mnist_like(ink: np.ndarray) -> np.ndarray:
    """The 28 × 28 input, in [0, 1], that MNIST's recipe makes of `ink` (H × W in [0, 1])."""
    ink = np.asarray(ink, dtype=np.float64)
    if ink.ndim != 2 or min(ink.shape) < 1:
        raise DrawingError(f"a drawing is a 2-D grid of ink values, got shape {ink.shape}")
    if not np.isfinite(ink).all() or ink.min() < 0 or ink.max() > 1:
        raise DrawingError("ink values must be finite numbers in [0, 1]")
    if not ink.any():
        raise DrawingError("the drawing is empty: draw a digit first")
    crop = ink[ink_box(ink)]
    height, width = crop.shape
    scale = BOX / max(height, width)
    new_height = max(1, min(BOX, round(height * scale)))
    new_width = max(1, min(BOX, round(width * scale)))
    boxed = area_weights(height, new_height) @ crop @ area_weights(width, new_width).T
    boxed /= boxed.max()  # a stroke's core is full ink, as in MNIST, however thin it was drawn
    mass = boxed.sum()
    centre_row = (boxed.sum(axis=1) @ np.arange(new_height)) / mass
    centre_column = (boxed.sum(axis=0) @ np.arange(new_width)) / mass
    top, left = round(CENTRE - centre_row), round(CENTRE - centre_column)
    field = np.zeros((FIELD + 2 * BOX, FIELD + 2 * BOX))  # room for a lopsided digit
    field[BOX + top : BOX + top + new_height, BOX + left : BOX + left + new_width] = boxed
    return field[BOX : BOX + FIELD, BOX : BOX + FIELD].astype(np.float32)


def ink_from_bytes(data: bytes, width: int, height: int) -> np.ndarray:
    """The ink grid a page sends: `width` × `height` bytes, row by row, 0 paper, 255 ink."""
    for name, value in (("width", width), ("height", height)):
        whole = isinstance(value, int) and not isinstance(value, bool)
        if not whole or not MIN_SIDE <= value <= MAX_SIDE:
            raise DrawingError(
                f"{name} must be a whole number of pixels in [{MIN_SIDE}, {MAX_SIDE}]"
            )
    if len(data) != width * height:
        raise DrawingError(
            f"{len(data)} ink bytes for a {width} × {height} canvas: it needs {width * height}"
        )
    return np.frombuffer(data, dtype=np.uint8).reshape(height, width) / 255.0


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    """(row, column) of an image's ink, in pixel indices."""
    mass = image.sum()
    rows, columns = np.indices(image.shape)
    return float((image * rows).sum() / mass), float((image * columns).sum() / mass)


def longer_side(image: np.ndarray) -> int:
    rows, columns = ink_box(image > 0)
    return max(rows.stop - rows.start, columns.stop - columns.start)
