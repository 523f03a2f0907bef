"""The MLflow side of `python -m pipeline.reproduce`: read a run's record, read the re-run
from its scratch store, and log the re-run next to the original with the verdict.

    recorded_run     what the original recorded: commit, patch, config, data md5s, compute,
                     weights SHA-256, final metrics
    local_store_run  the run a re-run logged to its scratch store
    copy_into        the re-run, whole (transfer.copy_run), into the original's experiment,
                     tagged reproduces=<id>; the original gets the verdict
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import yaml
from mlflow.exceptions import MlflowException

from pipeline.plumbing.errors import PipelineError
from pipeline.tracking.store import store_calls
from pipeline.tracking.tags import KIND_TAG, PATCH_ARTIFACT
from pipeline.tracking.transfer import copy_run

COMMIT_TAG = "mlflow.source.git.commit"
REPRODUCES_TAG = "reproduces"
ROLES = ("train", "dev", "test")


@dataclass
class RecordedRun:
    run_id: str
    name: str
    kind: str
    experiment_id: str
    commit: str
    patch: str | None
    config_yaml: str
    weights: str | None
    metrics: dict[str, float]
    tags: dict[str, str]
    params: dict[str, str] = field(default_factory=dict)
    data_digests: dict[str, str] = field(default_factory=dict)

    @property
    def evaluated(self) -> bool:
        return any(name.startswith("test/") for name in self.metrics)


def artifact_text(client: mlflow.MlflowClient, run_id: str, path: str) -> str | None:
    with tempfile.TemporaryDirectory() as scratch:
        try:
            local = client.download_artifacts(run_id, path, scratch)
        except (MlflowException, OSError):
            return None
        try:
            return Path(local).read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise PipelineError(
                f"run {run_id}'s record {path} is damaged (not text): {RECORD_FIX}"
            ) from None


RECORD_FIX = (
    "the run cannot be re-run from it; its params hold the same config, to train it again by "
    "hand (python -m pipeline.train key=value …)"
)


def check_record_config(run_id: str, config_yaml: str) -> None:
    """The recorded config.yaml is a whole config of this project, or one line says not."""
    from pipeline.plumbing.config import validate

    try:
        loaded = yaml.safe_load(config_yaml)
        if not isinstance(loaded, dict):
            raise ValueError("empty" if loaded is None else "not a YAML mapping")
        validate(loaded)
    except (yaml.YAMLError, ValueError, PipelineError) as error:
        reason = str(error).strip().splitlines()[0][:200] if str(error) else type(error).__name__
        raise PipelineError(
            f"run {run_id}'s record config.yaml is damaged ({reason}): {RECORD_FIX}"
        ) from None


def recorded_run(run_id: str) -> RecordedRun:
    """The original run's record; a `PipelineError` naming what is missing if it lacks one."""
    client = mlflow.MlflowClient()
    try:
        run = client.get_run(run_id)
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            with store_calls("get_run"):  # the store's own trouble, as one line
                raise
        raise PipelineError(
            f"no run {run_id} in {mlflow.get_tracking_uri()}: check the id (the MLflow UI shows "
            "it), or point tracking.uri / MLFLOW_TRACKING_URI at the store that holds it"
        ) from None
    tags = run.data.tags
    if COMMIT_TAG not in tags:
        raise PipelineError(f"run {run_id} records no git commit: it was made outside git")
    if tags.get(KIND_TAG) == "sweep":
        raise PipelineError(
            f"run {run_id} is a sweep's parent run, which trains nothing: reproduce one of its "
            "children (the MLflow UI lists them under it)"
        )
    config_yaml = artifact_text(client, run_id, "config.yaml")
    if config_yaml is None:
        raise PipelineError(f"run {run_id} has no config.yaml artifact: it cannot be re-run")
    check_record_config(run_id, config_yaml)
    patch = None
    if tags.get("git.dirty") == "true":
        patch = artifact_text(client, run_id, PATCH_ARTIFACT)
    digests = {role: tags[f"data.{role}.md5"] for role in ROLES if f"data.{role}.md5" in tags}
    needed = (
        {"train", "dev", "test"}
        if any(m.startswith("test/") for m in run.data.metrics)
        else {"train", "dev"}
    )
    if not needed <= set(digests):
        lacking = ", ".join(f"data.{role}.md5" for role in sorted(needed - set(digests)))
        raise PipelineError(
            f"run {run_id} records no {lacking}: it predates run records, so its data cannot "
            "be found by hash"
        )
    return RecordedRun(
        run_id=run_id,
        name=run.info.run_name,
        kind=tags.get(KIND_TAG, "?"),
        experiment_id=run.info.experiment_id,
        commit=tags[COMMIT_TAG],
        patch=patch,
        config_yaml=config_yaml,
        weights=tags.get("model.sha256"),
        metrics=dict(run.data.metrics),
        tags=dict(tags),
        params=dict(run.data.params),
        data_digests=digests,
    )


def local_store_run(uri: str):
    """The newest run the re-run logged to its scratch store (an MLflow `Run`)."""
    client = mlflow.MlflowClient(tracking_uri=uri)
    runs = [
        run
        for experiment in client.search_experiments()
        for run in client.search_runs([experiment.experiment_id], max_results=10)
    ]
    if not runs:
        raise PipelineError("the re-run logged no run: see its output above")
    return max(runs, key=lambda found: found.info.start_time)


def copy_into(rerun, rerun_uri: str, original: RecordedRun, verdict: str) -> str:
    """Log the re-run whole in the original's experiment, in the current store; tag both with
    the verdict. Returns the new run's id."""
    client = mlflow.MlflowClient()
    tags = {
        key: value
        for key, value in rerun.data.tags.items()
        if not key.startswith("mlflow.") or key == COMMIT_TAG
    }
    tags.update({
        KIND_TAG: "reproduction",
        REPRODUCES_TAG: original.run_id,
        "reproduce.verdict": verdict,
    })  # fmt: skip
    with store_calls("log the re-run"):
        source = mlflow.MlflowClient(tracking_uri=rerun_uri)
        name = f"reproduce {original.name}"
        new_id = copy_run(source, client, rerun, original.experiment_id, tags, name)
        for key, value in (("reproduce.verdict", verdict), ("reproduce.by", new_id)):
            client.set_tag(original.run_id, key, value)
    return new_id
