"""Initial weights and biases of a dense layer: He, Xavier, or the notes' U(-0.5, 0.5)."""

from __future__ import annotations

import numpy as np

INITS = ("he", "xavier", "uniform")


def init_layer(
    fan_in: int, fan_out: int, scheme: str, rng: np.random.Generator, dtype
) -> tuple[np.ndarray, np.ndarray]:
    """Initial W (fan_out × fan_in) and b (fan_out × 1)."""
    if scheme == "he":  # He et al.: N(0, 2/fan_in), suits ReLU
        weights = rng.standard_normal((fan_out, fan_in)) * np.sqrt(2.0 / fan_in)
        biases = np.zeros((fan_out, 1))
    elif scheme == "xavier":  # Glorot uniform: U(±sqrt(6/(fan_in + fan_out)))
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        weights = rng.uniform(-limit, limit, (fan_out, fan_in))
        biases = np.zeros((fan_out, 1))
    elif scheme == "uniform":  # the notes: np.random.rand(...) - 0.5, for W and b alike
        weights = rng.random((fan_out, fan_in)) - 0.5
        biases = rng.random((fan_out, 1)) - 0.5
    else:
        raise ValueError(f"unknown init {scheme!r}; choose one of {', '.join(INITS)}")
    return weights.astype(dtype), biases.astype(dtype)
