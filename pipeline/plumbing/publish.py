"""Outputs published whole: written beside their destination, synced, then renamed into place.

A rename is atomic only within one filesystem, and outputs may sit on several: `data/` on a
Docker volume, `models/` on a scratch mount, the project's root on the local disk. So each
output is staged on its own destination's filesystem:

    a file, or a folder in the parent's filesystem    <parent>/.staging.XXXX/<name>
    a folder that is itself a mount point             <folder>/.staging.XXXX/<name>

`atomic_path` does this for one file; `replaced_together` for a stage's set of outputs: only
once every one is written and synced are they renamed into place, together (Ctrl-C and SIGTERM
held off meanwhile); a rename that fails puts back those already made, so the set is the old one
or the new one, never a mix. A killed process's `.staging.*` folders are git-ignored.

When a write or rename fails, `os_reason` says why in words a user acts on (a full disk, a
read-only or another filesystem, permissions) instead of the errno's text alone.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from pipeline.plumbing.errors import (
    OUTPUTS_REPLACED,
    PipelineError,
    interrupts_deferred,
    os_reason,
)

STAGING = ".staging."  # the prefix of every private staging folder (git-ignored)

# The process's umask, read once (os.umask can only be read by setting it).
_UMASK = os.umask(0)
os.umask(_UMASK)


def shown(path: Path) -> str:
    """`path` as the user knows it: without the private staging folder it is written in."""
    path = Path(*(part for part in path.parts if not part.startswith(STAGING)))
    return str(path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path)


def unpublished(path: Path, error: OSError) -> PipelineError:
    return PipelineError(
        f"cannot write {shown(path)}: {os_reason(error)}; the previous outputs are as they were"
    )


def fsync_file(path: Path) -> None:
    """Flush a written file to its disk, so a power cut after the rename leaves it whole."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename into it) to disk, where the filesystem can."""
    with contextlib.suppress(OSError):  # some filesystems refuse to open or sync a folder
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def fsync_tree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        for inner in path.iterdir():
            fsync_tree(inner)
        fsync_folder(path)
    elif path.is_file():
        fsync_file(path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; fsync and rename it to `path` only if the block
    succeeds."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise unpublished(path, error) from error
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.chmod(0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, path)
        fsync_folder(path.parent)
    except OSError as error:
        raise unpublished(path, error) from error
    finally:
        tmp.unlink(missing_ok=True)


def on_own_filesystem(folder: Path) -> bool:
    """Whether `folder` is the root of a filesystem other than its parent's (a mount point,
    which cannot be renamed, so its contents are swapped instead of the folder)."""
    try:
        return folder.is_dir() and folder.stat().st_dev != folder.parent.stat().st_dev
    except OSError:
        return False


class Staged:
    """One output's staging folder, on the destination's filesystem, and its swap into place."""

    def __init__(self, destination: Path):
        self.destination = destination
        self.inside = on_own_filesystem(destination)  # a mount point: swap its contents
        home = destination if self.inside else destination.parent
        # The folders made for it, removed again if nothing is published into them.
        self.made = [folder for folder in (home, *home.parents) if not folder.exists()]
        try:
            home.mkdir(parents=True, exist_ok=True)
            self.folder = Path(tempfile.mkdtemp(prefix=STAGING, dir=home))
            self.folder.chmod(0o777 & ~_UMASK)  # mkdtemp's 0700 would hide the data
        except OSError as error:
            raise unpublished(destination, error) from error
        self.path = self.folder / destination.name  # what the stage writes
        self.old = self.folder / ".old"  # the previous output, kept until all are in place

    def swap(self) -> Callable[[], None]:
        """Put the staged output in place; return what undoes it."""
        if self.inside:
            return self.swap_contents()
        destination, old = self.destination, self.old
        if destination.exists() and destination.is_dir() != self.path.is_dir():
            in_the_way = errno.EISDIR if destination.is_dir() else errno.ENOTDIR
            raise OSError(in_the_way, os.strerror(in_the_way), str(destination))
        if destination.is_dir() and not destination.is_symlink():
            destination.replace(old)  # a folder cannot be renamed over a folder that has files
            try:
                self.path.replace(destination)
            except OSError:
                old.replace(destination)
                raise
            return lambda: (destination.replace(self.path), old.replace(destination))
        had_old = destination.exists() or destination.is_symlink()
        if had_old:  # a hard link keeps the old file to put back (DVC's symlinks included)
            with contextlib.suppress(OSError):
                os.link(destination, old, follow_symlinks=False)
        self.path.replace(destination)
        if had_old and (old.exists() or old.is_symlink()):
            return lambda: old.replace(destination)
        if had_old:
            return lambda: None  # no hard links on that filesystem: the new one stays
        return lambda: destination.replace(self.path)

    def swap_contents(self) -> Callable[[], None]:
        """A mount point keeps its place; its entries go aside and the staged ones move in.
        Other `.staging.*` entries are what a killed stage left: they go aside too."""
        self.old.mkdir()
        moved: list[tuple[Path, Path]] = []

        def undo() -> None:
            for source, target in reversed(moved):
                target.replace(source)

        try:
            for entry in sorted(self.destination.iterdir()):
                if entry != self.folder:
                    moved.append((entry, self.old / entry.name))
                    entry.replace(self.old / entry.name)
            if self.path.is_dir():
                for entry in sorted(self.path.iterdir()):
                    moved.append((entry, self.destination / entry.name))
                    entry.replace(self.destination / entry.name)
        except OSError:
            undo()
            raise
        return undo

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        for folder in self.made:  # the deepest first; one that holds anything stays
            with contextlib.suppress(OSError):
                folder.rmdir()


class StagedOutputs:
    """A stage's outputs, staged: `paths` to write into, then `publish()` puts them in place."""

    def __init__(self, destinations: Sequence[Path]):
        self.staged: list[Staged] = []
        try:
            for destination in destinations:
                self.staged.append(Staged(Path(destination)))
        except BaseException:
            self.remove()
            raise
        self.paths = [one.path for one in self.staged]

    def publish(self) -> None:
        """Sync every staged output, then rename them all into place, Ctrl-C and SIGTERM held
        off; a rename that fails puts back the ones made before it and raises one line."""
        for one in self.staged:
            if not (one.path.exists() or one.inside):
                raise PipelineError(f"{shown(one.destination)} was not written; nothing replaced")
            try:
                fsync_tree(one.path)
            except OSError as error:
                raise unpublished(one.destination, error) from error
        undos: list[Callable[[], None]] = []
        with interrupts_deferred(OUTPUTS_REPLACED):
            for one in self.staged:
                try:
                    undos.append(one.swap())
                except OSError as error:
                    for undo in reversed(undos):
                        with contextlib.suppress(OSError):
                            undo()
                    raise unpublished(one.destination, error) from error
            for one in self.staged:
                fsync_folder(one.destination if one.inside else one.destination.parent)

    def remove(self) -> None:
        for one in self.staged:
            one.remove()


@contextlib.contextmanager
def staged_outputs(destinations: Sequence[Path]) -> Iterator[StagedOutputs]:
    """Outputs staged on their destinations' filesystems; whatever is not published by the
    end of the block is deleted, and the destinations stay as they were."""
    outputs = StagedOutputs(destinations)
    try:
        yield outputs
    finally:
        outputs.remove()


@contextlib.contextmanager
def replaced_together(destinations: Sequence[Path]) -> Iterator[list[Path]]:
    """Staged paths for `destinations`, each on its destination's filesystem, to write into;
    only if the block succeeds are they synced and renamed into place, together. A failure
    (an error, Ctrl-C, a rename refused) leaves every destination as it was."""
    with staged_outputs(destinations) as outputs:
        yield outputs.paths
        outputs.publish()
