"""Softmax cross-entropy against its definition and finite differences."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.nn.loss import softmax_cross_entropy, softmax_rows


def test_loss_gradient_is_softmax_minus_one_hot_and_matches_finite_differences():
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(5, 3)), np.array([4, 0, 2])
    loss, dz = softmax_cross_entropy(logits.copy(), labels)
    probs = np.exp(logits) / np.exp(logits).sum(axis=0)
    assert loss == pytest.approx(-np.mean(np.log(probs[labels, range(3)])), rel=1e-12)
    np.testing.assert_allclose(dz, probs - np.eye(5)[:, labels], atol=1e-12)
    eps, numeric = 1e-6, np.zeros_like(logits)
    for index in np.ndindex(logits.shape):
        up, down = logits.copy(), logits.copy()
        up[index] += eps
        down[index] -= eps
        diff = softmax_cross_entropy(up, labels)[0] - softmax_cross_entropy(down, labels)[0]
        numeric[index] = diff / (2 * eps)
    np.testing.assert_allclose(dz / 3, numeric, atol=1e-8)  # dL/dZ = (A - Y)/m


def test_huge_logits_give_a_finite_loss():
    logits = np.array([[1e4, -1e4], [0.0, 1e4]], dtype=np.float32)
    loss, dz = softmax_cross_entropy(logits, np.array([1, 1]))
    assert loss == pytest.approx(1e4 / 2)  # first example: true logit 0 vs 1e4
    assert np.isfinite(dz).all()


def test_softmax_of_rows_sums_to_one_even_for_huge_logits():
    logits = np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]])
    probabilities = softmax_rows(logits.copy())
    np.testing.assert_allclose(probabilities.sum(axis=1), [1.0, 1.0])
    np.testing.assert_allclose(probabilities[1], np.exp([1, 2, 3]) / np.exp([1, 2, 3]).sum())
    assert probabilities[0, 0] == pytest.approx(1.0)
