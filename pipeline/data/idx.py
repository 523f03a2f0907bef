"""Read and write IDX files, the format of the original MNIST distribution.

An IDX file is a 4-byte magic number (two zero bytes, a dtype code, the number of dimensions),
then one big-endian uint32 per dimension, then the values in C order, big-endian. The reader
checks every part of that header against the file's length, so a truncated or foreign file gets
an `IdxFormatError` naming the file and what is wrong, never a numpy reshape traceback.

    from pipeline.data.idx import read_idx, write_idx
    write_idx("labels-idx1-ubyte", np.array([3, 1, 4], dtype=np.uint8))
    labels = read_idx("labels-idx1-ubyte")
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pipeline.plumbing.errors import PipelineError

# dtype code (third magic byte) -> big-endian numpy dtype, as in the IDX specification.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
DTYPE_CODES = {dtype.newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}


class IdxFormatError(PipelineError):
    """The file is not a valid IDX file."""


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse the bytes of an IDX file into a native-endian array, validating the header."""
    fix = "re-fetch it (`dvc repro -f fetch`)"
    if len(data) < 4:
        raise IdxFormatError(f"{name}: {len(data)} bytes is too short for an IDX header; {fix}")
    zero0, zero1, dtype_code, ndim = data[:4]
    if zero0 != 0 or zero1 != 0:
        raise IdxFormatError(
            f"{name}: wrong magic number 0x{data[:4].hex()} (an IDX file starts with two zero "
            f"bytes); it is not an IDX file, or still gzip-compressed; {fix}"
        )
    if dtype_code not in IDX_DTYPES:
        raise IdxFormatError(f"{name}: unknown IDX dtype code 0x{dtype_code:02x}; {fix}")
    if ndim == 0:
        raise IdxFormatError(f"{name}: IDX header declares 0 dimensions; {fix}")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise IdxFormatError(
            f"{name}: truncated header ({len(data)} bytes, {ndim} dimensions need "
            f"{header_size}); {fix}"
        )
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[dtype_code]
    expected = header_size + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        state = "truncated" if len(data) < expected else "has trailing bytes"
        raise IdxFormatError(
            f"{name}: {state}: header says shape {shape} of {dtype.name} "
            f"({expected} bytes), file has {len(data)} bytes; {fix}"
        )
    values = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(shape)
    return values.astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file; raise `IdxFormatError` naming the file if it is malformed."""
    path = Path(path)
    if not path.is_file():
        raise IdxFormatError(f"{path}: no such file; run `dvc repro fetch` first")
    return parse_idx(path.read_bytes(), name=str(path))


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode an array as IDX bytes (used by the tests to write synthetic MNIST files)."""
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=")
    if native not in DTYPE_CODES:
        raise ValueError(f"IDX cannot hold dtype {array.dtype}")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"IDX holds 1 to 255 dimensions, not {array.ndim}")
    code = DTYPE_CODES[native]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.astype(IDX_DTYPES[code], copy=False).tobytes(order="C")


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write an array as an IDX file."""
    Path(path).write_bytes(idx_bytes(array))
