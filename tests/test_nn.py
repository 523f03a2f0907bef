"""The network core, proven against references: finite differences, the notes' equations
written out by hand, and hand-computed optimizer steps."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.nn import MLP, ModelFormatError, TrainingDiverged, fit, make_optimizer, make_schedule
from pipeline.nn.activations import ACTIVATIONS
from pipeline.nn.augment import random_shift
from pipeline.nn.model import softmax_cross_entropy
from pipeline.nn.train import evaluate


def numeric_grads(model, x, y, dropout=0.0, seed=0, eps=1e-6):
    """Central differences of the loss for every parameter entry (float64)."""
    grads = []
    for param in model.params():
        grad = np.zeros_like(param)
        for index in np.ndindex(param.shape):
            saved = param[index]
            param[index] = saved + eps
            up = model.loss_and_grads(x, y, dropout, np.random.default_rng(seed))[0]
            param[index] = saved - eps
            down = model.loss_and_grads(x, y, dropout, np.random.default_rng(seed))[0]
            param[index] = saved
            grad[index] = (up - down) / (2 * eps)
        grads.append(grad)
    return grads


def assert_grads_match(model, x, y, dropout=0.0):
    _, _, analytic = model.loss_and_grads(x, y, dropout, np.random.default_rng(0))
    analytic = [g.copy() for g in analytic]
    numeric = numeric_grads(model, x, y, dropout)
    for layer, (a, n) in enumerate(zip(analytic, numeric, strict=True)):
        error = np.abs(a - n).max() / max(np.abs(a).max(), np.abs(n).max(), 1e-12)
        assert error < 1e-6, f"param {layer}: relative error {error:.2e}"


@pytest.fixture
def tiny_batch():
    rng = np.random.default_rng(42)
    return rng.normal(size=(7, 6)), rng.integers(0, 4, size=7)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_gradients_of_a_two_hidden_layer_network_match_finite_differences(activation, tiny_batch):
    x, y = tiny_batch
    model = MLP.create((6, 5, 5, 4), activation, "xavier", np.random.default_rng(1), np.float64)
    for b in model.biases:  # nonzero biases, so db is really checked
        b += np.random.default_rng(2).normal(size=b.shape) * 0.1
    assert_grads_match(model, x, y)


def test_gradients_with_a_fixed_dropout_mask_match_finite_differences(tiny_batch):
    x, y = tiny_batch
    model = MLP.create((6, 8, 8, 4), "tanh", "xavier", np.random.default_rng(3), np.float64)
    assert_grads_match(model, x, y, dropout=0.3)


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


def test_notes_backprop_equations_hold_for_the_notes_network():
    """One full-batch gradient-descent step, written out as in the notes, equals ours."""
    rng = np.random.default_rng(7)
    x, y = rng.random((50, 784)), rng.integers(0, 10, 50)
    model = MLP.create((784, 10, 10), "relu", "uniform", np.random.default_rng(0), np.float64)
    W1, b1, W2, b2 = (p.copy() for p in model.params())
    assert W1.shape == (10, 784) and b1.shape == (10, 1) and W2.shape == (10, 10)
    assert all(p.min() >= -0.5 and p.max() < 0.5 for p in (W1, b1, W2, b2))
    X, Y, m = x.T, np.eye(10)[:, y], 50
    Z1 = W1 @ X + b1
    A1 = np.maximum(Z1, 0)
    Z2 = W2 @ A1 + b2
    A2 = np.exp(Z2) / np.exp(Z2).sum(axis=0)
    dZ2 = A2 - Y
    dW2, db2 = dZ2 @ A1.T / m, dZ2.sum(axis=1, keepdims=True) / m
    dZ1 = W2.T @ dZ2 * (Z1 > 0)
    dW1, db1 = dZ1 @ X.T / m, dZ1.sum(axis=1, keepdims=True) / m
    alpha = 0.1
    optimizer = make_optimizer("sgd", model.params())
    fit(
        model, x, y, x[:5], y[:5], optimizer=optimizer,
        schedule=make_schedule("constant", alpha, 1), epochs=1, batch_size=None,
        rng=np.random.default_rng(0),
    )  # fmt: skip
    expected = [(W1, dW1), (b1, db1), (W2, dW2), (b2, db2)]
    for ours, (param, grad) in zip(model.params(), expected, strict=True):
        np.testing.assert_allclose(ours, param - alpha * grad, rtol=1e-10, atol=1e-12)


def train_small(seed, x, y, epochs=3, **kwargs):
    model = MLP.create((x.shape[1], 16, 10), "relu", "he", np.random.default_rng(seed))
    optimizer = make_optimizer("adam", model.params())
    fit(
        model, x, y, x[:20], y[:20], optimizer=optimizer,
        schedule=make_schedule("cosine", 1e-2, epochs), epochs=epochs, batch_size=32,
        rng=np.random.default_rng(seed), **kwargs,
    )  # fmt: skip
    return model


def test_same_seed_gives_identical_weights_and_another_seed_different(tiny_images):
    x, y = tiny_images
    a, b, c = (train_small(s, x, y, dropout=0.2) for s in (5, 5, 6))
    for pa, pb in zip(a.params(), b.params(), strict=True):
        assert np.array_equal(pa, pb)
    assert not np.array_equal(a.weights[0], c.weights[0])


@pytest.fixture
def tiny_images(synthetic_mnist):
    from pipeline.idx import read_idx

    x = read_idx(synthetic_mnist.directory / "train-images-idx3-ubyte").reshape(300, -1)
    return (x / np.float32(255)).astype(np.float32), synthetic_mnist.train_labels


def test_training_on_separable_data_reaches_near_perfect_accuracy(tiny_images):
    x, y = tiny_images
    model = train_small(0, x[:200], y[:200], epochs=15)
    _, accuracy = evaluate(model, x[200:], y[200:])
    assert accuracy >= 0.98


def test_early_stopping_restores_the_best_weights(tiny_images):
    x, y = tiny_images
    noisy = np.random.default_rng(0).integers(0, 10, len(y))  # dev accuracy cannot keep rising
    model = MLP.create((784, 16, 10), "relu", "he", np.random.default_rng(0))
    result = fit(
        model, x, y, x[:100], noisy[:100], optimizer=make_optimizer("adam", model.params()),
        schedule=make_schedule("constant", 1e-2, 40), epochs=40, batch_size=32,
        rng=np.random.default_rng(0), patience=3,
    )  # fmt: skip
    assert result.stopped_early
    assert len(result.history) == result.best_epoch + 3
    assert evaluate(model, x[:100], noisy[:100])[1] == result.best.dev_accuracy
    assert result.best.dev_accuracy == max(r.dev_accuracy for r in result.history)


def test_divergence_names_epoch_and_learning_rate(tiny_images):
    x, y = tiny_images
    model = MLP.create((784, 16, 10), "relu", "he", np.random.default_rng(0))
    # The log-sum-exp loss stays finite for huge logits; only float32 overflow makes it NaN.
    with pytest.raises(TrainingDiverged, match=r"diverged at epoch \d .*learning rate 1e\+20"):
        fit(
            model, x, y, x, y, optimizer=make_optimizer("sgd", model.params()),
            schedule=make_schedule("constant", 1e20, 3), epochs=3, batch_size=None,
            rng=np.random.default_rng(0),
        )  # fmt: skip


def test_saved_arrays_round_trip_and_bad_files_are_named(tmp_path, tiny_images):
    from pipeline.io import save_arrays

    x, _ = tiny_images
    model = MLP.create((784, 12, 7, 10), "tanh", "xavier", np.random.default_rng(0))
    save_arrays(tmp_path / "m.npz", **model.to_arrays())
    with np.load(tmp_path / "m.npz", allow_pickle=False) as arrays:
        loaded = MLP.from_arrays(arrays, "m.npz")
    assert loaded.sizes == (784, 12, 7, 10) and loaded.activation == "tanh"
    np.testing.assert_array_equal(loaded.logits(x), model.logits(x))
    with pytest.raises(ModelFormatError, match="not a model saved by this project"):
        MLP.from_arrays({"images": x}, "data.npz")
    arrays = model.to_arrays()
    arrays["W2"] = arrays["W2"][:, :3]
    with pytest.raises(
        ModelFormatError, match=r"W2 has shape \(7, 3\) but sizes .* need \(7, 12\)"
    ):
        MLP.from_arrays(arrays, "m.npz")


def test_random_shift_moves_each_image_within_bounds_and_keeps_its_pixels():
    images = np.zeros((50, 36), dtype=np.float32)  # 6×6 images, one lit pixel in the middle
    images[:, 2 * 6 + 3] = 1.0
    shifted = random_shift(images, 1, np.random.default_rng(0))
    assert shifted.shape == images.shape and shifted.dtype == images.dtype
    assert np.all(shifted.sum(axis=1) == 1.0)  # no pixel lost or invented
    lit_row, lit_col = np.divmod(shifted.argmax(axis=1), 6)
    assert set(lit_row) == {1, 2, 3} and set(lit_col) == {2, 3, 4}  # every shift in ±1 drawn
    again = random_shift(images, 1, np.random.default_rng(0))
    np.testing.assert_array_equal(shifted, again)
    assert random_shift(images, 0, np.random.default_rng(0)) is images


def test_random_shift_fills_the_edge_with_background():
    images = np.ones((20, 16), dtype=np.float32)  # 4×4 all lit
    shifted = random_shift(images, 2, np.random.default_rng(1)).reshape(20, 4, 4)
    moved = shifted.sum(axis=(1, 2)) < 16
    assert moved.any() and np.all(np.isin(shifted, [0.0, 1.0]))
    with pytest.raises(ValueError, match="square images"):
        random_shift(np.ones((2, 10)), 1, np.random.default_rng(0))


def test_reused_scratch_buffers_change_no_result():
    rng = np.random.default_rng(3)
    model = MLP.create((12, 8, 6, 4), rng=rng)
    batches = [(rng.random((m, 12), dtype=np.float32), rng.integers(0, 4, m)) for m in (5, 3, 5)]
    scratch = {}
    for x, y in batches:  # the second 5-row batch reuses the first one's buffers
        fresh = model.loss_and_grads(x, y, 0.3, np.random.default_rng(1))
        reused = model.loss_and_grads(x, y, 0.3, np.random.default_rng(1), scratch=scratch)
        assert fresh[:2] == reused[:2]
        for a, b in zip(fresh[2], reused[2], strict=True):
            np.testing.assert_array_equal(a, b)
    sizes = {key[3] for key in scratch if key != "grads"}
    assert sizes == {5, 3}  # buffers per batch size, not per step
