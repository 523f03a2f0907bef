"""Files in and out: atomic writes (whole or not at all), arrays without pickle, hashes.

Each writer writes into a temporary file next to the destination and renames it into place
(`os.replace` is atomic within one filesystem), so an error, Ctrl-C or SIGTERM mid-write never
leaves a partial file at the output path.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import functools
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

# A damaged .npz is described as the core's model reader describes it: one list of errors,
# one wording (the plumbing sits above the core, which imports nothing of the project).
from pipeline.nn.serialization import READ_ERRORS, damage_reason
from pipeline.plumbing.errors import OUTPUTS_REPLACED, PipelineError, interrupts_deferred

# The process's umask, read once (os.umask can only be read by setting it).
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def staging_folder(root: Path) -> Iterator[Path]:
    """A private folder under `root` to write a set of outputs into before `move_together`
    puts them in place; removed afterwards, whatever happened (a killed process's folder is
    git-ignored, `.staging.*`)."""
    root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=".staging.", dir=root))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def move_together(moves: list[tuple[Path, Path]]) -> None:
    """Rename each staged file or folder onto its destination, with Ctrl-C and SIGTERM held
    off until all are in place, so the set is replaced whole or not at all. A destination
    folder is swapped: moved aside, replaced, then deleted."""
    with interrupts_deferred(OUTPUTS_REPLACED):
        for staged, destination in moves:
            destination.parent.mkdir(parents=True, exist_ok=True)
            if staged.is_dir() and destination.exists():
                old = Path(tempfile.mkdtemp(prefix=".staging.old.", dir=destination.parent))
                destination.replace(old / destination.name)
                staged.replace(destination)
                shutil.rmtree(old, ignore_errors=True)
            else:
                staged.replace(destination)


@contextlib.contextmanager
def replaced_together(root: Path, destinations: Sequence[Path]) -> Iterator[list[Path]]:
    """Staged paths for `destinations` (all under `root`) to write into; only if the block
    succeeds do they replace the destinations, together. A failure leaves every one as it was."""
    with staging_folder(root) as staging:
        staged = [staging / destination.relative_to(root) for destination in destinations]
        yield staged
        move_together(list(zip(staged, destinations, strict=True)))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it to `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.chmod(0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as error:
        raise PipelineError(
            f"cannot write {shown(path)}: {os_reason(error)}; the previous outputs are as they were"
        ) from error
    finally:
        tmp.unlink(missing_ok=True)


FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}  # no room: the disk, a quota, a size limit


def os_reason(error: OSError) -> str:
    """An OS error's reason and, for a full disk, the fix; the earlier outputs are intact."""
    reason = error.strerror or str(error)
    if error.errno in FULL:
        reason += " (free disk space, or raise the quota or file-size limit, and run it again)"
    return reason


def shown(path: Path) -> str:
    """`path` as the user knows it: without the private staging folder it is written in."""
    path = Path(*(part for part in path.parts if not part.startswith(".staging.")))
    return str(path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path)


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
