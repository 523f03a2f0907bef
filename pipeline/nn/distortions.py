"""Distortions of square images stored as rows, as Simard, Steinkraus and Platt (2003) train
on MNIST: affine maps and elastic displacement fields, each image its own, drawn from the
training `rng`, vectorised over the batch.

    Distortion(rotation=15, scale=0.15, shear=15, translation=2)   # affine, per image
    Distortion(elastic_alpha=34, elastic_sigma=4)                   # Simard's elastic field
    distort(images, distortion, rng)                                # a new batch

Both move ink by resampling: each output pixel reads the input at a displaced position, by
bilinear interpolation, with background (0) outside the image. Elastic: a field of uniform
displacements in [-1, 1] per pixel and axis, smoothed by a Gaussian of width σ (in pixels)
and scaled by α; Simard found σ = 4, α = 34 best on MNIST's 28 × 28 images (a smaller σ is
close to noise, a larger one close to an affine map). A distortion that is off draws nothing
from `rng`, so adding the fields changes no earlier run's bits.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Distortion:
    rotation: float = 0.0  # degrees: each image turned by up to ± this
    scale: float = 0.0  # each image scaled by a factor in [1 - scale, 1 + scale]
    shear: float = 0.0  # degrees: each image sheared by up to ± this
    translation: float = 0.0  # pixels: each image moved by up to ± this per axis
    elastic_alpha: float = 0.0  # elastic field strength (pixels per unit of smoothed noise)
    elastic_sigma: float = 4.0  # elastic field smoothness: the Gaussian's width in pixels

    @property
    def affine(self) -> bool:
        return any((self.rotation, self.scale, self.shear, self.translation))

    @property
    def elastic(self) -> bool:
        return self.elastic_alpha > 0


def distort(images: np.ndarray, distortion: Distortion, rng: np.random.Generator) -> np.ndarray:
    """A distorted copy of `images` (N × side²); `images` itself when nothing is on."""
    if not (distortion.affine or distortion.elastic):
        return images
    count, pixels = images.shape
    side = math.isqrt(pixels)
    if side * side != pixels:
        raise ValueError(f"distortions need square images; {pixels} pixels per row is not")
    grid = np.arange(side, dtype=np.float32)  # float32 throughout: 4-5× faster than float64
    rows = np.broadcast_to(grid[:, None], (count, side, side))
    columns = np.broadcast_to(grid[None, :], (count, side, side))
    if distortion.affine:
        params = random_affine(distortion, count, rng)
        rows, columns = affine_sources(rows, columns, params, side)
    if distortion.elastic:
        d_rows, d_columns = elastic_field(count, side, distortion, rng)
        rows, columns = rows + d_rows, columns + d_columns
    out = bilinear(images.reshape(count, side, side), rows, columns)
    return out.reshape(count, pixels).astype(images.dtype, copy=False)


def random_affine(distortion: Distortion, count: int, rng: np.random.Generator) -> np.ndarray:
    """Each image's angle and shear (radians), scale factor, and row and column shift."""
    return np.stack([
        np.radians(rng.uniform(-distortion.rotation, distortion.rotation, count)),
        np.radians(rng.uniform(-distortion.shear, distortion.shear, count)),
        rng.uniform(1 - distortion.scale, 1 + distortion.scale, count),
        *rng.uniform(-distortion.translation, distortion.translation, (2, count)),
    ], axis=1)  # fmt: skip


def affine_sources(rows: np.ndarray, columns: np.ndarray, params: np.ndarray, side: int):
    """Where each output pixel reads from under each image's affine map about the centre
    (`params`: angle, shear, scale, row shift, column shift): the inverse of rotation ·
    shear · scale, after the shift."""
    angle, shear, factor, shift_rows, shift_columns = params.T
    cos, sin, tan = np.cos(angle), np.sin(angle), np.tan(shear)
    forward = np.empty((len(params), 2, 2))  # on (row, column) offsets from the centre
    forward[:, 0, 0] = cos * factor
    forward[:, 0, 1] = -sin * factor
    forward[:, 1, 0] = (sin + tan * cos) * factor
    forward[:, 1, 1] = (cos - tan * sin) * factor
    inverse = np.linalg.inv(forward).astype(np.float32)[:, :, :, None, None]
    centre = np.float32((side - 1) / 2)
    dr = rows - (centre + shift_rows.astype(np.float32))[:, None, None]
    dc = columns - (centre + shift_columns.astype(np.float32))[:, None, None]
    source_rows = inverse[:, 0, 0] * dr + inverse[:, 0, 1] * dc
    source_columns = inverse[:, 1, 0] * dr + inverse[:, 1, 1] * dc
    return source_rows + centre, source_columns + centre


@functools.cache  # the same for every batch of a training: made once
def gaussian_matrix(side: int, sigma: float) -> np.ndarray:
    """K with K @ f the 1-D Gaussian smoothing of f (zero outside), weights summing to 1."""
    offsets = np.arange(side)[:, None] - np.arange(side)[None, :]
    weights = np.exp(-(offsets**2) / (2 * sigma**2))
    weights /= np.exp(-(np.arange(-side + 1, side) ** 2) / (2 * sigma**2)).sum()
    weights = weights.astype(np.float32)
    weights.flags.writeable = False  # shared by every call
    return weights


def elastic_field(count: int, side: int, distortion: Distortion, rng):
    """Simard's displacement fields: uniform noise in [-1, 1], Gaussian-smoothed, times α."""
    noise = rng.uniform(-1.0, 1.0, (2, count, side, side)).astype(np.float32)
    smooth = gaussian_matrix(side, distortion.elastic_sigma)
    field = smooth @ noise @ smooth.T  # separable smoothing along both axes
    return distortion.elastic_alpha * field[0], distortion.elastic_alpha * field[1]


def bilinear(images: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """images[n, rows, columns] at real positions, interpolated; 0 outside the image.

    The images are framed in blank pixels (one before, two after) and positions clipped to
    [-1, side], so every corner read lands in the frame or the image: four gathers from one
    flat array, no masks."""
    count, side, _ = images.shape
    framed_side = side + 3
    framed = np.zeros((count, framed_side, framed_side), images.dtype)
    framed[:, 1 : side + 1, 1 : side + 1] = images
    rows, columns = np.clip(rows, -1, side), np.clip(columns, -1, side)
    top, left = np.floor(rows), np.floor(columns)
    down, right = rows - top, columns - left
    first_pixel = (np.arange(count) * framed_side**2)[:, None, None]
    corner = first_pixel + (top.astype(np.intp) + 1) * framed_side + left.astype(np.intp) + 1
    flat = framed.reshape(-1)
    upper_left, lower_left = flat[corner], flat[corner + framed_side]
    upper = upper_left + right * (flat[corner + 1] - upper_left)
    lower = lower_left + right * (flat[corner + framed_side + 1] - lower_left)
    return upper + down * (lower - upper)
