"""MLflow housekeeping: runs left RUNNING by killed processes, and which model the alias names.

    python -m pipeline.runs stale            # list RUNNING runs whose process is gone
    python -m pipeline.runs stale --mark     # mark them KILLED (`make stale-runs`)
    python -m pipeline.runs promote VERSION  # point models:/mnist-mlp@pipeline at a version
    python -m pipeline.runs promote RUN_ID   # … or at the model a run logged (registers it)
    python -m pipeline.runs copy-to URI      # copy this store's runs to another (the server)
    python -m pipeline.runs link [BASE]      # the experiment's runs in the MLflow UI (`make ui`)

The store, experiment, model name and alias come from conf/ (tracking group), as for a stage.
"""

from __future__ import annotations

import sys

import mlflow  # this command exists to talk to MLflow

from pipeline.plumbing.config import compose_conf, validate
from pipeline.plumbing.errors import PipelineError
from pipeline.plumbing.process import skip_last_collection
from pipeline.tracking.registry import promote
from pipeline.tracking.runs import stale_runs
from pipeline.tracking.store import open_store, runs_link

USAGE = (
    "usage: python -m pipeline.runs stale [--mark] | promote VERSION_OR_RUN_ID | copy-to URI | "
    "link [BASE]"
)


def stale(mark: bool) -> None:
    found = stale_runs(mark)
    for status, line in found:
        print((f"marked {status}: " if mark else "stale: ") + line)
    if not found:
        print(f"no stale RUNNING runs in {mlflow.get_tracking_uri()}")
    elif not mark:
        print("mark them KILLED with: python -m pipeline.runs stale --mark")


def copy_to(target_uri: str, tracking) -> None:
    """Copy this store's runs of the experiment to `target_uri` (credentials for a server:
    MLFLOW_TRACKING_USERNAME/PASSWORD)."""
    from mlflow.exceptions import MlflowException

    from pipeline.tracking.transfer import copy_experiment

    source = mlflow.get_tracking_uri()
    try:
        new = copy_experiment(source, target_uri, tracking.experiment)
    except MlflowException as error:
        raise PipelineError(
            f"copying to {target_uri} failed: {str(error).splitlines()[0]}"
        ) from None
    print(f"{len(new)} run(s) of {tracking.experiment} copied from {source} to {target_uri}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command, rest = (argv[0], argv[1:]) if argv else ("", [])
    if (
        not (command == "stale" and set(rest) <= {"--mark"})
        and not (command in ("promote", "copy-to") and len(rest) == 1)
        and not (command == "link" and len(rest) <= 1)
    ):
        print(USAGE, file=sys.stderr)
        return 2
    try:
        tracking = validate(compose_conf()).tracking
        experiment_id = open_store(tracking)
        if command == "link":  # the runs view: MLflow 3 opens an experiment on GenAI otherwise
            print(f"runs of {tracking.experiment}: {runs_link(experiment_id, None, *rest)}")
        elif command == "stale":
            stale("--mark" in rest)
        elif command == "copy-to":
            copy_to(rest[0], tracking)
        else:
            if not tracking.registered_model:
                raise PipelineError("tracking.registered_model is null: name a model in conf/")
            version = promote(tracking.registered_model, tracking.alias, rest[0])
            print(f"models:/{tracking.registered_model}@{tracking.alias} is now version {version}")
    except PipelineError as error:
        print(f"runs: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    skip_last_collection()
    raise SystemExit(main())
