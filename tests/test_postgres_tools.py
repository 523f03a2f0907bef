"""Where `make server` and the server tests find PostgreSQL's initdb and pg_ctl
(pipeline/server.py): on PATH, else in Debian's /usr/lib/postgresql/<version>/bin, the newest
version first, as `apt install postgresql` leaves them (not on PATH)."""

from __future__ import annotations

from pathlib import Path

from pipeline.server import pg_binary


def executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_initdb_is_found_on_path_else_in_the_newest_debian_version(tmp_path, monkeypatch):
    library, empty = tmp_path / "postgresql", tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert pg_binary("initdb", library) == "initdb"  # nowhere: the bare name, which says so
    for version in ("9", "13", "15", "notes"):
        executable(library / version / "bin" / "initdb")
    assert pg_binary("initdb", library) == str(library / "15" / "bin" / "initdb")  # 15 > 13 > 9
    assert pg_binary("pg_ctl", library) == "pg_ctl"  # only what is there
    executable(empty / "initdb")
    assert pg_binary("initdb", library) == "initdb"  # on PATH: the one the user chose
