"""Optimizers against steps computed by hand and Adam written out from the paper."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.nn import make_optimizer, optimizers
from pipeline.nn.optimizers import BLOCK_ELEMENTS, FLUSH_EVERY


def run_steps(name, grads, lr=0.1, lrs=None, **settings):
    """Steps on W = [1, -2] (gradients `grads`) and b = [0.5] (gradient 1 each step)."""
    weight, bias = np.array([1.0, -2.0]), np.array([0.5])
    optimizer = make_optimizer([weight, bias], name=name, lr=lr, **settings)
    for step, grad in enumerate(grads):
        if lrs is not None:
            optimizer.lr = lrs[step]  # as the training loop does from the schedule
        optimizer.step([np.array(grad, dtype=float), np.array([1.0])])
    return weight, bias


def test_plain_gradient_descent():
    weight, bias = run_steps("sgd", [[1.0, 2.0]])
    np.testing.assert_allclose(weight, [0.9, -2.2])
    np.testing.assert_allclose(bias, [0.4])


def test_momentum_accumulates_velocity():
    weight, bias = run_steps("sgd", [[1.0, 0.0], [1.0, 0.0]], momentum=0.9)
    # v1 = 1, p = 1 - 0.1; v2 = 0.9 + 1 = 1.9, p = 0.9 - 0.19
    np.testing.assert_allclose(weight, [0.71, -2.0])
    np.testing.assert_allclose(bias, [0.5 - 0.1 - 0.19])


def test_nesterov_looks_ahead():
    weight, _ = run_steps("sgd", [[1.0, 0.0], [1.0, 0.0]], momentum=0.9, nesterov=True)
    # step 1: v = 1, p -= 0.1·(1 + 0.9) ; step 2: v = 1.9, p -= 0.1·(1 + 1.71)
    np.testing.assert_allclose(weight, [1 - 0.19 - 0.271, -2.0])


def test_momentum_follows_a_changing_learning_rate():
    # PyTorch's rule with lr 0.1 then 0.01: v1 = 1, p = 1 - 0.1; v2 = 1.9, p -= 0.01·1.9
    weight, _ = run_steps("sgd", [[1.0, 0.0], [1.0, 0.0]], momentum=0.9, lrs=[0.1, 0.01])
    np.testing.assert_allclose(weight, [1 - 0.1 - 0.019, -2.0])


def test_l2_weight_decay_applies_to_weights_not_biases():
    weight, bias = run_steps("sgd", [[0.0, 0.0]], weight_decay=0.5)
    np.testing.assert_allclose(weight, [1 - 0.1 * 0.5, -2 + 0.1 * 1.0])
    np.testing.assert_allclose(bias, [0.4])  # only its gradient 1.0


def adam_reference(grads, lrs, weight_decay=0.0, decoupled=False, b1=0.9, b2=0.999, eps=1e-8):
    p, m, v = np.array([1.0, -2.0]), np.zeros(2), np.zeros(2)
    for t, (g, lr) in enumerate(zip(grads, lrs, strict=True), start=1):
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
LRS = [0.01, 0.005, 0.002]


def test_adam_matches_the_paper_with_bias_correction():
    weight, _ = run_steps("adam", GRADS, lrs=LRS)
    np.testing.assert_allclose(weight, adam_reference(GRADS, LRS), rtol=1e-7)
    other, _ = run_steps("adam", GRADS, lrs=LRS, beta1=0.5, beta2=0.9, eps=1e-3)
    expected = adam_reference(GRADS, LRS, b1=0.5, b2=0.9, eps=1e-3)
    np.testing.assert_allclose(other, expected, rtol=1e-7)


def test_adam_l2_and_adamw_decoupled_decay_differ_as_defined():
    adam, _ = run_steps("adam", GRADS, lrs=LRS, weight_decay=0.1)
    adamw, _ = run_steps("adamw", GRADS, lrs=LRS, weight_decay=0.1)
    np.testing.assert_allclose(adam, adam_reference(GRADS, LRS, 0.1), rtol=1e-7)
    expected = adam_reference(GRADS, LRS, 0.1, decoupled=True)
    np.testing.assert_allclose(adamw, expected, rtol=1e-7)
    assert not np.allclose(adam, adamw)


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_updates_in_blocks_equal_one_whole_update(name, monkeypatch):
    rows = 3 * BLOCK_ELEMENTS // 100 + 7  # several blocks of 100-wide rows, the last partial
    rng = np.random.default_rng(0)
    start, grads = rng.normal(size=(rows, 100)), [rng.normal(size=(rows, 100)) for _ in range(3)]
    settings = {"momentum": 0.9} if name == "sgd" else {}
    results = []
    for block_elements in (BLOCK_ELEMENTS, rows * 100):  # blocks, then one block of all rows
        monkeypatch.setattr(optimizers, "BLOCK_ELEMENTS", block_elements)
        param = start.copy()
        optimizer = make_optimizer([param], name=name, lr=0.01, **settings)
        for grad in grads:
            optimizer.step([grad.copy()])
        results.append(param)
    np.testing.assert_array_equal(results[0], results[1])
    assert not np.array_equal(results[0], start)


def test_unknown_names_are_rejected():
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        make_optimizer([], name="rmsprop", lr=0.1)


def test_subnormal_state_is_flushed_to_zero():
    # A velocity decaying under zero gradients reaches the subnormals (|v| < 1.2e-38 in
    # float32) by step 7; every operation on those is ~100× slower, so they are zeroed.
    weight, bias = np.zeros(1, dtype=np.float32), np.zeros(1, dtype=np.float32)
    optimizer = make_optimizer([weight, bias], name="sgd", lr=1.0, momentum=0.5)
    optimizer.step([np.array([1e-36], dtype=np.float32), np.zeros(1, dtype=np.float32)])
    velocity = optimizer.state[0][0]
    for _ in range(FLUSH_EVERY - 2):
        optimizer.step([np.zeros(1, dtype=np.float32)] * 2)
    assert 0 < velocity[0] < np.finfo(np.float32).tiny  # subnormal, not yet flushed
    optimizer.step([np.zeros(1, dtype=np.float32)] * 2)
    assert velocity[0] == 0


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_weight_decay_shrinks_every_layers_weights_and_no_bias(name):
    params = [np.full((2, 3), 1.0), np.full((2, 1), 1.0), np.full((1, 2), 1.0), np.ones((1, 1))]
    optimizer = make_optimizer(params, name=name, lr=0.1, weight_decay=0.5)
    optimizer.step([np.zeros_like(p) for p in params])
    assert np.all(params[0] < 1) and np.all(params[2] < 1)  # W¹ and W² decay
    assert np.all(params[1] == 1) and np.all(params[3] == 1)  # b¹ and b² do not
