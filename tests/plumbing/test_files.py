"""Atomic writes leave the old file or the new one, never a part; arrays load without pickle."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest

from pipeline.plumbing.errors import PipelineError
from pipeline.plumbing.files import (
    file_sha256,
    load_arrays,
    read_columns,
    save_arrays,
    write_json,
    write_text,
)
from pipeline.plumbing.publish import atomic_path, replaced_together


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "out" / "metrics.json"
    write_json(target, {"accuracy": 0.5})
    before = target.read_bytes()
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_bytes() == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["metrics.json"]
    write_text(target, "new\n")
    assert target.read_text() == "new\n"


def test_arrays_round_trip_and_missing_or_broken_files_name_the_stage(tmp_path):
    path = tmp_path / "train.npz"
    save_arrays(path, images=np.eye(3, dtype=np.float32), labels=np.arange(3, dtype=np.uint8))
    loaded = load_arrays(path, ("images", "labels"), made_by="split")
    np.testing.assert_array_equal(loaded["images"], np.eye(3))
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(PipelineError, match=r"lacks the arrays \['dev'\]: rebuild it with `dvc"):
        load_arrays(path, ("images", "dev"), made_by="split")
    with pytest.raises(PipelineError, match=r"missing: run `dvc repro split` first"):
        load_arrays(tmp_path / "absent.npz", ("images",), made_by="split")


def test_columns_of_a_csv_are_float_arrays(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss\n1,0.5\n2,0.25\n")
    columns = read_columns(path, made_by="train")
    assert list(columns) == ["epoch", "loss"]
    np.testing.assert_array_equal(columns["loss"], [0.5, 0.25])


def lone_npy() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ones(3))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda data: data[: len(data) // 2], "damaged"),  # truncated mid-archive
        (
            lambda data: data[:200] + bytes([data[200] ^ 0xFF]) + data[201:],
            "damaged",
        ),  # a flipped byte
        (lambda data: b"just text, not an archive", "not a whole .npz archive"),
        (lambda data: b"", "damaged (cut short)"),
        (lambda data: lone_npy(), "not an .npz archive"),  # an array saved with np.save
    ],
)
def test_a_damaged_archive_is_one_line_naming_the_stage_to_rerun(tmp_path, damage, reason):
    path = tmp_path / "train.npz"
    save_arrays(path, images=np.ones((50, 784), dtype=np.float32), labels=np.zeros(50, np.uint8))
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(PipelineError) as error:
        load_arrays(path, ("images", "labels"), made_by="split")
    message = str(error.value)
    assert reason in message and message.endswith("rebuild it with `dvc repro -f split`")
    assert "\n" not in message and "allow_pickle" not in message


@pytest.mark.parametrize("text", ["epoch,loss\n", "epoch,loss\n1,abc\n", ""])
def test_a_history_without_numbers_is_named(tmp_path, text):
    path = tmp_path / "history.csv"
    path.write_text(text)
    with pytest.raises(PipelineError, match=r"history\.csv is damaged .*dvc repro -f train"):
        read_columns(path, made_by="train")


def test_outputs_are_replaced_together_or_not_at_all(tmp_path):
    model, figures = tmp_path / "models" / "model.npz", tmp_path / "reports" / "figures"
    model.parent.mkdir()
    model.write_text("old model")
    (figures / "old.png").parent.mkdir(parents=True)
    (figures / "old.png").write_text("old figure")
    with pytest.raises(RuntimeError), replaced_together([model, figures]) as staged:
        staged[0].write_text("new model")
        raise RuntimeError("logging failed after training")
    assert model.read_text() == "old model" and (figures / "old.png").exists()
    with replaced_together([model, figures]) as (new_model, new_figures):
        new_model.write_text("new model")
        new_figures.mkdir(parents=True)
        (new_figures / "new.png").write_text("new figure")
    assert model.read_text() == "new model"
    assert [p.name for p in figures.iterdir()] == ["new.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models", "reports"]  # no staging left
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == ["figures"]


def test_a_remembered_md5_is_computed_again_once_the_file_changes(tmp_path):
    import hashlib
    import os

    from pipeline.plumbing.files import file_md5

    path = tmp_path / "data.npz"
    path.write_bytes(b"first")
    assert file_md5(path) == hashlib.md5(b"first").hexdigest()
    path.write_bytes(b"second, longer")  # another size
    assert file_md5(path) == hashlib.md5(b"second, longer").hexdigest()
    # Another file of the same size renamed onto it, as the stages write theirs: a new inode.
    replacement = tmp_path / "new.npz"
    replacement.write_bytes(b"SECOND, LONGER")
    os.replace(replacement, path)
    assert file_md5(path) == hashlib.md5(b"SECOND, LONGER").hexdigest()
