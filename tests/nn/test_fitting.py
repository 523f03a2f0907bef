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
    snapshots = {}  # the weights after each epoch, as on_epoch sees them

    def after_epoch(record):
        snapshots[record.epoch] = [p.copy() for p in model.params()]

    result = fit(
        model, x, y, x[:100], noisy[:100],
        optimizer=make_optimizer(model.params(), name="adam", lr=1e-2),
        schedule=make_schedule(name="constant", base_lr=1e-2, epochs=40), epochs=40,
        batch_size=32, rng=np.random.default_rng(0), patience=3, on_epoch=after_epoch,
    )  # fmt: skip
    assert result.stopped_early and result.restored_best
    assert sorted(snapshots) == [r.epoch for r in result.history]
    for param, best in zip(model.params(), snapshots[result.best_epoch], strict=True):
        np.testing.assert_array_equal(param, best)
    assert len(result.history) == result.best_epoch + 3
    assert loss_and_accuracy(model, x[:100], noisy[:100])[1] == result.best.dev_accuracy
    assert result.best.dev_accuracy == max(r.dev_accuracy for r in result.history)
    assert result.kept is result.best


def test_every_example_counts_once_in_an_epochs_scores(tiny_images):
    x, y = tiny_images
    x, y = x[:70].astype(np.float64), y[:70]
    model = MLP.create((784, 8, 10), "relu", "he", np.random.default_rng(0), np.float64)
    logits = model.logits(x).T.copy()
    loss, _ = softmax_cross_entropy(logits.copy(), y)
    seen = []
    result = fit(  # lr 0: the weights stay, so every batch is scored by the same network
        model, x, y, x[:30], y[:30], optimizer=make_optimizer(model.params(), name="sgd", lr=0.0),
        schedule=make_schedule(name="constant", base_lr=0.0, epochs=1), epochs=1,
        batch_size=16, rng=np.random.default_rng(0), on_epoch=seen.append,
    )  # fmt: skip
    (record,) = result.history
    assert seen == [record]
    assert record.train_loss == pytest.approx(loss, rel=1e-12)
    assert record.train_accuracy == np.mean(logits.argmax(axis=0) == y)
    assert 0 <= record.seconds < 60


def test_a_non_finite_training_loss_stops_at_once(tiny_images):
    x, y = tiny_images
    x = x.copy()
    x[5, 0] = np.nan
    model = small_model(x)
    optimizer = make_optimizer(model.params(), name="sgd", lr=0.1)
    with pytest.raises(TrainingDiverged, match=r"diverged at epoch 1 \(loss nan\)"):
        fit(
            model, x, y, x[:20], y[:20], optimizer=optimizer,
            schedule=make_schedule(name="constant", base_lr=0.1, epochs=1), epochs=1,
            batch_size=None, rng=np.random.default_rng(0),
        )  # fmt: skip


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


def test_a_non_finite_dev_loss_is_divergence_too(tiny_images):
    x, y = tiny_images
    x_dev = x[:20].copy()
    x_dev[0, 0] = np.inf  # finite training, an infinite dev score
    model = small_model(x)
    with pytest.raises(TrainingDiverged, match=r"diverged at epoch 1 \(dev loss nan\)"):
        fit(
            model, x, y, x_dev, y[:20],
            optimizer=make_optimizer(model.params(), name="adam", lr=1e-3),
            schedule=make_schedule(name="constant", base_lr=1e-3, epochs=2), epochs=2,
            batch_size=32, rng=np.random.default_rng(0),
        )  # fmt: skip


def test_random_shifts_change_what_is_trained_and_nothing_else_does(tiny_images):
    x, y = tiny_images
    plain, shifted, again = (small_model(x) for _ in range(3))
    adam_fit(plain, x, y, epochs=1)
    adam_fit(shifted, x, y, epochs=1, max_shift=2)
    adam_fit(again, x, y, epochs=1)
    assert not np.array_equal(plain.weights[0], shifted.weights[0])
    assert np.array_equal(plain.weights[0], again.weights[0])


def test_max_norm_caps_every_hidden_unit_after_every_step(tiny_images):
    x, y = tiny_images
    free, capped = small_model(x), small_model(x)
    adam_fit(free, x, y, lr=0.05)
    adam_fit(capped, x, y, lr=0.05, max_norm=0.5, input_dropout=0.2)
    hidden_norms = [np.linalg.norm(w, axis=1) for w in capped.weights[:-1]]
    assert all(norms.max() <= 0.5 * (1 + 1e-6) for norms in hidden_norms)
    assert max(np.linalg.norm(w, axis=1).max() for w in free.weights[:-1]) > 0.5  # it did bite
    assert np.linalg.norm(capped.weights[-1], axis=1).max() > 0.5  # the output layer is free
    # Off (the defaults), both draw nothing and change nothing: the same bits as before.
    again = small_model(x)
    adam_fit(again, x, y, lr=0.05, max_norm=None, input_dropout=0.0)
    assert all(np.array_equal(a, b) for a, b in zip(free.params(), again.params(), strict=True))


def test_distortions_train_on_new_images_each_time_and_repeat_with_the_seed(tiny_images):
    from pipeline.nn import Distortion

    x, y = tiny_images
    distortion = Distortion(rotation=10, scale=0.1, translation=1, elastic_alpha=34)
    plain, distorted, again = small_model(x), small_model(x), small_model(x)
    adam_fit(plain, x, y, epochs=1)
    adam_fit(distorted, x, y, epochs=1, distortion=distortion)
    adam_fit(again, x, y, epochs=1, distortion=distortion)
    assert not np.array_equal(plain.weights[0], distorted.weights[0])
    assert all(
        np.array_equal(a, b) for a, b in zip(distorted.params(), again.params(), strict=True)
    )
