"""Make an MLflow run again from its record, and say whether it came out the same, bit for bit.

    python -m pipeline.reproduce RUN_ID          # make reproduce RUN=RUN_ID
    python -m pipeline.reproduce RUN_ID --keep   # keep the scratch folder (worktree, store)

For a pipeline run, a sweep child or a DVC experiment's run, in five steps:

    1. code     the run's commit in a temporary git worktree, plus its logged patch
    2. data     train/dev/test by their recorded DVC md5: from the DVC cache, the workspace or
                the DVC remote; else rebuilt by fetch, normalise and split with the run's
                config; verified by hash either way
    3. train    the run's config (its config.yaml), under its compute settings, in the
                worktree, logging to a scratch store
    4. evaluate when the run has test metrics
    5. compare  the weights' SHA-256 and every final metric, exactly; the table says which
                differ, by how much, and the likely cause (kernel, threads, packages, patch)

The re-run is logged in the run's experiment, tagged `reproduces=<RUN_ID>`, and the original is
tagged with the verdict. Exit code: 0 identical, 1 differs, 2 could not re-run (the message
says why: a commit not in this repository, data no longer to be had, a run without a record).
The store is the one conf/ names (tracking group) or $MLFLOW_TRACKING_URI, as for a stage.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import mlflow  # this command exists to talk to MLflow

from pipeline.plumbing.config import compose_conf, validate
from pipeline.plumbing.errors import PipelineError
from pipeline.plumbing.files import file_md5, file_sha256
from pipeline.plumbing.paths import NORMALISED_TEST, RAW_DIR, ROOT, SPLIT_DEV, SPLIT_TRAIN, TRAIN
from pipeline.plumbing.process import skip_last_collection
from pipeline.tracking.reruns import copy_into, local_store_run, recorded_run
from pipeline.tracking.store import open_store
from pipeline.tracking.tags import PRUNED_TAG
from pipeline.tracking.verdict import compare, likely_causes, table, verdict_line

DATA = {"train": SPLIT_TRAIN, "dev": SPLIT_DEV, "test": NORMALISED_TEST}  # role → project path
# Variables of the calling process that would send the re-run elsewhere or skip its pinning.
CHILD_ENV_DROPPED = (
    "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV", "DVC_ROOT", "DVC_STAGE", "MLFLOW_RUN_ID",
    "MLFLOW_TRACKING_URI", "PIPELINE_COMPUTE_RESTARTED", "PIPELINE_PARALLEL_JOBS",
)  # fmt: skip


def step(number: int, text: str) -> None:
    print(f"reproduce: [{number}/5] {text}", flush=True)


@contextlib.contextmanager
def worktree(commit: str, patch: str | None, scratch: Path) -> Iterator[Path]:
    """The project at `commit`, with `patch` applied, in a temporary git worktree."""
    tree = scratch / "code"
    added = git("worktree", "add", "--detach", "--force", str(tree), commit)
    if added.returncode != 0:
        raise PipelineError(
            f"commit {commit[:12]} is not in this repository ({added.stderr.strip()[:120]}): "
            "fetch it (`git fetch --all`), then run this again"
        )
    try:
        if patch:
            (scratch / "uncommitted.patch").write_text(patch)
            applied = git("apply", "--binary", str(scratch / "uncommitted.patch"), cwd=tree)
            if applied.returncode != 0:
                raise PipelineError(
                    f"the run's patch does not apply to {commit[:12]}: {applied.stderr.strip()}"
                )
        yield tree
    finally:
        git("worktree", "remove", "--force", str(tree))


def git(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)


def cached_object(md5: str) -> Path | None:
    """The DVC cache's copy of the file with this md5, if the cache has it."""
    from dvc.repo import Repo

    with contextlib.closing(Repo(str(ROOT))) as repo:
        path = Path(repo.cache.local.oid_to_path(md5))
    return path if path.is_file() else None


