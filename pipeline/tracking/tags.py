"""What a run records beyond its params: all `reproduce` needs to make it again, and to say why
a re-run differs.

    code      mlflow.source.git.commit, git.dirty, and the uncommitted changes themselves as the
              artifact code/uncommitted.patch (tracked files, and new files under pipeline/
              and conf/)
    data      data.<role>.md5: DVC's hash of each data file, which is also its key in the DVC
              cache and remotes; and each file as an MLflow dataset (the UI's Dataset column)
    compute   compute.*: the BLAS kernel, its threads and numpy's SIMD level read back from
              the loaded libraries (pipeline/plumbing/compute.py), the CPU
    packages  env.lock_sha256 (requirements.lock), env.packages_sha256 (what is installed: the
              artifact environment/packages.txt lists it), env.python
    DVC       dvc.exp_name and dvc.baseline_rev inside `dvc exp run`, dvc.stage
"""

from __future__ import annotations

import functools
import getpass
import hashlib
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import warnings
from importlib import metadata
from pathlib import Path

from pipeline.plumbing.compute import in_force
from pipeline.plumbing.files import file_sha256
from pipeline.plumbing.paths import ROOT

RETRIED_TAG = "optuna.retried_trial"  # a sweep trial's run: the lost trial it runs again
PRUNED_TAG = "pruned"  # a pruned trial's run: the epoch its training stopped after
TRIAL_TAG, STUDY_TAG, WORKER_TAG = "optuna.trial", "optuna.study", "optuna.worker"  # its run's
KIND_TAG = "pipeline.kind"  # pipeline (dvc repro / dvc exp run) | sweep | sweep-job | direct
PATCH_ARTIFACT = "code/uncommitted.patch"
PACKAGES_ARTIFACT = "environment/packages.txt"
LOCK_FILE = ROOT / "requirements.lock"
# Untracked files that can change a result; others (notes, scratch data) stay out of the patch.
CODE_DIRS = ("pipeline", "conf")
# What the pipeline itself writes into git-tracked files: a run's result, not its input, so a
# `dvc repro` from a clean commit (which rewrites dvc.lock as it goes) is still clean.
OUTPUTS = (":(exclude)dvc.lock", ":(exclude)reports")


def git(*args: str, env: dict | None = None) -> str | None:
    """The output of a git command in the project; None where git or the repository is missing."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, env=env, check=False
        )
    except OSError:
        return None
    return done.stdout if done.returncode == 0 else None


def uncommitted_patch() -> str | None:
    """The working tree's changes against HEAD as a binary-safe patch (`git apply` takes it):
    tracked files but the pipeline's outputs, and untracked ones under CODE_DIRS. Built in a
    copy of the index, so the user's staging area is left as it was."""
    index = git("rev-parse", "--git-path", "index")
    if index is None:
        return None
    with tempfile.TemporaryDirectory() as scratch:
        scratch_index = Path(scratch) / "index"
        source = ROOT / index.strip()
        if source.is_file():
            shutil.copyfile(source, scratch_index)
        env = {**os.environ, "GIT_INDEX_FILE": str(scratch_index)}
        git("add", "-u", "--", ".", *OUTPUTS, env=env)
        git("add", "-A", "--", *[d for d in CODE_DIRS if (ROOT / d).is_dir()], env=env)
        return git("diff", "--cached", "--binary", "HEAD", env=env)


def code_tags() -> tuple[dict[str, str], str | None]:
    """The commit tags, and the patch of uncommitted changes (None when the tree is clean)."""
    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {}, None
    patch = uncommitted_patch() or None
    tags = {"mlflow.source.git.commit": commit.strip(), "git.dirty": str(bool(patch)).lower()}
    if patch:
        tags["git.patch_sha256"] = hashlib.sha256(patch.encode()).hexdigest()
    return tags, patch


@functools.cache
def installed_packages() -> str:
    """`name==version` of every installed distribution, sorted: the package set a run used
    (read once per process: what it imported was installed when it started)."""
    found = set()
    for dist in metadata.distributions():
        headers = dist.metadata  # parsed anew on each access: once per distribution
        if headers["Name"]:
            found.add(f"{headers['Name'].lower().replace('_', '-')}=={headers['Version']}")
    return "\n".join(sorted(found)) + "\n"


def source_tags() -> dict[str, str]:
    """What MLflow's own runs record of their source (the UI's Source and User columns): the
    entry point that runs, relative to the project (pipeline/train.py), and the user. The
    commit is `code_tags`'s mlflow.source.git.commit."""
    entry = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    if entry is None or not entry.is_file():
        name = "python"  # an interactive session, `python -c`
    elif entry.is_relative_to(ROOT):
        name = entry.relative_to(ROOT).as_posix()
    else:
        name = entry.name
    return {
        "mlflow.source.type": "LOCAL",
        "mlflow.source.name": name,
        "mlflow.user": getpass.getuser(),
    }


def environment_tags(packages: str) -> dict[str, str]:
    return {
        "env.lock_sha256": file_sha256(LOCK_FILE) if LOCK_FILE.is_file() else "none",
        "env.packages_sha256": hashlib.sha256(packages.encode()).hexdigest(),
        "env.python": platform.python_version(),
    }


def run_tags(
    kind: str, seed: int, data_digests: dict[str, str], compute_preset: str, packages: str
) -> dict[str, str]:
    """Tags for a new run of `kind`: who made it, from which code, data and compute."""
    tags = {
        KIND_TAG: kind,
        "seed": str(seed),
        "host": socket.gethostname(),
        "pid": str(os.getpid()),  # with host: lets `stale` tell a dead run from a live one
    }
    tags.update(source_tags())
    tags.update(in_force(compute_preset))
    tags.update(environment_tags(packages))
    tags.update({f"data.{role}.md5": digest for role, digest in data_digests.items()})
    for variable, tag in (
        ("DVC_EXP_NAME", "dvc.exp_name"),
        ("DVC_EXP_BASELINE_REV", "dvc.baseline_rev"),
        ("DVC_STAGE", "dvc.stage"),
    ):
        if os.environ.get(variable):
            tags[tag] = os.environ[variable]
    return tags


def dataset_inputs(data_files: dict[str, Path], digests: dict[str, str]) -> list:
    """Each data file as an MLflow dataset input named by its role, digest its DVC md5."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag

    inputs = []
    for role, path in data_files.items():
        where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        with warnings.catch_warnings():  # "can be interpreted in multiple ways": it is a file
            warnings.simplefilter("ignore")
            source = resolve_dataset_source(str(where))
        dataset = MetaDataset(source, name=role, digest=digests[role])
        context = InputTag("mlflow.data.context", "training" if role == "train" else role)
        inputs.append(DatasetInput(dataset._to_mlflow_entity(), tags=[context]))
    return inputs


def run_name(summary: str, preset: str | None = None) -> str:
    """A name a person recognises: the DVC experiment's, else the preset and a summary."""
    if os.environ.get("DVC_EXP_NAME"):
        return os.environ["DVC_EXP_NAME"]
    return f"{preset} {summary}" if preset else summary
