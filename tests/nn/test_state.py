"""A training's state after any epoch, restored into fresh parts, goes on with the same bits:
`fit` stopped twice (as Ctrl-C stops it, after an epoch's checkpoint) ends where one that never
stopped ends, with SGD-Nesterov and Adam, dropout, distortions, max-norm, with and without
patience; state that does not fit the network is refused."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pipeline.nn import MLP, fit, make_optimizer, make_schedule
from pipeline.nn.distortions import Distortion
from pipeline.nn.state import StateMismatch, restore_training_state, training_state
from tests.conftest import split_arrays


def parts(optimizer: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    model = MLP.create((784, 24, 16, 10), "relu", "he", rng)
    extra = {"momentum": 0.9, "nesterov": True} if optimizer == "sgd" else {}
    return model, make_optimizer(model.params(), name=optimizer, lr=0.05, **extra), rng


def fit_epochs(model, optimizer, rng, data, epochs, patience=None, so_far=None, **hooks):
    x, y, x_dev, y_dev = data
    return fit(
        model, x, y, x_dev, y_dev, optimizer=optimizer, epochs=epochs, batch_size=16,
        schedule=make_schedule(name="cosine", base_lr=0.05, epochs=epochs), rng=rng,
        dropout=0.3, input_dropout=0.1, max_norm=2.0, max_shift=1, patience=patience,
        distortion=Distortion(rotation=10, elastic_alpha=20, elastic_sigma=4), result=so_far,
        **hooks,
    )  # fmt: skip


@pytest.fixture(scope="module")
def data():
    train, dev = split_arrays(160, 1), split_arrays(40, 2)
    return train["images"], train["labels"], dev["images"], dev["labels"]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("patience", [None, 2])
def test_a_fit_stopped_twice_and_restored_ends_with_the_same_bits(data, optimizer, patience):
    """Each session is stopped as Ctrl-C stops it (after an epoch's checkpoint, in its
    on_epoch); the next starts from parts built with other weights and draws, and the state."""
    epochs = 9
    whole = parts(optimizer)
    uninterrupted = fit_epochs(*whole, data, epochs, patience)
    saved: dict = {}

    def keep(model, opt, rng):
        return lambda result: saved.update(state=training_state(model, opt, rng, result, {}))

    def stop_after(epoch):
        def on_epoch(record):
            if record.epoch == epoch:
                raise KeyboardInterrupt

        return on_epoch

    for stop in (3, 5, None):
        model, opt, rng = parts(optimizer, seed=99 if saved else 0)
        so_far = restore_training_state(saved["state"], model, opt, rng)[0] if saved else None
        hooks = {"on_checkpoint": keep(model, opt, rng), "on_epoch": stop_after(stop)}
        try:
            result = fit_epochs(model, opt, rng, data, epochs, patience, so_far, **hooks)
        except KeyboardInterrupt:
            assert stop is not None
    for a, b in zip(whole[0].params(), model.params(), strict=True):
        assert a.tobytes() == b.tobytes()
    untimed = [dataclasses.replace(record, seconds=0) for record in uninterrupted.history]
    assert untimed == [dataclasses.replace(record, seconds=0) for record in result.history]
    assert (uninterrupted.best_epoch, uninterrupted.stopped_early) == (
        result.best_epoch,
        result.stopped_early,
    )
    assert whole[2].bit_generator.state == rng.bit_generator.state


def test_state_that_does_not_fit_the_network_is_refused(data):
    model, opt, rng = parts("adam")
    result = fit_epochs(model, opt, rng, data, 2)
    state = training_state(model, opt, rng, result)
    other = MLP.create((784, 8, 10), "relu", "he", np.random.default_rng(0))
    with pytest.raises(StateMismatch, match=r"saved float32 \(24, 784\) where the network"):
        restore_training_state(
            state, other, make_optimizer(other.params(), name="adam", lr=0.1), rng
        )


def test_a_generator_state_of_another_kind_is_refused(data):
    import json

    model, opt, rng = parts("adam")
    result = fit_epochs(model, opt, rng, data, 1)
    state = training_state(model, opt, rng, result)
    meta = json.loads(bytes(state["meta"]).decode())
    meta["rng"] = {"bit_generator": "MT19937", "state": {"pos": 0}}  # not the PCG64 it was
    state["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    fresh = parts("adam", seed=1)
    with pytest.raises(StateMismatch, match="the random generator's state does not fit"):
        restore_training_state(state, *fresh)


def test_state_that_lacks_an_array_is_refused(data):
    model, opt, rng = parts("adam")
    state = training_state(model, opt, rng, fit_epochs(model, opt, rng, data, 1))
    del state["optimizer.0.1"]  # Adam's second moment of W¹
    with pytest.raises(StateMismatch, match=r"saved state lacks or misreads 'optimizer\.0\.1'"):
        restore_training_state(state, *parts("adam", seed=1))