def pulled_object(md5: str) -> Path | None:
    """Pull the file with this md5 from the project's default DVC remote into its cache; the
    cached copy, or None (no remote, or the remote lacks it)."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo
    from dvc_data.hashfile.hash_info import HashInfo

    with contextlib.closing(Repo(str(ROOT))) as repo:
        try:
            repo.cloud.pull([HashInfo("md5", md5)])
        except DvcException:  # no remote configured, or it cannot be reached
            return None
    return cached_object(md5)


def place(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another file system: copy instead
        shutil.copyfile(source, target)


def place_data(digests: dict[str, str], tree: Path, config_args: list[str]) -> str:
    """Put each data file of the run into the worktree by its md5; rebuild what no cache has.
    Returns where the data came from."""
    missing, found = {}, {}
    for role, md5 in digests.items():
        source, where = cached_object(md5), "the DVC cache"
        if source is None and DATA[role].is_file() and file_md5(DATA[role]) == md5:
            source, where = DATA[role], "the workspace"
        if source is None:
            source, where = pulled_object(md5), "the DVC remote"
        if source is None:
            missing[role] = md5
        else:
            place(source, tree / DATA[role].relative_to(ROOT))
            found[role] = where
    if not missing:
        return "; ".join(f"{role} from {where}" for role, where in found.items()) + ", by md5"
    sources = [f"data.sources=[dir:{RAW_DIR}]"] if RAW_DIR.is_dir() else []
    for stage in ("fetch", "normalise", "split"):
        run_stage(stage, tree, config_args + (sources if stage == "fetch" else []))
    for role, md5 in missing.items():
        rebuilt = tree / DATA[role].relative_to(ROOT)
        got = file_md5(rebuilt) if rebuilt.is_file() else "nothing"
        if got != md5:
            raise PipelineError(
                f"the run's {role} data (data.{role}.md5={md5}) is in no DVC cache, workspace or "
                f"remote, and fetch, normalise and split with the run's config now give {got}: "
                "the data it was trained on can no longer be had, so it cannot be re-run"
            )
    return f"rebuilt by fetch, normalise and split ({', '.join(missing)}), verified by md5"


def child_env(tree: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CHILD_ENV_DROPPED}
    env["PYTHONPATH"] = str(tree)  # the worktree's code, not the project's editable install
    return env


def run_stage(stage: str, tree: Path, config_args: list[str]) -> None:
    """Run one stage of the worktree's code with the run's config; its progress shows."""
    done = subprocess.run(
        [sys.executable, "-m", f"pipeline.{stage}", *config_args], cwd=tree, env=child_env(tree)
    )
    if done.returncode != 0:
        raise PipelineError(f"the re-run's {stage} failed (exit {done.returncode}; see above)")


def reproduce(run_id: str, keep: bool = False) -> int:
    tracking = validate(compose_conf()).tracking
    open_store(tracking)
    store = mlflow.get_tracking_uri()
    original = recorded_run(run_id)
    scratch = Path(tempfile.mkdtemp(prefix="reproduce-"))
    try:
        (scratch / "run.yaml").write_text(original.config_yaml)
        rerun_store = f"sqlite:///{scratch / 'rerun.db'}"
        config_args = [
            "--config-path", str(scratch), "--config-name", "run",
            f"hydra.run.dir={scratch / 'hydra'}", f"tracking.uri={rerun_store}",
            "tracking.registered_model=null", "tracking.log_model=false",
        ]  # fmt: skip
        if PRUNED_TAG in original.tags:  # a sweep's pruner stopped it there: stop there again
            config_args.append(f"train.stop_after={original.tags[PRUNED_TAG]}")
        patch_note = " + its patch" if original.patch else ""
        if original.tags.get("git.dirty") == "true" and not original.patch:
            patch_note = " (its tree had uncommitted changes, but no patch was logged)"
        step(1, f"code: commit {original.commit[:12]}{patch_note} in a git worktree")
        with worktree(original.commit, original.patch, scratch) as tree:
            step(2, "data: " + place_data(original.data_digests, tree, config_args))
            step(3, f"train: {original.name}, compute={original.tags.get('compute.preset')}")
            run_stage("train", tree, config_args)
            if original.evaluated:
                step(4, "evaluate on the test set")
                run_stage("evaluate", tree, config_args)
            else:
                step(4, "evaluate: skipped, the run has no test metrics")
            weights = file_sha256(tree / TRAIN.model.relative_to(ROOT))
            rerun = local_store_run(rerun_store)
            rows = compare(original.weights, weights, original.metrics, rerun.data.metrics)
            identical, line = verdict_line(rows)
            causes = [] if identical else likely_causes(original.tags, rerun.data.tags)
            # Logged before the worktree goes: the scratch run's artifacts are in its mlruns/.
            mlflow.set_tracking_uri(store)
            verdict = "identical" if identical else "differs"
            new_id = copy_into(rerun, rerun_store, original, verdict)
        step(5, f"compare with run {run_id} ({original.kind}); the re-run is run {new_id}")
        print(table(rows))
        print(f"reproduce: {line}")
        for cause in causes:
            print(f"reproduce: likely cause: {cause}")
        return 0 if identical else 1
    finally:
        if keep:
            print(f"reproduce: scratch folder kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.reproduce", description=__doc__)
    parser.add_argument("run_id", help="the MLflow run to make again")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args(argv)
    try:
        return reproduce(args.run_id, args.keep)
    except PipelineError as error:
        print(f"reproduce: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("reproduce: stopped (Ctrl-C); nothing was logged", file=sys.stderr)
        return 130


if __name__ == "__main__":
    skip_last_collection()
    raise SystemExit(main())
