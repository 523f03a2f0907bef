"""Optimizers and schedules against steps computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.nn import make_optimizer, make_schedule
from pipeline.nn.optim import FLUSH_EVERY


def run_steps(name, grads, lr=0.1, **kwargs):
    weight, bias = np.array([1.0, -2.0]), np.array([0.5])
    optimizer = make_optimizer(name, [weight, bias], **kwargs)
    for grad in grads:
        scale = optimizer.gradient_scale(lr)  # the model hands over scale·∇
        optimizer.step([scale * np.array(grad, dtype=float), np.array([scale])], lr)
    return weight, bias


def test_plain_gradient_descent():
    weight, bias = run_steps("sgd", [[1.0, 2.0]])
    np.testing.assert_allclose(weight, [0.9, -2.2])
    np.testing.assert_allclose(bias, [0.4])


def test_momentum_accumulates_velocity():
    weight, _ = run_steps("sgd", [[1.0, 0.0], [1.0, 0.0]], momentum=0.9)
    # v1 = 1, p = 1 - 0.1; v2 = 0.9 + 1 = 1.9, p = 0.9 - 0.19
    np.testing.assert_allclose(weight, [0.71, -2.0])


def test_nesterov_looks_ahead():
    weight, _ = run_steps("sgd", [[1.0, 0.0], [1.0, 0.0]], momentum=0.9, nesterov=True)
    # step 1: v = 1, p -= 0.1·(1 + 0.9) ; step 2: v = 1.9, p -= 0.1·(1 + 1.71)
    np.testing.assert_allclose(weight, [1 - 0.19 - 0.271, -2.0])


def test_momentum_follows_a_changing_learning_rate():
    # PyTorch's rule with lr 0.1 then 0.01: v1 = 1, p = 1 - 0.1; v2 = 1.9, p -= 0.01·1.9
    weight, bias = np.array([1.0]), np.array([0.0])
    optimizer = make_optimizer("sgd", [weight, bias], momentum=0.9)
    for lr in (0.1, 0.01):
        optimizer.step([np.array([lr]), np.array([0.0])], lr)
    np.testing.assert_allclose(weight, [1 - 0.1 - 0.019])


def test_l2_weight_decay_applies_to_weights_not_biases():
    weight, bias = run_steps("sgd", [[0.0, 0.0]], weight_decay=0.5)
    np.testing.assert_allclose(weight, [1 - 0.1 * 0.5, -2 + 0.1 * 1.0])
    np.testing.assert_allclose(bias, [0.4])  # only its gradient 1.0


def adam_reference(grads, lr, weight_decay=0.0, decoupled=False, b1=0.9, b2=0.999, eps=1e-8):
    p, m, v = np.array([1.0, -2.0]), np.zeros(2), np.zeros(2)
    for t, g in enumerate(grads, start=1):
        g = np.array(g, dtype=float)
        if decoupled:
            p = p - lr * weight_decay * p
        else:
            g = g + weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p


GRADS = [[0.5, -1.0], [0.3, 2.0], [-0.2, 0.1]]


def test_adam_matches_the_paper_with_bias_correction():
    weight, _ = run_steps("adam", GRADS, lr=0.01)
    np.testing.assert_allclose(weight, adam_reference(GRADS, 0.01), rtol=1e-7)


def test_adam_l2_and_adamw_decoupled_decay_differ_as_defined():
    adam, _ = run_steps("adam", GRADS, lr=0.01, weight_decay=0.1)
    adamw, _ = run_steps("adamw", GRADS, lr=0.01, weight_decay=0.1)
    np.testing.assert_allclose(adam, adam_reference(GRADS, 0.01, 0.1), rtol=1e-7)
    np.testing.assert_allclose(adamw, adam_reference(GRADS, 0.01, 0.1, decoupled=True), rtol=1e-7)
    assert not np.allclose(adam, adamw)


def test_schedules():
    assert [make_schedule("constant", 0.1, 5)(e) for e in (0, 4)] == [0.1, 0.1]
    step = make_schedule("step", 1.0, 30, step_size=10, gamma=0.5)
    assert [step(e) for e in (0, 9, 10, 25)] == [1.0, 1.0, 0.5, 0.25]
    cosine = make_schedule("cosine", 1.0, 10, min_lr=0.1)
    assert cosine(0) == 1.0
    assert cosine(5) == pytest.approx(0.55)
    assert cosine(9) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 0.9)))


def test_unknown_names_are_rejected():
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        make_optimizer("rmsprop", [])
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        make_schedule("linear", 0.1, 3)


def test_subnormal_state_is_flushed_to_zero():
    # A velocity decaying under zero gradients reaches the subnormals (|v| < 1.2e-38 in
    # float32) by step 7; every operation on those is ~100× slower, so they are zeroed.
    weight, bias = np.zeros(1, dtype=np.float32), np.zeros(1, dtype=np.float32)
    optimizer = make_optimizer("sgd", [weight, bias], momentum=0.5)
    grads = [np.array([1e-36], dtype=np.float32), np.zeros(1, dtype=np.float32)]
    optimizer.step(grads, 1.0)
    velocity = optimizer.state[0][0]
    for _ in range(FLUSH_EVERY - 2):
        optimizer.step([np.zeros(1, dtype=np.float32)] * 2, 1.0)
    assert 0 < velocity[0] < np.finfo(np.float32).tiny  # subnormal, not yet flushed
    optimizer.step([np.zeros(1, dtype=np.float32)] * 2, 1.0)
    assert velocity[0] == 0
