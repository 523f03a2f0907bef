"""Affine and elastic distortions (Simard et al. 2003): nothing moves when they are off, ink
goes where the map says, an elastic field moves ink a little and keeps its amount, and a
distortion that is off draws nothing from the generator."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.nn.distortions import Distortion, affine_sources, bilinear, distort

SIDE = 28


def bar(count: int = 1) -> np.ndarray:
    """A horizontal bar across row 13, columns 5-22: where its ink goes is plain to see."""
    images = np.zeros((count, SIDE, SIDE), np.float32)
    images[:, 13, 5:23] = 1.0
    return images


def grid(count: int):
    axis = np.arange(SIDE, dtype=np.float64)
    return (np.broadcast_to(axis[:, None], (count, SIDE, SIDE)),
            np.broadcast_to(axis[None, :], (count, SIDE, SIDE)))  # fmt: skip


def test_reading_at_the_pixel_centres_gives_the_image_back_exactly():
    images = np.random.default_rng(0).random((3, SIDE, SIDE))
    np.testing.assert_array_equal(bilinear(images, *grid(3)), images)


def test_off_returns_the_batch_itself_and_draws_nothing():
    images = bar(2).reshape(2, -1)
    rng = np.random.default_rng(5)
    assert distort(images, Distortion(elastic_sigma=8.0), rng) is images
    assert rng.random() == np.random.default_rng(5).random()


def test_a_quarter_turn_stands_the_bar_up_and_a_shift_moves_it_whole():
    images = bar(2)
    params = np.array([[np.pi / 2, 0, 1, 0, 0], [0, 0, 1, 2, 3]])  # angle, shear, scale, shifts
    turned, shifted = bilinear(images, *affine_sources(*grid(2), params, SIDE))
    inked = np.argwhere(turned > 0.5)
    assert set(inked[:, 1]) == {13} and (inked[:, 0].min(), inked[:, 0].max()) == (5, 22)
    expected = np.zeros((SIDE, SIDE))
    expected[15, 8:26] = 1.0  # two rows down, three columns right
    np.testing.assert_allclose(shifted, expected, atol=1e-9)
    assert turned.sum() == pytest.approx(18.0, abs=1e-6)  # the same ink


def test_a_scale_up_spreads_the_ink_about_the_centre():
    params = np.array([[0, 0, 1.2, 0, 0]])
    scaled = bilinear(bar(), *affine_sources(*grid(1), params, SIDE))[0]
    columns = np.argwhere(scaled[13] > 0.5).ravel()
    assert columns.min() < 5 and columns.max() > 22  # longer, about column 13.5
    assert scaled.sum() == pytest.approx(18 * 1.2**2, rel=0.05)  # ink grows with the area


def test_an_elastic_field_moves_ink_a_little_and_keeps_its_amount():
    rng = np.random.default_rng(0)
    digits = np.zeros((16, SIDE, SIDE), np.float32)
    digits[:, 6:22, 10:18] = 1.0  # thick strokes, as a digit's
    flat = digits.reshape(16, -1)
    moved = distort(flat, Distortion(elastic_alpha=34, elastic_sigma=4), rng)
    assert moved.dtype == np.float32 and moved.shape == flat.shape
    assert not np.array_equal(moved, flat)
    # A field stretches some places and squeezes others (about 1.4 pixels of displacement at
    # σ = 4, α = 34): each image's ink changes by less than half, the batch's by a tenth.
    ratio = moved.sum(axis=1) / flat.sum(axis=1)
    assert np.all(np.abs(ratio - 1) < 0.5) and abs(ratio.mean() - 1) < 0.1
    rows = np.arange(SIDE).repeat(SIDE)
    centre_before = (flat * rows).sum(axis=1) / flat.sum(axis=1)
    centre_after = (moved * rows).sum(axis=1) / moved.sum(axis=1)
    assert np.abs(centre_after - centre_before).max() < 3  # a few pixels, not a new digit
    again = distort(flat, Distortion(elastic_alpha=34, elastic_sigma=4), np.random.default_rng(0))
    np.testing.assert_array_equal(again, moved)  # the seed decides everything


def test_alpha_zero_is_the_identity_and_a_larger_alpha_moves_more():
    flat = bar(4).reshape(4, -1)
    changes = []
    for alpha in (1.0, 8.0, 34.0):
        moved = distort(flat, Distortion(elastic_alpha=alpha), np.random.default_rng(1))
        changes.append(np.abs(moved - flat).sum())
    assert changes[0] < changes[1] < changes[2]
    assert distort(flat, Distortion(elastic_alpha=0.0), np.random.default_rng(1)) is flat
