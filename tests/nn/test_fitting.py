"""The training loop: what it reports, determinism, early stopping, divergence."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.nn import (
    MLP,
    TrainingDiverged,
    fit,
    loss_and_accuracy,
    make_optimizer,
    make_schedule,
)
from pipeline.nn.loss import softmax_cross_entropy


@pytest.fixture
def tiny_images(synthetic_mnist):
    from pipeline.data.idx import read_idx

    x = read_idx(synthetic_mnist.directory / "train-images-idx3-ubyte").reshape(300, -1)
    return (x / np.float32(255)).astype(np.float32), synthetic_mnist.train_labels


def adam_fit(model, x, y, epochs=3, lr=1e-2, **kwargs):
    return fit(
        model, x, y, x[:20], y[:20], optimizer=make_optimizer(model.params(), name="adam", lr=lr),
        schedule=make_schedule(name="cosine", base_lr=lr, epochs=epochs), epochs=epochs,
        batch_size=32, rng=np.random.default_rng(0), **kwargs,
    )  # fmt: skip


def small_model(x, seed=0):
    return MLP.create((x.shape[1], 16, 10), "relu", "he", np.random.default_rng(seed))


def test_reported_losses_and_accuracies_are_the_real_ones(tiny_images):
    x, y = tiny_images
    x, y = x[:64].astype(np.float64), y[:64]
    model = MLP.create((784, 8, 10), "relu", "he", np.random.default_rng(0), np.float64)
    before = [p.copy() for p in model.params()]
    logits = model.logits(x).T.copy()
    loss_before, _ = softmax_cross_entropy(logits.copy(), y)
    correct_before = np.mean(logits.argmax(axis=0) == y)
    result = fit(
        model, x, y, x[:30], y[:30], optimizer=make_optimizer(model.params(), name="sgd", lr=0.5),
        schedule=make_schedule(name="constant", base_lr=0.5, epochs=1), epochs=1,
        batch_size=None, rng=np.random.default_rng(0),
    )  # fmt: skip
    (record,) = result.history
    # One full-batch step: the training scores are those of the weights before the step.
    assert record.train_loss == pytest.approx(loss_before, rel=1e-12)
    assert record.train_accuracy == pytest.approx(correct_before)
    assert not all(np.array_equal(a, b) for a, b in zip(before, model.params(), strict=True))
    dev_loss, dev_accuracy = loss_and_accuracy(model, x[:30], y[:30])  # after the step
    assert (record.dev_loss, record.dev_accuracy) == (dev_loss, dev_accuracy)
    assert record.learning_rate == 0.5 and record.epoch == 1


def test_the_schedule_sets_each_epochs_learning_rate(tiny_images):
    x, y = tiny_images
    model = small_model(x)
    result = adam_fit(model, x, y, epochs=4)
    schedule = make_schedule(name="cosine", base_lr=1e-2, epochs=4)
    assert [r.learning_rate for r in result.history] == [schedule(e) for e in range(4)]


def test_same_seed_gives_identical_weights_and_another_seed_different(tiny_images):
    x, y = tiny_images
    a, b, c = (small_model(x, seed) for seed in (5, 5, 6))
    for model in (a, b, c):
        adam_fit(model, x, y, dropout=0.2, max_shift=1)
    for pa, pb in zip(a.params(), b.params(), strict=True):
        assert np.array_equal(pa, pb)
    assert not np.array_equal(a.weights[0], c.weights[0])


def test_training_on_separable_data_reaches_near_perfect_accuracy(tiny_images):
    x, y = tiny_images
    model = small_model(x)
    adam_fit(model, x[:200], y[:200], epochs=15)
    _, accuracy = loss_and_accuracy(model, x[200:], y[200:])
    assert accuracy >= 0.98


def test_early_stopping_restores_the_best_weights(tiny_images):
    x, y = tiny_images
    noisy = np.random.default_rng(0).integers(0, 10, len(y))  # dev accuracy cannot keep rising
    model = small_model(x)
    result = fit(
        model, x, y, x[:100], noisy[:100],
        optimizer=make_optimizer(model.params(), name="adam", lr=1e-2),
        schedule=make_schedule(name="constant", base_lr=1e-2, epochs=40), epochs=40,
        batch_size=32, rng=np.random.default_rng(0), patience=3,
    )  # fmt: skip
    assert result.stopped_early and result.restored_best
    assert len(result.history) == result.best_epoch + 3
    assert loss_and_accuracy(model, x[:100], noisy[:100])[1] == result.best.dev_accuracy
    assert result.best.dev_accuracy == max(r.dev_accuracy for r in result.history)
    assert result.kept is result.best


def test_divergence_names_epoch_and_learning_rate(tiny_images):
    x, y = tiny_images
    model = small_model(x)
    # The log-sum-exp loss stays finite for huge logits; only float32 overflow makes it NaN.
    with pytest.raises(TrainingDiverged, match=r"diverged at epoch \d .*learning rate 1e\+20"):
        fit(
            model, x, y, x, y, optimizer=make_optimizer(model.params(), name="sgd", lr=1e20),
            schedule=make_schedule(name="constant", base_lr=1e20, epochs=3), epochs=3,
            batch_size=None, rng=np.random.default_rng(0),
        )  # fmt: skip
