"""What a training and its evaluation log: one MLflow run for `train` and `evaluate` together.

    start_training_run   params (the whole config, flattened), what re-creates the run (tags.py:
                         code, patch, data, compute, packages), the resolved config.yaml
    log_training         kept-model and best-epoch scores, the weights' SHA-256, the metrics and
                         history files
    log_evaluation       test scores, the figures, and the model as a pyfunc (registry.py)
    reopen_training_run  the run that trained models/model.npz (found by the weights' SHA-256),
                         for `evaluate`; rebuilt from the files if the store lost it
    log_sweep_job        a sweep job's scores, tags and files, in as few requests as can be
    LiveCurves           per-epoch curves (curves.py)

Starting a run also ends, KILLED, the runs of this experiment left RUNNING by processes on
this host that are gone (SIGKILL, or a store that was unreachable when the run should end).
"""

from __future__ import annotations

import functools
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import mlflow
import numpy as np

from pipeline.nn import EpochRecord
from pipeline.plumbing.config import flatten
from pipeline.plumbing.files import file_md5, file_sha256, read_columns, read_json
from pipeline.plumbing.paths import EvaluateOutputs, TrainOutputs
from pipeline.plumbing.phases import phase
from pipeline.plumbing.schema import Config
from pipeline.tracking.curves import LiveCurves, dev_curves
from pipeline.tracking.registry import MODEL_KIND_TAG, WEIGHTS_ARTIFACT, log_pyfunc_model
from pipeline.tracking.runs import Run, stale_runs
from pipeline.tracking.store import open_store, store_calls
from pipeline.tracking.tags import (
    KIND_TAG,
    PACKAGES_ARTIFACT,
    PATCH_ARTIFACT,
    code_tags,
    installed_packages,
    run_tags,
)

MODEL_TAG = "model.sha256"  # the saved weights' SHA-256: how evaluate and reproduce find a run
# Runs that wrote the project's own models/model.npz: the ones evaluate may log into.
PROJECT_KINDS = ("pipeline", "direct")


def start_training_run(
    config: Config,
    resolved_yaml: str,
    kind: str,
    name: str | None,
    data_files: dict[str, Path],
    parent_id: str | None = None,
    extra_tags: dict[str, str] | None = None,
) -> Run:
    """Open the store (failing now, before training, if it cannot be used) and start a run
    that records all `python -m pipeline.reproduce` needs to make it again; its files and
    datasets, and the marking of stale runs, go on the run's thread while it trains. A sweep
    job (with `parent_id`) leaves stale runs to its launcher, and takes the code's state as
    its worker process first read it: the code it runs is the code it imported then."""
    with phase("log: store"):
        experiment_id = open_store(config.tracking)
    with phase("log: datasets+tags"):
        packages = installed_packages()
        digests = {role: file_md5(path) for role, path in data_files.items()}
        tags = run_tags(kind, config.seed, digests, config.compute.name, packages)
        code, patch = code_tags_once() if parent_id else code_tags()
    with phase("log: params+curves"):
        tags = {**tags, **code, **paper_tags(config.reference), **(extra_tags or {})}
        run = Run.start(experiment_id, name, tags, flatten(asdict(config)), parent_id)
    texts = {"config.yaml": resolved_yaml, PACKAGES_ARTIFACT: packages, PATCH_ARTIFACT: patch}
    # Both overlap the training, on the run's own thread (runs.Run.later).
    with phase("log: artifacts"):
        run.later(upload_texts, run, {name: text for name, text in texts.items() if text})
    with phase("log: datasets+tags"):
        run.later(run.log_datasets, data_files, digests)
    if parent_id is None:  # a sweep's launcher marks them once for all its jobs
        run.later(mark_stale_runs, experiment_id, "train")
    return run


def upload_texts(run: Run, texts: dict[str, str]) -> None:
    """Texts as the run's artifacts (`folder/name` puts one in a folder), side by side."""
    with tempfile.TemporaryDirectory() as staging:
        files = []
        for artifact, text in texts.items():
            path = Path(staging) / artifact
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            files.append((path, str(Path(artifact).parent) if "/" in artifact else None))
        run.log_artifacts_together(files)


def paper_tags(reference) -> dict[str, str]:
    """paper, paper.row and paper.test_error for a preset that reproduces a published row."""
    named = {"paper": reference.source, "paper.row": reference.row}
    if reference.test_error is not None:
        named["paper.test_error"] = repr(reference.test_error)
    return {tag: str(value) for tag, value in named.items() if value is not None}


def mark_stale_runs(experiment_id: str, who: str) -> None:
    for status, abandoned in stale_runs(mark=True, experiment_ids=[experiment_id]):
        print(f"{who}: marked {status}, its process having ended: {abandoned}", file=sys.stderr)


@functools.cache
def code_tags_once() -> tuple[dict[str, str], str | None]:
    return code_tags()


def log_training(
    run: Run, metrics: dict, outputs: TrainOutputs, curves: LiveCurves | None = None
) -> None:
    with phase("log: params+curves"):
        run.settle_writes()  # the start's files and datasets, sent while it trained
        if curves is not None:  # epochs the store missed while training go first
            curves.flush()
        run.log_batch(score_values(metrics), {MODEL_TAG: file_sha256(outputs.model)})
    with phase("log: artifacts"):
        run.log_artifacts_together([(outputs.metrics, "reports"), (outputs.history, "reports")])


