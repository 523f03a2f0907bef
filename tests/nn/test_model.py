"""The network's forward and backward passes, proven against references: finite differences,
and the notes' equations written out by hand in plain numpy."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.nn import ACTIVATIONS, MLP, fit, make_optimizer, make_schedule


def numeric_grads(model, x, y, dropout=0.0, seed=0, eps=1e-6, input_dropout=0.0):
    """Central differences of the loss for every parameter entry (float64), with the masks
    the same seed draws."""
    grads = []
    for param in model.params():
        grad = np.zeros_like(param)
        for index in np.ndindex(param.shape):
            saved = param[index]
            param[index] = saved + eps
            rng = np.random.default_rng(seed)
            up = model.loss_and_grads(x, y, dropout, rng, input_dropout)[0]
            param[index] = saved - eps
            rng = np.random.default_rng(seed)
            down = model.loss_and_grads(x, y, dropout, rng, input_dropout)[0]
            param[index] = saved
            grad[index] = (up - down) / (2 * eps)
        grads.append(grad)
    return grads


def assert_grads_match(model, x, y, dropout=0.0, input_dropout=0.0):
    rng = np.random.default_rng(0)
    _, _, analytic = model.loss_and_grads(x, y, dropout, rng, input_dropout)
    analytic = [g.copy() for g in analytic]
    numeric = numeric_grads(model, x, y, dropout, input_dropout=input_dropout)
    for layer, (a, n) in enumerate(zip(analytic, numeric, strict=True)):
        error = np.abs(a - n).max() / max(np.abs(a).max(), np.abs(n).max(), 1e-12)
        assert error < 1e-6, f"param {layer}: relative error {error:.2e}"


@pytest.fixture
def tiny_batch():
    rng = np.random.default_rng(42)
    return rng.normal(size=(7, 6)), rng.integers(0, 4, size=7)


def with_random_biases(model: MLP, seed: int) -> MLP:
    for b in model.biases:  # nonzero biases, so b and db are really exercised
        b += np.random.default_rng(seed).normal(size=b.shape) * 0.1
    return model


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_gradients_of_a_two_hidden_layer_network_match_finite_differences(activation, tiny_batch):
    x, y = tiny_batch
    model = MLP.create((6, 5, 5, 4), activation, "xavier", np.random.default_rng(1), np.float64)
    assert_grads_match(with_random_biases(model, 2), x, y)


def test_gradients_with_a_fixed_dropout_mask_match_finite_differences(tiny_batch):
    x, y = tiny_batch
    model = MLP.create((6, 8, 8, 4), "tanh", "xavier", np.random.default_rng(3), np.float64)
    assert_grads_match(model, x, y, dropout=0.3)


def test_gradients_with_fixed_input_and_hidden_masks_match_finite_differences(tiny_batch):
    x, y = tiny_batch
    model = MLP.create((6, 8, 8, 4), "relu", "he", np.random.default_rng(4), np.float64)
    assert_grads_match(with_random_biases(model, 5), x, y, dropout=0.5, input_dropout=0.2)


def test_input_dropout_zeroes_pixels_and_scales_the_rest():
    model = MLP.create((1000, 3, 2), "relu", "he", np.random.default_rng(0), np.float64)
    x = np.ones((4, 1000))
    passed = model.forward(x.T, rng=np.random.default_rng(1), input_dropout=0.2)
    seen = passed.inputs[0]  # the pixels the first layer saw
    assert set(np.unique(seen)) == {0.0, 1 / 0.8}
    assert 0.15 < np.mean(seen == 0) < 0.25
    assert passed.masks == []  # the hidden layers keep every unit: their own rate is 0
    # A rate of 0 draws nothing: the generator is where it was, so the bits stay the same.
    rng = np.random.default_rng(7)
    model.forward(x.T, 0.0, rng, input_dropout=0.0)
    assert rng.random() == np.random.default_rng(7).random()


def test_max_norm_puts_long_hidden_rows_on_the_sphere_and_leaves_the_rest():
    model = MLP.create((5, 4, 4, 3), "relu", "he", np.random.default_rng(2), np.float64)
    model.weights[0][0] *= 10  # one hidden unit's incoming weights far over the cap
    model.weights[1][:] *= 0.01  # a hidden layer under it
    model.weights[2][:] *= 10  # the output layer far over it: the paper leaves it free
    before = [w.copy() for w in model.weights]
    biases = [b.copy() for b in model.biases]
    cap = 1.5
    norms = [np.linalg.norm(w, axis=1) for w in before]
    model.cap_unit_norms(cap)
    for w, old, old_norms in zip(model.weights[:-1], before[:-1], norms[:-1], strict=True):
        new_norms = np.linalg.norm(w, axis=1)
        over = old_norms > cap
        np.testing.assert_allclose(new_norms[over], cap, rtol=1e-12)
        np.testing.assert_allclose(w[over], old[over] * (cap / old_norms[over])[:, None])
        np.testing.assert_array_equal(w[~over], old[~over])  # bit for bit
    assert np.any(norms[0] > cap) and not np.any(norms[1] > cap)
    assert np.all(norms[2] > cap)
    np.testing.assert_array_equal(model.weights[2], before[2])  # the output layer is free
    assert all(np.array_equal(a, b) for a, b in zip(model.biases, biases, strict=True))


def notes_forward(model: MLP, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Z1, A1, Z2 for a one-hidden-layer ReLU network, exactly as the notes write them."""
    W1, b1, W2, b2 = model.params()
    Z1 = W1 @ x.T + b1
    A1 = np.maximum(Z1, 0)
    return Z1, A1, W2 @ A1 + b2


