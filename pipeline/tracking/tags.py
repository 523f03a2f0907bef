"""What identifies a run beyond its params: code version, data, seed, who started it."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from pipeline.plumbing.files import file_sha256
from pipeline.plumbing.paths import ROOT

KIND_TAG = "pipeline.kind"  # pipeline (dvc repro / dvc exp run) | sweep | sweep-job | direct


def git_tags() -> dict[str, str]:
    """The commit and whether tracked files differ from it; nothing where git is missing."""

    def git(*args):
        try:
            done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        except OSError:  # no git on this machine: the run simply has no commit tag
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"mlflow.source.git.commit": commit, "git.dirty": str(bool(status)).lower()}


def run_tags(kind: str, seed: int, data_files: dict[str, Path]) -> dict[str, str]:
    """Tags for a new run of `kind`, with the SHA-256 of each named data file."""
    tags = {
        KIND_TAG: kind,
        "seed": str(seed),
        "host": socket.gethostname(),
        "pid": str(os.getpid()),  # with host: lets `stale` tell a dead run from a live one
        # The BLAS thread cap: joblib's launcher gives each of n parallel jobs cores/n.
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS") or f"all ({os.cpu_count()})",
    }
    tags.update(git_tags())
    for name, path in data_files.items():
        tags[f"data.{name}.sha256"] = file_sha256(path)
    for variable, tag in (("DVC_EXP_NAME", "dvc.exp_name"), ("DVC_STAGE", "dvc.stage")):
        if os.environ.get(variable):
            tags[tag] = os.environ[variable]
    return tags