def score_values(metrics: dict) -> dict[str, float]:
    scores = {}
    if metrics.get("dev_held_out", True):  # else no dev score says how well it generalises
        scores["best/dev_accuracy"] = metrics["best"]["dev_accuracy"]
        scores["best/epoch"] = metrics["best"]["epoch"]
        scores["model/dev_accuracy"] = metrics["model"]["dev_accuracy"]
    if "train_seconds" in metrics:  # not when a run is rebuilt from the files
        scores["train/seconds"] = metrics["train_seconds"]
    return scores


def test_metric_values(metrics: dict) -> dict[str, float]:
    """The flat `test/...` metrics an MLflow run records."""
    values = {
        "test/accuracy": metrics["accuracy"],
        "test/loss": metrics["loss"],
        "test/macro_f1": metrics["macro_f1"],
    }
    for digit, scores in metrics["per_class"].items():
        values[f"test/f1_digit_{digit}"] = scores["f1"]
    return values


def log_evaluation(
    run: Run,
    config: Config,
    metrics: dict,
    outputs: EvaluateOutputs,
    weights: Path,
    example: np.ndarray,
    register: bool,
) -> None:
    """Test metrics, figures and reports into `run`; the model too if tracking.log_model, and
    registered (moving the alias) if `register` and tracking.registered_model is set."""
    with phase("log: params+curves"):
        run.log_metrics(test_metric_values(metrics))
    with phase("log: artifacts"):
        run.log_artifact(outputs.metrics, "reports")
    with phase("figures"):
        for figure in outputs.figure_files():
            if figure.is_file():  # a sweep job draws them only if asked (sweep_figures)
                run.log_artifact(figure, "figures")
    if config.tracking.log_model:
        name = config.tracking.registered_model if register else None
        with phase("log: model"), store_calls("log_model"):
            log_pyfunc_model(run, weights, example, name, config.tracking.alias)
            run.set_tags({MODEL_KIND_TAG: "pyfunc"})


def log_sweep_job(
    run: Run,
    config: Config,
    metrics: dict,
    test_metrics: dict,
    train_outputs: TrainOutputs,
    evaluate_outputs: EvaluateOutputs,
    curves: LiveCurves,
) -> None:
    """What a sweep job's run records at its end, as a pipeline run does, in fewer requests:
    the scores and tags in one batch, the files uploaded side by side, and the model as its
    weights only, one file where a pyfunc is some twenty (1.5 s a trial through a server);
    `promote RUN_ID` makes the pyfunc from them (registry.py)."""
    with phase("log: params+curves"):
        run.settle_writes()  # the start's files and datasets, sent while it trained
        curves.flush()
    tags = {MODEL_TAG: file_sha256(train_outputs.model)}
    files = [(path, "reports") for path in (train_outputs.metrics, train_outputs.history)]
    files.append((evaluate_outputs.metrics, "reports"))
    files += [(path, "figures") for path in evaluate_outputs.figure_files() if path.is_file()]
    if config.tracking.log_model:
        tags[MODEL_KIND_TAG] = "weights"
        files.append((train_outputs.model, str(Path(WEIGHTS_ARTIFACT).parent)))
    with phase("log: params+curves"):
        run.log_batch({**score_values(metrics), **test_metric_values(test_metrics)}, tags)
    with phase("log: artifacts"):
        run.log_artifacts_together(files)


def training_run_of(experiment_id: str, weights: Path) -> str | None:
    """The newest run of the project's pipeline (not a sweep job, not a re-run) that saved
    exactly these weights: the run `evaluate` logs into."""

    digest = file_sha256(weights)
    with store_calls("search_runs"):
        found = mlflow.MlflowClient().search_runs(
            [experiment_id], f"tags.`{MODEL_TAG}` = '{digest}'",
            order_by=["attributes.start_time DESC"], max_results=50,
        )  # fmt: skip
    kinds = [(run.info.run_id, run.data.tags.get(KIND_TAG)) for run in found]
    return next((run_id for run_id, kind in kinds if kind in PROJECT_KINDS), None)


def reopen_training_run(
    config: Config, resolved_yaml: str, train_outputs: TrainOutputs, data_files
) -> Run:
    """The run that trained models/model.npz, reopened; a new one (params and curves from the
    files) if the store has none, e.g. after mlflow.db was deleted or with tracking off in
    train."""
    experiment_id = open_store(config.tracking)
    run_id = training_run_of(experiment_id, train_outputs.model)
    if run_id is not None:
        return Run.resume(run_id)
    print("evaluate: no MLflow run in the store saved models/model.npz; logging a new one")
    # Read before the run starts: a damaged file then stops evaluate with no run left open.
    history = read_columns(train_outputs.history, made_by="train")
    metrics = read_json(train_outputs.metrics, "train") if train_outputs.metrics.is_file() else None
    present = {name: path for name, path in data_files.items() if path.is_file()}
    run = start_training_run(config, resolved_yaml, "pipeline", None, present)
    columns = ("train_loss", "train_accuracy", "dev_loss", "dev_accuracy", "learning_rate")
    records = [
        EpochRecord(int(epoch), *(float(history[column][row]) for column in columns), seconds=0.0)
        for row, epoch in enumerate(history["epoch"])
    ]
    run.log_epochs(records, dev=dev_curves(config))
    if metrics is not None:
        log_training(run, metrics, train_outputs)
    return run


def tag_test_data(run: Run, test_path: Path) -> None:
    digest = file_md5(test_path)
    run.set_tags({"data.test.md5": digest})
    run.log_datasets({"test": test_path}, {"test": digest})
