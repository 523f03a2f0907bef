"""MLflow tracking at the pipeline's edge: one run per training, its status always settled.

The store is `tracking.uri`, else $MLFLOW_TRACKING_URI, else the SQLite database `mlflow.db` at
the project root, with artifacts in `mlruns/` beside it. The root is $DVC_ROOT when DVC sets it:
queued `dvc exp run`s execute in a copy under .dvc/tmp/exps/, and must log to the real store.

A run ends FINISHED, FAILED (an error; its message in the `error` tag) or KILLED (Ctrl-C or
SIGTERM), never RUNNING. Only SIGKILL or a power cut can leave one RUNNING; this lists and
marks those whose process is gone:

    python -m pipeline.tracking stale [--mark]        (make stale-runs)

mlflow is imported only when tracking is on (here, and in serving.py for the model): importing
it costs over a second.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from pipeline.config import ROOT
from pipeline.errors import PipelineError
from pipeline.schema import TrackingConfig

PARAM_VALUE_LIMIT = 6000  # MLflow's maximum length of a param value
KIND_TAG = "pipeline.kind"  # pipeline (dvc repro / dvc exp run) | sweep | sweep-job | direct


class TrackingError(PipelineError):
    """The tracking store cannot be reached or used."""


def project_root() -> Path:
    return Path(os.environ.get("DVC_ROOT") or ROOT).resolve()


def store_uri(tracking: TrackingConfig) -> str:
    if tracking.uri:
        return tracking.uri
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


def open_store(tracking: TrackingConfig) -> str:
    """Reach the store (creating and migrating a new SQLite one), make sure the experiment
    exists, and return its id; raise `TrackingError` naming the store if that fails."""
    import mlflow
    from mlflow.exceptions import MlflowException

    uri = store_uri(tracking)
    mlflow.set_tracking_uri(uri)
    # A server that is down should fail in seconds, not after minutes of retries.
    limits = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
    saved = {name: os.environ.get(name) for name in limits}
    os.environ.update(limits)
    try:
        if uri.startswith("sqlite:///"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        client = mlflow.MlflowClient(uri)
        experiment = client.get_experiment_by_name(tracking.experiment)
        if experiment is None:
            location = (project_root() / "mlruns").as_uri()
            try:
                return client.create_experiment(tracking.experiment, artifact_location=location)
            except MlflowException:  # created meanwhile by a parallel job
                experiment = client.get_experiment_by_name(tracking.experiment)
                if experiment is None:
                    raise
        return experiment.experiment_id
    except Exception as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise TrackingError(
            f"cannot use the MLflow store {uri} ({reason[:300]}): start the server, fix "
            "tracking.uri or MLFLOW_TRACKING_URI, or turn tracking off with tracking.enabled=false"
        ) from None
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def git_tags() -> dict[str, str]:
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
    """What identifies a run beyond its params: code version, data, seed, who started it."""
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


def as_param(value) -> str:
    return str(value)[:PARAM_VALUE_LIMIT]


class Run:
    """A live MLflow run: log to it, then `end` it with a final status."""

    def __init__(self, run_id: str):
        import mlflow

        self.run_id = run_id
        self.client = mlflow.MlflowClient()

    @classmethod
    def start(cls, experiment_id, name=None, tags=None, params=None, parent_id=None) -> Run:
        import mlflow

        tags = dict(tags or {})
        if parent_id:
            tags["mlflow.parentRunId"] = parent_id
        created = mlflow.MlflowClient().create_run(experiment_id, tags=tags, run_name=name)
        run = cls(created.info.run_id)
        run.log_params(params or {})
        return run

    @classmethod
    def resume(cls, run_id: str) -> Run:
        run = cls(run_id)
        run.client.update_run(run_id, status="RUNNING")
        return run

    def exists(self) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_run(self.run_id)
            return True
        except MlflowException:
            return False

    def log_params(self, params: dict) -> None:
        from mlflow.entities import Param

        items = [Param(key, as_param(value)) for key, value in params.items()]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, step) for key, value in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch)

    def log_epoch(self, record) -> None:
        """One `EpochRecord` as the run's per-epoch curves, in one request."""
        self.log_metrics(
            {
                "train/loss": record.train_loss,
                "train/accuracy": record.train_accuracy,
                "dev/loss": record.dev_loss,
                "dev/accuracy": record.dev_accuracy,
                "train/learning_rate": record.learning_rate,
            },
            step=record.epoch,
        )

    def log_artifact(self, path: Path, directory: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), directory)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def set_tags(self, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, as_param(value))

    def end(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status)


def failure_status(error: BaseException) -> tuple[str, str]:
    """The final status a run gets for `error`, and the message for its `error` tag."""
    if isinstance(error, KeyboardInterrupt):
        return "KILLED", f"interrupted ({error or 'Ctrl-C'})"
    return "FAILED", f"{type(error).__name__}: {error}"


@contextlib.contextmanager
def settled(run: Run | None) -> Iterator[Run | None]:
    """End `run` FINISHED, FAILED (error in the `error` tag) or KILLED as the block ends."""
    if run is None:
        yield None
        return
    try:
        yield run
    except (Exception, KeyboardInterrupt) as error:
        status, message = failure_status(error)
        with contextlib.suppress(Exception):  # the original error matters more
            run.set_tags({"error": message})
            run.end(status)
        raise
    run.end("FINISHED")


def stale_runs(mark: bool = False) -> list[str]:
    """Runs RUNNING in the store whose process, on this host, no longer exists."""
    import mlflow

    client = mlflow.MlflowClient()
    host = socket.gethostname()
    found = []
    for experiment in client.search_experiments():
        for run in client.search_runs(
            [experiment.experiment_id], "attributes.status = 'RUNNING'", max_results=1000
        ):
            tags = run.data.tags
            if tags.get("host") != host or not tags.get("pid", "").isdigit():
                continue
            if pid_alive(int(tags["pid"])):
                continue
            found.append(f"{run.info.run_id} {run.info.run_name} (pid {tags['pid']} is gone)")
            if mark:
                client.set_tag(run.info.run_id, "error", "process ended without closing the run")
                client.set_terminated(run.info.run_id, "KILLED")
    return found


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] != "stale" or set(argv[1:]) - {"--mark"}:
        print("usage: python -m pipeline.tracking stale [--mark]", file=sys.stderr)
        return 2
    import mlflow

    from pipeline.config import compose_conf, validate

    tracking = validate(compose_conf()).tracking
    try:
        open_store(tracking)
    except TrackingError as error:
        print(f"tracking: error: {error}", file=sys.stderr)
        return 1
    mark = "--mark" in argv
    found = stale_runs(mark)
    for line in found:
        print(("marked KILLED: " if mark else "stale: ") + line)
    if not found:
        print(f"no stale RUNNING runs in {mlflow.get_tracking_uri()}")
    elif not mark:
        print("mark them KILLED with: python -m pipeline.tracking stale --mark")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
