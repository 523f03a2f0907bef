"""Files in and out: atomic writes (whole or not at all), arrays without pickle, hashes.

Each writer writes into a temporary file next to the destination, syncs it and renames it into
place (plumbing/publish.py: `os.replace` is atomic within one filesystem, and the temporary file
is on the destination's), so an error, Ctrl-C or SIGTERM mid-write never leaves a partial file
at the output path.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import os
from pathlib import Path

import numpy as np

# A damaged .npz is described as the core's model reader describes it: one list of errors,
# one wording (the plumbing sits above the core, which imports nothing of the project).
from pipeline.nn.serialization import READ_ERRORS, damage_reason
from pipeline.plumbing.errors import PipelineError
from pipeline.plumbing.publish import atomic_path


def write_json(path: str | os.PathLike, payload: dict) -> None:
    """Write `payload` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_arrays(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Save named arrays to an uncompressed .npz (loads without pickle), atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def load_arrays(path: str | os.PathLike, names: tuple[str, ...], made_by: str) -> dict:
    """The named arrays of an .npz written by stage `made_by`, read whole (so a damaged file
    fails here, in one line naming the stage that rebuilds it), with pickle disabled."""
    path = Path(path)
    fix = f"rebuild it with `dvc repro -f {made_by}`"
    if not path.is_file():
        raise PipelineError(f"{path} is missing: run `dvc repro {made_by}` first")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # a lone .npy array under the name
            raise ValueError("not an .npz archive")
        with loaded as archive:
            missing = [name for name in names if name not in archive.files]
            if missing:
                raise PipelineError(f"{path} lacks the arrays {missing}: {fix}")
            return {name: archive[name] for name in names}
    except READ_ERRORS as error:
        raise PipelineError(f"{path} is damaged ({damage_reason(error)}): {fix}") from None


def file_md5(path: str | os.PathLike) -> str:
    """MD5 of a file's bytes: DVC's hash of it, and its key in the DVC cache and remotes.
    Remembered while the file keeps its inode, size and modification time: a sweep worker
    hashes the data once, not once per job."""
    stat = os.stat(path)
    return _md5_of(os.path.abspath(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _md5_of(path: str, inode: int, size: int, modified_ns: int) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "md5").hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def read_json(path: str | os.PathLike, made_by: str) -> dict:
    """A JSON object written by stage `made_by` (its metrics); one line naming the fix if it is
    missing or damaged."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path} is missing: run `dvc repro {made_by}` first")
    try:
        loaded = json.loads(path.read_bytes().decode("utf-8"))
        if not isinstance(loaded, dict):
            raise ValueError("not a JSON object")
    except (UnicodeDecodeError, ValueError) as error:
        reason = str(error).splitlines()[0][:160]
        raise PipelineError(
            f"{path} is damaged ({reason}): rebuild it with `dvc repro -f {made_by}`"
        ) from None
    return loaded


def read_columns(path: str | os.PathLike, made_by: str) -> dict[str, np.ndarray]:
    """A CSV of numbers with a header row (the training history), one float array per column."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path} is missing: run `dvc repro {made_by}` first")
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        columns = {name: np.array([float(row[name]) for row in rows]) for name in rows[0]}
    except (IndexError, KeyError, TypeError, ValueError, UnicodeDecodeError) as error:
        reason = "no rows" if isinstance(error, IndexError) else f"not a table of numbers: {error}"
        raise PipelineError(
            f"{path} is damaged ({reason}): rebuild it with `dvc repro -f {made_by}`"
        ) from None
    return columns
