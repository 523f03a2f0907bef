"""The one reader of a saved network: the network back, bit for bit, or one line naming the
file, what is wrong and the fix, whatever the damage."""

from __future__ import annotations

import io

import numpy as np
import pytest

from pipeline.nn import MLP, model_to_arrays
from pipeline.serving.weights import WeightsError, load_network

FIX = "rebuild it with `dvc repro -f train`"


@pytest.fixture
def saved(tmp_path):
    network = MLP.create((784, 8, 10), rng=np.random.default_rng(0))
    path = tmp_path / "model.npz"
    np.savez(path, **model_to_arrays(network))
    return path, network


def test_a_saved_network_loads_back_bit_for_bit(saved):
    path, network = saved
    loaded = load_network(path, FIX)
    assert loaded.sizes == network.sizes
    assert all(np.array_equal(a, b) for a, b in zip(loaded.weights, network.weights, strict=True))


def lone_array() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ones(3))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda data: data[: len(data) // 2], "not a whole .npz archive"),
        (lambda data: b"", "cut short"),
        (lambda data: data[:400] + bytes(b ^ 0xFF for b in data[400:416]) + data[416:], "changed"),
        (lambda data: b'{"W1": [1, 2]}', "not a whole .npz archive"),
        (lambda data: lone_array(), "not an .npz archive"),
    ],
)
def test_each_damage_is_one_line_naming_the_file_and_the_fix(saved, damage, reason):
    path, _ = saved
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(WeightsError) as raised:
        load_network(path, FIX)
    message = str(raised.value)
    assert message.startswith(f"{path} is damaged (") and reason in message
    assert message.endswith(FIX) and "\n" not in message and "allow_pickle" not in message


def test_another_projects_arrays_name_what_is_missing(tmp_path):
    path = tmp_path / "model.npz"
    np.savez(path, images=np.zeros(3))
    with pytest.raises(
        WeightsError, match=r"not a model saved by this project.*dvc repro -f train"
    ):
        load_network(path, FIX)
    with pytest.raises(WeightsError, match=r"model\.npz is missing: rebuild it"):
        load_network(tmp_path / "gone" / "model.npz", FIX)
