"""The IDX reader: round trips, and a clear error for every kind of broken file."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from pipeline.data.idx import IdxFormatError, idx_bytes, parse_idx, read_idx, write_idx


@pytest.mark.parametrize(
    "array",
    [
        np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
        np.array([-3, 0, 7], dtype=np.int8),
        np.array([[1, -70000], [2, 3]], dtype=np.int32),
        np.array([0.5, -1.25], dtype=np.float64),
    ],
)
def test_round_trip_keeps_shape_dtype_and_values(tmp_path, array):
    path = tmp_path / "array-idx"
    write_idx(path, array)
    loaded = read_idx(path)
    assert loaded.dtype == array.dtype
    np.testing.assert_array_equal(loaded, array)


def test_header_is_big_endian_as_in_the_mnist_files():
    data = idx_bytes(np.zeros((60000, 28, 28), dtype=np.uint8)[:2])
    assert data[:4] == bytes([0, 0, 0x08, 3])
    assert data[4:8] == (2).to_bytes(4, "big")
    assert data[8:16] == (28).to_bytes(4, "big") * 2


def test_truncated_file_names_file_shape_and_sizes(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(idx_bytes(np.ones((5, 28, 28), dtype=np.uint8))[:-100])
    with pytest.raises(IdxFormatError) as error:
        read_idx(path)
    message = str(error.value)
    assert str(path) in message and "truncated" in message
    assert "(5, 28, 28)" in message and "dvc repro -f fetch" in message


def test_trailing_bytes_are_rejected():
    with pytest.raises(IdxFormatError, match="trailing bytes"):
        parse_idx(idx_bytes(np.ones(3, dtype=np.uint8)) + b"\x00")


def test_gzip_file_is_reported_as_wrong_magic():
    data = gzip.compress(idx_bytes(np.ones(3, dtype=np.uint8)))
    with pytest.raises(IdxFormatError, match=r"wrong magic number 0x1f8b.*gzip"):
        parse_idx(data, "labels.gz")


def test_unknown_dtype_code_is_rejected():
    with pytest.raises(IdxFormatError, match="unknown IDX dtype code 0x07"):
        parse_idx(bytes([0, 0, 0x07, 1, 0, 0, 0, 1, 5]))


def test_header_shorter_than_its_dimensions_is_rejected():
    with pytest.raises(IdxFormatError, match="truncated header"):
        parse_idx(bytes([0, 0, 0x08, 3, 0, 0, 0, 1]))


def test_empty_file_is_rejected():
    with pytest.raises(IdxFormatError, match="too short"):
        parse_idx(b"", "empty")


def test_missing_file_says_which_stage_makes_it(tmp_path):
    with pytest.raises(IdxFormatError, match="dvc repro fetch"):
        read_idx(tmp_path / "absent")
