"""Checkpoints: a training stopped after any epoch and resumed from its checkpoint ends with
the same bits as one that never stopped; a checkpoint of another training (config, data, code)
or a damaged one is named in one line, removed, and training starts from epoch 1."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest

from pipeline.nn import MLP, fit, make_optimizer, make_schedule
from pipeline.nn.distortions import Distortion
from pipeline.nn.state import StateMismatch, restore_training_state, training_state
from pipeline.plumbing.config import compose_conf, validate
from pipeline.plumbing.files import save_arrays
from pipeline.plumbing.paths import ROOT
from pipeline.training.checkpoints import Checkpoints, fingerprint
from pipeline.training.trainer import TrainingStopped, load_split, train_model
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


@pytest.fixture
def split(tmp_path):
    save_arrays(tmp_path / "split" / "train.npz", **split_arrays(200, 1))
    save_arrays(tmp_path / "split" / "dev.npz", **split_arrays(50, 2))
    files = {"train": tmp_path / "split" / "train.npz", "dev": tmp_path / "split" / "dev.npz"}
    return files, load_split(files["train"], files["dev"])


def small(*overrides):
    return validate(compose_conf(["model.hidden=[16]", "train.epochs=6", *overrides]))


def interrupted_after(epochs: int):
    """An on_epoch that presses Ctrl-C at the end of epoch `epochs`."""

    def on_epoch(record):
        if record.epoch == epochs:
            raise KeyboardInterrupt("received SIGINT")

    return on_epoch


def test_train_model_goes_on_from_its_checkpoint_and_says_where_it_stopped(split, tmp_path):
    files, (train, dev) = split
    config = small()
    reference, _ = train_model(config, train, dev)
    keeper = Checkpoints(tmp_path / "ck.npz", fingerprint(config, files))
    with pytest.raises(TrainingStopped) as stopped:
        train_model(config, train, dev, interrupted_after(4), keeper)
    assert stopped.value.at == " at epoch 5 of 6"  # epoch 4 was saved before on_epoch ran
    assert "epochs 1-4 are kept in" in stopped.value.then and "from epoch 5" in stopped.value.then
    again = Checkpoints(tmp_path / "ck.npz", fingerprint(config, files))
    assert again.load() and again.epoch == 4 and [r.epoch for r in again.records] == [1, 2, 3, 4]
    model, result = train_model(config, train, dev, keeper=again)
    assert [p.tobytes() for p in model.params()] == [p.tobytes() for p in reference.params()]
    assert len(result.history) == 6


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ("config", "optimizer.lr changed (0.001 → 0.002)"),
        ("data", "the dev data changed"),
        ("code", "the training code changed (pipeline/nn/model.py)"),
        ("resume=false", "train.resume=false: starting from epoch 1"),
        ("damaged", "is damaged (not a whole .npz archive"),
    ],
)
def test_another_trainings_or_a_damaged_checkpoint_is_named_and_removed(
    split, tmp_path, change, said
):
    files, (train, dev) = split
    config = small()
    path = tmp_path / "checkpoints" / "train.npz"
    with pytest.raises(TrainingStopped):
        keeper = Checkpoints(path, fingerprint(config, files))
        train_model(config, train, dev, interrupted_after(2), keeper)
    code_root = ROOT
    if change == "config":
        config = small("optimizer.lr=0.002")
    elif change == "data":
        save_arrays(files["dev"], **split_arrays(50, 3))
    elif change == "code":
        code_root = tmp_path / "project"
        for part in ("pipeline/train.py", "pipeline/training", "pipeline/nn"):
            copy = shutil.copytree if (ROOT / part).is_dir() else shutil.copy
            (code_root / part).parent.mkdir(parents=True, exist_ok=True)
            copy(ROOT / part, code_root / part)
        model_code = code_root / "pipeline" / "nn" / "model.py"
        model_code.write_text(model_code.read_text() + "\n# an edit\n")
    elif change == "damaged":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    lines = []
    keeper = Checkpoints(path, fingerprint(config, files, code_root), say=lines.append)
    assert not keeper.load(resume=change != "resume=false")
    assert len(lines) == 1 and said in lines[0] and "\n" not in lines[0]
    assert not path.exists() and not path.parent.exists()


def test_no_checkpoint_is_written_with_checkpoint_false(split, tmp_path):
    files, (train, dev) = split
    config = small("train.checkpoint=false")
    keeper = Checkpoints(tmp_path / "ck.npz", fingerprint(config, files), config.train.checkpoint)
    with pytest.raises(KeyboardInterrupt) as stopped:
        train_model(config, train, dev, interrupted_after(3), keeper)
    assert not isinstance(stopped.value, TrainingStopped)  # nothing kept to go on from
    assert not (tmp_path / "ck.npz").exists()