def test_inference_is_the_notes_forward_pass_with_biases():
    rng = np.random.default_rng(4)
    x = rng.random((9, 12))
    model = MLP.create((12, 6, 5), "relu", "uniform", np.random.default_rng(5), np.float64)
    _, _, Z2 = notes_forward(model, x)
    np.testing.assert_allclose(model.logits(x), Z2.T, rtol=1e-12)
    probabilities = np.exp(Z2) / np.exp(Z2).sum(axis=0)
    np.testing.assert_allclose(model.probabilities(x), probabilities.T, rtol=1e-12)
    np.testing.assert_array_equal(model.predict(x), Z2.argmax(axis=0))
    np.testing.assert_allclose(model.logits(x, chunk=4), Z2.T, rtol=1e-12)  # in chunks too


def test_one_gradient_descent_step_is_the_notes_backprop():
    """One full-batch step of gradient descent, written out as in the notes, equals ours."""
    rng = np.random.default_rng(7)
    x, y = rng.random((50, 784)), rng.integers(0, 10, 50)
    model = MLP.create((784, 10, 10), "relu", "uniform", np.random.default_rng(0), np.float64)
    W1, b1, W2, b2 = (p.copy() for p in model.params())
    assert W1.shape == (10, 784) and b1.shape == (10, 1) and W2.shape == (10, 10)
    assert all(p.min() >= -0.5 and p.max() < 0.5 for p in (W1, b1, W2, b2))
    Y, m = np.eye(10)[:, y], 50
    Z1, A1, Z2 = notes_forward(model, x)
    A2 = np.exp(Z2) / np.exp(Z2).sum(axis=0)
    dZ2 = A2 - Y
    dW2, db2 = dZ2 @ A1.T / m, dZ2.sum(axis=1, keepdims=True) / m
    dZ1 = W2.T @ dZ2 * (Z1 > 0)
    dW1, db1 = dZ1 @ x / m, dZ1.sum(axis=1, keepdims=True) / m
    loss, correct, grads = model.loss_and_grads(x, y)
    assert loss == pytest.approx(-np.mean(np.log(A2[y, range(m)])), rel=1e-12)
    assert correct == np.count_nonzero(A2.argmax(axis=0) == y)
    for ours, expected in zip(grads, (dW1, db1, dW2, db2), strict=True):
        np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-14)
    alpha = 0.1
    optimizer = make_optimizer(model.params(), name="sgd", lr=alpha)
    fit(
        model, x, y, x[:5], y[:5], optimizer=optimizer,
        schedule=make_schedule(name="constant", base_lr=alpha, epochs=1), epochs=1,
        batch_size=None, rng=np.random.default_rng(0),
    )  # fmt: skip
    expected = [(W1, dW1), (b1, db1), (W2, dW2), (b2, db2)]
    for ours, (param, grad) in zip(model.params(), expected, strict=True):
        np.testing.assert_allclose(ours, param - alpha * grad, rtol=1e-10, atol=1e-12)


def test_dropout_zeroes_units_and_scales_the_rest():
    model = MLP.create((4, 1000, 3), "relu", "he", np.random.default_rng(0), np.float64)
    x = np.ones((1, 4))
    passed = model.forward(x.T, dropout=0.25, rng=np.random.default_rng(1))
    (mask,) = passed.masks
    assert set(np.unique(mask)) == {0.0, 1 / 0.75}
    assert 0.2 < np.mean(mask == 0) < 0.3
    np.testing.assert_array_equal(passed.inputs[1], passed.activations[0] * mask)
    assert model.forward(x.T).masks == []  # inference: no dropout


def test_bad_architectures_are_refused():
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        MLP.create((4, 3), "swish")
    with pytest.raises(ValueError, match="layer sizes must be ≥ 1"):
        MLP.create((4, 0, 3))
