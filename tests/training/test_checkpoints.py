"""Checkpoints: a training stopped after any epoch and resumed from its checkpoint ends with
the same bits as one that never stopped; a checkpoint of another training (config, data, code)
or a damaged one is named in one line, removed, and training starts from epoch 1. (The core's
state itself, stopped and restored: tests/nn/test_state.py.)"""

from __future__ import annotations

import shutil

import pytest

from pipeline.plumbing.files import save_arrays
from pipeline.plumbing.paths import ROOT
from pipeline.training.checkpoints import Checkpoints, fingerprint
from pipeline.training.trainer import TrainingStopped, load_split, train_model
from tests import configs
from tests.conftest import split_arrays


@pytest.fixture
def split(tmp_path):
    save_arrays(tmp_path / "split" / "train.npz", **split_arrays(200, 1))
    save_arrays(tmp_path / "split" / "dev.npz", **split_arrays(50, 2))
    files = {"train": tmp_path / "split" / "train.npz", "dev": tmp_path / "split" / "dev.npz"}
    return files, load_split(files["train"], files["dev"])


def small(*overrides):
    return configs.config("model.hidden=[16]", "train.epochs=6", *overrides)


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
    # Epochs of milliseconds are not all written (checkpoints.COST_SHARE): the message names
    # the last that was, the one the file holds.
    saved = keeper.epoch
    assert 1 <= saved <= 4 and stopped.value.at == f" at epoch {saved + 1} of 6"
    assert f"epochs 1-{saved} are kept in" in stopped.value.then
    assert f"from epoch {saved + 1}" in stopped.value.then
    again = Checkpoints(tmp_path / "ck.npz", fingerprint(config, files))
    assert again.load() and again.epoch == saved
    assert [r.epoch for r in again.records] == list(range(1, saved + 1))
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


def test_epochs_of_milliseconds_are_not_all_written_but_the_last_is(split, tmp_path, monkeypatch):
    """Writing takes about as long as such an epoch: at most COST_SHARE of the time goes to it."""
    from pipeline.training import checkpoints

    files, (train, dev) = split
    config = small("train.epochs=60")
    writes = []
    real_atomic_path = checkpoints.atomic_path

    def counted(path):
        writes.append(path)
        return real_atomic_path(path)

    monkeypatch.setattr(checkpoints, "atomic_path", counted)
    keeper = Checkpoints(tmp_path / "ck.npz", fingerprint(config, files))
    train_model(config, train, dev, keeper=keeper)
    assert 1 <= len(writes) < 60 and keeper.epoch == 60  # the final epoch is always written
